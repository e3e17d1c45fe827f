"""Bradley–Terry MLE throughput: 10⁶ synthetic battles × 100 models (target: fit under 5 s on 2 cores).

  python benchmarks/bt_fit.py [--num_battles=1000000] [--num_models=100] [--bootstrap_rounds=0]

Prints `compile_seconds` (first call: tracing + XLA compilation + one fit), `count_seconds` (battles →
[N, N] win/tie counts, the only O(B) step), `bt_fit_seconds` (the checked Newton fit on the counts,
compiled; the number the target refers to), and the fit's error against the true scores. The fit works on
the sufficient statistics, so `bt_fit_seconds` does not grow with the number of battles.
"""

import argparse
import time

import jax
import numpy as np

from prefjax import ranking


def _timed(fn, *args, **kwargs):
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args, **kwargs))
  return out, time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_battles", type=int, default=1_000_000)
  parser.add_argument("--num_models", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--repeats", type=int, default=3, help="timed fits; the best is reported")
  parser.add_argument("--bootstrap_rounds", type=int, default=0, help="also time a bootstrap")
  args = parser.parse_args()

  rng = np.random.default_rng(args.seed)
  n = args.num_models
  true = rng.normal(size=n)
  a = rng.integers(0, n, args.num_battles)
  b = (a + rng.integers(1, n, args.num_battles)) % n
  p_a = 1 / (1 + np.exp(-(true[a] - true[b])))
  outcome = np.where(rng.random(args.num_battles) < p_a, ranking.A_WINS, ranking.B_WINS)
  battles = ranking.battles_from_arrays(a, b, outcome, n)

  counts, first_count = _timed(ranking.count_battles, battles.model_a, battles.model_b, battles.outcome, n)
  fit, compile_seconds = _timed(ranking.fit_bradley_terry, counts)
  print(f"compile_seconds: {compile_seconds + first_count:.3f}")
  _, count_seconds = _timed(ranking.count_battles, battles.model_a, battles.model_b, battles.outcome, n)
  fit_seconds = min(_timed(ranking.fit_bradley_terry, counts)[1] for _ in range(args.repeats))
  print(f"count_seconds: {count_seconds:.4f}")
  print(f"bt_fit_seconds: {fit_seconds:.4f}")
  err = np.abs(np.asarray(fit.scores, np.float64) - (true - true.mean()))
  print(f"newton_iters: {int(fit.num_iters)}  converged: {bool(fit.converged)}  "
        f"max_abs_error_vs_truth: {err.max():.4f}  (battles={args.num_battles}, models={n}, "
        f"device={jax.devices()[0].platform})")
  if args.bootstrap_rounds:
    key = jax.random.PRNGKey(args.seed)
    _, boot_compile = _timed(ranking.bootstrap_bradley_terry, key, battles, args.bootstrap_rounds)
    _, boot_seconds = _timed(ranking.bootstrap_bradley_terry, key, battles, args.bootstrap_rounds)
    print(f"bootstrap_compile_seconds: {boot_compile:.3f}")
    print(f"bootstrap_seconds: {boot_seconds:.3f}  (rounds={args.bootstrap_rounds})")


if __name__ == "__main__":
  main()

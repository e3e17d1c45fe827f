r"""Throughput of EGPO on many preference games at once: extragradient updates per second.

  python benchmarks/game_throughput.py [--games=10000] [--steps=200] [--actions=10] [--repeats=3]

An update is one full EGPO step of one game (Zhou et al. arXiv:2503.08942): two gradients of the exact
online-IPO-1 loss over all N² action pairs (autodiff through `prefjax.objectives.nash.online_ipo_1_loss`),
the second from θ_t against π_{t+½}, with plain SGD on tabular float32 logits — `prefjax.games.online` with
`OnlineConfig("egpo", N, steps, record_every=steps)` (one duality-gap record at the end), all games in one
`jit(vmap(...))` call. Compile time is measured separately (`lower().compile()`); the run is timed after
compilation, best of `--repeats`. Prints `game_updates_per_second: <n>` and the 1-minute load average (the
machine is shared: a loaded machine gives lower numbers).

Where PyTorch is installed it also times a batched PyTorch implementation of the same update (closed-form
gradient (4/N)(r − r̄), r = ℓ − Pπ/β, which is what autograd computes for this loss; see
`prefjax.objectives.nash.online_ipo_1_loss`) on the same games and prints the ratio. torch is optional and
not a dependency; without it that part is skipped.
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp

from prefjax.games import instances
from prefjax.games import online


def measure_jax(num_games, num_steps, num_actions, repeats, beta=0.1, lr=0.1):
  P, ref = instances.egpo_games(jax.random.PRNGKey(0), num_games, num_actions, dtype=jnp.float32)
  config = online.OnlineConfig("egpo", num_actions, num_steps, num_steps)
  fn = jax.jit(online._sweep_fn(config))  # pylint: disable=protected-access
  args = (online.seed_keys(0, 1), P, ref, jnp.float32(beta), jnp.asarray([lr], jnp.float32))
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    best = min(best, time.perf_counter() - t0)
  return compile_s, best, num_games * num_steps / best, (P, ref, out)


def measure_torch(P, ref, num_steps, repeats, beta=0.1, lr=0.1):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  import numpy as np  # pylint: disable=g-import-not-at-top
  P_t = torch.tensor(np.asarray(P))
  ref_t = torch.log_softmax(torch.tensor(np.asarray(ref)), dim=-1)
  n = P_t.shape[-1]

  def grad(theta, target_logits):
    pi_target = torch.softmax(target_logits, dim=-1)
    r = torch.log_softmax(theta, dim=-1) - ref_t - torch.einsum("gij,gj->gi", P_t, pi_target) / beta
    return 4.0 / n * (r - r.mean(dim=-1, keepdim=True))

  def run():
    theta = torch.tensor(np.asarray(ref))
    with torch.no_grad():
      for _ in range(num_steps):
        half = theta - lr * grad(theta, theta)
        theta = theta - lr * grad(theta, half)
    return theta

  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    run()
    best = min(best, time.perf_counter() - t0)
  return P_t.shape[0] * num_steps / best


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--games", type=int, default=10_000)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--actions", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.device_count()} device(s)); "
        f"EGPO exact, float32, N={args.actions}, {args.games} games x {args.steps} steps in one jitted call")
  print(f"load_average_1min: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
  compile_s, run_s, ups, (P, ref, _) = measure_jax(args.games, args.steps, args.actions, args.repeats)
  print(f"compile_seconds: {compile_s:.2f}")
  print(f"run_seconds: {run_s:.3f}")
  print(f"game_updates_per_second: {ups:.4g}")
  torch_ups = measure_torch(P, ref, args.steps, args.repeats)
  if torch_ups is None:
    print("torch: not installed, comparison skipped")
  else:
    print(f"torch_game_updates_per_second: {torch_ups:.4g}")
    print(f"jax_over_torch: {ups / torch_ups:.3g}")


if __name__ == "__main__":
  main()

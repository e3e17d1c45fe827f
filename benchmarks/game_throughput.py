r"""Throughput of EGPO on many preference games at once: extragradient updates per second.

  python benchmarks/game_throughput.py [--games=10000] [--steps=200] [--actions=10] [--repeats=3]
      [--autodiff_steps=20]

An update is one full EGPO step of one game (Zhou et al. arXiv:2503.08942): two gradients of the exact
online-IPO-1 loss over all N² action pairs, the second from θ_t against π_{t+½}, with plain SGD on tabular
float32 logits — `prefjax.games.online` with `OnlineConfig("egpo", N, steps, record_every=steps)` (duality
gaps recorded at the start and the end), all games in one jitted call. This is the library's path that the
`egpo_tabular` experiment runs: the closed-form gradient (4/N)·centre(θ − ref − Pπ'/β)
(`online.TABULAR_GRADIENTS`, equal to autodiff through `prefjax.objectives.nash.online_ipo_1_loss`; tested)
with P π' as a batched matrix–vector product, and one `lax.scan` over the flat batch of games × learning
rates. Compile time is measured separately (`lower().compile()`); the run is timed after compilation, best
of `--repeats`. Prints `game_updates_per_second: <n>` and the 1-minute load average (the machine may be
shared: a loaded machine gives lower numbers).

Back to back in the same process it also times (ratios are what to compare on a shared machine):
- the same update by autodiff through the loss (`OnlineConfig(..., closed_form=False)`: `jax.grad` of the
  loss inside `prefjax.objectives.nash.egpo_step`, a vmapped per-game scan) for `--autodiff_steps` steps
  (0 skips it), printed as `autodiff_game_updates_per_second` and `closed_form_over_autodiff`;
- where PyTorch is installed, a batched PyTorch implementation of the same update (closed-form gradient on
  [G, N] tensors, `torch.no_grad`) on the same games: `torch_game_updates_per_second`, `jax_over_torch`.
  torch is optional and not a dependency; without it that part is skipped.

No XLA flags are set: the defaults of jax 0.10 on CPU already run the loop body's fusions and batched dots
through its multi-threaded kernels (`jax.jit(...).lower(...).compile().as_text()` shows `__ynn_fusion`s and
two `dot`s per step).
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp

from prefjax.games import instances
from prefjax.games import online


def measure_jax(P, ref, num_steps, repeats, beta=0.1, lr=0.1, **config_kwargs):
  """Returns (compile seconds, best run seconds, updates per second, final logits [G, N])."""
  num_games, num_actions = ref.shape
  config = online.OnlineConfig("egpo", num_actions, num_steps, num_steps, **config_kwargs)
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
  return compile_s, best, num_games * num_steps / best, out.final_logits[:, 0, 0]


def measure_torch(P, ref, num_steps, repeats, beta=0.1, lr=0.1):
  """Updates per second of a batched PyTorch EGPO step, and its final logits (None without torch)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None, None
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
    theta = run()
    best = min(best, time.perf_counter() - t0)
  return P_t.shape[0] * num_steps / best, theta.numpy()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--games", type=int, default=10_000)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--actions", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--autodiff_steps", type=int, default=20,
                      help="steps for the autodiff comparison (it is several times slower); 0 skips it")
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.device_count()} device(s)); "
        f"EGPO exact, float32, N={args.actions}, {args.games} games x {args.steps} steps in one jitted call")
  print(f"time: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
  print(f"load_average_1min: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
  P, ref = instances.egpo_games(jax.random.PRNGKey(0), args.games, args.actions, dtype=jnp.float32)
  compile_s, run_s, ups, logits = measure_jax(P, ref, args.steps, args.repeats)
  print(f"compile_seconds: {compile_s:.2f}")
  print(f"run_seconds: {run_s:.3f}")
  print(f"game_updates_per_second: {ups:.4g}")
  if args.autodiff_steps > 0:
    _, _, ad_ups, _ = measure_jax(P, ref, args.autodiff_steps, args.repeats, closed_form=False)
    print(f"autodiff_game_updates_per_second: {ad_ups:.4g} ({args.autodiff_steps} steps)")
    print(f"closed_form_over_autodiff: {ups / ad_ups:.3g}")
  torch_ups, torch_logits = measure_torch(P, ref, args.steps, args.repeats)
  if torch_ups is None:
    print("torch: not installed, comparison skipped")
  else:
    diff = float(jnp.max(jnp.abs(jax.nn.softmax(logits) - jax.nn.softmax(jnp.asarray(torch_logits)))))
    print(f"torch_game_updates_per_second: {torch_ups:.4g} (max |pi_jax - pi_torch| = {diff:.1e})")
    print(f"jax_over_torch: {ups / torch_ups:.3g}")
  print(f"load_average_1min: {os.getloadavg()[0]:.2f} (after)")


if __name__ == "__main__":
  main()

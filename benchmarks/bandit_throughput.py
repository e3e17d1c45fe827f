r"""Throughput of whole bandit runs: optimiser updates per second for many seeds in one jitted call.

  python benchmarks/bandit_throughput.py [--seeds=1000] [--steps=10000] [--actions=3,10,100]

An update is one optimiser step of one seed's tabular policy: sample a mini-batch of 9 pairs from a fixed
dataset (every pair of a total order over K actions), compute the IPO loss and its gradient, and apply Adam.
All seeds run in one `jit(vmap(vmap(train)))` call (prefjax.bandit.train.make_sweep). Compile time is
measured separately (ahead-of-time `lower().compile()`); the run is timed after compilation, best of
`--repeats`. Prints `updates_per_second: <n>` per K.
"""

import argparse
import itertools
import time

import jax
import jax.numpy as jnp

from prefjax.bandit import train as train_lib
from prefjax.envs import bandit


def measure(num_actions, num_seeds, num_steps, repeats, batch_size=9, record_every=1000):
  env = bandit.PairDataset(num_actions)
  pairs = list(itertools.combinations(range(num_actions), 2))  # (better, worse) under a total order.
  params = env.make_params(pairs)
  config = train_lib.TrainConfig(objective="ipo", num_steps=num_steps, batch_size=batch_size,
                                 record_every=record_every, optimizer="adam")
  sweep = train_lib.make_sweep(train_lib.make_train(config, env))
  keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
  hparams = train_lib.make_hparams([0.1], 0.01)
  ref_logits = jnp.zeros((1, num_actions))
  t0 = time.perf_counter()
  compiled = sweep.lower(keys, hparams, params, ref_logits).compile()
  compile_s = time.perf_counter() - t0
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(keys, hparams, params, ref_logits))
    best = min(best, time.perf_counter() - t0)
  return compile_s, best, num_seeds * num_steps / best


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=1000)
  parser.add_argument("--steps", type=int, default=10_000)
  parser.add_argument("--actions", default="3,10,100")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.device_count()} device(s)); "
        f"{args.seeds} seeds x {args.steps} steps, IPO + Adam, batch 9")
  for k in (int(a) for a in args.actions.split(",")):
    compile_s, run_s, ups = measure(k, args.seeds, args.steps, args.repeats)
    print(f"K={k}")
    print(f"  compile_seconds: {compile_s:.2f}")
    print(f"  run_seconds: {run_s:.3f}")
    print(f"  updates_per_second: {ups:.4g}")


if __name__ == "__main__":
  main()

"""Online-step throughput of the transformer policy: online DPO, online IPO and EGPO (sampling included).

  python benchmarks/lm_online_step.py --d_model=256 --num_layers=4 --num_heads=4 --vocab_size=8192 \
      --prompt_len=64 --new_tokens=64 --prompts=8
  python benchmarks/lm_online_step.py --preset=gpt2-small --algorithms=online_dpo,egpo

For each algorithm it prints, for one jitted `prefjax.lm.online` step (KV-cached generation of two responses
per prompt — EGPO generates twice —, a cheap arithmetic preference oracle, the differentiable policy and frozen
reference forward passes, AdamW) on one device, with compilation excluded (median over `--steps` steps):

  online_step_seconds: <s>              wall time of one optimiser step
  generated_tokens_per_second: <n>      generated response tokens per step / step time
  train_tokens_per_second: <n>          prompt + response tokens through the training forward pass per step
                                        (padding included) / step time
  peak_memory_bytes: <n>                device peak bytes in use (memory_stats), or on CPU the process's RSS

The oracle is p(a ≻ b) = σ(mean token id of a − mean of b, scaled by 4 / V): negligible cost, so the numbers
are the trainer's (an oracle that is a reward model adds its forward passes).
"""

import argparse
import resource
import statistics
import sys
import time

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prefjax import sharding as shd
from prefjax.lm import model as lm_model
from prefjax.lm import online

PRESETS = {
    # GPT-2 small (124M), 128-token prompts, 128 new tokens, 4 prompts per step, fp32.
    "gpt2-small": dict(style="gpt2", d_model=768, num_layers=12, num_heads=12, d_ff=3072, vocab_size=50257,
                       prompt_len=128, new_tokens=128, prompts=4, dtype="float32", tie_embeddings=True),
}


@flax.struct.dataclass
class MeanTokenOracle:
  """p(a ≻ b) = σ(scale · (mean token id of a − mean token id of b)); a pytree (traced by the step)."""
  scale: jax.Array

  def prefer(self, prompt_tokens_BxP, prompt_mask_BxP, a_BxT, mask_a_BxT, b_BxT, mask_b_BxT):
    del prompt_tokens_BxP, prompt_mask_BxP
    mean = lambda t, m: jnp.sum(t * m, 1) / jnp.maximum(jnp.sum(m, 1), 1)
    return jax.nn.sigmoid(self.scale * (mean(a_BxT, mask_a_BxT) - mean(b_BxT, mask_b_BxT)))


def _peak_memory():
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"])
  return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
  parser.add_argument("--style", default="gpt2")
  parser.add_argument("--d_model", type=int, default=256)
  parser.add_argument("--num_layers", type=int, default=4)
  parser.add_argument("--num_heads", type=int, default=4)
  parser.add_argument("--d_ff", type=int, default=None, help="default 4 d_model")
  parser.add_argument("--vocab_size", type=int, default=8192)
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--new_tokens", type=int, default=64)
  parser.add_argument("--prompts", type=int, default=8, help="prompts per optimiser step")
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--tie_embeddings", action="store_true")
  parser.add_argument("--steps", type=int, default=3, help="timed steps per algorithm")
  parser.add_argument("--algorithms", default="online_dpo,online_ipo,egpo")
  args = parser.parse_args(argv)
  shape = dict(style=args.style, d_model=args.d_model, num_layers=args.num_layers, num_heads=args.num_heads,
               d_ff=args.d_ff or 4 * args.d_model, vocab_size=args.vocab_size, prompt_len=args.prompt_len,
               new_tokens=args.new_tokens, prompts=args.prompts, dtype=args.dtype,
               tie_embeddings=args.tie_embeddings)
  if args.preset:
    shape.update(PRESETS[args.preset])
  p, t, b = shape["prompt_len"], shape["new_tokens"], shape["prompts"]
  config = lm_model.TransformerConfig(
      vocab_size=shape["vocab_size"], d_model=shape["d_model"], num_layers=shape["num_layers"],
      num_heads=shape["num_heads"], d_ff=shape["d_ff"], max_len=p + t, style=shape["style"],
      dtype=shape["dtype"], tie_embeddings=shape["tie_embeddings"])
  print(f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}); shape: {shape}; "
        f"params: {lm_model.param_count(jax.eval_shape(lambda: lm_model.init_params(config, jax.random.key(0))))}",
        flush=True)
  rng = np.random.default_rng(0)
  prompts = {"prompt_tokens_BxP": rng.integers(0, shape["vocab_size"], (b, p), dtype=np.int32),
             "prompt_mask_BxP": np.ones((b, p), np.int32)}
  mesh = shd.make_mesh(devices=jax.devices()[:1])
  params = jax.jit(lambda k: nn.unbox(lm_model.init_params(config, k)))(jax.random.key(0))
  oracle = MeanTokenOracle(jnp.float32(4.0 / shape["vocab_size"]))
  feed = shd.shard_batch(prompts, mesh)
  for algorithm in args.algorithms.split(","):
    cfg = online.OnlineConfig(algorithm=algorithm, beta=0.1, max_new_tokens=t, batch_size=b, num_steps=1000,
                              learning_rate=1e-5)
    step = online.compiled_step(config, cfg, oracle, mesh)
    state = online.init_state(config, cfg, params, jax.random.key(0), mesh)
    t0 = time.perf_counter()
    state, m = step(state, feed, params)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    times, gen, train = [], 0, 0
    for _ in range(args.steps):
      t0 = time.perf_counter()
      state, m = step(state, feed, params)
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t0)
      gen, train = int(m["generated_tokens"]), int(m["train_tokens"])
    sec = statistics.median(times)
    print(f"== {algorithm} (first step incl. compile {compile_s:.1f} s; loss {float(m['loss']):.4f})")
    print(f"online_step_seconds: {sec:.4f}")
    print(f"generated_tokens_per_second: {gen / sec:.1f}")
    print(f"train_tokens_per_second: {train / sec:.1f}")
    print(f"peak_memory_bytes: {_peak_memory()}", flush=True)
    del state


if __name__ == "__main__":
  main(sys.argv[1:])

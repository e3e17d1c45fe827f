"""Generation throughput of `prefjax.lm.sampling.generate`, with and without the KV cache.

  python benchmarks/lm_generate.py --preset=tiny
  python benchmarks/lm_generate.py --preset=gpt2-small --batch=8 --prompt_len=64 --new_tokens=64
  python benchmarks/lm_generate.py --style=gpt2 --d_model=256 --num_layers=4 --num_heads=4 \
      --vocab_size=8192 --batch=8 --prompt_len=32 --new_tokens=32

For each mode ("cached": `generate`, one prefill then one T = 1 call per token with the KV cache;
"uncached": `generate_uncached`, a full forward over the whole buffer per token) it prints

  compile_seconds: <s>                first call (trace + compile + one run) minus the steady-state time
  generated_tokens_per_second: <n>    batch · new_tokens / best steady-state generation time
  step_ms: <ms>                       best generation time / new_tokens (one decode step for the batch,
                                      the prefill amortised over the steps)
  median_generation_seconds: <s>      median over the timed repeats

Steady state: the jitted sampler is called `--repeats` times with fresh keys after the compiling call;
best and median are reported. Sampling uses temperature 1 and no EOS, so every row generates
`--new_tokens` tokens. Default modes: both for the tiny preset and explicit shapes; only "cached" for
gpt2-small unless `--modes=cached,uncached` is given (the uncached path is quadratic in the length).
"""

import argparse
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prefjax.lm import model as lm_model
from prefjax.lm import sampling

PRESETS = {
    # The test suite's model: vocabulary 8, d_model 16, 2 layers.
    "tiny": dict(style="llama", d_model=16, num_layers=2, num_heads=2, d_ff=32, vocab_size=8,
                 batch=64, prompt_len=8, new_tokens=32, modes="cached,uncached"),
    # GPT-2 small (124M): 12 layers, d_model 768, 12 heads, vocabulary 50 257, tied embeddings.
    "gpt2-small": dict(style="gpt2", d_model=768, num_layers=12, num_heads=12, d_ff=3072,
                       vocab_size=50257, tie_embeddings=True, batch=8, prompt_len=64, new_tokens=64,
                       modes="cached"),
}


def _time(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
  parser.add_argument("--style", default="gpt2")
  parser.add_argument("--d_model", type=int, default=256)
  parser.add_argument("--num_layers", type=int, default=4)
  parser.add_argument("--num_heads", type=int, default=4)
  parser.add_argument("--d_ff", type=int, default=None, help="default 4 d_model")
  parser.add_argument("--vocab_size", type=int, default=8192)
  parser.add_argument("--tie_embeddings", action="store_true")
  parser.add_argument("--batch", type=int, default=None, help="default 8 (preset: its own)")
  parser.add_argument("--prompt_len", type=int, default=None, help="default 32 (preset: its own)")
  parser.add_argument("--new_tokens", type=int, default=None, help="default 32 (preset: its own)")
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--modes", default=None, help="comma list of cached,uncached")
  args = parser.parse_args(argv)
  shape = dict(style=args.style, d_model=args.d_model, num_layers=args.num_layers,
               num_heads=args.num_heads, d_ff=args.d_ff or 4 * args.d_model, vocab_size=args.vocab_size,
               tie_embeddings=args.tie_embeddings, batch=8, prompt_len=32, new_tokens=32,
               modes="cached,uncached")
  if args.preset:
    shape.update(PRESETS[args.preset])
  for name in ("batch", "prompt_len", "new_tokens", "modes"):
    if getattr(args, name) is not None:
      shape[name] = getattr(args, name)
  b, p, t = shape["batch"], shape["prompt_len"], shape["new_tokens"]
  config = lm_model.TransformerConfig(
      vocab_size=shape["vocab_size"], d_model=shape["d_model"], num_layers=shape["num_layers"],
      num_heads=shape["num_heads"], d_ff=shape["d_ff"], max_len=p + t, style=shape["style"],
      dtype=args.dtype, tie_embeddings=shape["tie_embeddings"])
  params = jax.jit(lambda k: nn.unbox(lm_model.init_params(config, k)))(jax.random.key(0))
  dev = jax.devices()[0]
  print(f"device: {dev.device_kind} ({dev.platform}, {jax.device_count()} device(s)); "
        f"dtype: {args.dtype}; shape: {shape}; params: {lm_model.param_count(params)}", flush=True)

  rng = np.random.default_rng(0)
  tokens = rng.integers(0, shape["vocab_size"], (b, p)).astype(np.int32)
  lengths = rng.integers(max(1, p // 2), p + 1, size=b)  # left-padded prompts of varied lengths
  mask = (np.arange(p)[None, :] >= p - lengths[:, None]).astype(np.int32)
  tokens, mask = jnp.asarray(tokens * mask), jnp.asarray(mask)
  cfg = sampling.SamplingConfig(max_new_tokens=t)
  fns = {"cached": sampling.generate, "uncached": sampling.generate_uncached}
  results = {}
  for mode in shape["modes"].split(","):
    fn = jax.jit(fns[mode], static_argnums=(0, 5))

    def run(seed):
      jax.block_until_ready(fn(config, params, tokens, mask, jax.random.key(seed), cfg).tokens_BxT)

    first = _time(lambda: run(0))
    times = [_time(lambda i=i: run(i + 1)) for i in range(args.repeats)]
    best, median = min(times), statistics.median(times)
    results[mode] = best
    print(f"== mode: {mode}")
    print(f"compile_seconds: {max(first - median, 0.0):.2f}")
    print(f"generated_tokens_per_second: {b * t / best:.1f}")
    print(f"step_ms: {1e3 * best / t:.3f}")
    print(f"median_generation_seconds: {median:.4f}", flush=True)
  if "cached" in results and "uncached" in results:
    print(f"cache_speedup: {results['uncached'] / results['cached']:.2f}")


if __name__ == "__main__":
  main(sys.argv[1:])

"""DPO optimiser-step throughput of the transformer policy: live reference vs precomputed reference log-probs.

  python benchmarks/lm_step.py --preset=gpt2-small-512
  python benchmarks/lm_step.py --d_model=256 --num_layers=4 --num_heads=4 --vocab_size=8192 --seq_len=256 \
      --pairs=8 --style=llama --dtype=bfloat16

Shape flags given with `--preset` override the preset's values (e.g. `--preset=gpt2-small-512 --num_layers=2`).

For each reference mode ("live": the frozen reference's forward pass inside the step; "precomputed": its
log-probs come with the batch, as `prefjax.lm.train` does with its cache) it prints

  tokens_per_second: <n>   chosen + rejected tokens per optimiser step (padding included) / step time
  step_seconds: <s>        median over the timed steps (steady state; compilation excluded)
  mfu: <x>                 model FLOPs/s / peak (PaLM's convention, `flops_per_token`; a live reference
                           adds its forward FLOPs); the peak is `--peak_flops`, else the device's entry in
                           `prefjax.lm.train.PEAK_FLOPS`, else (CPU) a measured fp32 matmul rate
  peak_memory_bytes: <n>   device peak bytes in use (memory_stats), or on CPU the process's peak RSS

The step is `prefjax.lm.train.make_train_step` (AdamW, clipping, the sigmoid objective) jitted with the
state donated, on one device. The batch's prompts are the first quarter of each row; `--logits_window`
("response", the trainer's default, or "full") says whether the output head runs only at the positions that
predict response tokens (`TrainConfig.logits_window`; here 3/4 of them) or at all of them. The FLOP count
behind `mfu` is the full-head one in both cases (PaLM's convention counts the model, not the shortcut).
`--attention_impl` picks `TransformerConfig.attention_impl` ("cudnn": cuDNN flash attention on a GPU).
`--pack_segments=S` packs S pairs side by side into each row (segment-aware attention, per-pair losses;
`TrainConfig.pack_segments`), each segment of L/S tokens a quarter prompt and three quarters response, so
`--pairs` counts rows; the response window then covers the rows' response tokens wherever they lie.
"""

import argparse
import resource
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prefjax import sharding as shd
from prefjax.lm import model as lm_model
from prefjax.lm import train as tr

DEFAULT_SHAPE = dict(style="gpt2", d_model=256, num_layers=4, num_heads=4, d_ff=None, vocab_size=8192,
                     seq_len=256, pairs=4, dtype="float32", tie_embeddings=False)

PRESETS = {
    # GPT-2 small (124M): 12 layers, d_model 768, 12 heads, vocabulary 50 257, 2 pairs of 512 tokens, fp32.
    "gpt2-small-512": dict(style="gpt2", d_model=768, num_layers=12, num_heads=12, d_ff=3072,
                           vocab_size=50257, seq_len=512, pairs=2, dtype="float32", tie_embeddings=True),
    # Llama-style, 374M parameters (24 layers, d_model 1024, 16 heads, SwiGLU 2816, vocabulary 32 000, untied
    # head), 8 pairs of 1 024 tokens (16 384 tokens per step), bf16 compute: the GPU MFU target's shape
    # (≥ 350M parameters, sequence length 1 024, bf16). benchmarks/gpu_mfu.sh runs it on a lent GPU.
    "llama-374m-1024": dict(style="llama", d_model=1024, num_layers=24, num_heads=16, d_ff=2816,
                            vocab_size=32000, seq_len=1024, pairs=8, dtype="bfloat16", tie_embeddings=False),
}


def _matmul_peak(n=2048, repeats=5):
  """Measured fp32 matmul FLOP/s of the device (the CPU's attainable peak)."""
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = min(_time(lambda: f(a).block_until_ready()) for _ in range(repeats))
  return 2 * n ** 3 / best


def _time(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def _peak_memory():
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"])
  return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def _batch(rows, length, vocab_size, pack_segments):
  """A `[1, rows, length]` step batch: a quarter prompt, then response, per row (or per each of the
  `pack_segments` segments of a packed row, with segment ids, per-segment positions and num_pairs_B)."""
  rng = np.random.default_rng(0)
  segments = max(pack_segments, 1)
  seg_len = length // segments
  seg_ids = np.minimum(np.arange(length) // seg_len, segments - 1) + 1  # the last segment takes the rest
  starts = (seg_ids - 1) * seg_len
  positions = np.arange(length) - starts
  batch = {}
  for side in ("chosen", "rejected"):
    batch[f"{side}_tokens_BxL"] = rng.integers(0, vocab_size, (1, rows, length), dtype=np.int32)
    batch[f"{side}_loss_mask_BxL"] = np.broadcast_to(positions >= seg_len // 4, (1, rows, length)).astype(np.int32)
    batch[f"{side}_attention_mask_BxL"] = np.ones((1, rows, length), np.int32)
    if pack_segments:
      batch[f"{side}_segment_ids_BxL"] = np.broadcast_to(seg_ids, (1, rows, length)).astype(np.int32)
      batch[f"{side}_positions_BxL"] = np.broadcast_to(positions, (1, rows, length)).astype(np.int32)
  if pack_segments:
    batch["num_pairs_B"] = np.full((1, rows), pack_segments, np.int32)
  return batch


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
  # Shape flags default to None: the preset's value, else DEFAULT_SHAPE's; a flag given explicitly wins.
  parser.add_argument("--style", default=None)
  parser.add_argument("--d_model", type=int, default=None)
  parser.add_argument("--num_layers", type=int, default=None)
  parser.add_argument("--num_heads", type=int, default=None)
  parser.add_argument("--d_ff", type=int, default=None, help="default 4 d_model")
  parser.add_argument("--vocab_size", type=int, default=None)
  parser.add_argument("--seq_len", type=int, default=None)
  parser.add_argument("--pairs", type=int, default=None, help="preference pairs per optimiser step")
  parser.add_argument("--dtype", default=None)
  parser.add_argument("--tie_embeddings", action="store_true", default=None)
  parser.add_argument("--remat", action="store_true")
  parser.add_argument("--attention_impl", choices=lm_model.ATTENTION_IMPLS, default="einsum",
                      help="TransformerConfig.attention_impl: explicit scores, jax.nn.dot_product_attention "
                           "(XLA), or cuDNN flash attention (NVIDIA GPU, bf16/fp16)")
  parser.add_argument("--steps", type=int, default=3, help="timed steps per mode")
  parser.add_argument("--modes", default="live,precomputed")
  parser.add_argument("--peak_flops", type=float, default=None)
  parser.add_argument("--pack_segments", type=int, default=0,
                      help="S > 0: S pairs per row (TrainConfig.pack_segments); --pairs then counts rows")
  parser.add_argument("--logits_window", choices=("response", "full"), default="response",
                      help="TrainConfig.logits_window: the head at response positions only, or everywhere")
  args = parser.parse_args(argv)
  shape = dict(DEFAULT_SHAPE, **(PRESETS[args.preset] if args.preset else {}))
  shape.update({k: getattr(args, k) for k in DEFAULT_SHAPE if getattr(args, k) is not None})
  if shape["d_ff"] is None:
    shape["d_ff"] = 4 * shape["d_model"]
  config = lm_model.TransformerConfig(
      vocab_size=shape["vocab_size"], d_model=shape["d_model"], num_layers=shape["num_layers"],
      num_heads=shape["num_heads"], d_ff=shape["d_ff"], max_len=shape["seq_len"], style=shape["style"],
      dtype=shape["dtype"], tie_embeddings=shape["tie_embeddings"], remat=args.remat,
      attention_impl=args.attention_impl)
  b, l = shape["pairs"], shape["seq_len"]
  print(f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}); shape: {shape}; "
        f"attention_impl: {args.attention_impl}; "
        f"params: {lm_model.param_count(jax.eval_shape(lambda: lm_model.init_params(config, jax.random.key(0))))}",
        flush=True)
  peak = args.peak_flops
  if peak is None:
    peak = tr.device_peak_flops(tr.TrainConfig())
  if peak is None:
    peak = _matmul_peak()
    print(f"peak_flops: {peak:.4g} (measured fp32 2048² matmul; no table entry for this device)")
  else:
    print(f"peak_flops: {peak:.4g}")

  batch = _batch(b, l, shape["vocab_size"], args.pack_segments)
  mesh = shd.make_mesh(devices=jax.devices()[:1])
  params = jax.jit(lambda k: nn.unbox(lm_model.init_params(config, k)))(jax.random.key(0))
  cfg = tr.TrainConfig(objective="sigmoid", beta=0.1, batch_size=b, num_steps=1000, learning_rate=1e-5,
                       logits_window=args.logits_window, pack_segments=args.pack_segments)
  window = tr.logits_window_for({k: v[0] for k, v in batch.items()}, cfg)
  print(f"logits_window: {args.logits_window} (head positions per row: {window or l}); "
        f"pack_segments: {args.pack_segments}", flush=True)
  packed = args.pack_segments > 0
  if packed:
    logps_fn = jax.jit(tr.make_packed_logps_fn(config, args.pack_segments, window=window))
  else:
    logps_fn = jax.jit(tr.make_logps_fn(config, window=window))
  rw, rl, _, _ = logps_fn(params, {k: v[0] for k, v in batch.items()})
  ref_keys = ("ref_chosen_logps_BxS", "ref_rejected_logps_BxS") if packed else (
      "ref_chosen_logps_B", "ref_rejected_logps_B")
  n_tokens = 2 * b * l
  for mode in args.modes.split(","):
    live = mode == "live"
    step = jax.jit(tr.make_train_step(config, cfg, live_reference=live, window=window), donate_argnums=(0,))
    state = tr.init_state(config, cfg, params, jax.random.key(0), mesh)
    feed = dict(batch) if live else {**batch, ref_keys[0]: np.asarray(rw)[None], ref_keys[1]: np.asarray(rl)[None]}
    feed = jax.device_put(feed)
    t0 = time.perf_counter()
    state, m = step(state, feed, params if live else None)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
      t0 = time.perf_counter()
      state, m = step(state, feed, params if live else None)
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    flops = lm_model.flops_per_token(config, l) + (
        lm_model.flops_per_token(config, l, training=False) if live else 0)
    print(f"== reference: {mode} (first step incl. compile {compile_s:.1f} s; loss {float(m['loss']):.4f})")
    print(f"tokens_per_second: {n_tokens / sec:.1f}")
    print(f"step_seconds: {sec:.3f}")
    print(f"mfu: {flops * n_tokens / sec / peak:.4f}")
    print(f"peak_memory_bytes: {_peak_memory()}", flush=True)
    del state


if __name__ == "__main__":
  main(sys.argv[1:])

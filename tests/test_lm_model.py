"""Tests for prefjax.lm.model: shapes, causality, padding, KV cache, bf16, sharding specs, counts."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax.errors import PrefjaxError
from prefjax.lm import logprobs
from prefjax.lm import model as lm
import float32_noise

V, D, LAYERS, HEADS, FF, MAX_LEN = 61, 32, 2, 4, 64, 16
# A larger init than the default 0.02 so attention is far from uniform and every test is sensitive
# to positions and masks (with tiny weights a wrong mask changes logits by less than the tolerance).
INIT_STD = 0.2


def _config(style, num_kv_heads=2, **kw):
  return lm.TransformerConfig(vocab_size=V, d_model=D, num_layers=LAYERS, num_heads=HEADS,
                              num_kv_heads=num_kv_heads, d_ff=FF, max_len=MAX_LEN, style=style,
                              init_std=INIT_STD, **kw)


def _random_params(cfg, seed=0):
  """Parameters with the model's tree and shapes, filled from numpy (compiling jax.random per
  parameter shape costs seconds on a loaded 2-core CPU). Norm scales near 1, biases non-zero."""
  shapes = nn.unbox(jax.eval_shape(functools.partial(lm.init_params, cfg), jax.random.key(0)))
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = path[-1].key
    noise = rng.normal(size=s.shape)
    if name == "scale":
      return jnp.asarray(1.0 + 0.1 * noise, s.dtype)
    if name.endswith("bias") or name in ("bi", "bo"):
      return jnp.asarray(0.1 * noise, s.dtype)
    return jnp.asarray(INIT_STD * noise, s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.lru_cache(maxsize=None)
def _setup(style, num_kv_heads=2):
  cfg = _config(style, num_kv_heads)
  params = _random_params(cfg)
  model = lm.Transformer(cfg)
  forward = jax.jit(lambda p, t, m: model.apply(p, t, attention_mask_BxT=m))
  return cfg, params, model, forward


def _tokens(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).integers(0, V, size=shape), jnp.int32)


def _assert_logits_close(actual, expected, noise):
  """Two float32 paths to the same logits agree up to `noise`, the computation's own rounding scale
  (`float32_noise.noise_scale` of the path that produced `expected`)."""
  float32_noise.assert_close(actual, expected, noise)


def test_config_validation():
  with pytest.raises(PrefjaxError, match="num_heads"):
    _config("llama").__class__(vocab_size=V, d_model=30, num_layers=1, num_heads=4, d_ff=8,
                               max_len=8)
  with pytest.raises(PrefjaxError, match="num_kv_heads"):
    _config("llama", num_kv_heads=3)
  with pytest.raises(PrefjaxError, match="style"):
    _config("gpt3")
  with pytest.raises(PrefjaxError, match="even head dim"):
    lm.TransformerConfig(vocab_size=V, d_model=12, num_layers=1, num_heads=4, d_ff=8, max_len=8)
  with pytest.raises(PrefjaxError, match="dtype"):
    _config("llama", dtype="int32")
  cfg = _config("gpt2", num_kv_heads=None, dtype="bfloat16")
  assert cfg.num_kv_heads == HEADS and cfg.dtype == jnp.bfloat16 and cfg.head_dim == D // HEADS
  hash(cfg)  # frozen dataclass: usable as a static argument
  with pytest.raises(PrefjaxError, match="attention_impl: unknown 'flash'"):
    _config("llama", attention_impl="flash")
  with pytest.raises(PrefjaxError, match="'cudnn'.*bfloat16 or float16, got float32"):
    _config("llama", attention_impl="cudnn")
  assert _config("llama", attention_impl="cudnn", dtype="bfloat16").attention_impl == "cudnn"


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_shapes_dtypes_and_param_count(style):
  cfg, params, _, forward = _setup(style)
  tokens = _tokens(1, (2, 12))
  logits = forward(params, tokens, jnp.ones((2, 12), jnp.int32))
  assert logits.shape == (2, 12, V) and logits.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  shapes = jax.eval_shape(functools.partial(lm.init_params, cfg), jax.random.key(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(shapes))
  # Independent count of the architecture's parameters.
  dh, k = D // HEADS, cfg.num_kv_heads
  attn = D * HEADS * dh + 2 * D * k * dh + HEADS * dh * D
  if style == "llama":
    layer = attn + 3 * D * FF + 2 * D  # SwiGLU, two RMSNorm scales
    extra = D  # final norm
  else:
    layer = attn + (HEADS * dh + 2 * k * dh + D) + 2 * D * FF + FF + D + 4 * D  # biases, 2 LN
    extra = 2 * D + MAX_LEN * D  # final LN, position table
  expected = LAYERS * layer + 2 * V * D + extra  # token embedding + untied head
  assert lm.param_count(params) == expected
  # Matmul parameters: every matrix except the lookup tables.
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  mats = sum(x.size for path, x in flat
             if x.ndim >= 2 and path[-1].key not in ("embed", "position_embed")
             and not path[-1].key.endswith("bias"))
  assert lm.matmul_param_count(cfg) == mats


def test_tied_embeddings_have_no_head():
  cfg = _config("gpt2", tie_embeddings=True)
  shapes = nn.unbox(jax.eval_shape(functools.partial(lm.init_params, cfg), jax.random.key(0)))
  assert "head" not in shapes["params"]
  assert lm.param_count(shapes) == lm.param_count(_setup("gpt2")[1]) - D * V
  assert lm.matmul_param_count(cfg) == lm.matmul_param_count(_setup("gpt2")[0])


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_causal(style):
  _, params, _, forward = _setup(style)
  tokens = _tokens(2, (2, 12))
  changed = tokens.at[:, 6].set((tokens[:, 6] + 1) % V)
  mask = jnp.ones((2, 12), jnp.int32)
  a, b = forward(params, tokens, mask), forward(params, changed, mask)
  noise = float32_noise.noise_scale(lambda p: forward(p, tokens, mask)[:, :6], params)
  _assert_logits_close(b[:, :6], a[:, :6], noise)
  assert np.min(np.max(np.abs(np.asarray(b[:, 6:] - a[:, 6:])), axis=-1)) > 1e-3


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_padding_invariance(style):
  """Left/right/mixed padding with the mask reproduces the unpadded logits and log-probs."""
  _, params, model, forward = _setup(style)
  n, pad = 8, 4
  x = _tokens(3, (2, n))
  junk = _tokens(4, (2, pad))
  ref = forward(params, x, jnp.ones((2, n), jnp.int32))
  noise = float32_noise.noise_scale(forward, params, x, jnp.ones((2, n), jnp.int32))
  real = jnp.ones((2, n), jnp.int32)
  zeros = jnp.zeros((2, pad), jnp.int32)

  right = forward(params, jnp.concatenate([x, junk], 1), jnp.concatenate([real, zeros], 1))
  _assert_logits_close(right[:, :n], ref, noise)
  left_tokens = jnp.concatenate([junk, x], 1)
  left_mask = jnp.concatenate([zeros, real], 1)
  left = forward(params, left_tokens, left_mask)
  _assert_logits_close(left[:, pad:], ref, noise)
  # Row 0 left-padded by 1 and right-padded by 3, row 1 left-padded by 4.
  mixed_tokens = jnp.stack([jnp.concatenate([junk[0, :1], x[0], junk[0, 1:]]), left_tokens[1]])
  mixed_mask = jnp.asarray([[0] + [1] * n + [0] * (pad - 1), [0] * pad + [1] * n])
  mixed = forward(params, mixed_tokens, mixed_mask)
  _assert_logits_close(mixed[0, 1:1 + n], ref[0], noise)
  _assert_logits_close(mixed[1, pad:], ref[1], noise)
  # Explicit positions give the same answer as the ones derived from the mask.
  positions = jnp.maximum(jnp.arange(n + pad) - pad, 0)[None, :].repeat(2, 0)
  explicit = jax.jit(lambda p, t, m, pos: model.apply(p, t, attention_mask_BxT=m, positions_BxT=pos))(
      params, left_tokens, left_mask, positions)
  _assert_logits_close(explicit[:, pad:], ref, noise)
  # Sanity: ignoring the mask (padding attended, positions shifted) changes the logits.
  unmasked = forward(params, left_tokens, jnp.ones_like(left_mask))
  assert np.max(np.abs(np.asarray(unmasked[:, pad:] - ref))) > 1e-2

  # The same through log-probs: response = last 3 real tokens.
  loss_ref = jnp.zeros((2, n), jnp.int32).at[:, n - 3:].set(1)
  seq_logps = jax.jit(logprobs.sequence_logps)
  want = seq_logps(ref, x, loss_ref)
  got_right = seq_logps(right, jnp.concatenate([x, junk], 1),
                                      jnp.concatenate([loss_ref, zeros], 1))
  got_left = seq_logps(left, left_tokens, jnp.concatenate([zeros, loss_ref], 1))
  policy = jax.jit(functools.partial(logprobs.policy_logps, model.apply))
  got_policy = policy(params, left_tokens, jnp.concatenate([zeros, loss_ref], 1), left_mask)
  noise = float32_noise.noise_scale(lambda p: seq_logps(forward(p, x, real), x, loss_ref).logps, params)
  for got in (got_right, got_left, got_policy):
    float32_noise.assert_close(got.logps, want.logps, noise)
    np.testing.assert_array_equal(got.counts, want.counts)


@pytest.mark.parametrize("style,num_kv_heads", [("llama", 2), ("gpt2", 2)])
def test_kv_cache_decode_matches_full_forward(style, num_kv_heads):
  """Prefill of a padded prompt batch, then token-by-token decoding == one full forward."""
  _, params, model, forward = _setup(style, num_kv_heads)
  prompt, steps = 8, 4
  tokens = _tokens(5, (2, prompt + steps))
  # Row 0: prompt left-padded by 2; row 1: prompt right-padded by 2 (padding between the prompt and
  # the generated tokens, as when right-padded prompts are batched for generation).
  mask = jnp.ones((2, prompt + steps), jnp.int32).at[0, :2].set(0).at[1, prompt - 2:prompt].set(0)
  full = forward(params, tokens, mask)

  step = jax.jit(lambda p, t, m, c: model.apply(p, t, attention_mask_BxT=m, cache=c))
  cache = lm.init_cache(model.config, 2, MAX_LEN)
  logits, cache = step(params, tokens[:, :prompt], mask[:, :prompt], cache)
  pieces = [logits]
  for i in range(prompt, prompt + steps):
    logits, cache = step(params, tokens[:, i:i + 1], mask[:, i:i + 1], cache)
    pieces.append(logits)
  decoded = jnp.concatenate(pieces, axis=1)
  assert int(cache.index) == prompt + steps
  np.testing.assert_array_equal(cache.valid_BxS[:, :prompt + steps], mask.astype(bool))
  real = np.asarray(mask, bool)
  noise = float32_noise.noise_scale(lambda p: forward(p, tokens, mask)[real], params)
  _assert_logits_close(np.asarray(decoded)[real], np.asarray(full)[real], noise)


def test_gqa_equals_mha_with_shared_key_value_heads():
  """Query head h uses key/value head h // G: GQA == MHA whose K/V weights repeat each GQA head G times."""
  _, params, _, forward = _setup("llama", 2)
  _, _, _, forward_mha = _setup("llama", HEADS)
  g = HEADS // 2
  mha = jax.tree_util.tree_map_with_path(
      lambda path, w: jnp.repeat(w, g, axis=1) if path[-1].key in ("key", "value") else w, params)
  tokens = _tokens(8, (2, 12))
  mask = jnp.ones((2, 12), jnp.int32).at[0, :3].set(0)
  noise = float32_noise.noise_scale(forward, params, tokens, mask)
  _assert_logits_close(forward_mha(mha, tokens, mask), forward(params, tokens, mask), noise)


def test_rope_matches_complex_rotation():
  """Rotate-half RoPE == multiplying z_i = x_i + i·x_{i+Dh/2} by exp(i · pos · θ^(−2i/Dh))."""
  rng = np.random.default_rng(9)
  x = rng.normal(size=(2, 5, 3, 8)).astype(np.float32)
  pos = rng.integers(0, 100, size=(2, 5))
  got = np.asarray(lm.rope(jnp.asarray(x), jnp.asarray(pos), 500.0))
  z = x[..., :4].astype(np.float64) + 1j * x[..., 4:]
  freq = 500.0 ** (-np.arange(4) * 2.0 / 8)
  z = z * np.exp(1j * pos[:, :, None, None] * freq[None, None, None, :])
  want = np.concatenate([z.real, z.imag], axis=-1)
  # float32 angles pos·θ up to ~100 rad: sin/cos arguments carry ~100 · 2^-24 absolute error.
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def test_cache_errors():
  cfg, params, model, _ = _setup("llama")
  with pytest.raises(PrefjaxError, match="max_len"):
    lm.init_cache(cfg, 1, MAX_LEN + 1)
  cache = lm.init_cache(cfg, 1, 4)
  with pytest.raises(PrefjaxError, match="cache size"):
    model.apply(params, jnp.zeros((1, 5), jnp.int32), cache=cache)
  cache = cache._replace(index=jnp.asarray(3, jnp.int32))
  with pytest.raises(PrefjaxError, match="overflows"):
    model.apply(params, jnp.zeros((1, 2), jnp.int32), cache=cache)
  with pytest.raises(PrefjaxError, match="batch size"):
    model.apply(params, jnp.zeros((2, 1), jnp.int32), cache=cache)


def test_input_errors():
  _, params, model, _ = _setup("gpt2")
  with pytest.raises(PrefjaxError, match="exceeds max_len"):
    model.apply(params, jnp.zeros((1, MAX_LEN + 1), jnp.int32))
  with pytest.raises(PrefjaxError, match="token ids"):
    model.apply(params, jnp.full((1, 3), V, jnp.int32))
  with pytest.raises(PrefjaxError, match="attention_mask shape"):
    model.apply(params, jnp.zeros((1, 3), jnp.int32), attention_mask_BxT=jnp.ones((1, 4)))
  with pytest.raises(PrefjaxError, match="positions must be"):
    model.apply(params, jnp.zeros((1, 3), jnp.int32), positions_BxT=jnp.full((1, 3), MAX_LEN))
  with pytest.raises(PrefjaxError, match=r"\[batch, length\]"):
    model.apply(params, jnp.zeros((3,), jnp.int32))


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_bf16_compute_fp32_logits(style):
  _, params, _, forward = _setup(style)
  model16 = lm.Transformer(_config(style, dtype=jnp.bfloat16))
  tokens = _tokens(6, (2, 12))
  mask = jnp.ones((2, 12), jnp.int32)
  ref = np.asarray(forward(params, tokens, mask))
  got = jax.jit(lambda p, t: model16.apply(p, t, attention_mask_BxT=mask))(params, tokens)
  assert got.dtype == jnp.float32
  got = np.asarray(got)
  scale = np.max(np.abs(ref))
  err = np.max(np.abs(got - ref)) / scale
  # Tolerance from the network itself: bf16 keeps 8 significant bits, so every weight and every
  # matmul input is rounded with relative error ≤ u = 2^-9. The float32 model with all weights
  # perturbed by a relative ±u gives the logits' sensitivity to one such rounding sweep; bf16 compute
  # rounds the weights plus the activations at a handful of stages, so its error is a few times that.
  u = 2.0**-9
  signs = np.random.default_rng(0)
  perturbed = jax.tree.map(
      lambda w: w * (1 + u * signs.choice([-1.0, 1.0], size=w.shape)).astype(np.float32), params)
  sensitivity = np.max(np.abs(np.asarray(forward(perturbed, tokens, mask)) - ref)) / scale
  assert 0.0 < err < 4 * sensitivity, (err, sensitivity)
  # The unembedding accumulates in float32: logits are not bf16 values cast up (a float32 result is
  # exactly representable in bf16 with probability ~2^-16).
  representable = got == np.asarray(jnp.asarray(got).astype(jnp.bfloat16).astype(jnp.float32))
  assert representable.mean() < 0.01


def test_remat_same_logits_and_differentiable():
  _, params, _, forward = _setup("llama")
  tokens = _tokens(7, (2, 12))
  mask = jnp.ones((2, 12), jnp.int32)
  model_remat = lm.Transformer(_config("llama", remat=True))
  apply_remat = lambda p: model_remat.apply(p, tokens, attention_mask_BxT=mask)
  noise = float32_noise.noise_scale(forward, params, tokens, mask)
  _assert_logits_close(jax.jit(apply_remat)(params), forward(params, tokens, mask), noise)
  grads = jax.eval_shape(jax.grad(lambda p: jnp.sum(apply_remat(p)[..., 0])), params)
  assert jax.tree.structure(grads) == jax.tree.structure(params)


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_partition_specs(style):
  cfg = _config(style)
  boxed = jax.eval_shape(functools.partial(lm.init_params, cfg), jax.random.key(0))
  specs = nn.get_partition_spec(boxed)
  leaves, _ = jax.tree_util.tree_flatten(nn.unbox(boxed))
  spec_leaves = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  assert len(spec_leaves) == len(leaves) > 0
  for spec, leaf in zip(spec_leaves, leaves):
    assert isinstance(spec, jax.sharding.PartitionSpec)
    assert len(spec) == len(leaf.shape)
    assert set(spec) <= lm.PARAM_LOGICAL_AXES
  p = specs["params"]
  assert p["embed"] == jax.sharding.PartitionSpec("vocab", "embed")
  assert p["layer_0"]["attention"]["query"] == jax.sharding.PartitionSpec("embed", "heads", "kv")

  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), ("data", "fsdp", "tensor"))
  shardings = lm.param_shardings(boxed, mesh)
  sp = shardings["params"]
  assert sp["embed"].spec == jax.sharding.PartitionSpec("tensor", "fsdp")
  assert sp["layer_1"]["attention"]["key"].spec == jax.sharding.PartitionSpec(
      "fsdp", "tensor", None)
  mlp_in = "wi" if style == "gpt2" else "up"
  assert sp["layer_1"]["mlp"][mlp_in].spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  assert sp["final_norm"]["scale"].spec == jax.sharding.PartitionSpec(None)
  rule_names = {name for name, _ in lm.LOGICAL_AXIS_RULES}
  assert lm.PARAM_LOGICAL_AXES <= rule_names
  placed = jax.device_put(_random_params(cfg), shardings)
  assert jax.tree.structure(placed) == jax.tree.structure(nn.unbox(boxed))


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_flops_per_token_against_xla(style):
  """The forward count bounds XLA's own FLOP count from below, within the element-wise work."""
  cfg = lm.TransformerConfig(vocab_size=512, d_model=128, num_layers=2, num_heads=4, num_kv_heads=2,
                             d_ff=512, max_len=64, style=style)
  shapes = jax.eval_shape(functools.partial(lm.init_params, cfg), jax.random.key(0))
  tokens = jax.ShapeDtypeStruct((1, 64), jnp.int32)
  cost = jax.jit(lm.Transformer(cfg).apply).lower(nn.unbox(shapes), tokens).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  ours = 64 * lm.flops_per_token(cfg, 64, training=False)
  # XLA counts every matmul FLOP plus element-wise work (norms, softmax, activations): O(D + F +
  # V + H·T) per token and layer against the O(D² + D·F + D·V) matmuls, i.e. a few percent at D=128.
  assert ours <= cost["flops"] <= 1.05 * ours, (ours, cost["flops"])
  assert lm.flops_per_token(cfg, 64) == 3 * lm.flops_per_token(cfg, 64, training=False)
  with pytest.raises(PrefjaxError, match="seq_len"):
    lm.flops_per_token(cfg, 0)


def _pack(seqs, rows, length):
  """Packs `seqs` (lists of (tokens, prompt_len)) into rows: tokens, attention mask, loss mask,
  segment ids (1.. per row, 0 on padding) and per-segment positions, all [len(rows), length]."""
  out = {k: np.zeros((len(rows), length), np.int32)
         for k in ("tokens", "attention", "loss", "segments", "positions")}
  for b, row in enumerate(rows):
    start = 0
    for seg, i in enumerate(row, start=1):
      toks, n_prompt = seqs[i]
      end = start + len(toks)
      out["tokens"][b, start:end] = toks
      out["attention"][b, start:end] = 1
      out["loss"][b, start + n_prompt:end] = 1
      out["segments"][b, start:end] = seg
      out["positions"][b, start:end] = np.arange(len(toks))
      start = end
  return out


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_packed_segments_match_separate_sequences(style):
  """A packed row scores each of its sequences as if it ran alone (per token and per segment)."""
  _, params, model, _ = _setup(style)
  length = 14
  rng = np.random.default_rng(11)
  # (tokens, prompt length) of three sequences; rows: [a, b, padding] and [b, a, c] (full).
  seqs = [(rng.integers(0, V, n), p) for n, p in ((5, 2), (6, 3), (3, 1))]
  rows = [[0, 1], [1, 0, 2]]
  packed = _pack(seqs, rows, length)
  alone = _pack(seqs, [[0], [1], [2]], length)  # each sequence alone, right-padded
  num_segments = 3

  @jax.jit
  def run(params, packed, alone):
    kw = dict(attention_mask_BxT=packed["attention"])
    segmented = model.apply(params, packed["tokens"], positions_BxT=packed["positions"],
                            segment_ids_BxT=packed["segments"], **kw)
    default_positions = model.apply(params, packed["tokens"], segment_ids_BxT=packed["segments"],
                                    **kw)
    unsegmented = model.apply(params, packed["tokens"], positions_BxT=packed["positions"], **kw)
    reference = model.apply(params, alone["tokens"], attention_mask_BxT=alone["attention"])
    per_segment = [logprobs.policy_segment_logps(
        model.apply, params, packed["tokens"], packed["loss"], packed["segments"],
        packed["positions"], num_segments, packed["attention"], reduction=r)
                   for r in ("sum", "mean")]
    per_sequence = [logprobs.sequence_logps(reference, alone["tokens"], alone["loss"], reduction=r)
                    for r in ("sum", "mean")]
    return segmented, default_positions, unsegmented, reference, per_segment, per_sequence

  packed, alone = jax.tree.map(jnp.asarray, packed), jax.tree.map(jnp.asarray, alone)
  outputs = run(params, packed, alone)
  segmented, default_positions, unsegmented, reference, per_segment, per_sequence = outputs
  noise = float32_noise.noise_scale(run, params, packed, alone)
  seg_noise, ref_noise = noise[0], noise[3]
  _assert_logits_close(default_positions, segmented, seg_noise)
  seg_logp = np.asarray(logprobs.token_logps(segmented, packed["tokens"]))
  ref_logp = np.asarray(logprobs.token_logps(reference, alone["tokens"]))
  for b, row in enumerate(rows):
    start = 0
    for seg, i in enumerate(row):
      n = len(seqs[i][0])
      _assert_logits_close(segmented[b, start:start + n], reference[i, :n], ref_noise)
      # Token log-probs agree except at each segment's first token (predicted across the boundary); a
      # log-softmax moves a logit error by at most twice its size.
      np.testing.assert_allclose(seg_logp[b, start + 1:start + n], ref_logp[i, 1:n], rtol=0,
                                 atol=2 * float32_noise.FACTOR * ref_noise)
      for got, want, n_want in zip(per_segment, per_sequence, noise[5]):
        float32_noise.assert_close(got.logps[b, seg], want.logps[i], n_want.logps)
        assert int(got.counts[b, seg]) == int(want.counts[i]) == n - seqs[i][1]
      if seg:  # Sanity: without segment ids, a later segment attends to the earlier ones.
        diff = np.abs(np.asarray(unsegmented[b, start:start + n] - reference[i, :n]))
        assert diff.max() > 1e-2
      start += n
    for got in per_segment:  # absent segment slots are 0
      np.testing.assert_array_equal(got.logps[b, len(row):], 0.0)
      np.testing.assert_array_equal(got.counts[b, len(row):], 0)


def test_segment_ids_errors():
  cfg, params, model, _ = _setup("llama")
  tokens = jnp.zeros((1, 4), jnp.int32)
  seg = jnp.asarray([[1, 1, 2, 2]])
  with pytest.raises(PrefjaxError, match="without a cache"):
    model.apply(params, tokens, segment_ids_BxT=seg, cache=lm.init_cache(cfg, 1, 8))
  with pytest.raises(PrefjaxError, match="segment_ids shape"):
    model.apply(params, tokens, segment_ids_BxT=seg[:, :3])
  with pytest.raises(PrefjaxError, match="segment_ids must be integers"):
    model.apply(params, tokens, segment_ids_BxT=seg.astype(jnp.float32))
  logp = jnp.zeros((1, 4))
  with pytest.raises(PrefjaxError, match="another segment"):
    logprobs.segment_logps(logp, jnp.asarray([[0, 1, 1, 1]]), seg, 2)
  with pytest.raises(PrefjaxError, match="not in"):
    logprobs.segment_logps(logp, jnp.asarray([[0, 1, 0, 1]]), seg, 1)
  with pytest.raises(PrefjaxError, match="max_segments"):
    logprobs.segment_logps(logp, jnp.asarray([[0, 1, 0, 1]]), seg, 0)


def test_windowed_head_equals_the_full_forward():
  """`logits_positions_BxR` rows equal the full logits' rows; `policy_logps(window=R)` equals the full
  log-probs and their gradient (right-padded rows, prompts and responses of different lengths). The
  window sits after the final norm, before the head, so one style covers both."""
  cfg, params, model, forward = _setup("llama")
  b, length = 3, MAX_LEN
  tokens = _tokens(11, (b, length))
  prompt = np.array([2, 5, 3])
  response = np.array([6, 4, 9])
  attn = np.zeros((b, length), np.int32)
  loss = np.zeros((b, length), np.int32)
  for i in range(b):
    attn[i, :prompt[i] + response[i]] = 1
    loss[i, prompt[i]:prompt[i] + response[i]] = 1
  span = logprobs.response_span(loss)
  assert span == response.max()
  full = forward(params, tokens, attn)
  pos = jnp.asarray(np.array([[0, 3, 7], [15, 2, 2], [5, 6, 1]]), jnp.int32)
  part = jax.jit(lambda p, t, m, q: model.apply(p, t, attention_mask_BxT=m, logits_positions_BxR=q))(
      params, tokens, attn, pos)
  want = np.take_along_axis(np.asarray(full), np.asarray(pos)[:, :, None], axis=1)
  _assert_logits_close(part, want, float32_noise.noise_scale(forward, params, tokens, attn))

  def logps(p, window):
    out = logprobs.policy_logps(model.apply, p, tokens, loss, attn, window=window)
    return jnp.sum(out.logps), out

  both = jax.jit(lambda p: (jax.value_and_grad(lambda q: logps(q, None), has_aux=True)(p),
                            jax.value_and_grad(lambda q: logps(q, span), has_aux=True)(p),
                            logps(p, length + 3)[1],
                            logprobs.policy_logps(model.apply, p, tokens, loss, attn, window=span,
                                                  reduction="mean")))
  ((_, want_out), want_g), ((_, got_out), got_g), longer, mean = both(params)
  ((_, noise_out), noise_g), _, _, _ = float32_noise.noise_scale(both, params)
  np.testing.assert_array_equal(got_out.counts, loss.sum(1))
  float32_noise.assert_close(got_out.logps, want_out.logps, noise_out.logps)
  float32_noise.assert_tree_close(got_g, want_g, noise_g)
  # A longer window changes nothing (the extra positions are masked or clipped at the end).
  float32_noise.assert_close(longer.logps, want_out.logps, noise_out.logps)
  np.testing.assert_array_equal(longer.counts, loss.sum(1))
  # "mean" divides by the same counts (one more rounding, relative 2^-24).
  float32_noise.assert_close(mean.logps, np.asarray(want_out.logps) / loss.sum(1),
                             noise_out.logps / loss.sum(1).min())
  with pytest.raises(PrefjaxError, match="does not cover"):
    logprobs.policy_logps(model.apply, params, tokens, loss, attn, window=span - 1)
  with pytest.raises(PrefjaxError, match="window must be a positive integer"):
    logprobs.policy_logps(model.apply, params, tokens, loss, attn, window=0)
  with pytest.raises(PrefjaxError, match="logits_positions must be"):
    model.apply(params, tokens, logits_positions_BxR=pos[0])


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_dot_product_attention_impl_equals_einsum(style):
  """attention_impl="xla" (jax.nn.dot_product_attention, the call "cudnn" makes with another kernel) gives
  the einsum path's logits and gradients: left and right padding, grouped-query heads, packed segments."""
  cfg, params, model, _ = _setup(style)
  other = lm.Transformer(dataclasses.replace(cfg, attention_impl="xla"))
  tokens = _tokens(21, (3, 10))
  mask = jnp.asarray([[0, 0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 10, [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]], jnp.int32)
  segments = jnp.asarray([[0] * 10, [0, 0, 0, 1, 1, 1, 1, 2, 2, 2], [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]], jnp.int32)

  @jax.jit
  def run(params):
    out = []
    for m in (model, other):
      loss = lambda p, m=m: jnp.sum(jnp.sin(m.apply(p, tokens, attention_mask_BxT=mask)) * mask[:, :, None])
      out.append((m.apply(params, tokens, attention_mask_BxT=mask),
                  m.apply(params, tokens, attention_mask_BxT=mask, segment_ids_BxT=segments),
                  jax.grad(loss)(params)))
    return out

  (a_logits, a_packed, a_grads), (b_logits, b_packed, b_grads) = run(params)
  # The einsum path's own rounding scale per output (a gradient that is mathematically zero, such as the
  # key bias's under softmax shift invariance, is float32 noise of the size of the terms that cancel).
  noise_logits, noise_packed, noise_grads = float32_noise.noise_scale(run, params)[0]
  _assert_logits_close(b_logits, a_logits, noise_logits)  # padding positions included: the same mask on both paths
  _assert_logits_close(b_packed, a_packed, noise_packed)
  float32_noise.assert_tree_close(b_grads, a_grads, noise_grads)

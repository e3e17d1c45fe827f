"""Decoder-only transformer policy (Llama or GPT-2 style) with a functional KV cache.

One Flax linen module, `Transformer`, serves training (full causal forward over `[B, L]` tokens, with an
optional padding mask and, for packed rows of several sequences, optional segment ids that make the
causal mask block-diagonal) and generation (the same forward over `[B, T]` new tokens plus an explicit cache
pytree from `init_cache`, returning the logits and the updated cache).

Styles (`TransformerConfig.style`, a dict registry):
- "llama": rotary position embeddings (RoPE, Su et al. 2104.09864, rotate-half layout), RMSNorm, SwiGLU
  MLP (Shazeer 2002.05202), grouped-query attention (Ainslie et al. 2305.13245), no biases.
- "gpt2": learned absolute positions, LayerNorm with bias, GELU (tanh approximation) MLP, biases.
Both are pre-norm and causal.

Precision: parameters are stored in `param_dtype` (float32); activations and matmul inputs use `dtype`
(float32 or bfloat16). Attention scores, softmax, norms and RoPE run in float32, and the logits are
returned in float32 (the unembedding matmul accumulates in float32), so log-probs downstream are float32
whatever the compute dtype (docs/design.md §4.10).

Attention (`TransformerConfig.attention_impl`): "einsum" writes the scores `[B, K, G, T, S]` out
explicitly (the default; every path, the KV cache included); "xla" and "cudnn" call
`jax.nn.dot_product_attention` for cache-less calls (training and scoring) with the same mask, "cudnn"
being cuDNN's fused flash-attention kernel on NVIDIA GPUs (bfloat16/float16 compute only), which never
stores the T × S scores. Generation with a cache always uses "einsum".

Sharding: every parameter carries logical axis names (`nn.with_logical_partitioning`); `LOGICAL_AXIS_RULES`
maps them to the mesh axes ("data", "fsdp", "tensor") and `param_shardings` turns a parameter tree into
`NamedSharding`s for a mesh.

Shape suffixes (nanodo style): B batch, T tokens in this call (L for a whole sequence), S cache slots,
D d_model, V vocab, H query heads, K key/value heads, G = H / K query heads per key/value head,
Dh head dim, F MLP hidden width, P max positions.
"""

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prefjax import sharding as shd
from prefjax.errors import PrefjaxError
from prefjax.sharding import LOGICAL_AXIS_RULES  # re-export: the rules live in prefjax.sharding

# Logical parameter/activation axis names -> mesh axes: defined in `prefjax.sharding` (the mesh layer) and
# re-exported here, so `prefjax.lm.model.LOGICAL_AXIS_RULES` keeps working.

# Logical axes of each cache array `LayerCache.k_BxSxKxDh` / `v_BxSxKxDh` (for sharding a sampler's cache).
CACHE_LOGICAL_AXES = ("batch", "length", "kv_heads", "kv")

# Every logical name a parameter may carry (tests check that each parameter uses only these).
PARAM_LOGICAL_AXES = frozenset(
    ("vocab", "embed", "mlp", "heads", "kv_heads", "kv", "norm", "position"))


ATTENTION_IMPLS = ("einsum", "xla", "cudnn")


class _Style(NamedTuple):
  norm: str  # key of _NORMS
  mlp: str  # key of _MLPS
  rope: bool  # rotary embeddings on queries and keys
  learned_positions: bool  # absolute position table added to the token embeddings
  use_bias: bool  # biases in attention and MLP projections


STYLES = {
    "llama": _Style(norm="rms", mlp="swiglu", rope=True, learned_positions=False, use_bias=False),
    "gpt2": _Style(norm="layer", mlp="gelu", rope=False, learned_positions=True, use_bias=True),
}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyper-parameters of the decoder-only transformer.

  Attributes:
    vocab_size: V, number of token ids.
    d_model: D, residual stream width.
    num_layers: number of transformer blocks.
    num_heads: H, query heads; D must be divisible by H (head dim Dh = D / H).
    d_ff: F, MLP hidden width (for SwiGLU, the width of each of the gate and up projections).
    max_len: P, longest sequence (and largest cache) the model accepts; size of GPT-2's position table.
    num_kv_heads: K, key/value heads for grouped-query attention; None means K = H (multi-head
      attention), 1 is multi-query attention. H must be divisible by K.
    style: "llama" or "gpt2" (see `STYLES`).
    dtype: compute dtype (float32 or bfloat16); a string such as "bfloat16" is accepted.
    param_dtype: storage dtype of the parameters.
    rope_theta: RoPE base frequency (llama style).
    norm_eps: epsilon of RMSNorm / LayerNorm.
    tie_embeddings: unembed with the transposed token embedding instead of a separate head matrix.
    init_std: standard deviation of the normal initialiser; projections that write into the residual
      stream use init_std / sqrt(2 num_layers) (GPT-2's scaled initialisation).
    remat: rematerialise each block in the backward pass (saves activation memory).
    attention_impl: "einsum" (explicit scores), "xla" or "cudnn" (`jax.nn.dot_product_attention` with that
      implementation; "cudnn" needs an NVIDIA GPU and dtype bfloat16 or float16); see the module docstring.
  """
  vocab_size: int
  d_model: int
  num_layers: int
  num_heads: int
  d_ff: int
  max_len: int
  num_kv_heads: int | None = None
  style: str = "llama"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  rope_theta: float = 10_000.0
  norm_eps: float = 1e-5
  tie_embeddings: bool = False
  init_std: float = 0.02
  remat: bool = False
  attention_impl: str = "einsum"

  def __post_init__(self):
    for name in ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff", "max_len"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or value < 1:
        raise PrefjaxError(f"TransformerConfig.{name} must be a positive integer, got {value!r}")
    if self.style not in STYLES:
      raise PrefjaxError(
          f"TransformerConfig.style: unknown style {self.style!r}; known styles: {sorted(STYLES)}")
    if self.d_model % self.num_heads:
      raise PrefjaxError(f"TransformerConfig: d_model={self.d_model} is not divisible by "
                         f"num_heads={self.num_heads}")
    kv = self.num_heads if self.num_kv_heads is None else self.num_kv_heads
    if not isinstance(kv, (int, np.integer)) or kv < 1 or self.num_heads % kv:
      raise PrefjaxError(f"TransformerConfig.num_kv_heads must be a positive divisor of "
                         f"num_heads={self.num_heads}, got {self.num_kv_heads!r}")
    object.__setattr__(self, "num_kv_heads", int(kv))
    if STYLES[self.style].rope and self.head_dim % 2:
      raise PrefjaxError(f"TransformerConfig: RoPE needs an even head dim, got "
                         f"d_model / num_heads = {self.head_dim}")
    for name in ("dtype", "param_dtype"):
      try:
        dt = jnp.dtype(getattr(self, name))
      except TypeError as e:
        raise PrefjaxError(f"TransformerConfig.{name}: not a dtype: {getattr(self, name)!r}") from e
      if not jnp.issubdtype(dt, jnp.floating):
        raise PrefjaxError(f"TransformerConfig.{name} must be a floating dtype, got {dt}")
      object.__setattr__(self, name, dt)
    if self.attention_impl not in ATTENTION_IMPLS:
      raise PrefjaxError(f"TransformerConfig.attention_impl: unknown {self.attention_impl!r}; known: "
                         f"{list(ATTENTION_IMPLS)}")
    if self.attention_impl == "cudnn" and self.dtype not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
      raise PrefjaxError(f"TransformerConfig.attention_impl='cudnn' (cuDNN flash attention) needs dtype "
                         f"bfloat16 or float16, got {self.dtype}")
    if not self.norm_eps > 0:
      raise PrefjaxError(f"TransformerConfig.norm_eps must be > 0, got {self.norm_eps}")
    if not self.rope_theta > 0:
      raise PrefjaxError(f"TransformerConfig.rope_theta must be > 0, got {self.rope_theta}")

  @property
  def head_dim(self):
    return self.d_model // self.num_heads

  @property
  def style_spec(self):
    return STYLES[self.style]


class LayerCache(NamedTuple):
  """Keys and values of one layer for every cache slot (RoPE already applied to the keys)."""
  k_BxSxKxDh: jax.Array
  v_BxSxKxDh: jax.Array


class KVCache(NamedTuple):
  """Generation state: per-layer keys/values, which slots hold real tokens, the next write slot.

  Slots are written left to right; a token at slot s attends to slots s' <= s with `valid_BxS[s']`.
  A new token's position is the number of valid slots before it, so left- or right-padded prompts
  get the same positions as their unpadded versions.
  """
  layers: tuple[LayerCache, ...]
  valid_BxS: jax.Array  # bool
  index: jax.Array  # int32 scalar: slot where the next call writes its first token


def init_cache(config, batch_size, max_len=None):
  """An empty KV cache for `batch_size` sequences of up to `max_len` (default `config.max_len`) tokens.

  Args:
    config: the model's `TransformerConfig`.
    batch_size: B.
    max_len: S, number of cache slots (prompt, padding included, plus generated tokens);
      at most `config.max_len`.

  Returns:
    A `KVCache` pytree of zeros in the compute dtype, no valid slot, index 0.
  """
  max_len = config.max_len if max_len is None else max_len
  if not 1 <= max_len <= config.max_len:
    raise PrefjaxError(f"init_cache: max_len must be in [1, config.max_len={config.max_len}], "
                       f"got {max_len}")
  if batch_size < 1:
    raise PrefjaxError(f"init_cache: batch_size must be >= 1, got {batch_size}")
  shape = (batch_size, max_len, config.num_kv_heads, config.head_dim)
  layers = tuple(
      LayerCache(jnp.zeros(shape, config.dtype), jnp.zeros(shape, config.dtype))
      for _ in range(config.num_layers))
  return KVCache(layers, jnp.zeros((batch_size, max_len), jnp.bool_), jnp.zeros((), jnp.int32))


def _is_concrete(*xs):
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _param(module, name, init_fn, shape, axes):
  return module.param(name, nn.with_logical_partitioning(init_fn, axes), shape,
                      module.config.param_dtype)


def _normal(config, residual=False):
  std = config.init_std / math.sqrt(2 * config.num_layers) if residual else config.init_std
  return nn.initializers.normal(stddev=std)


class RMSNorm(nn.Module):
  """RMSNorm (Zhang & Sennrich 1910.07467): x / sqrt(mean(x²) + eps) · scale, computed in float32."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x_BxTxD):
    cfg = self.config
    scale_D = _param(self, "scale", nn.initializers.ones, (cfg.d_model,), ("norm",))
    x_BxTxD = x_BxTxD.astype(jnp.float32)
    ms_BxTx1 = jnp.mean(jnp.square(x_BxTxD), axis=-1, keepdims=True)
    y_BxTxD = x_BxTxD * jax.lax.rsqrt(ms_BxTx1 + cfg.norm_eps)
    return (y_BxTxD * scale_D.astype(jnp.float32)[None, None, :]).astype(cfg.dtype)


class LayerNorm(nn.Module):
  """LayerNorm (Ba et al. 1607.06450) with scale and bias, computed in float32."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x_BxTxD):
    cfg = self.config
    scale_D = _param(self, "scale", nn.initializers.ones, (cfg.d_model,), ("norm",))
    bias_D = _param(self, "bias", nn.initializers.zeros, (cfg.d_model,), ("norm",))
    x_BxTxD = x_BxTxD.astype(jnp.float32)
    mean_BxTx1 = jnp.mean(x_BxTxD, axis=-1, keepdims=True)
    var_BxTx1 = jnp.mean(jnp.square(x_BxTxD - mean_BxTx1), axis=-1, keepdims=True)
    y_BxTxD = (x_BxTxD - mean_BxTx1) * jax.lax.rsqrt(var_BxTx1 + cfg.norm_eps)
    y_BxTxD = y_BxTxD * scale_D.astype(jnp.float32)[None, None, :] + bias_D.astype(
        jnp.float32)[None, None, :]
    return y_BxTxD.astype(cfg.dtype)


_NORMS = {"rms": RMSNorm, "layer": LayerNorm}


class SwiGLU(nn.Module):
  """Gated MLP: (silu(x W_gate) ⊙ x W_up) W_down (Shazeer 2002.05202)."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x_BxTxD):
    cfg = self.config
    dt = cfg.dtype
    gate_DxF = _param(self, "gate", _normal(cfg), (cfg.d_model, cfg.d_ff), ("embed", "mlp"))
    up_DxF = _param(self, "up", _normal(cfg), (cfg.d_model, cfg.d_ff), ("embed", "mlp"))
    down_FxD = _param(self, "down", _normal(cfg, residual=True), (cfg.d_ff, cfg.d_model),
                      ("mlp", "embed"))
    g_BxTxF = jnp.einsum("btd,df->btf", x_BxTxD, gate_DxF.astype(dt))
    u_BxTxF = jnp.einsum("btd,df->btf", x_BxTxD, up_DxF.astype(dt))
    h_BxTxF = jax.nn.silu(g_BxTxF) * u_BxTxF
    return jnp.einsum("btf,fd->btd", h_BxTxF, down_FxD.astype(dt))


class GeluMLP(nn.Module):
  """GPT-2 MLP: gelu(x W_in + b_in) W_out + b_out, tanh-approximated GELU."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x_BxTxD):
    cfg = self.config
    dt = cfg.dtype
    wi_DxF = _param(self, "wi", _normal(cfg), (cfg.d_model, cfg.d_ff), ("embed", "mlp"))
    bi_F = _param(self, "bi", nn.initializers.zeros, (cfg.d_ff,), ("mlp",))
    wo_FxD = _param(self, "wo", _normal(cfg, residual=True), (cfg.d_ff, cfg.d_model),
                    ("mlp", "embed"))
    bo_D = _param(self, "bo", nn.initializers.zeros, (cfg.d_model,), ("embed",))
    h_BxTxF = jnp.einsum("btd,df->btf", x_BxTxD, wi_DxF.astype(dt)) + bi_F.astype(dt)[None, None, :]
    h_BxTxF = jax.nn.gelu(h_BxTxF, approximate=True)
    return jnp.einsum("btf,fd->btd", h_BxTxF, wo_FxD.astype(dt)) + bo_D.astype(dt)[None, None, :]


_MLPS = {"swiglu": SwiGLU, "gelu": GeluMLP}


def rope(x_BxTxNxDh, positions_BxT, theta):
  """Rotary position embedding, rotate-half layout (Su et al. 2104.09864, Eq. 34; HF/Llama layout).

  Pairs dimension i with i + Dh/2 and rotates each pair by the angle position · theta^(−2i/Dh).
  Computed in float32; returns the input dtype.

  Args:
    x_BxTxNxDh: queries or keys, N heads of even size Dh.
    positions_BxT: integer positions.
    theta: base frequency.

  Returns:
    `[B, T, N, Dh]` rotated vectors.
  """
  dh = x_BxTxNxDh.shape[-1]
  half = dh // 2
  inv_freq_half = theta ** (-np.arange(half, dtype=np.float64) * 2.0 / dh)
  angle_BxTxhalf = (positions_BxT.astype(jnp.float32)[:, :, None]
                    * jnp.asarray(inv_freq_half, jnp.float32)[None, None, :])
  sin_BxTx1xhalf = jnp.sin(angle_BxTxhalf)[:, :, None, :]
  cos_BxTx1xhalf = jnp.cos(angle_BxTxhalf)[:, :, None, :]
  x = x_BxTxNxDh.astype(jnp.float32)
  x1, x2 = x[..., :half], x[..., half:]
  out = jnp.concatenate([x1 * cos_BxTx1xhalf - x2 * sin_BxTx1xhalf,
                         x2 * cos_BxTx1xhalf + x1 * sin_BxTx1xhalf], axis=-1)
  return out.astype(x_BxTxNxDh.dtype)


class Attention(nn.Module):
  """Causal grouped-query self-attention over the current tokens and, when given, a KV cache."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x_BxTxD, positions_BxT, mask_BxTxS, layer_cache, index):
    cfg = self.config
    style = cfg.style_spec
    dt = cfg.dtype
    d, h, k, dh = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    b, t, _ = x_BxTxD.shape
    wq_DxHxDh = _param(self, "query", _normal(cfg), (d, h, dh), ("embed", "heads", "kv"))
    wk_DxKxDh = _param(self, "key", _normal(cfg), (d, k, dh), ("embed", "kv_heads", "kv"))
    wv_DxKxDh = _param(self, "value", _normal(cfg), (d, k, dh), ("embed", "kv_heads", "kv"))
    wo_HxDhxD = _param(self, "out", _normal(cfg, residual=True), (h, dh, d), ("heads", "kv", "embed"))
    q_BxTxHxDh = jnp.einsum("btd,dhk->bthk", x_BxTxD, wq_DxHxDh.astype(dt))
    k_BxTxKxDh = jnp.einsum("btd,dhk->bthk", x_BxTxD, wk_DxKxDh.astype(dt))
    v_BxTxKxDh = jnp.einsum("btd,dhk->bthk", x_BxTxD, wv_DxKxDh.astype(dt))
    if style.use_bias:
      bq_HxDh = _param(self, "query_bias", nn.initializers.zeros, (h, dh), ("heads", "kv"))
      bk_KxDh = _param(self, "key_bias", nn.initializers.zeros, (k, dh), ("kv_heads", "kv"))
      bv_KxDh = _param(self, "value_bias", nn.initializers.zeros, (k, dh), ("kv_heads", "kv"))
      q_BxTxHxDh = q_BxTxHxDh + bq_HxDh.astype(dt)[None, None]
      k_BxTxKxDh = k_BxTxKxDh + bk_KxDh.astype(dt)[None, None]
      v_BxTxKxDh = v_BxTxKxDh + bv_KxDh.astype(dt)[None, None]
    if style.rope:
      q_BxTxHxDh = rope(q_BxTxHxDh, positions_BxT, cfg.rope_theta)
      k_BxTxKxDh = rope(k_BxTxKxDh, positions_BxT, cfg.rope_theta)

    if layer_cache is None:
      new_cache = None
      k_BxSxKxDh, v_BxSxKxDh = k_BxTxKxDh, v_BxTxKxDh
    else:
      start = (0, index, 0, 0)
      k_BxSxKxDh = jax.lax.dynamic_update_slice(
          layer_cache.k_BxSxKxDh, k_BxTxKxDh.astype(layer_cache.k_BxSxKxDh.dtype), start)
      v_BxSxKxDh = jax.lax.dynamic_update_slice(
          layer_cache.v_BxSxKxDh, v_BxTxKxDh.astype(layer_cache.v_BxSxKxDh.dtype), start)
      new_cache = LayerCache(k_BxSxKxDh, v_BxSxKxDh)
      k_BxSxKxDh, v_BxSxKxDh = k_BxSxKxDh.astype(dt), v_BxSxKxDh.astype(dt)

    if cfg.attention_impl != "einsum" and layer_cache is None:
      # The mask already holds causality; is_causal lets a fused kernel skip the blocks above the diagonal.
      out_BxTxHxDh = jax.nn.dot_product_attention(
          q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh, mask=mask_BxTxS[:, None, :, :], is_causal=True,
          scale=1.0 / math.sqrt(dh), implementation=cfg.attention_impl)
    else:
      out_BxTxHxDh = _einsum_attention(q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh, mask_BxTxS, dt)
    y_BxTxD = jnp.einsum("bthk,hkd->btd", out_BxTxHxDh, wo_HxDhxD.astype(dt))
    if style.use_bias:
      bo_D = _param(self, "out_bias", nn.initializers.zeros, (d,), ("embed",))
      y_BxTxD = y_BxTxD + bo_D.astype(dt)[None, None, :]
    return y_BxTxD, new_cache


def _einsum_attention(q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh, mask_BxTxS, dt):
  """Grouped-query attention with explicit float32 scores; returns `[B, T, H, Dh]` in `dt`."""
  b, t, h, dh = q_BxTxHxDh.shape
  k = k_BxSxKxDh.shape[2]
  g = h // k
  q_BxTxKxGxDh = q_BxTxHxDh.reshape(b, t, k, g, dh)
  scores_BxKxGxTxS = jnp.einsum("btkgh,bskh->bkgts", q_BxTxKxGxDh, k_BxSxKxDh,
                                preferred_element_type=jnp.float32) / math.sqrt(dh)
  scores_BxKxGxTxS = jnp.where(mask_BxTxS[:, None, None, :, :], scores_BxKxGxTxS,
                               jnp.finfo(jnp.float32).min)
  probs_BxKxGxTxS = jax.nn.softmax(scores_BxKxGxTxS, axis=-1).astype(dt)
  out_BxTxKxGxDh = jnp.einsum("bkgts,bskh->btkgh", probs_BxKxGxTxS, v_BxSxKxDh)
  return out_BxTxKxGxDh.reshape(b, t, h, dh)


class Block(nn.Module):
  """Pre-norm transformer block: x + attn(norm(x)), then + mlp(norm(·))."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x_BxTxD, positions_BxT, mask_BxTxS, layer_cache, index):
    cfg = self.config
    norm = _NORMS[cfg.style_spec.norm]
    attn_BxTxD, new_cache = Attention(cfg, name="attention")(
        norm(cfg, name="attention_norm")(x_BxTxD), positions_BxT, mask_BxTxS, layer_cache, index)
    x_BxTxD = x_BxTxD + attn_BxTxD
    mlp_BxTxD = _MLPS[cfg.style_spec.mlp](cfg, name="mlp")(norm(cfg, name="mlp_norm")(x_BxTxD))
    return x_BxTxD + mlp_BxTxD, new_cache


def positions_from_mask(attention_mask_BxT, offset_B=None):
  """Positions that skip padding: the number of real tokens before each token (plus `offset_B`).

  A padding token gets the position the next real token will have; padding is never attended to.

  Args:
    attention_mask_BxT: 1 for real tokens, 0 for padding (left, right or both).
    offset_B: optional number of real tokens already in the cache, per row.

  Returns:
    `[B, T]` int32 positions.
  """
  mask_BxT = jnp.asarray(attention_mask_BxT).astype(jnp.int32)
  pos_BxT = jnp.cumsum(mask_BxT, axis=1) - mask_BxT
  if offset_B is not None:
    pos_BxT = pos_BxT + offset_B.astype(jnp.int32)[:, None]
  return pos_BxT


class Transformer(nn.Module):
  """Decoder-only transformer returning float32 next-token logits.

  Call it as `model.apply(variables, tokens_BxT, attention_mask_BxT=..., positions_BxT=..., cache=...)`.
  Without a cache it returns `logits_BxTxV` (logits at t predict token t + 1). With a `KVCache` it
  writes the T new tokens at `cache.index`, attends to every valid earlier slot, and returns
  `(logits_BxTxV, new_cache)`: prefill is one call with the (padded) prompt, decoding is one call per
  token with `T = 1`.

  Attributes:
    config: the `TransformerConfig`.
  """
  config: TransformerConfig

  @nn.compact
  def __call__(self, tokens_BxT, *, attention_mask_BxT=None, positions_BxT=None, cache=None,
               return_hidden=False, segment_ids_BxT=None, logits_positions_BxR=None):
    """Runs the model.

    Args:
      tokens_BxT: int token ids in [0, vocab_size).
      attention_mask_BxT: optional, 1 (True) for real tokens and 0 for padding; padding is never
        attended to. Default: every token is real.
      positions_BxT: optional explicit positions; default: the count of real tokens before each token
        (in the cache and in this call), so padding does not shift positions.
      cache: optional `KVCache` from `init_cache` (or a previous call).
      return_hidden: also return the final hidden states `hidden_BxTxD` (after the final norm, the
        unembedding's input; compute dtype), e.g. for a reward head. Off by default.
      segment_ids_BxT: optional int segment ids of a packed row (several sequences side by side, e.g.
        `prefjax.lm.data.PackedBatchIterator`'s `*_segment_ids_BxL`): a token attends only to earlier
        real tokens with the same id, i.e. mask[b, t, s] = (s <= t & real[b, s] & seg[b, s] =
        seg[b, t]) | s = t, a block-diagonal causal mask. Pass each segment's own positions in
        `positions_BxT` (restarting at 0 per segment; the iterator's `*_positions_BxL`); if omitted they
        are the count of earlier real tokens of the same segment. Cache-less calls only (a
        PrefjaxError with a cache). Default None: one sequence per row.
      logits_positions_BxR: optional int positions (each in [0, T)): the output head runs only at these
        R positions per row, and the logits (and hidden states) come back as `[B, R, ...]`. The
        vocabulary-sized head is a large share of a step's FLOPs and memory; a preference loss needs
        the logits only where response tokens are predicted (`prefjax.lm.logprobs.policy_logps(...,
        window=R)`). Each returned row equals the full call's row at that position. Default None: all T.

    Returns:
      `logits_BxTxV` float32, or `(logits_BxTxV, new_cache)` when `cache` is given; with `return_hidden`,
      `(logits_BxTxV, hidden_BxTxD)` or `(logits_BxTxV, new_cache, hidden_BxTxD)`. With
      `logits_positions_BxR`, R replaces T in the logits and hidden states.
    """
    cfg = self.config
    style = cfg.style_spec
    tokens_BxT, mask_BxT = _check_inputs(cfg, tokens_BxT, attention_mask_BxT, positions_BxT, cache)
    b, t = tokens_BxT.shape
    segment_ids_BxT = _check_segment_ids(segment_ids_BxT, (b, t), cache)
    if logits_positions_BxR is not None:
      logits_positions_BxR = jnp.asarray(logits_positions_BxR)
      if logits_positions_BxR.ndim != 2 or logits_positions_BxR.shape[0] != b or not jnp.issubdtype(
          logits_positions_BxR.dtype, jnp.integer):
        raise PrefjaxError(f"Transformer: logits_positions must be int [batch={b}, R], got "
                           f"{logits_positions_BxR.dtype} {logits_positions_BxR.shape}")

    if cache is None:
      index = 0
      valid_BxS = mask_BxT
      q_slot_T = jnp.arange(t)
      offset_B = None
    else:
      index = cache.index
      offset_B = jnp.sum(cache.valid_BxS, axis=1, dtype=jnp.int32)
      valid_BxS = jax.lax.dynamic_update_slice(cache.valid_BxS, mask_BxT, (0, index))
      q_slot_T = index + jnp.arange(t)
    k_slot_S = jnp.arange(valid_BxS.shape[1])
    causal_TxS = k_slot_S[None, :] <= q_slot_T[:, None]
    # A padding query attends only to itself, so no row of the softmax is empty.
    self_TxS = k_slot_S[None, :] == q_slot_T[:, None]
    if segment_ids_BxT is None:
      mask_BxTxS = (causal_TxS[None] & valid_BxS[:, None, :]) | self_TxS[None]
      if positions_BxT is None:
        positions_BxT = positions_from_mask(mask_BxT, offset_B)
    else:  # cache-less: S = T
      same_BxTxS = segment_ids_BxT[:, :, None] == segment_ids_BxT[:, None, :]
      attend_BxTxS = causal_TxS[None] & valid_BxS[:, None, :] & same_BxTxS
      mask_BxTxS = attend_BxTxS | self_TxS[None]
      if positions_BxT is None:  # earlier real tokens of the same segment
        positions_BxT = jnp.sum(attend_BxTxS & ~self_TxS[None], axis=-1, dtype=jnp.int32)
    positions_BxT = jnp.asarray(positions_BxT, jnp.int32)

    embed_VxD = _param(self, "embed", _normal(cfg), (cfg.vocab_size, cfg.d_model),
                       ("vocab", "embed"))
    x_BxTxD = jnp.take(embed_VxD, tokens_BxT, axis=0).astype(cfg.dtype)
    if style.learned_positions:
      pos_PxD = _param(self, "position_embed", _normal(cfg), (cfg.max_len, cfg.d_model),
                       ("position", "embed"))
      x_BxTxD = x_BxTxD + jnp.take(pos_PxD, positions_BxT, axis=0).astype(cfg.dtype)

    block_cls = nn.remat(Block) if cfg.remat else Block
    new_layers = []
    for i in range(cfg.num_layers):
      layer_cache = None if cache is None else cache.layers[i]
      x_BxTxD, new_layer = block_cls(cfg, name=f"layer_{i}")(
          x_BxTxD, positions_BxT, mask_BxTxS, layer_cache, index)
      new_layers.append(new_layer)
    x_BxTxD = _NORMS[style.norm](cfg, name="final_norm")(x_BxTxD)
    if logits_positions_BxR is not None:
      x_BxTxD = jnp.take_along_axis(x_BxTxD, logits_positions_BxR[:, :, None], axis=1,
                                    mode="clip")  # [B, R, D] from here on

    if cfg.tie_embeddings:
      logits_BxTxV = jnp.einsum("btd,vd->btv", x_BxTxD, embed_VxD.astype(cfg.dtype),
                                preferred_element_type=jnp.float32)
    else:
      head_DxV = _param(self, "head", _normal(cfg), (cfg.d_model, cfg.vocab_size),
                        ("embed", "vocab"))
      logits_BxTxV = jnp.einsum("btd,dv->btv", x_BxTxD, head_DxV.astype(cfg.dtype),
                                preferred_element_type=jnp.float32)
    logits_BxTxV = logits_BxTxV.astype(jnp.float32)
    if cache is None:
      return (logits_BxTxV, x_BxTxD) if return_hidden else logits_BxTxV
    new_cache = KVCache(tuple(new_layers), valid_BxS, index + t)
    return (logits_BxTxV, new_cache, x_BxTxD) if return_hidden else (logits_BxTxV, new_cache)


def _check_inputs(cfg, tokens_BxT, attention_mask_BxT, positions_BxT, cache):
  """Static shape checks always; value checks only on concrete arrays (skipped under tracing)."""
  tokens_BxT = jnp.asarray(tokens_BxT)
  if tokens_BxT.ndim != 2:
    raise PrefjaxError(f"Transformer: tokens must be [batch, length], got shape {tokens_BxT.shape}")
  if not jnp.issubdtype(tokens_BxT.dtype, jnp.integer):
    raise PrefjaxError(f"Transformer: tokens must be integers, got dtype {tokens_BxT.dtype}")
  b, t = tokens_BxT.shape
  limit = cfg.max_len if cache is None else cache.valid_BxS.shape[1]
  if t > limit:
    what = "max_len" if cache is None else "the cache size"
    raise PrefjaxError(f"Transformer: sequence length {t} exceeds {what} {limit}")
  if _is_concrete(tokens_BxT) and t and b:
    lo, hi = int(np.min(np.asarray(tokens_BxT))), int(np.max(np.asarray(tokens_BxT)))
    if lo < 0 or hi >= cfg.vocab_size:
      raise PrefjaxError(f"Transformer: token ids must be in [0, vocab_size={cfg.vocab_size}), "
                         f"got values in [{lo}, {hi}]")
  if attention_mask_BxT is None:
    mask_BxT = jnp.ones((b, t), jnp.bool_)
  else:
    mask_BxT = jnp.asarray(attention_mask_BxT)
    if mask_BxT.shape != (b, t):
      raise PrefjaxError(f"Transformer: attention_mask shape {mask_BxT.shape} != tokens shape "
                         f"{(b, t)}")
    mask_BxT = mask_BxT.astype(jnp.bool_)
  if positions_BxT is not None:
    positions_BxT = jnp.asarray(positions_BxT)
    if positions_BxT.shape != (b, t):
      raise PrefjaxError(f"Transformer: positions shape {positions_BxT.shape} != tokens shape "
                         f"{(b, t)}")
    if _is_concrete(positions_BxT) and t and b:
      lo, hi = int(np.min(np.asarray(positions_BxT))), int(np.max(np.asarray(positions_BxT)))
      if lo < 0 or hi >= cfg.max_len:
        raise PrefjaxError(f"Transformer: positions must be in [0, max_len={cfg.max_len}), "
                           f"got values in [{lo}, {hi}]")
  if cache is not None:
    if cache.valid_BxS.shape[0] != b:
      raise PrefjaxError(f"Transformer: cache batch size {cache.valid_BxS.shape[0]} != tokens "
                         f"batch size {b}")
    if len(cache.layers) != cfg.num_layers:
      raise PrefjaxError(f"Transformer: cache has {len(cache.layers)} layers, the model "
                         f"{cfg.num_layers}")
    if _is_concrete(cache.index):
      index = int(np.asarray(cache.index))
      if index + t > cache.valid_BxS.shape[1]:
        raise PrefjaxError(f"Transformer: writing {t} tokens at cache index {index} overflows the "
                           f"cache of {cache.valid_BxS.shape[1]} slots")
  return tokens_BxT, mask_BxT


def _check_segment_ids(segment_ids_BxT, shape, cache):
  if segment_ids_BxT is None:
    return None
  if cache is not None:
    raise PrefjaxError("Transformer: segment_ids_BxT (packed rows) is supported without a cache only; "
                       "decode each sequence separately")
  segment_ids_BxT = jnp.asarray(segment_ids_BxT)
  if segment_ids_BxT.shape != shape:
    raise PrefjaxError(f"Transformer: segment_ids shape {segment_ids_BxT.shape} != tokens shape "
                       f"{shape}")
  if not jnp.issubdtype(segment_ids_BxT.dtype, jnp.integer):
    raise PrefjaxError(f"Transformer: segment_ids must be integers, got dtype "
                       f"{segment_ids_BxT.dtype}")
  return segment_ids_BxT


def init_params(config, key):
  """Initial variables `{"params": ...}` with logical-partitioning boxes.

  Use `nn.get_partition_spec` (or `param_shardings`) on the result for shardings and `nn.unbox` for the
  plain arrays; `Transformer(config).apply` accepts either. Wrap in `jax.eval_shape` to get shapes
  without allocating.

  Args:
    config: `TransformerConfig`.
    key: PRNG key.

  Returns:
    The variables pytree.
  """
  return _init_params(config, key)


@functools.partial(jax.jit, static_argnums=0)
def _init_params(config, key):
  # One compiled program per config: run eagerly, `init` dispatches every initialiser op by op (seconds on
  # a CPU even for a tiny model).
  return Transformer(config).init(key, jnp.zeros((1, 1), jnp.int32))


def param_shardings(variables, mesh, rules=LOGICAL_AXIS_RULES):
  """`NamedSharding`s for every parameter of a (boxed) variables tree on `mesh` under `rules`.

  The same as `prefjax.sharding.logical_shardings` (this delegates to it).
  """
  return shd.logical_shardings(variables, mesh, rules)


def param_count(params):
  """Total number of parameters (boxed or unboxed trees; arrays or `ShapeDtypeStruct`s)."""
  return int(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(params))))


def matmul_param_count(config):
  """Parameters that take part in a matmul per token: attention and MLP weights plus the unembedding.

  Embedding lookups (token and GPT-2 position tables), norms and biases are excluded; a tied
  unembedding counts once, as the head matmul it performs.
  """
  d, h, k, dh, f = (config.d_model, config.num_heads, config.num_kv_heads, config.head_dim,
                    config.d_ff)
  mlp_mats = {"swiglu": 3, "gelu": 2}[config.style_spec.mlp]
  per_layer = d * h * dh + 2 * d * k * dh + h * dh * d + mlp_mats * d * f
  return config.num_layers * per_layer + d * config.vocab_size


def flops_per_token(config, seq_len, *, training=True):
  """Model FLOPs per token for MFU, PaLM's convention (Chowdhery et al. 2204.02311, App. B).

  Training: 6 N + 12 · num_layers · H · Dh · seq_len; forward only: 2 N + 4 · num_layers · H · Dh ·
  seq_len. N = `matmul_param_count(config)` (each weight costs 2 FLOPs per token forward and 4
  backward); the attention term counts the QKᵀ and attention-times-V matmuls over the full
  seq_len × seq_len square (the causal mask's halving is not subtracted, as in PaLM). Norms,
  softmax and other element-wise work are not counted.

  Args:
    config: `TransformerConfig`.
    seq_len: sequence length of the training/eval batch.
    training: forward + backward (True) or forward only.

  Returns:
    FLOPs per token (a Python int).
  """
  if seq_len < 1:
    raise PrefjaxError(f"flops_per_token: seq_len must be >= 1, got {seq_len}")
  n = matmul_param_count(config)
  attn = config.num_layers * config.num_heads * config.head_dim * seq_len
  return 6 * n + 12 * attn if training else 2 * n + 4 * attn

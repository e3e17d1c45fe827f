"""Batched autoregressive sampling from the transformer policy with the KV cache.

`generate` draws `max_new_tokens` tokens per (left-padded) prompt: one prefill call of
`prefjax.lm.model.Transformer` on the padded prompt with a fresh `init_cache`, then one `T = 1` call per
token inside `lax.scan`. Every step's law is built from the next-token logits by, in this order:

  1. the Nash-MD geometric mixture (Munos et al. 2312.00886: π^μ ∝ π^{1−α} π_ref^α, α = ηβ), applied
     per token, π^μ(·|ctx) ∝ π(·|ctx)^{1−α} π_ref(·|ctx)^α, when a reference model is given (the
     sequence-level mixture cannot be sampled exactly; mixing logits as TRL's Nash-MD trainer does
     gives the same law, the log-normalisers being constant over the vocabulary);
  2. EOS suppression before `min_new_tokens` tokens;
  3. temperature (logits / τ), then top-k, then top-p (nucleus, Holtzman et al. 1904.09751: the
     smallest set of most likely tokens whose probability is ≥ p), as in HF `generate`;
  4. a categorical draw (Gumbel-max, `jax.random.categorical`), or the argmax when `greedy`.

The generated tokens come back with their log-probs under that law (`logps_BxT`), under the policy's
plain softmax (`policy_logps_BxT`) and, with a mixture, under the reference (`ref_logps_BxT`), so an
online loss needs no second forward pass for the behaviour policy; all are detached.

Tie-breaking (deterministic): top-k and top-p rank tokens by a stable descending sort, so among equal
values the lower token id comes first (top-k keeps exactly k tokens; the nucleus keeps token j of the
ranking iff the mass of the tokens ranked before it is < p). Greedy takes the lowest id among the maxima.

Randomness: the key is split into `max_new_tokens` keys, one per step (`jax.random.split(key, T)[t]`);
`generate_uncached` uses the same keys, so both give the same tokens for the same key.

Shape suffixes: B batch, P prompt length (padding included), T new tokens, V vocab, H iterates,
L = P + T.
"""

import dataclasses
import functools
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.lm import model as lm_model


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How to sample (static under jit: a frozen, hashable dataclass).

  Attributes:
    max_new_tokens: T ≥ 1, tokens generated per prompt (the output width).
    temperature: τ > 0; the law's logits are divided by τ (use `greedy=True` for τ → 0).
    top_k: keep only the k most likely tokens (0 = off).
    top_p: nucleus mass p in (0, 1] (1 = off).
    greedy: take the argmax of the (mixed, EOS-suppressed) log-probs instead of sampling; temperature,
      top-k and top-p are then irrelevant and `logps_BxT` is 0 (the law is a point mass).
    eos_id: end-of-sequence token; after it the row writes `pad_id` with mask 0. None: always
      generate `max_new_tokens` tokens.
    pad_id: token written after EOS.
    min_new_tokens: EOS has probability 0 for the first `min_new_tokens` tokens (default 1, so no
      response is empty); in [0, max_new_tokens].
  """
  max_new_tokens: int
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  greedy: bool = False
  eos_id: Optional[int] = None
  pad_id: int = 0
  min_new_tokens: int = 1

  def __post_init__(self):
    def is_int(x):
      return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))

    if not is_int(self.max_new_tokens) or self.max_new_tokens < 1:
      raise PrefjaxError(f"SamplingConfig.max_new_tokens must be an integer >= 1, got "
                         f"{self.max_new_tokens!r}")
    if not isinstance(self.temperature, (int, float, np.floating, np.integer)) or not (
        self.temperature > 0 and np.isfinite(self.temperature)):
      raise PrefjaxError(f"SamplingConfig.temperature must be a finite number > 0 (use greedy=True "
                         f"for argmax decoding), got {self.temperature!r}")
    if not is_int(self.top_k) or self.top_k < 0:
      raise PrefjaxError(f"SamplingConfig.top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
    if not isinstance(self.top_p, (int, float, np.floating, np.integer)) or not 0 < self.top_p <= 1:
      raise PrefjaxError(f"SamplingConfig.top_p must lie in (0, 1] (1 = off), got {self.top_p!r}")
    if not isinstance(self.greedy, (bool, np.bool_)):
      raise PrefjaxError(f"SamplingConfig.greedy must be a bool, got {self.greedy!r}")
    if self.eos_id is not None and (not is_int(self.eos_id) or self.eos_id < 0):
      raise PrefjaxError(f"SamplingConfig.eos_id must be None or a token id >= 0, got {self.eos_id!r}")
    if not is_int(self.pad_id) or self.pad_id < 0:
      raise PrefjaxError(f"SamplingConfig.pad_id must be a token id >= 0, got {self.pad_id!r}")
    if not is_int(self.min_new_tokens) or not 0 <= self.min_new_tokens <= self.max_new_tokens:
      raise PrefjaxError(f"SamplingConfig.min_new_tokens must be an integer in [0, max_new_tokens="
                         f"{self.max_new_tokens}], got {self.min_new_tokens!r}")


class Generation(NamedTuple):
  """Generated tokens and their log-probs (all `[B, T]`, detached).

  Attributes:
    tokens_BxT: int32 generated tokens; `pad_id` after EOS.
    mask_BxT: int32, 1 for real generated tokens (EOS included), 0 after.
    lengths_B: int32 number of real tokens per row.
    logps_BxT: float32 log-prob of each token under the law it was drawn from (mixture, EOS
      suppression, temperature, top-k, top-p; 0 for greedy), 0 where the mask is 0.
    policy_logps_BxT: float32 log π(token | ctx) under the first model's plain softmax (temperature 1,
      no filtering, no EOS suppression), 0 where the mask is 0.
    ref_logps_BxT: the same for the reference model when one was given (mixture), else None.
  """
  tokens_BxT: jax.Array
  mask_BxT: jax.Array
  lengths_B: jax.Array
  logps_BxT: jax.Array
  policy_logps_BxT: jax.Array
  ref_logps_BxT: Optional[jax.Array]


def _is_concrete(*xs):
  return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(xs))


# ---------------------------------------------------------------------------------------------------
# The per-step law.


def _filter_top_k_top_p(x_BxV, top_k, top_p):
  """Sets to −inf every logit outside the top k, then outside the nucleus of mass `top_p`.

  Ranking: stable descending sort (ties: lower token id first), so both sets are deterministic.
  """
  b, v = x_BxV.shape
  order_BxV = jnp.argsort(-x_BxV, axis=-1, stable=True)
  sorted_BxV = jnp.take_along_axis(x_BxV, order_BxV, axis=-1)
  rank_1xV = jnp.arange(v)[None, :]
  keep_sorted_BxV = jnp.ones((b, v), jnp.bool_)
  if top_k:
    keep_sorted_BxV = rank_1xV < top_k
    keep_sorted_BxV = jnp.broadcast_to(keep_sorted_BxV, (b, v))
  if top_p < 1.0:
    probs_BxV = jax.nn.softmax(jnp.where(keep_sorted_BxV, sorted_BxV, -jnp.inf), axis=-1)
    mass_before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV
    keep_sorted_BxV = keep_sorted_BxV & (mass_before_BxV < top_p)
    keep_sorted_BxV = keep_sorted_BxV | (rank_1xV == 0)  # the most likely token, whatever rounding
  keep_BxV = jnp.zeros((b, v), jnp.bool_).at[jnp.arange(b)[:, None], order_BxV].set(keep_sorted_BxV)
  return jnp.where(keep_BxV, x_BxV, -jnp.inf)


def law_logits(cfg, logits_BxV, ref_logits_BxV=None, mixture_weight=0.0, step=0):
  """Logits of the law a token is drawn from at generation step `step` (−inf outside its support).

  log π_mix = (1 − α) log softmax(logits) + α log softmax(ref_logits) (α = `mixture_weight`; without
  a reference, log softmax(logits)); EOS set to −inf while `step < cfg.min_new_tokens`; then divided
  by the temperature (not for greedy) and filtered by top-k and top-p. `log_softmax` of the result is
  the law's log-probs (its argmax the greedy token).

  Args:
    cfg: `SamplingConfig`.
    logits_BxV: the policy's next-token logits.
    ref_logits_BxV: the reference's next-token logits, or None.
    mixture_weight: α in [0, 1] (scalar).
    step: 0-based index of the token being generated (int or traced int scalar).

  Returns:
    `[B, V]` float32 logits.
  """
  logp_BxV = jax.nn.log_softmax(logits_BxV.astype(jnp.float32), axis=-1)
  if ref_logits_BxV is not None:
    alpha = jnp.asarray(mixture_weight, jnp.float32)
    ref_logp_BxV = jax.nn.log_softmax(ref_logits_BxV.astype(jnp.float32), axis=-1)
    logp_BxV = (1.0 - alpha) * logp_BxV + alpha * ref_logp_BxV
  if cfg.eos_id is not None and cfg.min_new_tokens > 0:
    v = logp_BxV.shape[-1]
    suppress_1xV = (jnp.arange(v) == cfg.eos_id)[None, :] & (jnp.asarray(step) < cfg.min_new_tokens)
    logp_BxV = jnp.where(suppress_1xV, -jnp.inf, logp_BxV)
  if cfg.greedy:
    return logp_BxV
  x_BxV = logp_BxV / cfg.temperature if cfg.temperature != 1 else logp_BxV
  if cfg.top_k or cfg.top_p < 1.0:
    x_BxV = _filter_top_k_top_p(x_BxV, cfg.top_k, cfg.top_p)
  return x_BxV


class _Step(NamedTuple):
  token_B: jax.Array
  mask_B: jax.Array
  logp_B: jax.Array
  policy_logp_B: jax.Array
  ref_logp_B: Optional[jax.Array]


def _pick(logp_BxV, token_B):
  return jnp.take_along_axis(logp_BxV, token_B[:, None], axis=-1)[:, 0]


def _sample_step(cfg, logits_BxV, ref_logits_BxV, mixture_weight, key, step, alive_B):
  """Draws one token per row; returns the step's outputs and the rows still alive after it."""
  x_BxV = law_logits(cfg, logits_BxV, ref_logits_BxV, mixture_weight, step)
  if cfg.greedy:
    token_B = jnp.argmax(x_BxV, axis=-1).astype(jnp.int32)
    logp_B = jnp.zeros(token_B.shape, jnp.float32)
  else:
    token_B = jax.random.categorical(key, x_BxV, axis=-1).astype(jnp.int32)
    logp_B = _pick(jax.nn.log_softmax(x_BxV, axis=-1), token_B)
  policy_logp_B = _pick(jax.nn.log_softmax(logits_BxV.astype(jnp.float32), axis=-1), token_B)
  ref_logp_B = None
  if ref_logits_BxV is not None:
    ref_logp_B = _pick(jax.nn.log_softmax(ref_logits_BxV.astype(jnp.float32), axis=-1), token_B)
  zero = jnp.zeros((), jnp.float32)
  out = _Step(
      token_B=jnp.where(alive_B, token_B, cfg.pad_id).astype(jnp.int32),
      mask_B=alive_B.astype(jnp.int32),
      logp_B=jnp.where(alive_B, logp_B, zero),
      policy_logp_B=jnp.where(alive_B, policy_logp_B, zero),
      ref_logp_B=None if ref_logp_B is None else jnp.where(alive_B, ref_logp_B, zero))
  if cfg.eos_id is not None:
    alive_B = alive_B & (token_B != cfg.eos_id)
  return out, alive_B


def _decode(cfg, first_logits, advance, state, mixture_weight, key):
  """The sampling loop shared by the cached and uncached paths.

  Args:
    cfg: `SamplingConfig`.
    first_logits: `(logits_BxV, ref_logits_BxV or None)` after the prompt.
    advance: `(state, token_B, mask_B, step) -> ((logits_BxV, ref_logits_BxV), state)`, feeding the
      token drawn at `step` to the model(s).
    state: the models' state after the prompt (caches, or the token buffer).
    mixture_weight: α.
    key: PRNG key.

  Returns:
    `Generation`.
  """
  t = cfg.max_new_tokens
  keys = jax.random.split(key, t)
  b = first_logits[0].shape[0]

  def body(carry, xs):
    logits, state, alive_B = carry
    key_t, step = xs
    out, alive_next = _sample_step(cfg, logits[0], logits[1], mixture_weight, key_t, step, alive_B)
    logits, state = advance(state, out.token_B, out.mask_B, step)
    return (logits, state, alive_next), out

  carry = (first_logits, state, jnp.ones((b,), jnp.bool_))
  # The last token is never fed back: T − 1 model calls inside the scan, the last draw outside.
  carry, outs = jax.lax.scan(body, carry, (keys[:-1], jnp.arange(t - 1, dtype=jnp.int32)))
  logits, _, alive_B = carry
  last, _ = _sample_step(cfg, logits[0], logits[1], mixture_weight, keys[-1], t - 1, alive_B)

  def stack(seq_TmxB, last_B):
    return jax.lax.stop_gradient(jnp.concatenate([seq_TmxB, last_B[None]], axis=0).T)

  mask_BxT = stack(outs.mask_B, last.mask_B)
  return Generation(
      tokens_BxT=stack(outs.token_B, last.token_B),
      mask_BxT=mask_BxT,
      lengths_B=jnp.sum(mask_BxT, axis=1, dtype=jnp.int32),
      logps_BxT=stack(outs.logp_B, last.logp_B),
      policy_logps_BxT=stack(outs.policy_logp_B, last.policy_logp_B),
      ref_logps_BxT=None if last.ref_logp_B is None else stack(outs.ref_logp_B, last.ref_logp_B))


def _last_real_column(pmask_BxP):
  p = pmask_BxP.shape[1]
  return (p - 1 - jnp.argmax(pmask_BxP[:, ::-1] > 0, axis=1)).astype(jnp.int32)


def _at_column(x_BxPxV, col_B):
  return jnp.take_along_axis(x_BxPxV, col_B[:, None, None], axis=1)[:, 0]


def _generate_cached(model_config, cfg, params, ref_params, mixture_weight, prompt_BxP, pmask_BxP,
                     key):
  b, p = prompt_BxP.shape
  model = lm_model.Transformer(model_config)
  slots = p + cfg.max_new_tokens - 1
  models = (params,) if ref_params is None else (params, ref_params)

  def prefill(prm):
    cache = lm_model.init_cache(model_config, b, slots)
    logits_BxPxV, cache = model.apply(prm, prompt_BxP, attention_mask_BxT=pmask_BxP, cache=cache)
    return _at_column(logits_BxPxV, last_B), cache

  last_B = _last_real_column(pmask_BxP)

  firsts = [prefill(prm) for prm in models]
  first_logits = tuple(f[0] for f in firsts) + ((None,) if ref_params is None else ())
  caches = tuple(f[1] for f in firsts)

  def advance(caches, token_B, mask_B, step):
    del step
    new = [model.apply(prm, token_B[:, None], attention_mask_BxT=mask_B[:, None], cache=c)
           for prm, c in zip(models, caches)]
    logits = tuple(n[0][:, 0] for n in new) + ((None,) if ref_params is None else ())
    return logits, tuple(n[1] for n in new)

  return _decode(cfg, first_logits, advance, caches, mixture_weight, key)


def _generate_uncached(model_config, cfg, params, ref_params, mixture_weight, prompt_BxP, pmask_BxP,
                       key):
  b, p = prompt_BxP.shape
  t = cfg.max_new_tokens
  model = lm_model.Transformer(model_config)
  models = (params,) if ref_params is None else (params, ref_params)
  buf_BxL = jnp.concatenate([prompt_BxP, jnp.full((b, t - 1), cfg.pad_id, jnp.int32)], axis=1)
  bmask_BxL = jnp.concatenate([pmask_BxP, jnp.zeros((b, t - 1), jnp.int32)], axis=1)

  def full_logits(buf_BxL, bmask_BxL):
    # The full causal forward over the whole buffer: columns after the one read cannot influence it.
    out = tuple(model.apply(prm, buf_BxL, attention_mask_BxT=bmask_BxL) for prm in models)
    return out + ((None,) if ref_params is None else ())

  def logits_at(buf_BxL, bmask_BxL, col):
    return tuple(None if x is None else jax.lax.dynamic_index_in_dim(x, col, axis=1, keepdims=False)
                 for x in full_logits(buf_BxL, bmask_BxL))

  def advance(state, token_B, mask_B, step):
    buf_BxL, bmask_BxL = state
    col = p + step
    buf_BxL = jax.lax.dynamic_update_slice(buf_BxL, token_B[:, None], (0, col))
    bmask_BxL = jax.lax.dynamic_update_slice(bmask_BxL, mask_B[:, None], (0, col))
    return logits_at(buf_BxL, bmask_BxL, col), (buf_BxL, bmask_BxL)

  last_B = _last_real_column(pmask_BxP)
  first = tuple(None if x is None else _at_column(x, last_B) for x in full_logits(buf_BxL, bmask_BxL))
  return _decode(cfg, first, advance, (buf_BxL, bmask_BxL), mixture_weight, key)


_IMPLS = {"cached": _generate_cached, "uncached": _generate_uncached}


@functools.partial(jax.jit, static_argnames=("impl", "model_config", "cfg"))
def _generate_jit(impl, model_config, cfg, params, ref_params, mixture_weight, prompt_BxP, pmask_BxP,
                  key):
  return _IMPLS[impl](model_config, cfg, params, ref_params, mixture_weight, prompt_BxP, pmask_BxP,
                      key)


# ---------------------------------------------------------------------------------------------------
# Validation.


def _check_inputs(fn, model_config, cfg, prompt_tokens_BxP, prompt_mask_BxP):
  """Static checks always; value checks on concrete arrays only. Returns int32 tokens and mask."""
  if not isinstance(model_config, lm_model.TransformerConfig):
    raise PrefjaxError(f"{fn}: model_config must be a TransformerConfig, got {type(model_config)}")
  if not isinstance(cfg, SamplingConfig):
    raise PrefjaxError(f"{fn}: cfg must be a SamplingConfig, got {type(cfg)}")
  v = model_config.vocab_size
  for name in ("eos_id", "pad_id"):
    value = getattr(cfg, name)
    if value is not None and value >= v:
      raise PrefjaxError(f"{fn}: SamplingConfig.{name}={value} is not in the vocabulary "
                         f"[0, vocab_size={v})")
  if cfg.top_k > v:
    raise PrefjaxError(f"{fn}: SamplingConfig.top_k={cfg.top_k} exceeds vocab_size={v}")
  if cfg.eos_id is not None and cfg.min_new_tokens > 0 and v == 1:
    raise PrefjaxError(f"{fn}: SamplingConfig.min_new_tokens={cfg.min_new_tokens} suppresses EOS, the "
                       f"only token of a vocabulary of size 1")
  tokens = jnp.asarray(prompt_tokens_BxP)
  if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 1:
    raise PrefjaxError(f"{fn}: prompt_tokens must be [batch >= 1, prompt_len >= 1], got shape "
                       f"{tokens.shape}")
  if not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise PrefjaxError(f"{fn}: prompt_tokens must be integers, got dtype {tokens.dtype}")
  mask = jnp.asarray(prompt_mask_BxP)
  if mask.shape != tokens.shape:
    raise PrefjaxError(f"{fn}: prompt_mask shape {mask.shape} != prompt_tokens shape {tokens.shape}")
  b, p = tokens.shape
  if p + cfg.max_new_tokens > model_config.max_len:
    raise PrefjaxError(f"{fn}: prompt length {p} + SamplingConfig.max_new_tokens="
                       f"{cfg.max_new_tokens} exceeds the model's max_len={model_config.max_len}")
  if _is_concrete(tokens):
    t = np.asarray(tokens)
    if t.min() < 0 or t.max() >= v:
      raise PrefjaxError(f"{fn}: prompt_tokens must be in [0, vocab_size={v}), got values in "
                         f"[{t.min()}, {t.max()}]")
  if _is_concrete(mask):
    m = np.asarray(mask)
    if not np.all((m == 0) | (m == 1)):
      raise PrefjaxError(f"{fn}: prompt_mask must contain only 0/1 (or booleans)")
    bad = np.flatnonzero(m.sum(axis=1) == 0)
    if bad.size:
      raise PrefjaxError(f"{fn}: prompt_mask: empty prompts (no real token) in rows "
                         f"{bad[:10].tolist()}")
  return tokens.astype(jnp.int32), mask.astype(jnp.int32)


def _check_mixture(fn, ref_params, mixture_weight):
  alpha = jnp.asarray(mixture_weight, jnp.float32)
  if alpha.ndim:
    raise PrefjaxError(f"{fn}: mixture_weight must be a scalar, got shape {alpha.shape}")
  if _is_concrete(alpha):
    a = float(alpha)
    if not 0.0 <= a <= 1.0:
      raise PrefjaxError(f"{fn}: mixture_weight must lie in [0, 1], got {a}")
    if ref_params is None and a != 0.0:
      raise PrefjaxError(f"{fn}: mixture_weight={a} needs ref_params (the reference model)")
  return alpha


def _generate(impl, fn, model_config, params, prompt_tokens_BxP, prompt_mask_BxP, key, cfg,
              ref_params, mixture_weight):
  tokens, mask = _check_inputs(fn, model_config, cfg, prompt_tokens_BxP, prompt_mask_BxP)
  alpha = _check_mixture(fn, ref_params, mixture_weight)
  params = nn.unbox(params)
  ref_params = None if ref_params is None else nn.unbox(ref_params)
  return _generate_jit(impl, model_config, cfg, params, ref_params, alpha, tokens, mask, key)


# ---------------------------------------------------------------------------------------------------
# Public API.


def generate(model_config, params, prompt_tokens_BxP, prompt_mask_BxP, key, cfg, *, ref_params=None,
             mixture_weight=0.0):
  """Samples `cfg.max_new_tokens` tokens per prompt with the KV cache.

  One prefill call on the left-padded prompt, then `lax.scan` over the new tokens with one `T = 1`
  model call per token (T − 1 calls: the last token is not fed back). With `ref_params`, each token
  is drawn from the Nash-MD geometric mixture (Munos et al. 2312.00886) taken per token

    π_mix(y_t | ctx) ∝ π(y_t | ctx)^{1−α} π_ref(y_t | ctx)^α,   α = `mixture_weight` (= ηβ),

  both models advancing their own caches on the sampled tokens; then EOS suppression, temperature,
  top-k and top-p apply to π_mix (see `law_logits`).

  `prompt_len + max_new_tokens` must not exceed `model_config.max_len`, so `sequences(...)` of the
  result can be scored by the same model.

  Jit-compatible: `jax.jit(generate, static_argnums=(0, 5))`; `model_config` and `cfg` are static,
  everything else (parameters, prompts, key, `mixture_weight`) may be traced. Value checks run on
  concrete inputs only.

  Args:
    model_config: `TransformerConfig` of both models.
    params: the policy's variables (boxed or not).
    prompt_tokens_BxP: int prompt ids, left-padded.
    prompt_mask_BxP: 1 for real prompt tokens, 0 for the padding (left padding is the convention;
      right or interior padding also works: the first token is predicted from the last real column and
      positions skip padding). Every row needs at least one real token.
    key: PRNG key.
    cfg: `SamplingConfig`.
    ref_params: optional reference variables (same config) for the mixture.
    mixture_weight: α in [0, 1], scalar; ignored (must be 0) without `ref_params`.

  Returns:
    `Generation` with `[B, T]` fields (`ref_logps_BxT` set when `ref_params` is given).
  """
  return _generate("cached", "generate", model_config, params, prompt_tokens_BxP, prompt_mask_BxP,
                   key, cfg, ref_params, mixture_weight)


def generate_uncached(model_config, params, prompt_tokens_BxP, prompt_mask_BxP, key, cfg, *,
                      ref_params=None, mixture_weight=0.0):
  """Reference implementation of `generate` without the KV cache (slow: a full forward per token).

  Each step re-runs the model(s) on the whole token buffer (prompt + the tokens generated so far, the
  rest masked out; a causal model cannot see them) and reads the logits at the last real column.
  Same arguments, key use and outputs as `generate`, so with the same key the tokens are identical
  and the log-probs agree to float tolerance.
  """
  return _generate("uncached", "generate_uncached", model_config, params, prompt_tokens_BxP,
                   prompt_mask_BxP, key, cfg, ref_params, mixture_weight)


def generate_from_iterates(model_config, params_stack, weights_H, prompt_tokens_BxP, prompt_mask_BxP,
                           key, cfg):
  """Fictitious-play sampling: each sequence is generated by one past iterate h ~ Categorical(w).

  The opponent of fictitious play / α-SPIN with history (Alami et al. 2404.04291) is the mixture
  Σ_h w_h π_h at the sequence level: sequence b draws h_b ~ Categorical(w / Σ w) once, then all its
  tokens come from π_{h_b}.

  With `choice_key, gen_key = jax.random.split(key)`, row b of the result equals row b of
  `generate(model_config, params_stack[h_b], ..., gen_key, cfg)`. Implementation: `jax.vmap` of the
  cached sampler over the H iterates (every iterate generates for the whole batch with `gen_key`),
  then each row is taken from its chosen iterate. Cost: H times the compute and cache memory of one
  `generate` (simple and exact; fine for the few iterates fictitious play keeps — the alternative,
  gathering each row's parameters, costs B copies of the parameters instead).

  Args:
    model_config: `TransformerConfig` of the iterates.
    params_stack: variables pytree whose leaves have a leading axis H (e.g.
      `jax.tree.map(lambda *x: jnp.stack(x), *iterates)`).
    weights_H: non-negative iterate weights (normalised here; their sum must be > 0).
    prompt_tokens_BxP: int prompt ids, left-padded.
    prompt_mask_BxP: 1 for real prompt tokens.
    key: PRNG key.
    cfg: `SamplingConfig`.

  Returns:
    `(generation, iterate_index_B)`: a `Generation` (no reference) and the int32 iterate of each row.
  """
  fn = "generate_from_iterates"
  tokens, mask = _check_inputs(fn, model_config, cfg, prompt_tokens_BxP, prompt_mask_BxP)
  params_stack = nn.unbox(params_stack)
  leaves = jax.tree.leaves(params_stack)
  if not leaves:
    raise PrefjaxError(f"{fn}: params_stack has no arrays")
  h = leaves[0].shape[0] if leaves[0].ndim else 0
  if h < 1 or any(x.ndim < 1 or x.shape[0] != h for x in leaves):
    raise PrefjaxError(f"{fn}: every leaf of params_stack needs the same leading (iterate) axis; "
                       f"got leading sizes {sorted({x.shape[0] if x.ndim else None for x in leaves})}")
  weights = jnp.asarray(weights_H, jnp.float32)
  if weights.shape != (h,):
    raise PrefjaxError(f"{fn}: weights_H shape {weights.shape} != (H,) = ({h},), the iterates in "
                       f"params_stack")
  if _is_concrete(weights):
    w = np.asarray(weights)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
      raise PrefjaxError(f"{fn}: weights_H must be finite, >= 0 and not all 0, got {w}")
  return _from_iterates_jit(model_config, cfg, params_stack, weights, tokens, mask, key)


@functools.partial(jax.jit, static_argnames=("model_config", "cfg"))
def _from_iterates_jit(model_config, cfg, params_stack, weights_H, prompt_BxP, pmask_BxP, key):
  choice_key, gen_key = jax.random.split(key)
  b = prompt_BxP.shape[0]
  logw_H = jnp.log(weights_H / jnp.sum(weights_H))
  index_B = jax.random.categorical(choice_key, jnp.broadcast_to(logw_H[None, :], (b,) + logw_H.shape),
                                   axis=-1).astype(jnp.int32)
  per_iterate = jax.vmap(
      lambda prm: _generate_cached(model_config, cfg, prm, None, 0.0, prompt_BxP, pmask_BxP, gen_key))
  gens = per_iterate(params_stack)  # every leaf [H, B, ...]
  rows_B = jnp.arange(b)
  gen = jax.tree.map(lambda x: x[index_B, rows_B], gens)
  return gen, index_B


def sequences(prompt_tokens_BxP, prompt_mask_BxP, generation):
  """Prompt + response arrays for `prefjax.lm.logprobs.policy_logps` (and the trainers' losses).

  Args:
    prompt_tokens_BxP: the (left-padded) prompts given to the sampler.
    prompt_mask_BxP: their mask.
    generation: the `Generation`.

  Returns:
    `{"tokens_BxL", "attention_mask_BxL", "loss_mask_BxL"}`, int32 `[B, P + T]`: the prompt then the
    response; the attention mask is the prompt mask then `mask_BxT`; the loss mask is 1 on the real
    generated tokens only. `policy_logps(apply, params, tokens_BxL, loss_mask_BxL,
    attention_mask_BxL)` then equals the sum of `generation.policy_logps_BxT` (up to float error).
    Concrete inputs with a zero-length response raise `PrefjaxError` (use `min_new_tokens >= 1`).
  """
  tokens = jnp.asarray(prompt_tokens_BxP).astype(jnp.int32)
  pmask = jnp.asarray(prompt_mask_BxP).astype(jnp.int32)
  gen_tokens = jnp.asarray(generation.tokens_BxT).astype(jnp.int32)
  gen_mask = jnp.asarray(generation.mask_BxT).astype(jnp.int32)
  if tokens.ndim != 2 or pmask.shape != tokens.shape:
    raise PrefjaxError(f"sequences: prompt_tokens {tokens.shape} and prompt_mask {pmask.shape} must "
                       f"be the same [batch, prompt_len] shape")
  if gen_tokens.ndim != 2 or gen_tokens.shape[0] != tokens.shape[0] or gen_mask.shape != gen_tokens.shape:
    raise PrefjaxError(f"sequences: generation tokens {gen_tokens.shape} / mask {gen_mask.shape} do not "
                       f"match the prompts' batch {tokens.shape[0]}")
  if _is_concrete(gen_mask):
    empty = np.flatnonzero(np.asarray(gen_mask).sum(axis=1) == 0)
    if empty.size:
      raise PrefjaxError(f"sequences: zero-length generations in rows {empty[:10].tolist()} (EOS as the "
                         f"first token; sample with SamplingConfig.min_new_tokens >= 1)")
  return {
      "tokens_BxL": jnp.concatenate([tokens, gen_tokens], axis=1),
      "attention_mask_BxL": jnp.concatenate([pmask, gen_mask], axis=1),
      "loss_mask_BxL": jnp.concatenate([jnp.zeros_like(pmask), gen_mask], axis=1),
  }

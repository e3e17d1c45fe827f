"""Sequence log-probabilities from next-token logits: the target shift and the masks live here only.

Alignment convention (one place for it): `logits_BxLxV[:, t]` is the model's distribution over
`tokens_BxL[:, t + 1]`. Per-token log-probs are returned aligned with the tokens they score, so
`token_logps_BxL[:, t] = log p(tokens[t] | tokens[<t])` for t ≥ 1 and 0 at t = 0 (nothing predicts the
first token). Masks are therefore token masks: `loss_mask_BxL[:, t] = 1` marks token t as a response
token to score (prompt and padding are 0; position 0 can never be scored).

Everything is computed in at least float32 (bfloat16/float16 logits are upcast; float64 stays float64),
whatever the compute dtype of the model (docs/design.md §4.10).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError


class SequenceLogps(NamedTuple):
  """Per-sequence log-probs and the number of scored tokens."""
  logps: jax.Array  # [B] float32
  counts: jax.Array  # [B] int32


def _is_concrete(*xs):
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _float_dtype(x):
  """float32, or float64 when the input already is (so float64 oracles keep their precision)."""
  dt = jnp.asarray(x).dtype
  return jnp.promote_types(dt if jnp.issubdtype(dt, jnp.floating) else jnp.float32, jnp.float32)


def token_logps(logits_BxLxV, tokens_BxL):
  """Per-token log-probs aligned with the tokens: out[:, t] = log softmax(logits[:, t − 1])[tokens[:, t]].

  Args:
    logits_BxLxV: next-token logits (any float dtype; upcast to float32).
    tokens_BxL: int token ids.

  Returns:
    `[B, L]` float32 (float64 for float64 logits); column 0 is 0.
  """
  logits_BxLxV, tokens_BxL = _check_logits_tokens("token_logps", logits_BxLxV, tokens_BxL)
  pred_BxMxV = logits_BxLxV[:, :-1].astype(_float_dtype(logits_BxLxV))  # M = L − 1 predictions
  target_BxM = tokens_BxL[:, 1:]
  lse_BxM = jax.nn.logsumexp(pred_BxMxV, axis=-1)
  picked_BxM = jnp.take_along_axis(pred_BxMxV, target_BxM[:, :, None], axis=-1)[:, :, 0]
  return jnp.pad(picked_BxM - lse_BxM, ((0, 0), (1, 0)))


def _check_logits_tokens(fn, logits_BxLxV, tokens_BxL):
  logits_BxLxV = jnp.asarray(logits_BxLxV)
  tokens_BxL = jnp.asarray(tokens_BxL)
  if logits_BxLxV.ndim != 3:
    raise PrefjaxError(f"{fn}: logits must be [batch, length, vocab], got shape {logits_BxLxV.shape}")
  if tokens_BxL.shape != logits_BxLxV.shape[:2]:
    raise PrefjaxError(f"{fn}: tokens shape {tokens_BxL.shape} does not match logits shape "
                       f"{logits_BxLxV.shape[:2]} (batch, length)")
  if not jnp.issubdtype(tokens_BxL.dtype, jnp.integer):
    raise PrefjaxError(f"{fn}: tokens must be integers, got dtype {tokens_BxL.dtype}")
  if _is_concrete(tokens_BxL) and tokens_BxL.size:
    v = logits_BxLxV.shape[-1]
    lo, hi = int(np.min(np.asarray(tokens_BxL))), int(np.max(np.asarray(tokens_BxL)))
    if lo < 0 or hi >= v:
      raise PrefjaxError(f"{fn}: token ids must be in [0, vocab={v}), got values in [{lo}, {hi}]")
  return logits_BxLxV, tokens_BxL


def _check_mask(fn, name, mask_BxL, shape):
  mask_BxL = jnp.asarray(mask_BxL)
  if mask_BxL.shape != shape:
    raise PrefjaxError(f"{fn}: {name} shape {mask_BxL.shape} != tokens shape {shape}")
  if _is_concrete(mask_BxL) and mask_BxL.size:
    m = np.asarray(mask_BxL)
    if not np.all((m == 0) | (m == 1)):
      raise PrefjaxError(f"{fn}: {name} must contain only 0/1 (or booleans)")
    if m[:, 0].any():
      raise PrefjaxError(f"{fn}: {name}[:, 0] must be 0: the first token has no prediction "
                         f"(prompts are at least one token long)")
    empty = np.flatnonzero(m.sum(axis=1) == 0)
    if empty.size:
      raise PrefjaxError(f"{fn}: {name} selects no token in rows {empty.tolist()} "
                         f"(empty responses)")
  # Column 0 has no prediction: drop it so counts always match the summed terms (also under jit).
  return mask_BxL.astype(jnp.bool_).at[:, 0].set(False)


def _reduce_sum(sums_B, counts_B):
  return sums_B


def _reduce_mean(sums_B, counts_B):
  return sums_B / jnp.maximum(counts_B, 1).astype(sums_B.dtype)


# "sum": log π(y|x) = Σ_t log π(y_t | x, y_<t) (DPO 2305.18290, IPO as in the paper);
# "mean": the token mean (length-normalised, as in SimPO 2405.14734 and TRL's IPO).
REDUCTIONS = {"sum": _reduce_sum, "mean": _reduce_mean}


def sequence_logps(logits_BxLxV, tokens_BxL, loss_mask_BxL, *, reduction="sum"):
  """Per-sequence log-probs of the masked (response) tokens.

  logps_b = Σ_{t ≥ 1} m_{b,t} log softmax(logits_{b,t−1})[tokens_{b,t}] for reduction "sum",
  divided by n_b = Σ_{t ≥ 1} m_{b,t} for "mean".

  Args:
    logits_BxLxV: next-token logits (bfloat16 is upcast; the result is float32).
    tokens_BxL: int token ids.
    loss_mask_BxL: 1 (True) for response tokens to score; prompt and padding 0; column 0 must be 0.
      Rows with no scored token are rejected when the mask is concrete (under jit they give 0).
    reduction: one of `REDUCTIONS` ("sum", "mean").

  Returns:
    `SequenceLogps(logps [B] float32, counts [B] int32)`.
  """
  if reduction not in REDUCTIONS:
    raise PrefjaxError(f"sequence_logps: unknown reduction {reduction!r}; known: {sorted(REDUCTIONS)}")
  logits_BxLxV, tokens_BxL = _check_logits_tokens("sequence_logps", logits_BxLxV, tokens_BxL)
  mask_BxL = _check_mask("sequence_logps", "loss_mask", loss_mask_BxL, tokens_BxL.shape)
  logp_BxL = token_logps(logits_BxLxV, tokens_BxL)
  sums_B = jnp.sum(jnp.where(mask_BxL, logp_BxL, 0.0), axis=1)
  counts_B = jnp.sum(mask_BxL, axis=1, dtype=jnp.int32)
  return SequenceLogps(REDUCTIONS[reduction](sums_B, counts_B), counts_B)


def ld_logps(chosen_token_logps_BxL, chosen_mask_BxL, rejected_token_logps_BxL, rejected_mask_BxL,
             *, alpha):
  """LD-DPO length-desensitised sequence log-probs (Liu et al. 2409.06411, §4).

  With l_w, l_l the response lengths of the pair and the public length l_p = min(l_w, l_l), LD-DPO
  replaces the likelihood of each response y by

    π̂(y|x) = Π_{i ≤ l_p} π(y_i | x, y_<i) · (Π_{i > l_p} π(y_i | x, y_<i))^α,

  i.e. log π̂(y|x) = Σ_{i ≤ l_p} log π(y_i|·) + α Σ_{i > l_p} log π(y_i|·): the part of the longer
  response beyond the shorter one's length is down-weighted by α ∈ [0, 1] (α = 1 is plain DPO;
  the shorter response is unchanged). i counts response tokens (the positions where the mask is 1),
  so the masks need not start at the same column. The paper's LD-DPO loss is DPO with π̂ in place of
  π for both the policy and the reference; call this function on each (LLaMA-Factory does both;
  TRL's `ld_alpha` reweights only the policy).

  Args:
    chosen_token_logps_BxL: per-token log-probs of the chosen sequences (`token_logps` layout).
    chosen_mask_BxL: response-token mask of the chosen sequences (column 0 ignored).
    rejected_token_logps_BxL: per-token log-probs of the rejected sequences; its length may differ.
    rejected_mask_BxL: response-token mask of the rejected sequences.
    alpha: weight α ∈ [0, 1] of the tokens beyond the public length (scalar or `[B]`).

  Returns:
    `(chosen_logps [B], rejected_logps [B])` float32.
  """
  chosen_token_logps_BxL = jnp.asarray(chosen_token_logps_BxL)
  chosen_token_logps_BxL = chosen_token_logps_BxL.astype(_float_dtype(chosen_token_logps_BxL))
  rejected_token_logps_BxL = jnp.asarray(rejected_token_logps_BxL)
  rejected_token_logps_BxL = rejected_token_logps_BxL.astype(_float_dtype(rejected_token_logps_BxL))
  for name, x in (("chosen_token_logps", chosen_token_logps_BxL),
                  ("rejected_token_logps", rejected_token_logps_BxL)):
    if x.ndim != 2:
      raise PrefjaxError(f"ld_logps: {name} must be [batch, length], got shape {x.shape}")
  if chosen_token_logps_BxL.shape[0] != rejected_token_logps_BxL.shape[0]:
    raise PrefjaxError(f"ld_logps: chosen and rejected batch sizes differ: "
                       f"{chosen_token_logps_BxL.shape[0]} vs {rejected_token_logps_BxL.shape[0]}")
  mask_w_BxL = _check_mask("ld_logps", "chosen_mask", chosen_mask_BxL, chosen_token_logps_BxL.shape)
  mask_l_BxL = _check_mask("ld_logps", "rejected_mask", rejected_mask_BxL,
                           rejected_token_logps_BxL.shape)
  alpha = jnp.asarray(alpha, chosen_token_logps_BxL.dtype)
  if alpha.ndim > 1 or (alpha.ndim == 1 and alpha.shape[0] != chosen_token_logps_BxL.shape[0]):
    raise PrefjaxError(f"ld_logps: alpha must be a scalar or [batch], got shape {alpha.shape}")
  if _is_concrete(alpha):
    a = np.asarray(alpha)
    if not np.all((a >= 0) & (a <= 1)):
      raise PrefjaxError(f"ld_logps: alpha must lie in [0, 1], got {a}")
  alpha_B = jnp.broadcast_to(alpha, chosen_token_logps_BxL.shape[:1])
  public_B = jnp.minimum(jnp.sum(mask_w_BxL, axis=1, dtype=jnp.int32),
                         jnp.sum(mask_l_BxL, axis=1, dtype=jnp.int32))

  def weighted(logp_BxL, mask_BxL):
    rank_BxL = jnp.cumsum(mask_BxL, axis=1, dtype=jnp.int32)  # 1-based index among response tokens
    weight_BxL = jnp.where(rank_BxL <= public_B[:, None], 1.0, alpha_B[:, None])
    return jnp.sum(jnp.where(mask_BxL, weight_BxL * logp_BxL, 0.0), axis=1)

  return (weighted(chosen_token_logps_BxL, mask_w_BxL),
          weighted(rejected_token_logps_BxL, mask_l_BxL))


def _logits(apply_fn, params, tokens_BxL, attention_mask_BxL, **kwargs):
  if attention_mask_BxL is None:
    return apply_fn(params, tokens_BxL, **kwargs)
  return apply_fn(params, tokens_BxL, attention_mask_BxT=attention_mask_BxL, **kwargs)


def policy_token_logps(apply_fn, params, tokens_BxL, attention_mask_BxL=None):
  """Per-token log-probs (`token_logps` layout) of a model: `apply_fn(params, tokens, attention_mask_BxT=)`."""
  return token_logps(_logits(apply_fn, params, tokens_BxL, attention_mask_BxL), tokens_BxL)


def response_span(loss_mask_BxL):
  """The widest row's span of scored tokens, last − first + 1 (numpy; 0 for an all-zero mask).

  The smallest `window` for which `policy_logps(..., window=)` covers every scored token of the batch.
  """
  m = np.asarray(loss_mask_BxL) != 0
  if m.ndim != 2:
    raise PrefjaxError(f"response_span: loss_mask must be [batch, length], got shape {m.shape}")
  any_B = m.any(axis=1)
  if not any_B.any():
    return 0
  first_B = np.argmax(m, axis=1)
  last_B = m.shape[1] - 1 - np.argmax(m[:, ::-1], axis=1)
  return int(np.max(np.where(any_B, last_B - first_B + 1, 0)))


def window_positions(loss_mask_BxL, window):
  """Prediction positions of a scored-token window: `(positions_BxR, targets_BxR, valid_BxR)`.

  Row b's window starts at the prediction of its first scored token f_b: positions f_b − 1 + j for
  j < R = `window` (clipped to [0, L − 2]; `valid` is False where clipped), and `targets` = positions
  + 1, the tokens those logits score. It covers every scored token when R ≥ `response_span(mask)`.
  """
  mask_BxL = jnp.asarray(loss_mask_BxL).astype(jnp.bool_)
  length = mask_BxL.shape[1]
  first_B = jnp.argmax(mask_BxL, axis=1).astype(jnp.int32)
  raw_BxR = first_B[:, None] - 1 + jnp.arange(window, dtype=jnp.int32)[None, :]
  valid_BxR = (raw_BxR >= 0) & (raw_BxR <= length - 2)
  positions_BxR = jnp.clip(raw_BxR, 0, max(length - 2, 0))
  return positions_BxR, positions_BxR + 1, valid_BxR


def _check_window_args(fn, reduction, window, tokens_BxL):
  """The windowed log-prob functions' argument checks; returns the tokens as a `[B, L]` array."""
  if reduction not in REDUCTIONS:
    raise PrefjaxError(f"{fn}: unknown reduction {reduction!r}; known: {sorted(REDUCTIONS)}")
  if not isinstance(window, (int, np.integer)) or window < 1:
    raise PrefjaxError(f"{fn}: window must be a positive integer, got {window!r}")
  tokens_BxL = jnp.asarray(tokens_BxL)
  if tokens_BxL.ndim != 2:
    raise PrefjaxError(f"{fn}: tokens must be [batch, length], got shape {tokens_BxL.shape}")
  return tokens_BxL


def _window_token_logps(logits_BxRxV, tokens_BxL, targets_BxR):
  """log softmax(logits[:, r])[tokens[:, targets[:, r]]]: the log-probs of the tokens the window scores."""
  logits_BxRxV = logits_BxRxV.astype(_float_dtype(logits_BxRxV))
  tok_BxR = jnp.take_along_axis(tokens_BxL, targets_BxR, axis=1)
  picked_BxR = jnp.take_along_axis(logits_BxRxV, tok_BxR[:, :, None], axis=-1)[:, :, 0]
  return picked_BxR - jax.nn.logsumexp(logits_BxRxV, axis=-1)


def policy_logps(apply_fn, params, tokens_BxL, loss_mask_BxL, attention_mask_BxL=None, *,
                 reduction="sum", window=None):
  """Sequence log-probs of a model on a batch: `sequence_logps(apply_fn(params, tokens, ...), ...)`.

  With `window=R` the output head runs only at the R positions that predict each row's scored tokens
  (from the prediction of its first response token on; `window_positions`), not at all L: the same
  log-probs (each logit row is the full forward's row at that position) for a fraction R / L of the
  head's FLOPs and of the [B, L, V] log-softmax. R must cover every row's span of scored tokens
  (`response_span`): checked when the mask is concrete; under jit, tokens outside the window are not
  counted, so compute R on the host from the batch (as `prefjax.lm.train` does). Like TRL's
  `use_logits_to_keep`, but per row, so right-padded rows with prompts of different lengths also gain.

  Args:
    apply_fn: `Transformer(config).apply` or any function `(params, tokens_BxL,
      attention_mask_BxT=mask) -> logits_BxLxV` (with `window`, also taking `logits_positions_BxR=`).
    params: the model's variables.
    tokens_BxL: prompt + response token ids, padded.
    loss_mask_BxL: 1 for response tokens (see `sequence_logps`); must be 0 wherever
      `attention_mask_BxL` is 0.
    attention_mask_BxL: optional, 1 for real tokens, 0 for padding.
    reduction: "sum" or "mean".
    window: optional static int R ≥ 1: the head's positions per row (see above). Default None: all L.

  Returns:
    `SequenceLogps(logps [B] float32, counts [B] int32)`.
  """
  if attention_mask_BxL is not None:
    loss = jnp.asarray(loss_mask_BxL)
    attn = jnp.asarray(attention_mask_BxL)
    if loss.shape == attn.shape and _is_concrete(loss, attn) and np.any(
        (np.asarray(loss) != 0) & (np.asarray(attn) == 0)):
      raise PrefjaxError("policy_logps: loss_mask selects padding tokens (attention_mask is 0 there)")
  if window is None:
    logits_BxLxV = _logits(apply_fn, params, tokens_BxL, attention_mask_BxL)
    return sequence_logps(logits_BxLxV, tokens_BxL, loss_mask_BxL, reduction=reduction)
  fn = "policy_logps"
  tokens_BxL = _check_window_args(fn, reduction, window, tokens_BxL)
  mask_BxL = _check_mask(fn, "loss_mask", loss_mask_BxL, tokens_BxL.shape)
  if _is_concrete(mask_BxL) and mask_BxL.size:
    span = response_span(np.asarray(mask_BxL))
    if span > window:
      raise PrefjaxError(f"{fn}: window={window} does not cover the scored tokens (a row's response "
                         f"spans {span} positions; use window >= response_span(loss_mask))")
  positions_BxR, targets_pos_BxR, valid_BxR = window_positions(mask_BxL, int(window))
  logits_BxRxV = _logits(apply_fn, params, tokens_BxL, attention_mask_BxL,
                         logits_positions_BxR=positions_BxR)
  scored_BxR = jnp.take_along_axis(mask_BxL, targets_pos_BxR, axis=1) & valid_BxR
  logp_BxR = _window_token_logps(logits_BxRxV, tokens_BxL, targets_pos_BxR)
  sums_B = jnp.sum(jnp.where(scored_BxR, logp_BxR, 0.0), axis=1)
  counts_B = jnp.sum(scored_BxR, axis=1, dtype=jnp.int32)
  return SequenceLogps(REDUCTIONS[reduction](sums_B, counts_B), counts_B)


def segment_sums(values_BxL, loss_mask_BxL, segment_ids_BxL, max_segments):
  """Per-segment sums of masked values (e.g. per-pair log-probs of a packed batch).

  out[b, s] = Σ_t values[b, t] · loss_mask[b, t] · [segment_ids[b, t] = s + 1]. Works on numpy and
  jax arrays (a one-hot contraction; no data-dependent shapes). Also importable as
  `prefjax.lm.data.segment_sums`.

  Args:
    values_BxL: per-token values (`token_logps` layout).
    loss_mask_BxL: 0/1 response-token mask.
    segment_ids_BxL: 1..S per segment, 0 on padding.
    max_segments: S.

  Returns:
    `[B, S]` sums (0 for absent segments; `num_pairs_B` says how many are real).
  """
  onehot_BxLxS = (segment_ids_BxL[:, :, None] == np.arange(1, max_segments + 1)[None, None, :])
  weights_BxL = values_BxL * loss_mask_BxL
  return (weights_BxL[:, :, None] * onehot_BxLxS).sum(axis=1)


def segment_logps(token_logps_BxL, loss_mask_BxL, segment_ids_BxL, max_segments, *,
                  reduction="sum"):
  """Per-segment log-probs of packed rows (several sequences side by side in one row).

  logps_{b,s} = Σ_t m_{b,t} [seg_{b,t} = s + 1] log π(tokens_{b,t} | earlier tokens of its segment)
  ("sum"), divided by the segment's count of scored tokens for "mean"; the sums are `segment_sums`. The
  per-token log-probs must come from a segment-aware forward
  (`Transformer(..., segment_ids_BxT=...)`, or `policy_segment_logps`), and no scored token may follow
  a token of another segment (its prediction would come from that segment's last token): packed
  batches from `prefjax.lm.data.PackedBatchIterator` satisfy this (each segment starts with its
  prompt, loss mask 0).

  Args:
    token_logps_BxL: per-token log-probs (`token_logps` layout).
    loss_mask_BxL: 1 for response tokens to score; column 0 must be 0.
    segment_ids_BxL: int, 1..S for the sequences of a row, 0 on padding (loss mask 0 there).
    max_segments: S, the number of segment slots per row (a Python int).
    reduction: one of `REDUCTIONS` ("sum", "mean").

  Returns:
    `SequenceLogps(logps [B, S], counts [B, S] int32)`; absent segments give 0 and count 0.
  """
  fn = "segment_logps"
  if reduction not in REDUCTIONS:
    raise PrefjaxError(f"{fn}: unknown reduction {reduction!r}; known: {sorted(REDUCTIONS)}")
  if not isinstance(max_segments, (int, np.integer)) or max_segments < 1:
    raise PrefjaxError(f"{fn}: max_segments must be a positive integer, got {max_segments!r}")
  logp_BxL = jnp.asarray(token_logps_BxL)
  logp_BxL = logp_BxL.astype(_float_dtype(logp_BxL))
  if logp_BxL.ndim != 2:
    raise PrefjaxError(f"{fn}: token_logps must be [batch, length], got shape {logp_BxL.shape}")
  seg_BxL = jnp.asarray(segment_ids_BxL)
  if seg_BxL.shape != logp_BxL.shape:
    raise PrefjaxError(f"{fn}: segment_ids shape {seg_BxL.shape} != token_logps shape "
                       f"{logp_BxL.shape}")
  if not jnp.issubdtype(seg_BxL.dtype, jnp.integer):
    raise PrefjaxError(f"{fn}: segment_ids must be integers, got dtype {seg_BxL.dtype}")
  mask_BxL = jnp.asarray(loss_mask_BxL)
  if mask_BxL.shape != logp_BxL.shape:
    raise PrefjaxError(f"{fn}: loss_mask shape {mask_BxL.shape} != token_logps shape "
                       f"{logp_BxL.shape}")
  _check_segment_mask(fn, mask_BxL, seg_BxL, max_segments)
  mask_BxL = mask_BxL.astype(jnp.bool_).at[:, 0].set(False)
  sums_BxS = segment_sums(jnp.where(mask_BxL, logp_BxL, 0.0), mask_BxL.astype(logp_BxL.dtype),
                          seg_BxL, max_segments)
  counts_BxS = segment_sums(mask_BxL.astype(jnp.int32), mask_BxL.astype(jnp.int32), seg_BxL,
                            max_segments).astype(jnp.int32)
  return SequenceLogps(REDUCTIONS[reduction](sums_BxS, counts_BxS), counts_BxS)


def _check_segment_mask(fn, mask_BxL, seg_BxL, max_segments):
  """Concrete masks: 0/1, column 0 unscored, segment ids in range, no scored token after another segment's."""
  if not (_is_concrete(mask_BxL, seg_BxL) and np.size(mask_BxL)):
    return
  m, sg = np.asarray(mask_BxL), np.asarray(seg_BxL)
  if not np.all((m == 0) | (m == 1)):
    raise PrefjaxError(f"{fn}: loss_mask must contain only 0/1 (or booleans)")
  if m[:, 0].any():
    raise PrefjaxError(f"{fn}: loss_mask[:, 0] must be 0: the first token has no prediction")
  if np.any((m != 0) & ((sg < 1) | (sg > max_segments))):
    raise PrefjaxError(f"{fn}: loss_mask selects tokens whose segment id is not in "
                       f"1..max_segments={max_segments}")
  cross = (m[:, 1:] != 0) & (sg[:, 1:] != sg[:, :-1])
  if cross.any():
    b, t = np.argwhere(cross)[0]
    raise PrefjaxError(f"{fn}: loss_mask scores token {t + 1} of row {b}, which follows a token "
                       f"of another segment (each segment must start with an unscored prompt)")


def max_scored(loss_mask_BxL):
  """The largest number of scored tokens in a row (numpy): the smallest `window` of
  `policy_segment_logps(..., window=)` that covers every scored token."""
  m = np.asarray(loss_mask_BxL) != 0
  if m.ndim != 2:
    raise PrefjaxError(f"max_scored: loss_mask must be [batch, length], got shape {m.shape}")
  return int(m[:, 1:].sum(axis=1).max(initial=0))


def scored_positions(loss_mask_BxL, window):
  """Each row's first `window` scored tokens, in order: `(positions_BxR, targets_BxR, valid_BxR)`.

  `targets` are the scored tokens' indices t (t ≥ 1), `positions` = t − 1 the positions whose logits predict
  them, `valid` False on the slots past a row's last scored token (their indices are 0). Unlike
  `window_positions` the R positions need not be contiguous: a packed row's responses are spread along it.
  """
  mask_BxL = jnp.asarray(loss_mask_BxL).astype(jnp.bool_).at[:, 0].set(False)
  length = mask_BxL.shape[1]
  order_BxL = jnp.argsort(~mask_BxL, axis=1, stable=True).astype(jnp.int32)  # scored indices first
  if window > length:
    order_BxL = jnp.pad(order_BxL, ((0, 0), (0, window - length)))  # index 0: never scored
  targets_BxR = order_BxL[:, :window]
  valid_BxR = jnp.take_along_axis(mask_BxL, targets_BxR, axis=1)
  targets_BxR = jnp.where(valid_BxR, targets_BxR, 0)
  return jnp.maximum(targets_BxR - 1, 0), targets_BxR, valid_BxR


def policy_segment_logps(apply_fn, params, tokens_BxL, loss_mask_BxL, segment_ids_BxL,
                         positions_BxL, max_segments, attention_mask_BxL=None, *, reduction="sum",
                         window=None):
  """Per-segment log-probs of a model on packed rows: a segment-aware forward, then `segment_logps`.

  With `window=R` the output head runs only at the R positions per row that predict its scored tokens
  (`scored_positions`; the prompts' positions are skipped, wherever the row's segments put them): the same
  log-probs up to float32 rounding for a fraction R / L of the head's FLOPs. R must be at least every row's
  number of scored tokens (`max_scored`): checked when the mask is concrete; under jit, scored tokens past
  the R-th of a row are not counted, so compute R on the host (as `prefjax.lm.train` does).

  Args:
    apply_fn: `Transformer(config).apply` or any function `(params, tokens_BxL, attention_mask_BxT=,
      positions_BxT=, segment_ids_BxT=) -> logits_BxLxV`.
    params: the model's variables.
    tokens_BxL: packed token ids (`PackedBatchIterator`'s `*_tokens_BxL`).
    loss_mask_BxL: 1 for response tokens (see `segment_logps`).
    segment_ids_BxL: 1..S per sequence of a row, 0 on padding.
    positions_BxL: per-segment positions (restarting at 0 in each segment).
    max_segments: S.
    attention_mask_BxL: optional, 1 for real tokens; default: segment id > 0.
    reduction: "sum" or "mean".
    window: optional static int R ≥ 1 (see above; `apply_fn` must then take `logits_positions_BxR=`).
      Default None: the head at all L positions.

  Returns:
    `SequenceLogps(logps [B, S], counts [B, S] int32)`.
  """
  if attention_mask_BxL is None:
    attention_mask_BxL = jnp.asarray(segment_ids_BxL) > 0
  kw = dict(attention_mask_BxT=attention_mask_BxL, positions_BxT=positions_BxL, segment_ids_BxT=segment_ids_BxL)
  if window is None:
    logits_BxLxV = apply_fn(params, tokens_BxL, **kw)
    logp_BxL = token_logps(logits_BxLxV, tokens_BxL)
    return segment_logps(logp_BxL, loss_mask_BxL, segment_ids_BxL, max_segments,
                         reduction=reduction)
  fn = "policy_segment_logps"
  if not isinstance(max_segments, (int, np.integer)) or max_segments < 1:
    raise PrefjaxError(f"{fn}: max_segments must be a positive integer, got {max_segments!r}")
  tokens_BxL = _check_window_args(fn, reduction, window, tokens_BxL)
  mask_BxL = jnp.asarray(loss_mask_BxL)
  if mask_BxL.shape != tokens_BxL.shape:
    raise PrefjaxError(f"{fn}: loss_mask shape {mask_BxL.shape} != tokens shape {tokens_BxL.shape}")
  seg_BxL = jnp.asarray(segment_ids_BxL)
  if seg_BxL.shape != tokens_BxL.shape or not jnp.issubdtype(seg_BxL.dtype, jnp.integer):
    raise PrefjaxError(f"{fn}: segment_ids must be integers of the tokens' shape {tokens_BxL.shape}, got "
                       f"{seg_BxL.dtype} {seg_BxL.shape}")
  _check_segment_mask(fn, mask_BxL, seg_BxL, max_segments)
  if _is_concrete(mask_BxL) and mask_BxL.size and max_scored(np.asarray(mask_BxL)) > window:
    raise PrefjaxError(f"{fn}: window={window} does not cover the scored tokens (a row scores "
                       f"{max_scored(np.asarray(mask_BxL))}; use window >= max_scored(loss_mask))")
  positions_BxR, targets_BxR, valid_BxR = scored_positions(mask_BxL, int(window))
  logits_BxRxV = apply_fn(params, tokens_BxL, logits_positions_BxR=positions_BxR, **kw)
  logp_BxR = _window_token_logps(logits_BxRxV, tokens_BxL, targets_BxR)
  seg_BxR = jnp.take_along_axis(seg_BxL, targets_BxR, axis=1)
  weight_BxR = valid_BxR.astype(logp_BxR.dtype)
  sums_BxS = segment_sums(jnp.where(valid_BxR, logp_BxR, 0.0), weight_BxR, seg_BxR,
                          max_segments)
  counts_BxS = segment_sums(valid_BxR.astype(jnp.int32), valid_BxR.astype(jnp.int32), seg_BxR,
                            max_segments).astype(jnp.int32)
  return SequenceLogps(REDUCTIONS[reduction](sums_BxS, counts_BxS), counts_BxS)

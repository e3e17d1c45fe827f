"""Tests for prefjax.lm.logprobs against float64 numpy loops (target shift and masks written out)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax.errors import PrefjaxError
from prefjax.lm import logprobs

B, L, V = 3, 9, 11


def _np_log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _np_token_logps(logits, tokens):
  """The shift written as a loop: token t is scored by the logits at t − 1; nothing scores t = 0."""
  out = np.zeros(tokens.shape)
  for b in range(tokens.shape[0]):
    for t in range(1, tokens.shape[1]):
      out[b, t] = _np_log_softmax(np.asarray(logits[b, t - 1], np.float64))[tokens[b, t]]
  return out


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(scale=3.0, size=(B, L, V))
  tokens = rng.integers(0, V, size=(B, L))
  # prompt, response, padding: row 0 left-padded, row 1 right-padded, row 2 a gap inside.
  mask = np.zeros((B, L), np.int32)
  mask[0, 5:] = 1
  mask[1, 3:7] = 1
  mask[2, [2, 3, 6, 8]] = 1
  return logits, tokens, mask


def _np_ld(tok_w, mask_w, tok_l, mask_l, alpha):
  out_w, out_l = np.zeros(tok_w.shape[0]), np.zeros(tok_l.shape[0])
  for b in range(tok_w.shape[0]):
    resp_w = [tok_w[b, t] for t in range(1, tok_w.shape[1]) if mask_w[b, t]]
    resp_l = [tok_l[b, t] for t in range(1, tok_l.shape[1]) if mask_l[b, t]]
    lp = min(len(resp_w), len(resp_l))
    a = alpha[b] if np.ndim(alpha) else alpha
    out_w[b] = sum(resp_w[:lp]) + a * sum(resp_w[lp:])
    out_l[b] = sum(resp_l[:lp]) + a * sum(resp_l[lp:])
  return out_w, out_l


def test_sequence_logps_matches_numpy_loop(x64):
  logits, tokens, mask = _batch()
  per_token = _np_token_logps(logits, tokens)
  np.testing.assert_allclose(logprobs.token_logps(logits, tokens), per_token, rtol=1e-12, atol=1e-12)
  want_sum = (per_token * mask).sum(axis=1)
  want_counts = mask.sum(axis=1)
  got = logprobs.sequence_logps(logits, tokens, mask)
  np.testing.assert_allclose(got.logps, want_sum, rtol=1e-12)
  np.testing.assert_array_equal(got.counts, want_counts)
  mean = logprobs.sequence_logps(logits, tokens, mask.astype(bool), reduction="mean")
  np.testing.assert_allclose(mean.logps, want_sum / want_counts, rtol=1e-12)
  np.testing.assert_array_equal(mean.counts, want_counts)


def test_float32_jit_and_bf16_logits():
  logits, tokens, mask = _batch(1)
  want = (_np_token_logps(logits, tokens) * mask).sum(axis=1)
  got = logprobs.sequence_logps(jnp.asarray(logits, jnp.float32), tokens, mask)
  assert got.logps.dtype == jnp.float32 and got.counts.dtype == jnp.int32
  # float32 log-softmax: ~1e-7 relative per term, summed over ≤ 5 terms of size ~5.
  np.testing.assert_allclose(got.logps, want, rtol=1e-5)
  jitted = jax.jit(logprobs.sequence_logps, static_argnames="reduction")
  np.testing.assert_allclose(jitted(logits.astype(np.float32), tokens, mask).logps, got.logps,
                             rtol=1e-6)
  # bfloat16 logits: the result is float32 and equals the float32 computation on the (exactly
  # upcast) bf16 values; it is not the bf16-rounded version of the float32 answer.
  logits16 = jnp.asarray(logits, jnp.bfloat16)
  got16 = logprobs.sequence_logps(logits16, tokens, mask, reduction="mean")
  assert got16.logps.dtype == jnp.float32
  ref16 = (_np_token_logps(np.asarray(logits16, np.float64), tokens) * mask).sum(1) / mask.sum(1)
  np.testing.assert_allclose(got16.logps, ref16, rtol=1e-5)


def test_gradient_closed_form(x64):
  """d/dlogits[b, t−1, v] of Σ_t m_t log p(y_t) is m_t (1[v = y_t] − softmax(logits[b, t−1])_v)."""
  logits, tokens, mask = _batch(2)
  grad = jax.grad(lambda x: jnp.sum(logprobs.sequence_logps(x, tokens, mask).logps))(logits)
  want = np.zeros_like(logits)
  for b in range(B):
    for t in range(1, L):
      p = np.exp(_np_log_softmax(logits[b, t - 1]))
      want[b, t - 1] = mask[b, t] * (np.eye(V)[tokens[b, t]] - p)
  np.testing.assert_allclose(grad, want, rtol=1e-10, atol=1e-12)


def test_input_errors():
  logits, tokens, mask = _batch()
  with pytest.raises(PrefjaxError, match=r"loss_mask\[:, 0\]"):
    logprobs.sequence_logps(logits, tokens, np.ones((B, L)))
  empty = mask.copy()
  empty[1] = 0
  with pytest.raises(PrefjaxError, match=r"rows \[1\]"):
    logprobs.sequence_logps(logits, tokens, empty)
  with pytest.raises(PrefjaxError, match="0/1"):
    logprobs.sequence_logps(logits, tokens, 0.5 * mask)
  with pytest.raises(PrefjaxError, match="tokens shape"):
    logprobs.sequence_logps(logits, tokens[:, 1:], mask)
  with pytest.raises(PrefjaxError, match="loss_mask shape"):
    logprobs.sequence_logps(logits, tokens, mask[:, 1:])
  with pytest.raises(PrefjaxError, match="token ids"):
    logprobs.sequence_logps(logits, tokens + V, mask)
  with pytest.raises(PrefjaxError, match="unknown reduction"):
    logprobs.sequence_logps(logits, tokens, mask, reduction="max")
  with pytest.raises(PrefjaxError, match=r"\[batch, length, vocab\]"):
    logprobs.sequence_logps(logits[0], tokens, mask)


def test_traced_masks_skip_value_checks_but_keep_counts_consistent():
  logits, tokens, mask = _batch()
  ones = np.ones((B, L), np.int32)  # column 0 set: rejected eagerly, dropped under jit
  got = jax.jit(logprobs.sequence_logps)(logits.astype(np.float32), tokens, ones)
  np.testing.assert_array_equal(got.counts, np.full(B, L - 1))
  np.testing.assert_allclose(got.logps, _np_token_logps(logits, tokens).sum(1), rtol=1e-5)


def test_ld_logps_alpha_one_is_plain_sum_and_matches_loop(x64):
  rng = np.random.default_rng(3)
  lw, ll = 9, 7  # chosen and rejected sequences padded to different lengths
  tok_w, tok_l = -rng.exponential(size=(B, lw)), -rng.exponential(size=(B, ll))
  mask_w = np.zeros((B, lw), np.int32)
  mask_l = np.zeros((B, ll), np.int32)
  mask_w[0, 2:8] = 1  # 6 tokens vs 3: chosen longer
  mask_l[0, 4:7] = 1
  mask_w[1, 3:5] = 1  # 2 tokens vs 5: rejected longer
  mask_l[1, 1:6] = 1
  mask_w[2, [1, 3, 4, 8]] = 1  # equal lengths (4), non-contiguous masks
  mask_l[2, [2, 3, 5, 6]] = 1

  plain_w, plain_l = (tok_w * mask_w).sum(1), (tok_l * mask_l).sum(1)
  got_w, got_l = logprobs.ld_logps(tok_w, mask_w, tok_l, mask_l, alpha=1.0)
  np.testing.assert_allclose(got_w, plain_w, rtol=1e-12)
  np.testing.assert_allclose(got_l, plain_l, rtol=1e-12)

  for alpha in (0.3, np.array([0.0, 0.5, 0.9])):
    got_w, got_l = logprobs.ld_logps(tok_w, mask_w, tok_l, mask_l, alpha=alpha)
    want_w, want_l = _np_ld(tok_w, mask_w, tok_l, mask_l, alpha)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-12)
    np.testing.assert_allclose(got_l, want_l, rtol=1e-12)
    # The shorter response of each pair is untouched; the longer one is down-weighted.
    np.testing.assert_allclose(got_l[0], plain_l[0], rtol=1e-12)
    np.testing.assert_allclose(got_w[1], plain_w[1], rtol=1e-12)
    np.testing.assert_allclose([got_w[2], got_l[2]], [plain_w[2], plain_l[2]], rtol=1e-12)

  # alpha = 0: only the first min(l_w, l_l) response tokens count.
  got_w, _ = logprobs.ld_logps(tok_w, mask_w, tok_l, mask_l, alpha=0.0)
  np.testing.assert_allclose(got_w[0], tok_w[0, 2:5].sum(), rtol=1e-12)

  with pytest.raises(PrefjaxError, match="alpha"):
    logprobs.ld_logps(tok_w, mask_w, tok_l, mask_l, alpha=1.5)
  with pytest.raises(PrefjaxError, match="batch sizes"):
    logprobs.ld_logps(tok_w, mask_w, tok_l[:2], mask_l[:2], alpha=0.5)


def test_ld_logps_under_jit_matches_eager():
  logits, tokens, mask = _batch(4)
  tok = logprobs.token_logps(logits.astype(np.float32), tokens)
  mask_l = np.roll(mask, 1, axis=0)
  f = jax.jit(lambda a: logprobs.ld_logps(tok, mask, tok[::-1], mask_l, alpha=a))
  eager = logprobs.ld_logps(tok, mask, tok[::-1], mask_l, alpha=0.25)
  for x, y in zip(f(0.25), eager):
    np.testing.assert_allclose(x, y, rtol=1e-6)


def _bigram_apply(params, tokens_BxL, attention_mask_BxT=None):
  """A bigram 'model': logits at t are a table row of token t (what predicts token t + 1)."""
  del attention_mask_BxT
  return params["table_VxV"][tokens_BxL]


def test_policy_logps_with_a_bigram_model(x64):
  rng = np.random.default_rng(5)
  table = rng.normal(size=(V, V))
  _, tokens, mask = _batch(5)
  attention = np.ones((B, L), np.int32)
  attention[0, :2] = 0  # left padding inside the prompt
  # Oracle: log p(y_t | y_{t−1}) = log_softmax(table[y_{t−1}])[y_t], summed over the response.
  want = np.array([sum(_np_log_softmax(table[tokens[b, t - 1]])[tokens[b, t]]
                       for t in range(1, L) if mask[b, t]) for b in range(B)])
  params = {"table_VxV": jnp.asarray(table)}
  got = logprobs.policy_logps(_bigram_apply, params, tokens, mask, attention)
  np.testing.assert_allclose(got.logps, want, rtol=1e-12)
  np.testing.assert_array_equal(got.counts, mask.sum(1))
  got_mean = logprobs.policy_logps(_bigram_apply, params, tokens, mask, reduction="mean")
  np.testing.assert_allclose(got_mean.logps, want / mask.sum(1), rtol=1e-12)
  per_token = logprobs.policy_token_logps(_bigram_apply, params, tokens, attention)
  np.testing.assert_allclose((np.asarray(per_token) * mask).sum(1), want, rtol=1e-12)

  seen = {}

  def spy(p, t, attention_mask_BxT=None):
    seen["mask"] = attention_mask_BxT
    return _bigram_apply(p, t)

  logprobs.policy_logps(spy, params, tokens, mask, attention)
  np.testing.assert_array_equal(seen["mask"], attention)
  bad = attention.copy()
  bad[1, 5] = 0  # a response token marked as padding
  with pytest.raises(PrefjaxError, match="padding"):
    logprobs.policy_logps(_bigram_apply, params, tokens, mask, bad)

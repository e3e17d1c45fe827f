"""Tests for prefjax.lm.sampling: sampling laws (chi-square), mixture, cache == no cache, EOS, filters.

Every law is checked against an independent float64 numpy recomputation from full (uncached) forward
passes of the model on the generated sequences. Statistical tests use fixed seeds and a chi-square test
at significance level CHI2_LEVEL (cells with expected count < 5 pooled), so they are deterministic.
Few distinct programs are compiled (one tiny model, shared batch shapes) to keep the file fast.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from prefjax.errors import PrefjaxError
from prefjax.lm import logprobs
from prefjax.lm import model as lm
from prefjax.lm import sampling

import float32_noise

V, D, LAYERS, HEADS, FF, MAX_LEN = 8, 16, 2, 2, 32, 16
# A large init so next-token distributions are far from uniform (the tests are then sensitive to the law).
INIT_STD = 0.5
CHI2_LEVEL = 1e-3  # significance level of every chi-square goodness-of-fit test

CFG = lm.TransformerConfig(vocab_size=V, d_model=D, num_layers=LAYERS, num_heads=HEADS, d_ff=FF,
                           max_len=MAX_LEN, init_std=INIT_STD)
MODEL = lm.Transformer(CFG)
EOS = 7
# The configuration shared by the cache, EOS, filter, logprobs, jit and iterate tests (one program):
# every step of the law is active (EOS suppression, temperature, top-k, top-p).
SHARED_CFG = sampling.SamplingConfig(max_new_tokens=6, eos_id=EOS, pad_id=0, min_new_tokens=2,
                                     temperature=1.3, top_k=5, top_p=0.9)
_generate_jit = jax.jit(sampling.generate, static_argnums=(0, 5))
_forward = jax.jit(lambda p, t, m: MODEL.apply(p, t, attention_mask_BxT=m))
_policy_logps = jax.jit(functools.partial(logprobs.policy_logps, MODEL.apply))


def _random_params(seed):
  """Parameters with the model's tree, filled from numpy (no jax.random compile per shape)."""
  shapes = nn.unbox(jax.eval_shape(functools.partial(lm.init_params, CFG), jax.random.key(0)))
  rng = np.random.default_rng(seed)

  def fill(path, s):
    noise = rng.normal(size=s.shape)
    if path[-1].key == "scale":
      return jnp.asarray(1.0 + 0.1 * noise, s.dtype)
    return jnp.asarray(INIT_STD * noise, s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


PARAMS = _random_params(0)
REF_PARAMS = _random_params(1)


def _prompts(batch, seed=0, p=5):
  """Left-padded prompts of lengths 1..p (row i has length 1 + i % p)."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, V, size=(batch, p)).astype(np.int32)
  lengths = 1 + np.arange(batch) % p
  mask = (np.arange(p)[None, :] >= p - lengths[:, None]).astype(np.int32)
  return jnp.asarray(tokens * mask), jnp.asarray(mask)


def _log_softmax_of_forward(params, tokens, mask):
  logits = np.asarray(_forward(params, tokens, mask), np.float64)
  return logits - _logsumexp(logits)


def _full_logps(params, prompt, pmask, gen):
  """float64 log-softmax of the full forward's logits predicting each generated token: [B, T, V], and the
  float32 rounding scale of those log-probs (`float32_noise.noise_scale` of the forward)."""
  seq = sampling.sequences(prompt, pmask, gen)
  p, t = prompt.shape[1], gen.tokens_BxT.shape[1]
  fn = lambda q: _log_softmax_of_forward(q, seq["tokens_BxL"], seq["attention_mask_BxL"])[:, p - 1:p + t - 1]
  return fn(params), float32_noise.noise_scale(fn, params)


def _logsumexp(x):
  m = np.max(x, axis=-1, keepdims=True)
  m = np.where(np.isfinite(m), m, 0.0)
  with np.errstate(divide="ignore"):
    return m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))


def _pick(x_BxTxV, tokens_BxT):
  return np.take_along_axis(x_BxTxV, np.asarray(tokens_BxT)[:, :, None], axis=-1)[:, :, 0]


def _chi2_pvalue(counts, probs):
  """Chi-square goodness-of-fit p-value; cells with expected count < 5 are pooled into one."""
  counts = np.asarray(counts, np.float64).ravel()
  expected = np.asarray(probs, np.float64).ravel() * counts.sum()
  small = expected < 5
  if small.any():
    counts = np.append(counts[~small], counts[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
  assert len(expected) >= 3, "too few cells for a meaningful test"
  stat = np.sum((counts - expected) ** 2 / expected)
  return stats.chi2.sf(stat, df=len(expected) - 1)


def _close(actual, expected, noise):
  """The sampler's float32 log-probs equal the full forward's up to its rounding scale `noise`. A law's
  log-probs (renormalised over the kept tokens) move by at most twice the error of the log-probs they are
  renormalised from; callers pass that bound."""
  float32_noise.assert_close(actual, expected, noise)


@functools.lru_cache(maxsize=None)
def _shared_run():
  """One jitted (traced key) generation shared by several tests: left-padded prompts of lengths 1..5."""
  prompt, pmask = _prompts(256, seed=3)
  gen = _generate_jit(CFG, PARAMS, prompt, pmask, jax.random.key(11), SHARED_CFG)
  return prompt, pmask, gen


def test_temperature_one_frequencies_match_softmax():
  """First token ~ softmax; (first, second) ~ softmax · softmax(·|first): chi-square, two prompts."""
  n = 4096
  cfg = sampling.SamplingConfig(max_new_tokens=2)
  base, base_mask = _prompts(2, seed=1, p=4)  # a length-1 and a length-2 (left-padded) prompt
  prompt = jnp.repeat(base, n // 2, axis=0)
  pmask = jnp.repeat(base_mask, n // 2, axis=0)
  gen = sampling.generate(CFG, PARAMS, prompt, pmask, jax.random.key(0), cfg)
  tokens = np.asarray(gen.tokens_BxT)
  assert np.all(np.asarray(gen.mask_BxT) == 1)
  # Exact laws from full forwards: p(v1) at the prompt's end, p(v2 | v1) after appending each v1.
  ext = jnp.concatenate([jnp.repeat(base, V, axis=0), jnp.tile(jnp.arange(V), 2)[:, None]], axis=1)
  ext_mask = jnp.concatenate([jnp.repeat(base_mask, V, axis=0), jnp.ones((2 * V, 1), jnp.int32)], 1)
  logp = _log_softmax_of_forward(PARAMS, ext, ext_mask)
  noise = float32_noise.noise_scale(_log_softmax_of_forward, PARAMS, ext, ext_mask)
  for i in range(2):
    rows = slice(i * n // 2, (i + 1) * n // 2)
    p1 = np.exp(logp[i * V, -2])  # the prediction after the prompt (same for every appended v1)
    p2 = np.exp(logp[i * V:(i + 1) * V, -1])  # [v1, v2]
    assert np.max(p1) < 0.9, "degenerate test model"
    first = np.bincount(tokens[rows, 0], minlength=V)
    assert _chi2_pvalue(first, p1) > CHI2_LEVEL
    joint = np.zeros((V, V))
    np.add.at(joint, (tokens[rows, 0], tokens[rows, 1]), 1)
    assert _chi2_pvalue(joint, p1[:, None] * p2) > CHI2_LEVEL
    # Power: the second token's marginal differs from p1, and the test rejects p1 for it.
    assert np.abs(p1 @ p2 - p1).sum() > 0.1
    assert _chi2_pvalue(joint.sum(0), p1) < CHI2_LEVEL
  # The returned log-probs are those of the sampled tokens under the law (= softmax at temperature 1).
  row = np.repeat(np.arange(2) * V, n // 2)
  want = np.stack([logp[row, -2][np.arange(n), tokens[:, 0]],
                   logp[row + tokens[:, 0], -1][np.arange(n), tokens[:, 1]]], axis=1)
  _close(gen.logps_BxT, want, noise)
  _close(gen.policy_logps_BxT, want, noise)


def test_mixture_law_equals_normalised_geometric_mixture():
  """logps == log-softmax((1−α) log π + α log π_ref) from full forwards; first-token chi-square."""
  n, alpha = 2048, 0.4
  cfg = sampling.SamplingConfig(max_new_tokens=3)
  base, base_mask = _prompts(2, seed=2, p=4)
  prompt, pmask = jnp.repeat(base, n // 2, axis=0), jnp.repeat(base_mask, n // 2, axis=0)
  # Jitted: the key, the reference's parameters and α are traced.
  gen = _generate_jit(CFG, PARAMS, prompt, pmask, jax.random.key(1), cfg, ref_params=REF_PARAMS,
                      mixture_weight=alpha)
  logp, noise = _full_logps(PARAMS, prompt, pmask, gen)
  ref_logp, ref_noise = _full_logps(REF_PARAMS, prompt, pmask, gen)
  mix = (1 - alpha) * logp + alpha * ref_logp
  mix = mix - _logsumexp(mix)
  _close(gen.logps_BxT, _pick(mix, gen.tokens_BxT), 2 * max(noise, ref_noise))
  _close(gen.policy_logps_BxT, _pick(logp, gen.tokens_BxT), noise)
  _close(gen.ref_logps_BxT, _pick(ref_logp, gen.tokens_BxT), ref_noise)
  tokens = np.asarray(gen.tokens_BxT)
  for i in range(2):
    rows = slice(i * n // 2, (i + 1) * n // 2)
    p_mix = np.exp(mix[i * n // 2, 0])
    assert _chi2_pvalue(np.bincount(tokens[rows, 0], minlength=V), p_mix) > CHI2_LEVEL
    # Sensitivity: the mixture differs from both models, and the samples reject the policy's law.
    assert _chi2_pvalue(np.bincount(tokens[rows, 0], minlength=V), np.exp(logp[i * n // 2, 0])) < (
        CHI2_LEVEL)


def test_cache_equals_no_cache_with_left_padding():
  """Same key ⇒ identical tokens and float-equal log-probs, cached (jitted, traced key) or not."""
  prompt, pmask, gen = _shared_run()
  ref = sampling.generate_uncached(CFG, PARAMS, prompt, pmask, jax.random.key(11), SHARED_CFG)
  assert len(set(np.asarray(pmask).sum(1).tolist())) == 5
  np.testing.assert_array_equal(gen.tokens_BxT, ref.tokens_BxT)
  np.testing.assert_array_equal(gen.mask_BxT, ref.mask_BxT)
  np.testing.assert_array_equal(gen.lengths_B, ref.lengths_B)
  _, noise = _full_logps(PARAMS, prompt, pmask, gen)
  _close(gen.logps_BxT, np.asarray(ref.logps_BxT, np.float64), 2 * noise)
  _close(gen.policy_logps_BxT, np.asarray(ref.policy_logps_BxT, np.float64), noise)
  assert gen.ref_logps_BxT is None and ref.ref_logps_BxT is None


def test_eos_handling_and_policy_logps_contract():
  """EOS: pad and mask 0 afterwards, never before min_new_tokens; policy_logps == one full forward."""
  prompt, pmask, gen = _shared_run()
  tokens, mask = np.asarray(gen.tokens_BxT), np.asarray(gen.mask_BxT)
  t = tokens.shape[1]
  is_eos = (tokens == EOS) & (mask == 1)
  assert is_eos.any(axis=1).sum() >= 10, "too few rows end with EOS for a meaningful test"
  assert (~is_eos.any(axis=1)).sum() >= 10, "too few rows run to max_new_tokens"
  assert not is_eos[:, :SHARED_CFG.min_new_tokens].any()
  for b in range(tokens.shape[0]):
    hits = np.flatnonzero(is_eos[b])
    length = hits[0] + 1 if hits.size else t
    np.testing.assert_array_equal(mask[b], (np.arange(t) < length).astype(np.int32))
    np.testing.assert_array_equal(tokens[b, length:], SHARED_CFG.pad_id)
    assert gen.lengths_B[b] == length
  for x in (gen.logps_BxT, gen.policy_logps_BxT):
    assert np.all(np.asarray(x)[mask == 0] == 0)
  # The law's log-prob is 0 where the nucleus keeps a single token; the plain softmax's never is.
  assert np.all(np.asarray(gen.logps_BxT)[mask == 1] <= 0)
  assert np.all(np.asarray(gen.policy_logps_BxT)[mask == 1] < 0)
  # "No second forward pass": policy_logps on sequences(...) == the sum of the returned log-probs.
  logp, noise = _full_logps(PARAMS, prompt, pmask, gen)
  real = mask == 1
  _close(np.asarray(gen.policy_logps_BxT)[real], _pick(logp, tokens)[real], noise)
  seq = sampling.sequences(prompt, pmask, gen)
  got = _policy_logps(PARAMS, seq["tokens_BxL"], seq["loss_mask_BxL"], seq["attention_mask_BxL"])
  np.testing.assert_array_equal(got.counts, gen.lengths_B)
  _close(got.logps, np.asarray(gen.policy_logps_BxT, np.float64).sum(1), noise * t)  # a sum of t of them


def test_sampling_law_with_eos_temperature_top_k_top_p():
  """Samples stay in the top k and the nucleus, EOS is never drawn before min_new_tokens, and
  logps == the law (temperature, EOS suppression, top-k, top-p, renormalised) recomputed in float64."""
  prompt, pmask, gen = _shared_run()
  k, p, tau = SHARED_CFG.top_k, SHARED_CFG.top_p, SHARED_CFG.temperature
  logp, noise = _full_logps(PARAMS, prompt, pmask, gen)
  x = logp / tau
  x[:, :SHARED_CFG.min_new_tokens, EOS] = -np.inf
  order = np.argsort(-x, axis=-1, kind="stable")
  xs = np.take_along_axis(x, order, axis=-1)
  in_top_k = np.arange(V) < k
  top = np.where(in_top_k, xs, -np.inf)
  probs = np.exp(top - _logsumexp(top))
  before = np.cumsum(probs, axis=-1) - probs
  keep_sorted = in_top_k & (before < p)
  # Positions whose k-th/(k+1)-th gap or nucleus boundary lies within float32 rounding are not
  # decided by the maths.
  ambiguous = np.any(in_top_k & (np.abs(before - p) < 1e-4), axis=-1) | (
      xs[..., k - 1] - xs[..., k] < 1e-4)
  mask = np.asarray(gen.mask_BxT) == 1
  decided = mask & ~ambiguous
  assert decided.sum() >= 0.98 * mask.sum()
  keep = np.zeros_like(keep_sorted)
  np.put_along_axis(keep, order, keep_sorted, axis=-1)
  tokens = np.asarray(gen.tokens_BxT)
  assert np.all(_pick(keep, tokens)[decided])
  rank = np.argsort(order, axis=-1)  # rank of each token in the stable descending order
  assert np.all(_pick(rank, tokens)[decided] < k)
  n_kept = keep_sorted.sum(-1)[mask]
  assert n_kept.min() < k and n_kept.max() == k  # the nucleus bites at some positions, not all
  law = np.where(keep, x, -np.inf)
  law = law - _logsumexp(law)
  _close(np.asarray(gen.logps_BxT)[decided], _pick(law, tokens)[decided], 2 * noise / tau)


def test_filter_ties_are_deterministic():
  """Ties: top-k keeps exactly k (lower ids first); the nucleus is the smallest prefix with mass ≥ p."""
  cfgs = [sampling.SamplingConfig(max_new_tokens=1, top_k=2),
          sampling.SamplingConfig(max_new_tokens=1, top_p=0.6),
          # top-k renormalises before the nucleus: row 1 keeps (0.4, 0.4, 0.1) / 0.9, whose top two
          # already hold 0.89 ≥ 0.85 (without renormalising the third token would be kept).
          sampling.SamplingConfig(max_new_tokens=1, top_k=3, top_p=0.85)]
  logits = jnp.log(jnp.asarray([[0.25, 0.25, 0.25, 0.25], [0.1, 0.4, 0.1, 0.4]], jnp.float32))
  got = jax.jit(lambda x: [sampling.law_logits(c, x) for c in cfgs])(logits)
  want = [[[1, 1, 0, 0], [0, 1, 0, 1]], [[1, 1, 1, 0], [0, 1, 0, 1]], [[1, 1, 1, 0], [0, 1, 0, 1]]]
  for g, w in zip(got, want):
    np.testing.assert_array_equal(np.isfinite(g), w)
    kept = np.asarray(w, bool)
    # Kept entries are the log-probs, unnormalised by the filter (logits here are normalised already).
    np.testing.assert_allclose(np.asarray(g)[kept], np.asarray(logits)[kept], rtol=0, atol=1e-6)


def test_greedy_is_argmax():
  cfg = sampling.SamplingConfig(max_new_tokens=4, greedy=True, eos_id=EOS, min_new_tokens=2)
  prompt, pmask = _prompts(16, seed=5)
  gen = sampling.generate(CFG, PARAMS, prompt, pmask, jax.random.key(3), cfg)
  logp, _ = _full_logps(PARAMS, prompt, pmask, gen)
  logp[:, :2, EOS] = -np.inf
  mask = np.asarray(gen.mask_BxT) == 1
  tokens = np.asarray(gen.tokens_BxT)
  sorted_logp = np.sort(logp, axis=-1)
  clear = (sorted_logp[..., -1] - sorted_logp[..., -2]) > 1e-4  # argmax not decided by rounding
  np.testing.assert_array_equal(tokens[mask & clear], np.argmax(logp, -1)[mask & clear])
  assert (mask & clear).sum() >= 0.9 * mask.sum()
  np.testing.assert_array_equal(gen.logps_BxT, 0.0)
  # The key does not matter.
  again = sampling.generate(CFG, PARAMS, prompt, pmask, jax.random.key(4), cfg)
  np.testing.assert_array_equal(again.tokens_BxT, gen.tokens_BxT)


def test_generate_from_iterates():
  """One-hot weights == generate with that iterate; mixed weights: rows from the chosen iterate."""
  prompt, pmask, _ = _shared_run()
  key = jax.random.key(11)
  stack = jax.tree.map(lambda *x: jnp.stack(x), REF_PARAMS, PARAMS)
  _, gen_key = jax.random.split(key)  # the documented key use: choice key, then generation key
  want = [_generate_jit(CFG, prm, prompt, pmask, gen_key, SHARED_CFG) for prm in (REF_PARAMS, PARAMS)]
  got, index = sampling.generate_from_iterates(CFG, stack, jnp.asarray([0.0, 1.0]), prompt, pmask,
                                               key, SHARED_CFG)
  np.testing.assert_array_equal(index, 1)
  # Tokens are identical; log-probs agree to float tolerance (vmap over iterates reorders float ops).
  for name in ("tokens_BxT", "mask_BxT", "lengths_B"):
    np.testing.assert_array_equal(getattr(got, name), getattr(want[1], name))
  _, noise = _full_logps(PARAMS, prompt, pmask, want[1])
  for name, bound in (("logps_BxT", 2 * noise), ("policy_logps_BxT", noise)):
    _close(getattr(got, name), np.asarray(getattr(want[1], name), np.float64), bound)
  assert got.ref_logps_BxT is None
  got, index = sampling.generate_from_iterates(CFG, stack, jnp.asarray([3.0, 1.0]), prompt, pmask,
                                               jax.random.key(12), SHARED_CFG)
  index = np.asarray(index)
  _, gen_key = jax.random.split(jax.random.key(12))
  want = [_generate_jit(CFG, prm, prompt, pmask, gen_key, SHARED_CFG) for prm in (REF_PARAMS, PARAMS)]
  for h in range(2):
    rows = index == h
    np.testing.assert_array_equal(np.asarray(got.tokens_BxT)[rows], np.asarray(want[h].tokens_BxT)[rows])
    _, noise = _full_logps((REF_PARAMS, PARAMS)[h], prompt, pmask, want[h])
    _close(np.asarray(got.logps_BxT)[rows], np.asarray(want[h].logps_BxT, np.float64)[rows], 2 * noise)
  n = len(index)
  assert abs(np.mean(index == 0) - 0.75) < 5 * np.sqrt(0.75 * 0.25 / n)


def test_jit_with_traced_key():
  """jit(generate) with a traced key (the shared run; == uncached above): another key, other samples."""
  prompt, pmask, gen = _shared_run()  # jitted with a traced key; == uncached (see above)
  assert isinstance(gen.tokens_BxT, jax.Array)
  other = _generate_jit(CFG, PARAMS, prompt, pmask, jax.random.key(12), SHARED_CFG)
  assert np.any(np.asarray(other.tokens_BxT) != np.asarray(gen.tokens_BxT))


def test_bad_config_values():
  for field, kw in [("max_new_tokens", dict(max_new_tokens=0)),
                    ("max_new_tokens", dict(max_new_tokens=-2)),
                    ("temperature", dict(max_new_tokens=2, temperature=0.0)),
                    ("temperature", dict(max_new_tokens=2, temperature=float("nan"))),
                    ("top_p", dict(max_new_tokens=2, top_p=0.0)),
                    ("top_p", dict(max_new_tokens=2, top_p=1.5)),
                    ("top_k", dict(max_new_tokens=2, top_k=-1)),
                    ("min_new_tokens", dict(max_new_tokens=2, min_new_tokens=3)),
                    ("eos_id", dict(max_new_tokens=2, eos_id=-1))]:
    with pytest.raises(PrefjaxError, match=field):
      sampling.SamplingConfig(**kw)
  prompt, pmask = _prompts(2)
  key = jax.random.key(0)
  cases = [
      ("eos_id", dict(cfg=sampling.SamplingConfig(max_new_tokens=2, eos_id=V))),
      ("pad_id", dict(cfg=sampling.SamplingConfig(max_new_tokens=2, pad_id=V))),
      ("top_k", dict(cfg=sampling.SamplingConfig(max_new_tokens=2, top_k=V + 1))),
      ("max_len", dict(cfg=sampling.SamplingConfig(max_new_tokens=MAX_LEN))),
      ("prompt_mask shape", dict(prompt_mask_BxP=pmask[:, 1:])),
      ("prompt_tokens must be", dict(prompt_tokens_BxP=prompt[0], prompt_mask_BxP=pmask[0])),
      ("prompt_tokens must be in", dict(prompt_tokens_BxP=prompt + V)),
      ("empty prompts", dict(prompt_mask_BxP=pmask.at[1].set(0))),
      ("mixture_weight", dict(ref_params=REF_PARAMS, mixture_weight=1.5)),
      ("ref_params", dict(mixture_weight=0.5)),
  ]
  for match, kw in cases:
    args = dict(prompt_tokens_BxP=prompt, prompt_mask_BxP=pmask, key=key,
                cfg=sampling.SamplingConfig(max_new_tokens=2))
    args.update(kw)
    with pytest.raises(PrefjaxError, match=match):
      sampling.generate(CFG, PARAMS, **args)
  stack = jax.tree.map(lambda *x: jnp.stack(x), PARAMS, REF_PARAMS)
  cfg = sampling.SamplingConfig(max_new_tokens=2)
  with pytest.raises(PrefjaxError, match="weights_H"):
    sampling.generate_from_iterates(CFG, stack, jnp.ones(3), prompt, pmask, key, cfg)
  with pytest.raises(PrefjaxError, match="weights_H"):
    sampling.generate_from_iterates(CFG, stack, jnp.asarray([-1.0, 2.0]), prompt, pmask, key, cfg)
  empty = sampling.Generation(jnp.zeros((2, 2), jnp.int32), jnp.asarray([[1, 0], [0, 0]]),
                              jnp.asarray([1, 0]), jnp.zeros((2, 2)), jnp.zeros((2, 2)), None)
  with pytest.raises(PrefjaxError, match=r"zero-length generations in rows \[1\]"):
    sampling.sequences(prompt, pmask, empty)

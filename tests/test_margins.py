"""Tests for prefjax.objectives.margins (MMPO, β-DPO, γ-PO) against independent answers.

Oracles: MMPO's optimum margin γm/β found by a scalar minimiser on a numpy float64 loss; β-DPO against a
numpy re-implementation of the official rule (junkangwu/beta-DPO `trainers.py`: EMA statistics, Gaussian
filter, batch β), with the sampler checked against numpy's sequential sampling without replacement
(within 5 standard errors); γ-PO against the official mirror-descent loop re-implemented in numpy and
against the optimality condition of its convex inner problem.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from prefjax.errors import PrefjaxError
from prefjax.objectives import margins
from prefjax.objectives import pairwise

BETA = 0.5


def np_softplus(z):
  return np.logaddexp(0.0, z)


def _pairs(rng, b):
  return [rng.normal(size=b) - 1.0 for _ in range(4)]


def test_mmpo_matches_numpy_and_its_optimum_is_gamma_m_over_beta(x64):
  rng = np.random.default_rng(0)
  pw, pl, rw, rl = _pairs(rng, 6)
  m = rng.normal(size=6) * 2
  gamma = 1.3
  got = margins.mmpo_loss(pw, pl, rw, rl, m, beta=BETA, gamma=gamma)
  h = (pw - rw) - (pl - rl)
  p = 1 / (1 + np.exp(-gamma * m))
  np.testing.assert_allclose(got, p * np_softplus(-BETA * h) + (1 - p) * np_softplus(BETA * h), rtol=1e-12)
  for mi in m:
    pi = 1 / (1 + np.exp(-gamma * mi))
    best = minimize_scalar(lambda x: pi * np_softplus(-BETA * x) + (1 - pi) * np_softplus(BETA * x),
                           bracket=(-5.0, 5.0), tol=1e-12).x
    want = float(margins.mmpo_optimal_margin(mi, beta=BETA, gamma=gamma))
    assert abs(best - gamma * mi / BETA) < 1e-5 and want == pytest.approx(gamma * mi / BETA, rel=1e-15)
  # The library's gradient in the margin vanishes at h* = γm/β.
  hstar = np.asarray(margins.mmpo_optimal_margin(m, beta=BETA, gamma=gamma))
  grad = jax.grad(lambda x: margins.mmpo_loss(x, np.zeros(6), np.zeros(6), np.zeros(6), m, beta=BETA,
                                              gamma=gamma).sum())(jnp.asarray(hstar))
  np.testing.assert_allclose(grad, 0.0, atol=1e-12)
  # γ → ∞ with m > 0 is DPO.
  got = margins.mmpo_loss(pw, pl, rw, rl, np.ones(6), beta=BETA, gamma=1e3)
  np.testing.assert_allclose(got, pairwise.pairwise_loss("sigmoid", pw, pl, rw, rl, beta=BETA), rtol=1e-12)


def np_beta_dpo_step(h, state, beta, a, keep_mask, momentum=0.9):
  """The official rule, given which examples the multinomial kept (numpy float64)."""
  mean = momentum * state[0] + (1 - momentum) * h.mean()
  std = momentum * state[1] + (1 - momentum) * h.std(ddof=1)  # torch's std() is unbiased
  kept = keep_mask > 0
  beta_used = max(beta * (1 + a * (h[kept].mean() - mean)), 1e-3)
  losses = np_softplus(-beta_used * h)
  return (losses * keep_mask).sum() / max(keep_mask.sum(), 1), beta_used, (mean, std)


def test_beta_dpo_matches_official_rule_without_filtering(x64):
  rng = np.random.default_rng(1)
  state = margins.beta_dpo_init(jnp.float64)
  np_state = (0.0, 0.0)
  key = jax.random.key(0)
  for step in range(3):
    pw, pl, rw, rl = _pairs(rng, 8)
    out = margins.beta_dpo_loss(pw, pl, rw, rl, state, jax.random.fold_in(key, step), beta=BETA, alpha=0.6,
                                filter_fraction=0.0)
    h = (pw - rw) - (pl - rl)
    want_loss, want_beta, np_state = np_beta_dpo_step(h, np_state, BETA, 0.6, np.ones(8))
    np.testing.assert_allclose(out.losses.mean(), want_loss, rtol=1e-12)
    np.testing.assert_allclose(out.beta_used, want_beta, rtol=1e-12)
    np.testing.assert_allclose(out.state, np_state, rtol=1e-12)
    state = out.state


def test_beta_dpo_filter_rule_and_sampler(x64):
  rng = np.random.default_rng(2)
  pw, pl, rw, rl = _pairs(rng, 6)
  h = (pw - rw) - (pl - rl)
  state = margins.BetaDPOState(jnp.asarray(0.1), jnp.asarray(0.8))
  out = margins.beta_dpo_loss(pw, pl, rw, rl, state, jax.random.key(3), beta=BETA, alpha=0.6,
                              filter_fraction=0.4)
  mask = np.asarray(out.mask)
  assert mask.sum() == int(6 * 0.6)
  want_loss, want_beta, want_state = np_beta_dpo_step(h, (0.1, 0.8), BETA, 0.6, mask)
  np.testing.assert_allclose(out.losses.mean(), want_loss, rtol=1e-12)
  np.testing.assert_allclose(out.beta_used, want_beta, rtol=1e-12)
  np.testing.assert_allclose(out.state, want_state, rtol=1e-12)
  # The β gradient is stopped: d loss / d h = −β_used σ(−β_used h) (masked, rescaled).
  grad = jax.grad(lambda x: margins.beta_dpo_loss(x, pl, rw, rl, state, jax.random.key(3), beta=BETA,
                                                  alpha=0.6, filter_fraction=0.4).losses.mean())(pw)
  want = -want_beta / (1 + np.exp(want_beta * h)) * mask / mask.sum()
  np.testing.assert_allclose(grad, want, rtol=1e-10)

  # Sampler: n draws without replacement ∝ w = exp(−½((h − M)/S)²), M, S the updated statistics.
  mean, std = want_state
  w = np.exp(-0.5 * ((h - mean) / std) ** 2)
  draws = 4000
  keys = jax.random.split(jax.random.key(4), draws)
  sample = jax.jit(jax.vmap(lambda k: margins.beta_dpo_loss(
      pw, pl, rw, rl, state, k, beta=BETA, alpha=0.6, filter_fraction=0.4).mask))
  freq = np.asarray(sample(keys)).mean(0)
  np_rng = np.random.default_rng(5)
  np_freq = np.zeros(6)
  for _ in range(draws):  # sequential sampling without replacement, as torch.multinomial
    np_freq[np_rng.choice(6, size=3, replace=False, p=w / w.sum())] += 1.0 / draws
  se = np.sqrt(np.maximum(np_freq * (1 - np_freq), 1e-4) * 2 / draws)
  assert np.all(np.abs(freq - np_freq) <= 5 * se), (freq, np_freq)


def np_gamma_po(g, gamma0, tau, steps=20, eps=1e-10):
  """The official `get_gamma_dq` loop (sunjie279/gammaPO), in numpy float64."""
  n = len(g)
  lr = min(0.5 / tau, 1.0)
  p = np.full(n, 1.0 / n)
  for _ in range(steps):
    gamma = gamma0 * n * p
    p_grad = tau * (1 + np.log(n * (p + eps))) + gamma0 * n / (1 + np.exp(g - gamma)) / n
    e = np.exp(-lr * p_grad)
    p = p * e / np.sum(p * e)
  return gamma - gamma0


def test_gamma_po_matches_official_loop_and_optimality(x64):
  rng = np.random.default_rng(6)
  g = rng.normal(size=10) * 2
  history = rng.normal(size=6)
  for tau in (0.3, 2.0):
    got = margins.gamma_po_margins(g, gamma0=1.2, tau=tau)
    np.testing.assert_allclose(got, np_gamma_po(g, 1.2, tau), rtol=1e-8, atol=1e-9)
    got = margins.gamma_po_margins(g, gamma0=1.2, tau=tau, history=history)
    np.testing.assert_allclose(got, np_gamma_po(np.concatenate([history, g]), 1.2, tau)[6:], rtol=1e-8,
                               atol=1e-9)
  # Run long enough, the iteration reaches the minimiser of the convex inner problem: the gradient in p
  # is constant across i (the simplex's optimality condition), γ has mean γ₀ and increases with g.
  delta = np.asarray(margins.gamma_po_margins(g, gamma0=1.2, tau=0.5, num_steps=3000))
  gamma = delta + 1.2
  grad = 0.5 * (1 + np.log(gamma / 1.2)) + 1.2 / (1 + np.exp(g - gamma))
  assert np.ptp(grad) < 1e-10
  np.testing.assert_allclose(gamma.mean(), 1.2, rtol=1e-12)
  assert np.all(np.diff(gamma[np.argsort(g)]) > 0)
  # The loss is DPO with the margins subtracted (and gradients stopped through them).
  pw, pl, rw, rl = _pairs(rng, 10)
  h = (pw - rw) - (pl - rl)
  got = margins.gamma_po_loss(pw, pl, rw, rl, beta=BETA, gamma0=1.2, tau=0.3)
  np.testing.assert_allclose(got, np_softplus(-(BETA * h - np_gamma_po(BETA * h, 1.2, 0.3))), rtol=1e-8)


def test_bad_input_errors():
  x = np.zeros(4)
  with pytest.raises(PrefjaxError, match="quality_margins has shape"):
    margins.mmpo_loss(x, x, x, x, np.zeros(3), beta=BETA, gamma=1.0)
  with pytest.raises(PrefjaxError, match="gamma must be finite and >= 0"):
    margins.mmpo_loss(x, x, x, x, x, beta=BETA, gamma=-1.0)
  with pytest.raises(PrefjaxError, match="ref_rejected_logps has shape"):
    margins.mmpo_loss(x, x, x, np.zeros(5), x, beta=BETA, gamma=1.0)
  with pytest.raises(PrefjaxError, match="filter_fraction"):
    margins.beta_dpo_loss(x, x, x, x, margins.beta_dpo_init(), jax.random.key(0), beta=BETA, alpha=0.5,
                          filter_fraction=1.0)
  with pytest.raises(PrefjaxError, match="B >= 2"):
    margins.beta_dpo_loss(x[:1], x[:1], x[:1], x[:1], margins.beta_dpo_init(), jax.random.key(0),
                          beta=BETA, alpha=0.5)
  with pytest.raises(PrefjaxError, match="tau must be finite and > 0"):
    margins.gamma_po_margins(x, gamma0=1.0, tau=0.0)

"""Tests for prefjax.games.tabular against direct numpy computations."""

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.games import preferences
from prefjax.games import tabular


def test_kl_matches_numpy_and_handles_zeros(x64):
  rng = np.random.default_rng(0)
  p = rng.dirichlet(np.ones(5), size=3)
  q = rng.dirichlet(np.ones(5), size=3)
  expected = np.sum(p * np.log(p / q), axis=-1)
  np.testing.assert_allclose(tabular.kl(p, q), expected, rtol=1e-12)
  np.testing.assert_allclose(tabular.kl_from_logits(np.log(p), np.log(q) + 3.0), expected, rtol=1e-12)
  p0 = np.array([0.5, 0.5, 0.0])
  q0 = np.array([0.25, 0.25, 0.5])
  np.testing.assert_allclose(tabular.kl(p0, q0), np.log(2.0), rtol=1e-12)
  assert np.isfinite(jax.grad(lambda x: tabular.kl(x, q0))(jnp.asarray(p0))).all()


def test_win_rate_self_is_half_and_matches_loops(x64):
  P = preferences.random_preferences(jax.random.PRNGKey(0), 6)
  rng = np.random.default_rng(1)
  pi, nu = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
  np.testing.assert_allclose(tabular.win_rate(P, pi, pi), 0.5, rtol=1e-12)
  Pn = np.asarray(P)
  loop = sum(pi[i] * Pn[i, j] * nu[j] for i in range(6) for j in range(6))
  np.testing.assert_allclose(tabular.win_rate(P, pi, nu), loop, rtol=1e-12)
  np.testing.assert_allclose(tabular.win_rate(P, pi, nu) + tabular.win_rate(P, nu, pi), 1.0, rtol=1e-12)
  np.testing.assert_allclose(tabular.preference_against(P, nu), Pn @ nu, rtol=1e-12)

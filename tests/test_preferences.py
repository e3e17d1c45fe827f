"""Tests for the preference-matrix constructors in prefjax.games.preferences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from prefjax.games import preferences
from prefjax.errors import PrefjaxError


def _is_preference_matrix(P):
  P = np.asarray(P, dtype=np.float64)
  np.testing.assert_allclose(P + np.swapaxes(P, -1, -2), 1.0, atol=1e-6)
  assert P.min() >= 0 and P.max() <= 1


def test_bradley_terry_matches_logistic_and_keeps_context_axis():
  r = jax.random.normal(jax.random.PRNGKey(0), (4, 5))
  P = preferences.bradley_terry(r)
  assert P.shape == (4, 5, 5)
  _is_preference_matrix(P)
  rn = np.asarray(r, np.float64)
  np.testing.assert_allclose(P[2, 1, 3], 1 / (1 + np.exp(-(rn[2, 1] - rn[2, 3]))), rtol=1e-6)


def test_thurstone_matches_normal_cdf():
  m = np.array([0.3, -1.0, 2.0])
  P = preferences.thurstone(m, scale=0.7)
  _is_preference_matrix(P)
  np.testing.assert_allclose(P[0, 2], stats.norm.cdf((0.3 - 2.0) / (np.sqrt(2) * 0.7)), rtol=1e-5)


def test_total_order_and_cyclic():
  P = preferences.total_order(4)
  _is_preference_matrix(P)
  assert P[0, 3] == 1 and P[3, 0] == 0
  C = preferences.cyclic(3, p=5 / 9)
  _is_preference_matrix(C)
  np.testing.assert_allclose([C[0, 1], C[1, 2], C[2, 0]], 5 / 9, rtol=1e-6)
  # Balanced tournament: every row sums to n/2, so uniform is a fixed point of P·π = ½.
  C5 = preferences.cyclic(5, p=0.8)
  np.testing.assert_allclose(np.asarray(C5).sum(1), 2.5, rtol=1e-6)
  with pytest.raises(PrefjaxError, match="odd"):
    preferences.cyclic(4)


def test_random_preferences_structure():
  P = preferences.random_preferences(jax.random.PRNGKey(1), 10, shape=(3,))
  assert P.shape == (3, 10, 10)
  _is_preference_matrix(P)
  # Strictly-lower entries are U(0, 1): distinct, inside (0, 1).
  low = np.asarray(P[0])[np.tril_indices(10, -1)]
  assert len(np.unique(low)) == low.size and low.min() > 0 and low.max() < 1


def test_mixture_and_validate_errors():
  P = preferences.mixture(jnp.stack([preferences.total_order(3), preferences.cyclic(3)]),
                          jnp.array([0.25, 0.75]))
  _is_preference_matrix(P)
  with pytest.raises(PrefjaxError, match="sum to 1"):
    preferences.mixture(jnp.stack([preferences.total_order(3)] * 2), jnp.array([0.5, 0.6]))
  bad = np.array([[0.5, 0.7], [0.7, 0.5]])
  with pytest.raises(PrefjaxError, match=r"P \+ P\^T = 1"):
    preferences.validate(bad)
  with pytest.raises(PrefjaxError, match=r"\[0, 1\]"):
    preferences.validate(np.array([[0.5, 1.5], [-0.5, 0.5]]))
  with pytest.raises(PrefjaxError, match="shape"):
    preferences.validate(np.ones((2, 3)))

"""Tests for prefjax.objectives.ot (AOT with convex costs) against independent answers.

Oracles: brute force over all pairings (n ≤ 7) and scipy's Hungarian solver (n = 64) for the OT value,
numpy float64 costs written from 2406.05882, exact quantile functions of known distributions for the FSD
metric, the hard sort as the τ → 0 limit of the soft sort. The sharded loss against the single-device one (8
simulated CPU devices) is tests/multidevice/test_ot_8.py, run in a subprocess with XLA_FLAGS set before jax is
imported by tests/test_multidevice.py.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats
from scipy.optimize import linear_sum_assignment

from prefjax.errors import PrefjaxError
from prefjax.objectives import ot
from prefjax.objectives import pairwise

BETA = 0.7
EPS = 0.2


def np_cost(name, x, beta, eps=0.0):
  z = beta * x
  if name == "logistic":
    return (1 - eps) * np.logaddexp(0.0, -z) + eps * np.logaddexp(0.0, z)
  if name == "squared_hinge":
    return np.maximum(0.0, 1.0 - z) ** 2
  assert name == "least_squares"
  return (1.0 - z) ** 2


COSTS = [("logistic", EPS), ("squared_hinge", 0.0), ("least_squares", 0.0)]


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_sorted_loss_equals_brute_force_optimal_pairing(x64, n):
  rng = np.random.default_rng(n)
  u, v = rng.normal(size=n), rng.normal(size=n) + 0.3
  perms = np.array(list(itertools.permutations(range(n))))  # [n!, n]
  for cost, eps in COSTS:
    brute = np_cost(cost, u[None, :] - v[perms], BETA, eps).mean(axis=1).min()
    got = ot.ot_value(jnp.asarray(u), jnp.asarray(v), cost=cost, beta=BETA, label_smoothing=eps)
    np.testing.assert_allclose(float(got), brute, rtol=1e-12, err_msg=cost)


def test_sorted_loss_equals_linear_sum_assignment_n64(x64):
  rng = np.random.default_rng(0)
  u, v = rng.normal(size=64) * 1.5, rng.normal(size=64) + 0.5
  for cost, eps in COSTS:
    matrix = np_cost(cost, u[:, None] - v[None, :], BETA, eps)
    rows, cols = linear_sum_assignment(matrix)
    best = matrix[rows, cols].mean()
    got = ot.ot_value(jnp.asarray(u), jnp.asarray(v), cost=cost, beta=BETA, label_smoothing=eps)
    np.testing.assert_allclose(float(got), best, rtol=1e-12, err_msg=cost)
    # An arbitrary (identity) pairing is never cheaper.
    assert matrix.diagonal().mean() >= best - 1e-12


def test_aot_matches_pairwise_registry_with_logistic_cost(x64):
  rng = np.random.default_rng(1)
  pw, pl, rw, rl = (jnp.asarray(rng.normal(size=9)) for _ in range(4))
  for name, fn in (("aot", ot.aot_paired_loss), ("aot_unpaired", ot.aot_unpaired_loss)):
    want = pairwise.pairwise_loss(name, pw, pl, rw, rl, beta=BETA, label_smoothing=EPS)
    got = fn(pw, pl, rw, rl, beta=BETA, label_smoothing=EPS)
    np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)
  # Paired AOT sorts the margins, unpaired the log-ratios (numpy reference).
  got = ot.aot_paired_loss(pw, pl, rw, rl, beta=BETA, cost="least_squares")
  want = np_cost("least_squares", np.sort(pw - pl) - np.sort(rw - rl), BETA)
  np.testing.assert_allclose(got, want, rtol=1e-12)
  got = ot.aot_unpaired_loss(pw, pl, rw, rl, beta=BETA, cost="squared_hinge")
  want = np_cost("squared_hinge", np.sort(pw - rw) - np.sort(pl - rl), BETA)
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_soft_sort_tends_to_hard_sort(x64):
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=12))
  gap = float(np.diff(np.sort(x)).min())
  errors = [float(jnp.abs(ot.soft_sort(x, t) - jnp.sort(x)).max()) for t in (1.0, 0.1, 1e-3 * gap)]
  assert errors[0] > errors[1] > errors[2]
  # At τ ≪ the smallest gap the relaxed permutation is one-hot up to e^{−gap/τ} (≈ e^{−1000} = 0).
  assert errors[2] < 1e-12
  # Each soft-sorted value is a convex combination of the inputs, so it stays within their range.
  soft = ot.soft_sort(x, 0.5)
  assert float(soft.min()) >= float(x.min()) - 1e-12 and float(soft.max()) <= float(x.max()) + 1e-12
  # The soft loss tends to the exact loss, and its gradient is smooth (matches finite differences).
  u, v = x, jnp.asarray(rng.normal(size=12))
  exact = ot.ot_losses(u, v, beta=BETA).mean()
  soft_loss = ot.ot_losses(u, v, beta=BETA, soft_temperature=1e-3 * gap).mean()
  np.testing.assert_allclose(soft_loss, exact, rtol=1e-12)
  check_grads(jax.jit(lambda a: ot.ot_losses(a, v, beta=BETA, soft_temperature=0.3).mean()), (u,),
              order=1, modes=["rev"])


def test_fsd_violation_on_known_distributions(x64):
  n = 1000
  t = (np.arange(n) + 0.5) / n
  z = stats.norm.ppf(t)  # exact quantiles of N(0, 1) at the cell midpoints
  # N(1, 1) dominates N(0, 1); N(0, 1) is dominated everywhere by N(1, 1).
  assert float(ot.fsd_violation(z + 1.0, z)) == 0.0
  assert float(ot.fsd_violation(z, z + 1.0)) == 1.0
  # N(0, 2²) vs N(0, 1): Q_c(t) = 2 Φ⁻¹(t) < Φ⁻¹(t) exactly for t < ½.
  assert float(ot.fsd_violation(2 * z, z)) == 0.5
  # Unequal sizes, N(1, 2²) (600 quantiles) vs N(0, 1) (400): violated where 1 + 2z < z, t < Φ(−1).
  tc, tr = (np.arange(600) + 0.5) / 600, (np.arange(400) + 0.5) / 400
  got = float(ot.fsd_violation(1.0 + 2.0 * stats.norm.ppf(tc), stats.norm.ppf(tr)))
  # The step quantile functions move the crossing by at most one cell of the coarser grid.
  assert abs(got - stats.norm.cdf(-1.0)) <= 1.0 / 400
  # Equal sizes: the fraction of order statistics with chosen_(i) < rejected_(i).
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=50), rng.normal(size=50)
  assert float(ot.fsd_violation(a, b)) == np.mean(np.sort(a) < np.sort(b))


def test_bad_input_errors():
  x = jnp.zeros(4)
  with pytest.raises(PrefjaxError, match="equal sizes"):
    ot.ot_losses(x, jnp.zeros(5))
  with pytest.raises(PrefjaxError, match="unknown optimal-transport cost 'hinge'"):
    ot.ot_losses(x, x, cost="hinge")
  with pytest.raises(PrefjaxError, match="only used by the logistic cost"):
    ot.ot_losses(x, x, cost="squared_hinge", label_smoothing=0.1)
  with pytest.raises(PrefjaxError, match="beta must be finite and > 0"):
    ot.ot_losses(x, x, beta=0.0)
  with pytest.raises(PrefjaxError, match="temperature"):
    ot.soft_sort(x, 0.0)
  with pytest.raises(PrefjaxError, match=r"1-D array"):
    ot.fsd_violation(jnp.zeros((2, 2)), x)

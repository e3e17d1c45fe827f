"""Tests for prefjax.games.nash and prefjax.games.instances against independent answers.

Oracles: numpy float64 re-implementations of f_β and BR written here, brute-force saddle-point checks
against random deviations, closed forms (uniform NE of balanced cycles, the Munos et al. §3.2 formula,
Borda order of the BT fit), and the LP's defining inequalities.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax.games import preferences
from prefjax.errors import PrefjaxError
from prefjax.games import instances
from prefjax.games import nash


# ------------------------------------------------------------------------------------------------
# numpy float64 oracles, written independently of the library.


def np_softmax(x):
  z = np.exp(x - x.max(axis=-1, keepdims=True))
  return z / z.sum(axis=-1, keepdims=True)


def np_kl(p, q):
  return np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / q), 0.0), axis=-1)


def np_value(pi1, pi2, P, ref, beta):
  """f_β(π1, π2) = π1ᵀ P π2 − β KL(π1‖π_ref) + β KL(π2‖π_ref), all arrays broadcast by numpy."""
  win = np.einsum("...i,...ij,...j->...", pi1, P, pi2)
  return win - beta * np_kl(pi1, ref) + beta * np_kl(pi2, ref)


def np_best_response(pi, P, ref, beta):
  return np_softmax(np.log(ref) + np.einsum("...ij,...j->...i", P, pi) / beta)


def np_games(seed, num_games, n):
  """EGPO-style games drawn with numpy (independent of, and cheaper to compile than, jax.random)."""
  rng = np.random.default_rng(seed)
  lower = np.tril(rng.uniform(size=(num_games, n, n)), k=-1)
  P = lower + np.triu(1.0 - np.swapaxes(lower, -1, -2), k=1) + 0.5 * np.eye(n)
  return P, rng.normal(size=(num_games, n))


def random_policies(rng, shape, n):
  """Dirichlet draws with concentrations from 0.1 (near-deterministic) to 10 (near-uniform)."""
  conc = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=shape))
  x = rng.gamma(np.broadcast_to(conc[..., None], (*shape, n)))
  x = np.maximum(x, 1e-300)
  return x / x.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------------------------------------
# Unregularised and regularised equilibria of balanced cycles.


def test_rps_lp_and_regularised_nash_are_uniform(x64):
  for n, p in ((3, 1.0), (3, 0.7), (5, 1.0), (7, 0.6)):
    P = preferences.cyclic(n, p=p, dtype=jnp.float64)
    np.testing.assert_allclose(nash.solve_nash_lp(P), np.full(n, 1.0 / n), atol=1e-12)
  P = preferences.cyclic(3, dtype=jnp.float64)
  for beta in (0.1, 0.01):
    sol = nash.solve_regularised_nash(P, jnp.zeros(3), beta)
    np.testing.assert_allclose(sol.policy, np.full(3, 1.0 / 3.0), atol=1e-12)
    assert float(sol.residual) < 1e-12 and float(sol.gap) < 1e-12
  # A non-uniform reference moves the regularised NE away from uniform (the check above can fail).
  sol = nash.solve_regularised_nash(P, jnp.asarray([1.0, 0.0, 0.0]), 0.1)
  assert np.abs(np.asarray(sol.policy) - 1.0 / 3.0).max() > 1e-2


# ------------------------------------------------------------------------------------------------
# Game value, best response, duality gap.


def test_value_best_response_and_gap_match_numpy(x64):
  rng = np.random.default_rng(0)
  Pn, ref_logits_n = np_games(0, 6, 7)
  P, ref_logits = jnp.asarray(Pn), jnp.asarray(ref_logits_n)
  ref = np_softmax(ref_logits_n)
  beta = np.exp(rng.uniform(np.log(0.01), np.log(2.0), size=6))
  pi1 = random_policies(rng, (6, 50), 7)
  pi2 = random_policies(rng, (6, 50), 7)
  P_b, ref_b, beta_b = Pn[:, None], ref[:, None], beta[:, None]  # numpy broadcasting over draws
  ref_logits_b = jnp.broadcast_to(ref_logits[:, None], (6, 50, 7))
  beta_j = jnp.broadcast_to(jnp.asarray(beta)[:, None], (6, 50))
  P_j = P[:, None]

  value = nash.game_value(pi1, pi2, P_j, ref_logits_b, beta_j)
  np.testing.assert_allclose(value, np_value(pi1, pi2, P_b, ref_b, beta_b), rtol=1e-12, atol=1e-12)
  br = nash.best_response(pi1, P_j, ref_logits_b, beta_j)
  br_np = np_best_response(pi1, P_b, ref_b, beta_b[..., None])
  np.testing.assert_allclose(br, br_np, rtol=1e-10, atol=1e-14)

  # Gap by its definition f(BR(π), π) − f(π, BR(π)), entirely in numpy.
  gap_def = np_value(br_np, pi1, P_b, ref_b, beta_b) - np_value(pi1, br_np, P_b, ref_b, beta_b)
  gap = np.asarray(nash.duality_gap(pi1, P_j, ref_logits_b, beta_j))
  np.testing.assert_allclose(gap, gap_def, rtol=1e-8, atol=1e-13)
  assert np.all(gap >= 0.0) and np.all(gap_def > -1e-13)
  assert np.all(gap > 0.0)  # random policies are not the equilibrium

  # BR maximises f(·, π) against random deviations, so the gap upper-bounds every deviation's gain.
  dev = random_policies(rng, (6, 50), 7)
  assert np.all(np_value(br_np, pi1, P_b, ref_b, beta_b) >= np_value(dev, pi1, P_b, ref_b, beta_b) - 1e-12)

  expl = nash.exploitability(pi1, P_j)
  np.testing.assert_allclose(expl, np.max(np.einsum("...ij,...j->...i", P_b, pi1), -1) - 0.5, atol=1e-14)
  resid = nash.nash_residual(pi1, P_j, ref_logits_b, beta_j)
  np.testing.assert_allclose(resid, np.abs(pi1 - br_np).max(-1), atol=1e-13)


def test_gap_broadcasts_a_single_game_and_is_jittable():
  P, ref_logits = (jnp.asarray(x, jnp.float32) for x in np_games(1, 1, 5))
  pis = jnp.asarray(random_policies(np.random.default_rng(2), (4,), 5), jnp.float32)
  batched = nash.duality_gap(pis, P[0], ref_logits[0], 0.3)
  looped = jnp.stack([nash.duality_gap(p, P[0], ref_logits[0], 0.3) for p in pis])
  np.testing.assert_allclose(batched, looped, rtol=1e-6)
  jitted = jax.jit(nash.duality_gap)(pis, P[0], ref_logits[0], 0.3)
  np.testing.assert_allclose(jitted, batched, rtol=1e-5, atol=1e-7)
  vmapped = jax.vmap(nash.best_response, in_axes=(0, None, None, None))(pis, P[0], ref_logits[0], 0.3)
  np.testing.assert_allclose(vmapped, nash.best_response(pis, P[0], ref_logits[0], 0.3), rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# The regularised solver.


@pytest.mark.parametrize("beta", [0.1, 0.01])
def test_solver_reaches_machine_precision_on_egpo_games(x64, beta):
  P, ref_logits = (jnp.asarray(x) for x in np_games(3, 10, 10))
  sol = nash.solve_regularised_nash(P, ref_logits, beta)
  pi = np.asarray(sol.policy)
  Pn, ref = np.asarray(P), np_softmax(np.asarray(ref_logits))
  np.testing.assert_allclose(pi.sum(-1), 1.0, atol=1e-14)
  # The fixed point π ∝ π_ref exp(Pπ/β), checked in numpy.
  fixed = np_best_response(pi, Pn, ref, beta)
  assert np.abs(pi - fixed).max() < 1e-12
  # Both residuals round logits of size 1/β: they agree to a few ε/β.
  np.testing.assert_allclose(sol.residual, np.abs(pi - fixed).max(-1), atol=10 * np.finfo(float).eps / beta)
  gap_def = np_value(fixed, pi, Pn, ref, beta) - np_value(pi, fixed, Pn, ref, beta)
  assert np.all(np.abs(gap_def) < 1e-12) and np.all(np.asarray(sol.gap) < 1e-12)
  # Saddle point: no deviation σ of either player gains (brute force over random σ).
  rng = np.random.default_rng(1)
  sigma = random_policies(rng, (10, 200), 10)
  v_star = np_value(pi, pi, Pn, ref, beta)[:, None]
  assert np.all(np_value(sigma, pi[:, None], Pn[:, None], ref[:, None], beta) <= v_star + 1e-12)
  assert np.all(np_value(pi[:, None], sigma, Pn[:, None], ref[:, None], beta) >= v_star - 1e-12)
  if beta == 0.1:  # vmap over games == the batched solve (one extra compilation only).
    vsol = jax.vmap(lambda p, r: nash.solve_regularised_nash(p, r, beta))(P, ref_logits)
    np.testing.assert_allclose(vsol.policy, pi, atol=1e-12)


def test_solver_small_beta_and_float32():
  with jax.enable_x64(True):
    P, ref_logits = (jnp.asarray(x) for x in np_games(3, 10, 10))
    sol = nash.solve_regularised_nash(P, ref_logits, 0.001)
    tol = float(nash.default_tolerance(0.001, jnp.float64))
    assert np.all(np.asarray(sol.residual) <= tol) and tol < 1e-11
    assert int(sol.num_iters) < 50_000  # linear rate 1 − ηβ with η ≈ 2
    fixed = np_best_response(np.asarray(sol.policy), np.asarray(P), np_softmax(np.asarray(ref_logits)), 0.001)
    assert np.abs(np.asarray(sol.policy) - fixed).max() < 1e-10
    pi64 = np.asarray(nash.solve_regularised_nash(P, ref_logits, 0.1).policy)
  sol32 = nash.solve_regularised_nash(jnp.asarray(P, jnp.float32), jnp.asarray(ref_logits, jnp.float32), 0.1)
  assert sol32.policy.dtype == jnp.float32
  assert np.all(np.asarray(sol32.residual) <= float(nash.default_tolerance(0.1, jnp.float32)))
  np.testing.assert_allclose(sol32.policy, pi64, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# LP, Condorcet and von Neumann winners.


def test_lp_nash_is_unexploitable(x64):
  rng = np.random.default_rng(2)
  Pn, _ = np_games(5, 10, 10)
  P = jnp.asarray(Pn)
  x = nash.solve_nash_lp(P)
  assert x.shape == (10, 10) and np.all(x >= 0.0)
  np.testing.assert_allclose(x.sum(-1), 1.0, atol=1e-12)
  payoff = np.einsum("gij,gj->gi", Pn, x)
  assert np.all(payoff.max(-1) - 0.5 <= 1e-9)  # no pure strategy beats it
  assert np.all(np.asarray(nash.exploitability(x, P)) <= 1e-9)
  sigma = random_policies(rng, (10, 300), 10)
  assert np.all(np.einsum("gki,gij,gj->gk", sigma, Pn, x) <= 0.5 + 1e-9)  # nor any mixed one
  # Actions in the support earn exactly ½ (complementary slackness).
  assert np.all(np.abs(np.where(x > 1e-9, payoff - 0.5, 0.0)) <= 1e-9)
  for g in range(3):
    np.testing.assert_allclose(nash.solve_nash_lp(P[g]), x[g], atol=1e-12)
  # The regularised NE approaches an unregularised one as β → 0: its exploitability shrinks with β.
  ref_logits = jnp.zeros((10, 10), jnp.float64)
  expl = [np.asarray(nash.exploitability(nash.solve_regularised_nash(P, ref_logits, b).policy, P))
          for b in (0.1, 0.01, 0.001)]
  assert np.all(expl[2] < expl[1]) and np.all(expl[1] < expl[0]) and np.all(expl[2] < 0.01)


def test_condorcet_and_von_neumann_winners(x64):
  order = preferences.total_order(5, dtype=jnp.float64)
  perm = np.array([3, 0, 4, 1, 2])  # action perm[k] holds rank k
  inv = np.argsort(perm)
  P_order = jnp.asarray(np.asarray(order)[np.ix_(inv, inv)])
  assert int(nash.condorcet_winner(P_order)) == 3
  np.testing.assert_array_equal(instances.ranking_preferences(perm, jnp.float64), P_order)
  rewards = jnp.asarray([0.3, -1.0, 2.0, 1.9, 0.0])
  P_bt = preferences.bradley_terry(rewards)
  assert int(nash.condorcet_winner(P_bt)) == 2
  rps = preferences.cyclic(3, dtype=jnp.float64)
  assert int(nash.condorcet_winner(rps)) == -1
  assert int(nash.condorcet_winner(preferences.cyclic(5))) == -1
  assert int(nash.condorcet_winner(jnp.full((3, 3), 0.5))) == -1  # ties are not wins
  batch = jnp.stack([P_bt, P_order])
  np.testing.assert_array_equal(nash.condorcet_winner(batch), [2, 3])
  np.testing.assert_array_equal(jax.jit(nash.condorcet_winner)(batch), [2, 3])

  # A Condorcet winner is the von Neumann winner.
  for P, winner in ((P_order, 3), (P_bt, 2)):
    vnw = nash.von_neumann_winner(P)
    np.testing.assert_allclose(vnw.policy, np.eye(5)[winner], atol=1e-12)
    np.testing.assert_array_equal(vnw.support, np.eye(5, dtype=bool)[winner])
  # RPS plus an action beaten by all three: no Condorcet winner, support = the cycle.
  P4 = np.full((4, 4), 0.5)
  P4[:3, :3] = np.asarray(rps)
  P4[:3, 3], P4[3, :3] = 0.8, 0.2
  assert int(nash.condorcet_winner(P4)) == -1
  vnw = nash.von_neumann_winner(P4)
  np.testing.assert_array_equal(vnw.support, [True, True, True, False])
  np.testing.assert_allclose(vnw.policy, [1 / 3, 1 / 3, 1 / 3, 0.0], atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Instances.


@pytest.mark.parametrize("eps", [-0.3, -0.1, -0.01, 0.01, 0.1, 0.25])
def test_munos_annotators_nash_formula_and_bt_flip(x64, eps):
  ex = instances.munos_annotators(eps, dtype=jnp.float64)
  # Each annotator is a deterministic total order (a valid preference matrix with a Condorcet winner).
  for k, ranking in enumerate(ex.rankings):
    Pk = np.asarray(ex.annotator_P[k])
    preferences.validate(Pk)
    assert set(np.unique(Pk)) <= {0.0, 0.5, 1.0}
    assert int(nash.condorcet_winner(Pk)) == ranking[0]
    for a, b in zip(ranking[:-1], ranking[1:]):
      assert Pk[a, b] == 1.0
  w = np.asarray(ex.weights)
  assert np.all(w >= 0) and abs(w.sum() - 1.0) < 1e-15
  np.testing.assert_allclose(ex.P, np.einsum("k,kij->ij", w, np.asarray(ex.annotator_P)), atol=1e-15)
  # The paper's formula for the Nash solution, against the LP and the small-β regularised NE.
  formula = np.array([1 / 3 + eps / 2, 1 / 3 + eps / 2, 1 / 3 - eps])
  np.testing.assert_allclose(ex.nash, formula, atol=1e-15)
  np.testing.assert_allclose(nash.solve_nash_lp(ex.P), formula, atol=1e-9)
  assert int(nash.condorcet_winner(ex.P)) == -1
  sol = nash.solve_regularised_nash(ex.P, jnp.zeros(3), 1e-4)
  np.testing.assert_allclose(sol.policy, formula, atol=2e-3)
  # The Bradley–Terry fit: stationary for an independently written likelihood, ordered like Borda.
  r = instances.bradley_terry_fit(ex.P)

  def nll(rr):
    d = rr[:, None] - rr[None, :]
    return -jnp.sum(ex.P * jax.nn.log_sigmoid(d) * (1.0 - jnp.eye(3)))

  assert np.abs(np.asarray(jax.grad(nll)(jnp.asarray(r)))).max() < 1e-9
  borda = np.asarray(ex.P).sum(-1)
  np.testing.assert_array_equal(np.argsort(r), np.argsort(borda))
  assert int(np.argmax(r)) == (0 if eps > 0 else 1)  # the BT optimum flips as ε crosses 0
  np.testing.assert_allclose(ex.bt_rewards, r, atol=1e-12)
  np.testing.assert_array_equal(ex.bt_policy, np.eye(3)[0 if eps > 0 else 1])


def test_munos_annotators_balanced_at_zero_and_bad_eps(x64):
  ex = instances.munos_annotators(0.0, dtype=jnp.float64)
  np.testing.assert_allclose(instances.bradley_terry_fit(ex.P), np.zeros(3), atol=1e-12)
  np.testing.assert_allclose(nash.solve_nash_lp(ex.P), np.full(3, 1 / 3), atol=1e-12)
  with pytest.raises(PrefjaxError, match="eps"):
    instances.munos_annotators(0.5)
  with pytest.raises(PrefjaxError, match="permutation"):
    instances.ranking_preferences([0, 0, 1])


def test_cyclic_worked_example(x64):
  ex = instances.cyclic_worked_example(dtype=jnp.float64)
  P = np.asarray(ex.P)
  np.testing.assert_allclose([P[0, 1], P[1, 2], P[2, 0]], 5 / 9, atol=1e-15)
  sol = nash.solve_regularised_nash(ex.P, ex.ref_logits, ex.beta)
  np.testing.assert_allclose(sol.policy, np.full(3, 1 / 3), atol=1e-12)
  np.testing.assert_allclose(ex.nash, sol.policy, atol=1e-12)
  ipo = np_softmax(P @ np.array([0.6, 0.3, 0.1]) / 0.1)
  np.testing.assert_allclose(ex.ipo_policy, ipo, rtol=1e-12)
  assert np.abs(ipo - 1 / 3).max() > 0.05
  assert float(nash.duality_gap(ex.ipo_policy, ex.P, ex.ref_logits, ex.beta)) > 1e-3


def test_egpo_games():
  P, ref_logits = instances.egpo_games(jax.random.PRNGKey(7), 200, 10)
  assert P.shape == (200, 10, 10) and ref_logits.shape == (200, 10) and P.dtype == jnp.float32
  preferences.validate(P)
  Pn = np.asarray(P)
  lower = Pn[:, np.tril_indices(10, -1)[0], np.tril_indices(10, -1)[1]]
  assert lower.min() > 0.0 and lower.max() < 1.0
  assert abs(lower.mean() - 0.5) < 4 * np.sqrt(1 / 12 / lower.size)  # U(0, 1): 4 standard errors
  r = np.asarray(ref_logits).ravel()
  assert abs(r.mean()) < 4 / np.sqrt(r.size) and abs(r.var() - 1.0) < 4 * np.sqrt(2 / r.size)
  assert not np.allclose(Pn[0], Pn[1])
  P2, r2 = instances.egpo_games(jax.random.PRNGKey(7), 200, 10)
  np.testing.assert_array_equal(P2, P)
  np.testing.assert_array_equal(r2, ref_logits)
  P3, _ = instances.egpo_games(jax.random.PRNGKey(8), 200, 10)
  assert not np.allclose(P3, P)


# ------------------------------------------------------------------------------------------------
# Validation.


def test_bad_inputs_raise_prefjax_errors():
  P = preferences.cyclic(3)
  ref = jnp.zeros(3)
  pi = jnp.full(3, 1 / 3)
  not_antisymmetric = jnp.asarray([[0.5, 0.6, 0.5], [0.6, 0.5, 0.5], [0.5, 0.5, 0.5]])
  out_of_range = jnp.asarray([[0.5, 1.2], [-0.2, 0.5]])
  for bad in (not_antisymmetric,):
    with pytest.raises(PrefjaxError, match="P \\+ P\\^T = 1"):
      nash.duality_gap(pi, bad, ref, 0.1)
    with pytest.raises(PrefjaxError, match="P"):
      nash.solve_regularised_nash(bad, ref, 0.1)
    with pytest.raises(PrefjaxError, match="P"):
      nash.solve_nash_lp(bad)
  with pytest.raises(PrefjaxError, match="\\[0, 1\\]"):
    nash.exploitability(jnp.full(2, 0.5), out_of_range)
  with pytest.raises(PrefjaxError, match="N, N"):
    nash.condorcet_winner(jnp.zeros((3, 2)))
  for beta in (0.0, -1.0, float("nan")):
    with pytest.raises(PrefjaxError, match="beta"):
      nash.best_response(pi, P, ref, beta)
    with pytest.raises(PrefjaxError, match="beta"):
      nash.solve_regularised_nash(P, ref, beta)
  with pytest.raises(PrefjaxError, match="pi"):
    nash.duality_gap(jnp.full(4, 0.25), P, ref, 0.1)
  with pytest.raises(PrefjaxError, match="ref_logits"):
    nash.game_value(pi, pi, P, jnp.zeros(4), 0.1)
  with pytest.raises(PrefjaxError, match="pi2"):
    nash.game_value(pi, jnp.full(2, 0.5), P, ref, 0.1)
  with pytest.raises(PrefjaxError, match="max_iter"):
    nash.solve_regularised_nash(P, ref, 0.1, max_iter=0)
  with pytest.raises(PrefjaxError, match="concrete"):
    jax.jit(nash.solve_nash_lp)(P)
  # Under tracing the value checks are skipped (no exception), shape checks still run.
  jax.jit(nash.duality_gap)(pi, not_antisymmetric, ref, 0.1)
  with pytest.raises(PrefjaxError, match="pi"):
    jax.jit(nash.duality_gap)(jnp.full(4, 0.25), P, ref, 0.1)

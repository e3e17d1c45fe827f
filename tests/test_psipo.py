"""Tests for prefjax.games.psipo against closed forms (docs/theory.md §1) and gradient-based optimisation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax.games import preferences
from prefjax.errors import PrefjaxError
from prefjax.games import psipo

TAUS = (0.1, 0.5, 4.0)


def _softmax(x):
  z = np.exp(x - np.max(x))
  return z / z.sum()


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _normalise(x):
  x = np.asarray(x, dtype=np.float64)
  return x / x.sum()


@functools.partial(jax.jit, static_argnames=("loss_fn", "num_steps"))
def _gradient_descent(theta0, lr, *, loss_fn, num_steps):
  """Plain full-batch gradient descent θ ← θ − lr ∇loss(θ) (a scalar loss of the logits)."""
  grad = jax.grad(loss_fn)
  return jax.lax.fori_loop(0, num_steps, lambda _, th: th - lr * grad(th), theta0)


# --- Closed forms -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", TAUS)
def test_two_actions_always_preferred_gives_sigmoid(x64, tau):
  del x64
  expected = _sigmoid(1.0 / (2.0 * tau))
  theta = psipo.ipo_empirical_minimiser(np.array([0]), np.array([1]), 2, tau)
  np.testing.assert_allclose(_softmax(theta)[0], expected, rtol=1e-12)
  # Population: g = P μ = (3/4, 1/4) for μ uniform, so π1/π2 = exp((1/2)/τ).
  P = np.array([[0.5, 1.0], [0.0, 0.5]])
  uniform = np.full(2, 0.5)
  pi = psipo.psipo_optimum(P, uniform, uniform, tau, psi="identity")
  np.testing.assert_allclose(pi[0], expected, rtol=1e-12)
  # DPO / RLHF (Ψ = logit): deterministic for every τ.
  np.testing.assert_array_equal(psipo.psipo_optimum(P, uniform, uniform, tau, psi="logit"), [1.0, 0.0])


def _closed_forms(tau):
  return {
      "total_order_D1": (([0, 1, 0], [1, 2, 2]),
                         _normalise([np.exp(2 / (3 * tau)), np.exp(1 / (3 * tau)), 1.0])),
      "unobserved_pair": (([0, 1], [1, 2]), _normalise([np.exp(1 / tau), np.exp(1 / (2 * tau)), 1.0])),
      "cycle": (([0, 1, 2], [1, 2, 0]), np.full(3, 1 / 3)),
      "two_actions": (([0], [1]), _normalise([np.exp(1 / (2 * tau)), 1.0])),
  }


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("name", ["total_order_D1", "unobserved_pair", "cycle", "two_actions"])
def test_empirical_minimiser_matches_closed_forms(x64, name, tau):
  del x64
  (chosen, rejected), expected = _closed_forms(tau)[name]
  n = expected.shape[0]
  theta = psipo.ipo_empirical_minimiser(np.array(chosen), np.array(rejected), n, tau)
  np.testing.assert_allclose(_softmax(theta), expected, rtol=1e-10, atol=1e-14)
  # The default init is the (zero) reference logits: the mean logit is kept at 0.
  np.testing.assert_allclose(theta.mean(), 0.0, atol=1e-12)


@pytest.mark.parametrize("tau", TAUS)
def test_population_ipo_on_total_order_equals_d1_closed_form(x64, tau):
  del x64
  # g = P μ = (5/6, 1/2, 1/6) for μ uniform: the same 1/(3τ) margins as the empirical D1 minimiser.
  P = preferences.total_order(3, dtype=jnp.float64)
  uniform = np.full(3, 1 / 3)
  pi = psipo.psipo_optimum(P, uniform, uniform, tau)
  np.testing.assert_allclose(pi, _closed_forms(tau)["total_order_D1"][1], rtol=1e-12)


@pytest.mark.parametrize("p", [0.7, 0.95])
@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_two_actions_stochastic_preference_ratios(x64, p, tau):
  del x64
  rng = np.random.default_rng(0)
  P = np.array([[0.5, p], [1 - p, 0.5]])
  ref = rng.dirichlet(np.ones(2))
  mu = rng.dirichlet(np.ones(2))  # Any μ: the 2-action ratios do not depend on it.
  ref_ratio = ref[0] / ref[1]
  pi = psipo.psipo_optimum(P, mu, ref, tau, psi="identity")
  np.testing.assert_allclose(pi[0] / pi[1], ref_ratio * np.exp((p - 0.5) / tau), rtol=1e-12)
  pi = psipo.psipo_optimum(P, mu, ref, tau, psi="logit")
  np.testing.assert_allclose(pi[0] / pi[1], ref_ratio * (p / (1 - p)) ** (1 / tau), rtol=1e-12)
  # Empirical IPO with pair frequencies (p, 1 − p) reaches the population ratio.
  ref_logits = np.log(ref) + 3.0
  theta = psipo.ipo_empirical_minimiser(
      np.array([0, 1]), np.array([1, 0]), 2, tau, ref_logits=ref_logits, weights=np.array([p, 1 - p]))
  pi = _softmax(theta)
  np.testing.assert_allclose(pi[0] / pi[1], ref_ratio * np.exp((p - 0.5) / tau), rtol=1e-12)


def test_duplicate_pairs_are_weights(x64):
  del x64
  chosen, rejected = np.array([0, 0, 0, 1, 2, 1]), np.array([1, 1, 2, 2, 1, 0])
  dup = psipo.ipo_empirical_minimiser(chosen, rejected, 4, 0.4)
  weighted = psipo.ipo_empirical_minimiser(
      np.array([0, 0, 1, 2, 1]), np.array([1, 2, 2, 1, 0]), 4, 0.4, weights=np.array([2, 1, 1, 1, 1.0]))
  np.testing.assert_allclose(dup, weighted, rtol=1e-12, atol=1e-14)
  theta = jnp.asarray(dup)
  np.testing.assert_allclose(
      psipo.ipo_empirical_loss(theta, chosen, rejected, jnp.zeros(4), 0.4),
      psipo.ipo_empirical_loss(theta, chosen[1:], rejected[1:], jnp.zeros(4), 0.4,
                               weights=np.array([2, 1, 1, 1, 1.0])), rtol=1e-12)


def test_unbounded_psi_on_deterministic_preferences(x64):
  del x64
  P = preferences.total_order(3, dtype=jnp.float64)
  uniform = np.full(3, 1 / 3)
  g = psipo.psi_preference_against(P, uniform, psi="logit")
  assert g[0] == np.inf and g[2] == -np.inf and np.isnan(g[1])  # b: −∞ (vs a) + ∞ (vs c).
  np.testing.assert_array_equal(psipo.psipo_optimum(P, uniform, uniform, 0.3, "logit"), [1, 0, 0])
  # μ concentrated on a: g = (0, −∞, −∞) → all mass on a. μ on c: g = (+∞, +∞, 0) → π_ref on {a, b}.
  np.testing.assert_array_equal(psipo.psipo_optimum(P, [1.0, 0, 0], uniform, 0.3, "logit"), [1, 0, 0])
  ref = np.array([0.2, 0.6, 0.2])
  np.testing.assert_allclose(psipo.psipo_optimum(P, [0, 0, 1.0], ref, 0.3, "logit"), [0.25, 0.75, 0])
  # A clipped logit is finite: the closed form with logit(1 − eps) margins.
  eps, tau = 0.05, 0.3
  big = np.log((1 - eps) / eps)
  g_np = np.array([2 * big, 0.0, -2 * big]) / 3
  np.testing.assert_allclose(
      psipo.psipo_optimum(P, uniform, uniform, tau, psipo.clipped_logit(eps)), _softmax(g_np / tau),
      rtol=1e-12)


# --- Gradient-based checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_empirical_minimiser_equals_gradient_descent(x64, weighted):
  del x64
  rng = np.random.default_rng(1 + weighted)
  n, m, tau = 5, 14, 0.35
  chosen = rng.integers(0, 4, size=m)  # Action 4 never appears.
  rejected = (chosen + rng.integers(1, 4, size=m)) % 4
  weights = rng.uniform(0.2, 2.0, size=m) if weighted else None
  ref_logits = rng.normal(size=n)
  init = rng.normal(size=n)
  theta = psipo.ipo_empirical_minimiser(chosen, rejected, n, tau, ref_logits=ref_logits,
                                        init_logits=init, weights=weights)

  def loss(th):
    return psipo.ipo_empirical_loss(th, chosen, rejected, jnp.asarray(ref_logits), tau, weights=weights)

  # Hessian = (2/Σw) Aᵀ W A has eigenvalues ≤ 4, so lr = 0.25 is stable.
  theta_gd = np.asarray(_gradient_descent(jnp.asarray(init), 0.25, loss_fn=loss, num_steps=20_000))
  np.testing.assert_allclose(theta, theta_gd, atol=1e-9)
  assert theta[4] == init[4] and theta_gd[4] == init[4]
  np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(theta)), 0.0, atol=1e-12)
  # A different init gives another minimiser (same loss), shifted only along the data's null space.
  theta2 = psipo.ipo_empirical_minimiser(chosen, rejected, n, tau, ref_logits=ref_logits,
                                         init_logits=init + 1.5, weights=weights)
  np.testing.assert_allclose(theta2, theta + 1.5, atol=1e-12)
  np.testing.assert_allclose(loss(jnp.asarray(theta2)), loss(jnp.asarray(theta)), rtol=1e-12)


def _random_instance(seed, n):
  key = jax.random.PRNGKey(seed)
  P = preferences.random_preferences(key, n, dtype=jnp.float64)
  rng = np.random.default_rng(seed)
  return np.asarray(P), rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))


def _cube(q):
  return q ** 3


@pytest.mark.parametrize("psi", [_cube, psipo.clipped_logit(0.1), "logit", "identity"],
                         ids=["cube", "clipped_logit", "logit", "identity"])
def test_psipo_closed_form_matches_gradient_ascent(x64, psi):
  del x64
  n, tau = 4, 0.7
  P, mu, ref = _random_instance(3, n)
  psi_fn = psipo.resolve_psi(psi)
  g_np = np.asarray(psi_fn(P), dtype=np.float64) @ mu  # Ψ applied elementwise, then E_{y'∼μ}.

  def neg_objective(theta):
    return -psipo.psipo_objective(jax.nn.softmax(theta), P, mu, ref, tau, psi=psi)

  theta = _gradient_descent(jnp.zeros(n), 1.0 / tau, loss_fn=neg_objective, num_steps=5_000)
  np.testing.assert_allclose(jax.grad(neg_objective)(theta), 0.0, atol=1e-12)
  pi_star = psipo.psipo_optimum(P, mu, ref, tau, psi=psi)
  np.testing.assert_allclose(jax.nn.softmax(theta), pi_star, atol=1e-10)
  np.testing.assert_allclose(pi_star, _normalise(ref * np.exp(g_np / tau)), rtol=1e-12)
  # The optimal value is the log-partition τ log Σ π_ref exp(g/τ).
  np.testing.assert_allclose(
      psipo.psipo_objective(pi_star, P, mu, ref, tau, psi=psi), tau * np.log(ref @ np.exp(g_np / tau)),
      rtol=1e-12)


def test_psipo_objective_matches_double_loop(x64):
  del x64
  n, tau = 5, 0.4
  P, mu, ref = _random_instance(7, n)
  pi = np.random.default_rng(8).dirichlet(np.ones(n))
  expected = sum(pi[i] * mu[j] * P[i, j] ** 3 for i in range(n) for j in range(n))
  expected -= tau * sum(pi[i] * np.log(pi[i] / ref[i]) for i in range(n))
  np.testing.assert_allclose(psipo.psipo_objective(pi, P, mu, ref, tau, psi=_cube), expected, rtol=1e-12)
  # Ψ = identity: the expectation is the win rate p(π ≻ μ) = πᵀ P μ.
  np.testing.assert_allclose(
      psipo.psipo_objective(pi, P, mu, ref, tau) + tau * np.sum(pi * np.log(pi / ref)), pi @ P @ mu,
      rtol=1e-12)
  np.testing.assert_allclose(psipo.psi_preference_against(P, mu), P @ mu, rtol=1e-12)


def test_ipo_population_minimiser_is_identity_optimum(x64):
  del x64
  n, tau = 4, 0.3
  P, mu, ref = _random_instance(11, n)
  ref_logits = np.log(ref) - 0.7

  def loss(theta):
    return psipo.ipo_population_loss(theta, P, mu, jnp.asarray(ref_logits), tau)

  # Hessian = 4 (diag μ − μμᵀ) has eigenvalues ≤ 4 max μ ≤ 4.
  theta = _gradient_descent(jnp.zeros(n), 0.2, loss_fn=loss, num_steps=20_000)
  pi_star = psipo.psipo_optimum(P, mu, ref, tau, psi="identity")
  np.testing.assert_allclose(jax.nn.softmax(theta), pi_star, atol=1e-10)
  np.testing.assert_allclose(loss(jnp.log(pi_star)), 0.0, atol=1e-20)
  # Brute-force double loop of the loss at a random point.
  th = np.random.default_rng(12).normal(size=n)
  pm = P @ mu
  ell = th - ref_logits
  brute = sum(mu[i] * mu[j] * (ell[i] - ell[j] - (pm[i] - pm[j]) / tau) ** 2
              for i in range(n) for j in range(n))
  np.testing.assert_allclose(loss(jnp.asarray(th)), brute, rtol=1e-12)
  # When μ misses an action, that action's logit is free: the loss stays 0 when it moves.
  mu_partial = _normalise(np.concatenate([mu[:-1], [0.0]]))
  opt = np.log(np.asarray(psipo.psipo_optimum(P, mu_partial, ref, tau)))
  for shift in (0.0, 2.0, -5.0):
    moved = opt + np.array([0, 0, 0, shift])
    np.testing.assert_allclose(
        psipo.ipo_population_loss(moved, P, mu_partial, ref_logits, tau), 0.0, atol=1e-20)


@pytest.mark.parametrize("beta", [0.1, 1.0, 3.0])
def test_rlhf_optimum_equals_logit_psipo_on_bradley_terry(x64, beta):
  del x64
  rng = np.random.default_rng(5)
  n = 5
  rewards = rng.normal(size=n)
  ref = _normalise(np.concatenate([rng.dirichlet(np.ones(n - 1)), [0.0]]))  # π_ref(y_4) = 0.
  expected = _normalise(ref * np.exp(rewards / beta))
  pi = psipo.rlhf_optimum(rewards, ref, beta)
  np.testing.assert_allclose(pi, expected, rtol=1e-12, atol=1e-300)
  P = preferences.bradley_terry(jnp.asarray(rewards))
  for mu in (np.full(n, 1 / n), rng.dirichlet(np.ones(n)), np.array([0, 0, 1.0, 0, 0])):
    np.testing.assert_allclose(psipo.psipo_optimum(P, mu, ref, beta, psi="logit"), expected,
                               rtol=1e-12, atol=1e-300)


# --- Batching, jit, vmap ------------------------------------------------------------------------------


def test_batch_axes_vmap_and_jit_agree_with_loops(x64):
  del x64
  n, games = 4, 3
  P = np.asarray(preferences.random_preferences(jax.random.PRNGKey(0), n, shape=(games,),
                                                dtype=jnp.float64))
  rng = np.random.default_rng(0)
  mu = rng.dirichlet(np.ones(n))  # Shared by every game: broadcast against P's batch axis.
  refs = rng.dirichlet(np.ones(n), size=games)
  taus = np.array([0.2, 0.5, 1.5])
  batched = psipo.psipo_optimum(P, mu, refs, 0.5, psi=_cube)
  loop = np.stack([psipo.psipo_optimum(P[k], mu, refs[k], 0.5, psi=_cube) for k in range(games)])
  np.testing.assert_allclose(batched, loop, rtol=1e-12)
  swept = jax.jit(jax.vmap(lambda t: psipo.psipo_optimum(P[0], mu, refs[0], t)))(taus)
  loop = np.stack([psipo.psipo_optimum(P[0], mu, refs[0], float(t)) for t in taus])
  np.testing.assert_allclose(swept, loop, rtol=1e-12)
  pis = rng.dirichlet(np.ones(n), size=games)
  np.testing.assert_allclose(
      jax.jit(psipo.psipo_objective, static_argnames="psi")(pis, P, mu, refs, 0.5, psi="logit"),
      [psipo.psipo_objective(pis[k], P[k], mu, refs[k], 0.5, psi="logit") for k in range(games)],
      rtol=1e-12)
  logits = rng.normal(size=(games, n))
  ref_logits = rng.normal(size=n)
  chosen, rejected = np.array([0, 1, 3]), np.array([2, 2, 0])
  np.testing.assert_allclose(
      jax.jit(psipo.ipo_empirical_loss)(logits, chosen, rejected, ref_logits, 0.5),
      [psipo.ipo_empirical_loss(logits[k], chosen, rejected, ref_logits, 0.5) for k in range(games)],
      rtol=1e-12)
  np.testing.assert_allclose(
      jax.vmap(psipo.ipo_population_loss, in_axes=(0, 0, None, None, None))(logits, P, mu, ref_logits,
                                                                             0.5),
      [psipo.ipo_population_loss(logits[k], P[k], mu, ref_logits, 0.5) for k in range(games)],
      rtol=1e-12)
  rewards = rng.normal(size=(games, n))
  np.testing.assert_allclose(
      psipo.rlhf_optimum(rewards, refs[0], 0.7),
      [psipo.rlhf_optimum(rewards[k], refs[0], 0.7) for k in range(games)], rtol=1e-12)


# --- Errors -------------------------------------------------------------------------------------------

_P2 = np.array([[0.5, 0.8], [0.2, 0.5]])
_U2 = np.full(2, 0.5)
_PAIR = (np.array([0]), np.array([1]))

_BAD_INPUTS = {
    "unknown_psi": (lambda: psipo.psipo_optimum(_P2, _U2, _U2, 1.0, psi="dpo"), r"known names: \['identity'"),
    "psi_not_callable": (lambda: psipo.psipo_optimum(_P2, _U2, _U2, 1.0, psi=3), "psi must be"),
    "psi_not_elementwise": (lambda: psipo.psipo_optimum(_P2, _U2, _U2, 1.0, psi=jnp.sum), "elementwise"),
    "P_not_square": (lambda: psipo.psipo_optimum(np.ones((2, 3)), _U2, _U2, 1.0), r"P must have shape"),
    "P_not_preference": (lambda: psipo.psipo_optimum(np.full((2, 2), 0.7), _U2, _U2, 1.0), r"P \+ P\^T"),
    "mu_wrong_n": (lambda: psipo.psipo_optimum(_P2, np.full(3, 1 / 3), _U2, 1.0), "mu must have shape"),
    "mu_not_normalised": (lambda: psipo.psipo_optimum(_P2, [0.5, 0.6], _U2, 1.0), "mu must sum to 1"),
    "ref_negative": (lambda: psipo.psipo_objective(_U2, _P2, _U2, [1.5, -0.5], 1.0), "ref must be non-neg"),
    "policy_not_normalised": (lambda: psipo.psipo_objective([1.0, 1.0], _P2, _U2, _U2, 1.0),
                              "policy must sum to 1"),
    "tau_zero": (lambda: psipo.psipo_optimum(_P2, _U2, _U2, 0.0), "tau must be a finite number > 0"),
    "tau_vector": (lambda: psipo.psipo_optimum(_P2, _U2, _U2, np.ones(2)), "tau must be a scalar"),
    "beta_negative": (lambda: psipo.rlhf_optimum([0.0, 1.0], _U2, -1.0), "beta must be a finite"),
    "rewards_nan": (lambda: psipo.rlhf_optimum([0.0, np.nan], _U2, 1.0), "rewards has non-finite"),
    "batch_mismatch": (lambda: psipo.psipo_optimum(np.stack([_P2] * 3), np.stack([_U2] * 2), _U2, 1.0),
                       "do not broadcast"),
    "action_out_of_range": (lambda: psipo.ipo_empirical_minimiser([0, 2], [1, 0], 2, 1.0),
                            r"chosen action ids must lie in \[0, 2\)"),
    "negative_action": (lambda: psipo.ipo_empirical_loss(np.zeros(2), [0], [-1], np.zeros(2), 1.0),
                        "rejected action ids"),
    "float_actions": (lambda: psipo.ipo_empirical_minimiser([0.0], [1.0], 2, 1.0), "integer action ids"),
    "shape_mismatch": (lambda: psipo.ipo_empirical_minimiser([0, 1], [1], 2, 1.0), "same shape"),
    "empty_dataset": (lambda: psipo.ipo_empirical_minimiser(np.zeros(0, int), np.zeros(0, int), 2, 1.0),
                      "empty"),
    "weights_negative": (lambda: psipo.ipo_empirical_minimiser(*_PAIR, 2, 1.0, weights=[-1.0]),
                         "non-negative"),
    "weights_shape": (lambda: psipo.ipo_empirical_loss(np.zeros(2), *_PAIR, np.zeros(2), 1.0,
                                                       weights=[1.0, 1.0]), r"weights must have shape \[1\]"),
    "weights_zero": (lambda: psipo.ipo_empirical_minimiser(*_PAIR, 2, 1.0, weights=[0.0]), "all be zero"),
    "num_actions": (lambda: psipo.ipo_empirical_minimiser(*_PAIR, 0, 1.0), "num_actions must be"),
    "init_shape": (lambda: psipo.ipo_empirical_minimiser(*_PAIR, 2, 1.0, init_logits=np.zeros(3)),
                   r"init_logits must have shape \[2\]"),
    "ref_logits_inf": (lambda: psipo.ipo_empirical_minimiser(*_PAIR, 2, 1.0, ref_logits=[0.0, -np.inf]),
                       "ref_logits has non-finite"),
    "tau_negative_ipo": (lambda: psipo.ipo_empirical_minimiser(*_PAIR, 2, -0.5), "tau must be"),
    "logits_wrong_n": (lambda: psipo.ipo_population_loss(np.zeros(3), _P2, _U2, np.zeros(2), 1.0),
                       "logits must have shape"),
    "traced_minimiser": (lambda: jax.jit(lambda t: psipo.ipo_empirical_minimiser(*_PAIR, 2, t))(1.0),
                         "cannot be traced"),
    "clipped_logit_eps": (lambda: psipo.clipped_logit(0.5), "eps must lie in"),
}


@pytest.mark.parametrize("name", sorted(_BAD_INPUTS))
def test_bad_inputs_raise_clear_errors(name):
  fn, match = _BAD_INPUTS[name]
  with pytest.raises(PrefjaxError, match=match):
    fn()


def test_shape_checks_run_under_jit_and_value_checks_are_skipped():
  with pytest.raises(PrefjaxError, match="mu must have shape"):
    jax.jit(psipo.psipo_optimum)(_P2, np.full(3, 1 / 3), _U2, 1.0)
  # Values are not checked on tracers (an invalid μ passes through without a host round-trip).
  out = jax.jit(psipo.psipo_optimum)(_P2, np.array([0.5, 0.6]), _U2, 1.0)
  assert out.shape == (2,)

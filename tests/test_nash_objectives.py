"""Tests for prefjax.objectives.nash against independent answers.

Oracles: the exact policy-space dynamics of `prefjax.games.dynamics` (one SGD step on a loss == one
policy-space step, with the step relation derived in the objectives' docstrings), closed-form gradients
re-implemented in numpy float64, brute-force expectations of the sampled losses over all (y, y', y'')
triples, exact-vs-sampled agreement within 4 standard errors, and bad-input errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prefjax.errors import PrefjaxError
from prefjax.games import dynamics
from prefjax.objectives import nash as nobj

N = 5
BETA = 0.1
LR = 0.05


def _game(seed=0, n=N):
  rng = np.random.default_rng(seed)
  u = rng.uniform(size=(n, n))
  P = np.tril(u, -1)
  P = P + np.triu(1.0 - P.T, 1) + 0.5 * np.eye(n)
  return jnp.asarray(P), jnp.asarray(rng.normal(size=n)), jnp.asarray(rng.normal(size=n))


def _np_log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x - x.max()
  return m - np.log(np.exp(m).sum())


def _sgd(loss, logits, lr):
  return logits - lr * jax.grad(loss)(logits)


def test_sgd_on_online_ipo_1_is_one_omd_step(x64):
  """Acceptance: one plain-SGD step on the exact online-IPO-1 loss == one OMD step with ηβ = 4·lr/N."""
  P, ref, theta = _game()
  new = _sgd(lambda t: nobj.online_ipo_1_loss(t, ref, P, BETA), theta, LR)
  eta = 4 * LR / (N * BETA)
  assert np.isclose(eta * BETA, 4 * LR / N)
  want = dynamics.mirror_descent_step(jax.nn.log_softmax(theta), P, ref, BETA, eta)
  np.testing.assert_allclose(jax.nn.log_softmax(new), want, atol=1e-13)
  # And the step is not the OMD step of another η (the test can fail).
  other = dynamics.mirror_descent_step(jax.nn.log_softmax(theta), P, ref, BETA, 2 * eta)
  assert np.max(np.abs(jax.nn.log_softmax(new) - other)) > 1e-4


def test_sgd_on_nash_md_loss_is_one_nash_md_step_with_the_omd_convention(x64):
  P, ref, theta = _game(1)
  mix_eta = nobj.nash_md_mixture_eta(LR, BETA, N, "omd")
  new = _sgd(lambda t: nobj.nash_md_loss(t, ref, P, BETA, mix_eta), theta, LR)
  want = dynamics.nash_md_step(jax.nn.log_softmax(theta), P, ref, BETA, mix_eta)
  np.testing.assert_allclose(jax.nn.log_softmax(new), want, atol=1e-13)
  # EGPO's released convention is half the mixture step: the SGD step is then NOT a Nash-MD step of η̃.
  half = nobj.nash_md_mixture_eta(LR, BETA, N, "egpo_code")
  np.testing.assert_allclose(half, mix_eta / 2, rtol=1e-15)
  new_half = _sgd(lambda t: nobj.nash_md_loss(t, ref, P, BETA, half), theta, LR)
  # It is the OMD-size step (η = 4lr/(βN)) towards the payoff of the less-mixed π^μ(η̃ = η/2).
  log_pi = _np_log_softmax(theta)
  log_mix = _np_log_softmax((1 - half * BETA) * log_pi + half * BETA * _np_log_softmax(ref))
  eta = 4 * LR / (N * BETA)
  want_half = _np_log_softmax((1 - eta * BETA) * log_pi + eta * BETA * _np_log_softmax(ref)
                              + eta * np.asarray(P) @ np.exp(log_mix))
  np.testing.assert_allclose(jax.nn.log_softmax(new_half), want_half, atol=1e-13)
  with pytest.raises(PrefjaxError, match="convention"):
    nobj.nash_md_mixture_eta(LR, BETA, N, "paper")


def test_egpo_step_is_policy_space_extragradient(x64):
  """Acceptance: EGPO's loss form (two SGD gradients from θ_t) == policy-space EG with η = 4·lr/(βN)."""
  P, ref, theta = _game(2)
  opt = optax.sgd(LR)
  loss_fn = lambda p, q, k: nobj.online_ipo_1_loss(p, ref, P, BETA, target_logits=q)
  new, _, _ = nobj.egpo_step(loss_fn, opt, theta, opt.init(theta))
  want = dynamics.extragradient_step(jax.nn.log_softmax(theta), P, ref, BETA, nobj.omd_eta(LR, N, BETA))
  np.testing.assert_allclose(jax.nn.log_softmax(new), want, atol=1e-13)
  # Ten steps stay on the policy-space trajectory.
  log_pi = jax.nn.log_softmax(theta)
  state = opt.init(theta)
  for _ in range(10):
    theta, state, _ = nobj.egpo_step(loss_fn, opt, theta, state)
    log_pi = dynamics.extragradient_step(log_pi, P, ref, BETA, nobj.omd_eta(LR, N, BETA))
  np.testing.assert_allclose(jax.nn.log_softmax(theta), log_pi, atol=1e-12)


def test_closed_form_gradients(x64):
  P, ref, theta = _game(3)
  Pn, log_ref, log_pi = np.asarray(P), _np_log_softmax(ref), _np_log_softmax(theta)
  pi = np.exp(log_pi)
  ell = log_pi - log_ref
  # online IPO 1: (4/N)(r − r̄), r = ℓ − Pπ/β.
  r = ell - Pn @ pi / BETA
  np.testing.assert_allclose(jax.grad(nobj.online_ipo_1_loss)(theta, ref, P, BETA), 4 / N * (r - r.mean()),
                             atol=1e-12)
  # online IPO 2: 4 π(y)(ℓ_y − E_π ℓ − ((Pπ)_y − ½)/β).
  want = 4 * pi * (ell - pi @ ell - (Pn @ pi - 0.5) / BETA)
  np.testing.assert_allclose(jax.grad(nobj.online_ipo_2_loss)(theta, ref, P, BETA), want, atol=1e-12)
  # Nash-MD-PG: −π ⊙ (A − E_π A), A = P π^μ − β ℓ.
  mix_eta = 0.7
  mix = np.exp(_np_log_softmax((1 - mix_eta * BETA) * log_pi + mix_eta * BETA * log_ref))
  a = Pn @ mix - BETA * ell
  np.testing.assert_allclose(jax.grad(nobj.nash_md_pg_loss)(theta, ref, P, BETA, mix_eta),
                             -pi * (a - pi @ a), atol=1e-12)
  # Online IPO 2 is stationary at the regularised NE.
  from prefjax.games import nash
  ne = nash.solve_regularised_nash(P, ref, BETA).policy
  np.testing.assert_allclose(jax.grad(nobj.online_ipo_2_loss)(jnp.log(ne), ref, P, BETA), 0.0, atol=1e-11)
  np.testing.assert_allclose(jax.grad(nobj.online_ipo_1_loss)(jnp.log(ne), ref, P, BETA), 0.0, atol=1e-11)


def test_sampled_expectations_by_brute_force(x64):
  """E[sampled loss] over all (y, y', y'') == exact loss + the documented target variance."""
  P, ref, theta = _game(4)
  Pn = np.asarray(P)
  ell = _np_log_softmax(theta) - _np_log_softmax(ref)
  target = np.exp(_np_log_softmax(theta + 0.3))
  brute = 0.0
  for y in range(N):
    for yp in range(N):
      for ypp in range(N):
        brute += target[ypp] / N**2 * (ell[y] - ell[yp] - (Pn[y, ypp] - Pn[yp, ypp]) / BETA) ** 2
  exact = nobj.online_ipo_1_loss(theta, ref, P, BETA, target_logits=theta + 0.3)
  var = nobj.online_ipo_1_target_variance(theta + 0.3, P, BETA)
  np.testing.assert_allclose(exact + var, brute, rtol=1e-12)


def _twins(P, ref, theta, prev, data):
  mix_eta = 0.5
  k = 4
  return {
      "online_ipo_1": (lambda t: nobj.online_ipo_1_loss(t, ref, P, BETA),
                       lambda t, key: nobj.online_ipo_1_loss_sampled(t, ref, P, BETA, key, 50),
                       nobj.online_ipo_1_target_variance(theta, P, BETA)),
      "online_ipo_1_bernoulli": (lambda t: nobj.online_ipo_1_loss(t, ref, P, BETA),
                                 lambda t, key: nobj.online_ipo_1_loss_sampled(t, ref, P, BETA, key, 50,
                                                                               labels="bernoulli"),
                                 None),
      "online_ipo_2": (lambda t: nobj.online_ipo_2_loss(t, ref, P, BETA),
                       lambda t, key: nobj.online_ipo_2_loss_sampled(t, ref, P, BETA, key, 50), 0.0),
      "nash_md": (lambda t: nobj.nash_md_loss(t, ref, P, BETA, mix_eta),
                  lambda t, key: nobj.nash_md_loss_sampled(t, ref, P, BETA, mix_eta, key, 50),
                  nobj.online_ipo_1_target_variance(nobj.mixture_logits(theta, ref, BETA, mix_eta), P, BETA)),
      "nash_md_pg": (lambda t: nobj.nash_md_pg_loss(t, ref, P, BETA, mix_eta),
                     lambda t, key: nobj.nash_md_pg_loss_sampled(t, ref, P, BETA, mix_eta, key, 50), 0.0),
      "sppo": (lambda t: nobj.sppo_loss(t, prev, P, BETA, num_samples_k=k),
               lambda t, key: nobj.sppo_loss_sampled(t, prev, P, BETA, key, k, num_prompts=10), None),
      "spin": (lambda t: nobj.spin_loss(t, prev, ref, data, prev, 2.0),
               lambda t, key: nobj.spin_loss_sampled(t, prev, ref, data, prev, 2.0, key, 50), 0.0),
      "alpha_spin": (lambda t: nobj.spin_loss(t, prev, ref, data, prev, 2.0, alpha=0.3),
                     lambda t, key: nobj.spin_loss_sampled(t, prev, ref, data, prev, 2.0, key, 50, alpha=0.3),
                     0.0),
  }


def test_sampled_twins_within_four_standard_errors(x64):
  """Acceptance: each sampled twin's loss and gradient agree with the exact ones within 4 SE."""
  P, ref, theta = _game(5)
  prev = theta + jnp.asarray(np.random.default_rng(7).normal(size=N)) * 0.3
  data = jnp.asarray(np.random.default_rng(8).normal(size=N))
  reps = 2000
  twins = _twins(P, ref, theta, prev, data)
  names = sorted(twins)

  @jax.jit
  def all_samples(key):
    out = {}
    for i, name in enumerate(names):
      keys = jax.random.split(jax.random.fold_in(key, i), reps)
      out[name] = jax.vmap(lambda k: jax.value_and_grad(twins[name][1])(theta, k))(keys)
    return out

  samples = all_samples(jax.random.PRNGKey(0))
  for name in names:
    exact_loss_fn, _, offset = twins[name]
    exact_loss, exact_grad = jax.value_and_grad(exact_loss_fn)(theta)
    losses, grads = samples[name]
    se_g = np.std(grads, axis=0, ddof=1) / np.sqrt(reps)
    assert np.all(np.abs(np.mean(grads, 0) - exact_grad) <= 4 * se_g + 1e-12), name
    assert np.max(se_g) > 0, name
    if offset is not None:
      se_l = np.std(losses, ddof=1) / np.sqrt(reps)
      assert abs(np.mean(losses) - (exact_loss + offset)) <= 4 * se_l + 1e-12, name


def test_sppo_soft_win_rate_mean_and_official_selections(x64):
  P, _, prev = _game(6)
  theta = prev + 0.1
  # Soft win rate with self included: K = 1 gives ½ whatever the game (the target vanishes).
  pi_t = jax.nn.softmax(prev)
  loss_k1 = nobj.sppo_loss(theta, prev, P, BETA, num_samples_k=1)
  ell = jax.nn.log_softmax(theta) - jax.nn.log_softmax(prev)
  np.testing.assert_allclose(loss_k1, 0.5 * jnp.sum(pi_t * ell**2), rtol=1e-12)
  key = jax.random.PRNGKey(1)
  soft = nobj.sppo_loss_sampled(theta, prev, P, BETA, key, 6, selection="best_worst")
  hard = nobj.sppo_loss_sampled(theta, prev, P, BETA, key, 6, selection="hard")
  assert np.isfinite(soft) and np.isfinite(hard) and not np.isclose(soft, hard)
  with pytest.raises(PrefjaxError, match="selection"):
    nobj.sppo_loss_sampled(theta, prev, P, BETA, key, 6, selection="median")
  with pytest.raises(PrefjaxError, match="num_samples_k"):
    nobj.sppo_loss_sampled(theta, prev, P, BETA, key, 1)


def test_spin_exact_minimiser_is_spin_step(x64):
  """The tabular minimiser of the (α-)SPIN loss is dynamics.spin_step with η = 1/λ (zero gradient there)."""
  P, ref, prev = _game(7)
  del P
  data = jnp.asarray(np.random.default_rng(1).normal(size=N))
  lam = 2.0
  for alpha in (0.0, 0.3):
    nxt = dynamics.spin_step(jax.nn.log_softmax(prev), jax.nn.log_softmax(prev), ref, data, 1 / lam, alpha)
    g = jax.grad(nobj.spin_loss)(nxt, prev, ref, data, prev, lam, alpha)
    np.testing.assert_allclose(g, 0.0, atol=1e-12)
    g_prev = jax.grad(nobj.spin_loss)(prev + 0.5 * data, prev, ref, data, prev, lam, alpha)
    assert np.max(np.abs(g_prev)) > 1e-3


def test_jit_equals_no_jit_and_float32():
  P, ref, theta = (jnp.asarray(x, jnp.float32) for x in _game(8))
  f = lambda t: nobj.online_ipo_1_loss(t, ref, P, BETA)
  np.testing.assert_allclose(jax.jit(f)(theta), f(theta), rtol=1e-6)
  assert f(theta).dtype == jnp.float32


def test_bad_inputs():
  P, ref, theta = (np.asarray(x) for x in _game(9))
  bad = P.copy()
  bad[0, 1] += 0.2
  with pytest.raises(PrefjaxError, match=r"P \+ P\^T = 1"):
    nobj.online_ipo_1_loss(theta, ref, bad, BETA)
  with pytest.raises(PrefjaxError, match=r"\[0, 1\]"):
    nobj.online_ipo_2_loss(theta, ref, 2 * P - 0.5, BETA)
  for beta in (0.0, -1.0):
    with pytest.raises(PrefjaxError, match="beta must be finite and > 0"):
      nobj.nash_md_loss(theta, ref, P, beta, 0.1)
  with pytest.raises(PrefjaxError, match="ref_logits must have shape"):
    nobj.online_ipo_1_loss(theta, ref[:-1], P, BETA)
  with pytest.raises(PrefjaxError, match="P must have shape"):
    nobj.nash_md_pg_loss(theta, ref, P[:-1, :-1], BETA, 0.1)
  with pytest.raises(PrefjaxError, match="labels"):
    nobj.online_ipo_1_loss_sampled(theta, ref, P, BETA, jax.random.PRNGKey(0), labels="votes")
  with pytest.raises(PrefjaxError, match="num_samples"):
    nobj.online_ipo_1_loss_sampled(theta, ref, P, BETA, jax.random.PRNGKey(0), num_samples=0)
  with pytest.raises(PrefjaxError, match="unknown game objective"):
    nobj.get_game_objective("egpoo")
  assert "egpo" in nobj.list_game_objectives()

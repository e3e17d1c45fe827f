"""Tests for prefjax.games.dynamics against independent answers.

Oracles: the multiplicative (policy-space) forms of each update re-implemented in numpy float64; the
regularised NE from `nash.solve_regularised_nash`; Munos et al.'s Nash-MD bound; the Hedge regret bound
for multiplicative weights; the closed-form fixed points of (α-)SPIN and the first-order condition of the
SPIN loss; vmap == loop.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax.games import preferences
from prefjax.errors import PrefjaxError
from prefjax.games import dynamics
from prefjax.games import nash

BETA = 0.1
T = 1000
RECORD = 100
ALPHA = 0.3
HISTORY = 3
# Step sizes inside each method's convergence region at β = 0.1 (Cen et al. arXiv:2105.15186 for
# the extragradient and optimistic ones); ignored by nash_md_decay and fictitious_play.
ETAS = {
    "mirror_descent": 0.5,
    "nash_md": 0.5,
    "nash_md_decay": 1.0,
    "extragradient": 1.0 / (BETA + 0.5),
    "optimistic": 0.4,
    "mwu": 0.1,
    "fictitious_play": 1.0,
    "spin": 0.5,
    "alpha_spin": 0.5,
}
ALIASES = {"online_ipo": "mirror_descent", "egpo": "extragradient", "sppo": "mwu"}


def np_softmax(x):
  z = np.exp(x - x.max(axis=-1, keepdims=True))
  return z / z.sum(axis=-1, keepdims=True)


def np_kl(p, q):
  return np.sum(p * np.log(p / q), axis=-1)


def np_games(seed, num_games, n):
  """EGPO-style games drawn with numpy: ½ diagonal, lower iid U(0, 1), upper = 1 − lowerᵀ."""
  rng = np.random.default_rng(seed)
  lower = np.tril(rng.uniform(size=(num_games, n, n)), k=-1)
  P = lower + np.triu(1.0 - np.swapaxes(lower, -1, -2), k=1) + 0.5 * np.eye(n)
  return P, rng.normal(size=(num_games, n))


def _to_numpy(tree):
  return jax.tree_util.tree_map(np.asarray, tree)


@pytest.fixture(scope="module")
def runs():
  """Every dynamic on three 8-action games in float64, vmapped over games (one compilation each)."""
  with jax.enable_x64(True):
    P, ref_logits = np_games(0, 3, 8)
    data_logits = np.random.default_rng(1).normal(size=(3, 8))
    nash_pi = np.asarray(nash.solve_regularised_nash(jnp.asarray(P), jnp.asarray(ref_logits), BETA).policy)
    results = {}
    for name, eta in ETAS.items():
      run = jax.vmap(lambda p, r, d, eta=eta, name=name: dynamics.run_dynamics(
          name, p, r, BETA, eta, T, RECORD, alpha=ALPHA, history=HISTORY, data_logits=d))
      results[name] = _to_numpy(run(jnp.asarray(P), jnp.asarray(ref_logits), jnp.asarray(data_logits)))
  return dict(P=P, ref_logits=ref_logits, data_logits=data_logits, nash=nash_pi, results=results)


def test_registry_names_and_aliases():
  assert set(ETAS) | set(ALIASES) == set(dynamics.DYNAMICS)
  for alias, name in ALIASES.items():
    assert dynamics.DYNAMICS[alias] is dynamics.DYNAMICS[name]
  with pytest.raises(PrefjaxError, match="known: .*extragradient"):
    dynamics.run_dynamics("gradient_ascent", preferences.cyclic(3), jnp.zeros(3), 0.1, 0.1, 10)


def test_step_functions_match_multiplicative_forms(x64):
  rng = np.random.default_rng(2)
  P, ref_logits = np_games(3, 1, 6)
  P, ref = P[0], np_softmax(ref_logits[0])
  pi, pi_bar, data = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
  beta, eta, alpha, t = 0.3, 0.7, 0.4, 5
  args = (jnp.asarray(P), jnp.asarray(np.log(ref) + 1.5), beta, eta)  # logits up to a constant

  def normalise(x):
    return x / x.sum()

  def check(log_out, expected):
    np.testing.assert_allclose(np.exp(np.asarray(log_out)), expected, rtol=1e-12, atol=1e-15)

  geo = pi ** (1 - eta * beta) * ref ** (eta * beta)
  check(dynamics.mirror_descent_step(jnp.log(pi), *args), normalise(geo * np.exp(eta * P @ pi)))
  mix = normalise(geo)
  check(dynamics.nash_md_step(jnp.log(pi), *args), normalise(mix * np.exp(eta * P @ mix)))
  half = normalise(geo * np.exp(eta * P @ pi))
  check(dynamics.extragradient_step(jnp.log(pi), *args), normalise(geo * np.exp(eta * P @ half)))
  new, new_bar = dynamics.optimistic_step(jnp.log(pi), jnp.log(pi_bar), *args)
  bar = normalise(geo * np.exp(eta * P @ pi_bar))
  check(new_bar, bar)
  check(new, normalise(geo * np.exp(eta * P @ bar)))
  check(dynamics.mwu_step(jnp.log(pi), jnp.asarray(P), eta), normalise(pi * np.exp(eta * P @ pi)))
  br = normalise(ref * np.exp(P @ pi / beta))
  check(dynamics.fictitious_play_step(jnp.log(pi), args[0], args[1], beta, t),
        (t + 1) / (t + 2) * pi + br / (t + 2))
  q = rng.dirichlet(np.ones(6))
  spin = dynamics.spin_step(jnp.log(pi), jnp.log(q), args[1], jnp.log(data) - 2.0, eta, alpha)
  check(spin, normalise(ref ** alpha * pi ** (1 - alpha) * (data / q) ** eta))

  # The SPIN step minimises the population SPIN loss E_{y∼p_data, y'∼q}[−log σ(λ(ℓ(y) − ℓ(y')))],
  # ℓ = θ − log m, m ∝ π_ref^α π^{1−α}, λ = 1/η: its gradient vanishes there and not at θ = log m.
  log_m = np.log(normalise(ref ** alpha * pi ** (1 - alpha)))

  def spin_loss(theta):
    ell = theta - log_m
    margins = (ell[:, None] - ell[None, :]) / eta
    return jnp.sum(data[:, None] * q[None, :] * jax.nn.softplus(-margins))

  grad = jax.grad(spin_loss)
  assert np.abs(np.asarray(grad(spin))).max() < 1e-12
  assert np.abs(np.asarray(grad(jnp.asarray(log_m)))).max() > 1e-3


def test_extragradient_converges_to_solver_nash(runs):
  res = runs["results"]["extragradient"]
  assert np.all(res.gap[:, -1] < 1e-10)
  np.testing.assert_allclose(res.policy, runs["nash"], atol=1e-9)
  np.testing.assert_array_equal(res.steps[0], np.arange(RECORD, T + 1, RECORD))
  # Linear convergence: the gap shrinks monotonically until it reaches rounding level.
  assert np.all(np.diff(res.gap, axis=-1) <= 1e-28)
  assert np.all(res.gap[:, 0] > res.gap[:, -1])


@pytest.mark.parametrize("name", ["mirror_descent", "optimistic"])
def test_mirror_descent_and_optimistic_converge(runs, name):
  res = runs["results"][name]
  assert np.all(res.gap[:, -1] < 1e-10)
  np.testing.assert_allclose(res.policy, runs["nash"], atol=1e-9)


def test_nash_md_constant_step_bias_shrinks_with_eta(runs):
  # Constant-η Nash-MD's fixed point is π = BR(π^μ), not π*_β: a bias of order η.
  bias = np.abs(runs["results"]["nash_md"].policy - runs["nash"]).max(-1)
  assert np.all(bias > 1e-6)
  with jax.enable_x64(True):
    small = jax.vmap(lambda p, r, d: dynamics.run_dynamics(
        "nash_md", p, r, BETA, ETAS["nash_md"] / 4, T, RECORD, alpha=ALPHA, history=HISTORY,
        data_logits=d))(*(jnp.asarray(runs[k]) for k in ("P", "ref_logits", "data_logits")))
    small_bias = np.abs(np.asarray(small.policy) - runs["nash"]).max(-1)
  assert np.all(small_bias < bias / 2)


def test_nash_md_decay_satisfies_munos_bound(x64):
  P, ref_logits = np_games(4, 3, 8)  # the fixture's shapes: the solver is already compiled
  for beta in (0.1, 1.0):
    star = np.asarray(nash.solve_regularised_nash(jnp.asarray(P), jnp.asarray(ref_logits), beta).policy)
    res = jax.vmap(lambda p, r, beta=beta: dynamics.run_dynamics("nash_md_decay", p, r, beta, 1.0, 300, 1))(
        jnp.asarray(P), jnp.asarray(ref_logits))
    steps = np.asarray(res.steps[0])
    kl = np_kl(star[:, None, :], np.asarray(res.policies))
    assert np.all(kl <= 8.0 / (beta**2 * (steps + 1.0)))  # Munos et al. Thm. 1, every recorded T
    kl0 = np_kl(star, np_softmax(ref_logits))
    assert np.all(kl[:, -1] < 1e-2 * kl0)  # and it does converge


def test_mwu_average_approaches_rps_nash_while_last_iterate_does_not(x64):
  P = preferences.cyclic(3, dtype=jnp.float64)
  init = np.array([1.0, 0.0, -0.5])
  eta, steps = 0.1, 2000
  res = dynamics.run_dynamics("mwu", P, jnp.zeros(3), 0.1, eta, steps, 100, init_logits=jnp.asarray(init))
  t = np.asarray(res.steps)
  uniform = np.full(3, 1 / 3)
  # Average iterate: exploitability = regret / t ≤ log(1/π_0(y))/(η t) + η/8 (Hedge, gains in [0, 1]).
  expl_avg = np.asarray(nash.exploitability(res.avg_policies, P))
  bound = np.max(-np.log(np_softmax(init))) / (eta * t) + eta / 8
  assert np.all(expl_avg <= bound) and expl_avg[-1] < 0.025
  # Last iterate: KL(uniform ‖ π_t) keeps increasing and the iterate stays exploitable.
  kl = np_kl(uniform, np.asarray(res.policies))
  assert np.all(np.diff(kl) > 0) and kl[0] > np_kl(uniform, np_softmax(init))
  assert np.all(np.asarray(nash.exploitability(res.policies, P)) > 0.1)
  # No reference term: π_ref does not change the trajectory.
  other = dynamics.run_dynamics("mwu", P, jnp.asarray([2.0, -1.0, 0.0]), 0.1, eta, steps, 100,
                                init_logits=jnp.asarray(init))
  np.testing.assert_array_equal(other.policies, res.policies)


def test_fictitious_play_approaches_nash(runs):
  res = runs["results"]["fictitious_play"]
  assert np.all(np.diff(res.gap, axis=-1) < 0)
  assert np.all(res.gap[:, -1] < 1e-5)
  assert np.all(np.abs(res.policy - runs["nash"]).max(-1) < 1e-2)


def test_spin_fixed_points(runs):
  log_ref = np.log(np_softmax(runs["ref_logits"]))
  log_data = np.log(np_softmax(runs["data_logits"]))
  eta = ETAS["spin"]
  np.testing.assert_allclose(runs["results"]["spin"].policy, np.exp(log_data), atol=1e-12)
  closed = np_softmax((ALPHA * log_ref + eta * log_data) / (ALPHA + eta))
  np.testing.assert_allclose(runs["results"]["alpha_spin"].policy, closed, atol=1e-12)
  assert np.abs(closed - np.exp(log_data)).max() > 1e-2  # α pulls the fixed point towards π_ref


def test_spin_history_matches_numpy_loop(x64):
  P, ref_logits = np_games(5, 1, 5)
  rng = np.random.default_rng(6)
  data_logits, init_logits = rng.normal(size=5), rng.normal(size=5)
  eta, alpha, h, steps = 0.6, 0.2, 3, 7
  res = dynamics.run_dynamics("alpha_spin", jnp.asarray(P[0]), jnp.asarray(ref_logits[0]), 0.1, eta, steps, 1,
                              alpha=alpha, history=h, data_logits=jnp.asarray(data_logits),
                              init_logits=jnp.asarray(init_logits))
  ref, data = np_softmax(ref_logits[0]), np_softmax(data_logits)
  iterates = [np_softmax(init_logits)]
  for _ in range(steps):
    window = (iterates[::-1] + [iterates[0]] * h)[:h]  # last h iterates, padded with π_0
    q = np.mean(window, axis=0)
    pi = iterates[-1]
    new = ref**alpha * pi ** (1 - alpha) * (data / q) ** eta
    iterates.append(new / new.sum())
  np.testing.assert_allclose(res.policies, np.stack(iterates[1:]), rtol=1e-12)
  np.testing.assert_allclose(res.avg_policies[-1], np.mean(iterates[:-1], axis=0), rtol=1e-12)


def test_all_dynamics_keep_policies_normalised(runs):
  for name, res in runs["results"].items():
    for arr in (res.policy, res.avg_policy, res.policies, res.avg_policies):
      assert np.all(np.isfinite(arr)) and np.all(arr >= 0), name
      np.testing.assert_allclose(arr.sum(-1), 1.0, atol=1e-12, err_msg=name)
    assert np.all(res.gap >= 0) and np.all(res.avg_gap >= 0), name


def test_vmap_over_step_sizes_and_games_equals_loop():
  P, ref_logits = (np.asarray(x, np.float32) for x in np_games(7, 3, 6))
  etas = np.asarray([0.1, 0.25, 0.4], np.float32)

  def run(p, r, eta):
    return dynamics.run_dynamics("optimistic", p, r, 0.2, eta, 60, 20)

  swept = jax.vmap(jax.vmap(run, in_axes=(0, 0, None)), in_axes=(None, None, 0))(P, ref_logits, etas)
  assert swept.policies.shape == (3, 3, 3, 6)
  for i, eta in enumerate(etas):
    for g in range(3):
      single = run(P[g], ref_logits[g], eta)
      np.testing.assert_allclose(swept.policies[i, g], single.policies, rtol=2e-5, atol=1e-7)
      np.testing.assert_allclose(swept.gap[i, g], single.gap, rtol=1e-3, atol=1e-7)
      np.testing.assert_allclose(np.sum(single.policies, -1), 1.0, atol=1e-6)  # float32 normalised


def test_bad_inputs_raise_prefjax_errors():
  P, ref = preferences.cyclic(3), jnp.zeros(3)
  data = jnp.zeros(3)
  run = dynamics.run_dynamics
  with pytest.raises(PrefjaxError, match="record_every"):
    run("mwu", P, ref, 0.1, 0.1, 10, 3)
  with pytest.raises(PrefjaxError, match="T must"):
    run("mwu", P, ref, 0.1, 0.1, 0)
  with pytest.raises(PrefjaxError, match="history"):
    run("spin", P, ref, 0.1, 0.1, 10, history=0, data_logits=data)
  with pytest.raises(PrefjaxError, match="data_logits"):
    run("spin", P, ref, 0.1, 0.1, 10)
  with pytest.raises(PrefjaxError, match="eta"):
    run("extragradient", P, ref, 0.1, 0.0, 10)
  with pytest.raises(PrefjaxError, match="beta"):
    run("extragradient", P, ref, -0.1, 0.1, 10)
  with pytest.raises(PrefjaxError, match="alpha"):
    run("alpha_spin", P, ref, 0.1, 0.1, 10, alpha=1.5, data_logits=data)
  with pytest.raises(PrefjaxError, match="vmap"):
    run("mwu", jnp.stack([P, P]), ref, 0.1, 0.1, 10)
  with pytest.raises(PrefjaxError, match="ref_logits"):
    run("mwu", P, jnp.zeros(4), 0.1, 0.1, 10)
  with pytest.raises(PrefjaxError, match="init_logits"):
    run("mwu", P, ref, 0.1, 0.1, 10, init_logits=jnp.zeros(2))
  with pytest.raises(PrefjaxError, match="P \\+ P\\^T"):
    run("mwu", jnp.full((3, 3), 0.7), ref, 0.1, 0.1, 10)
  with pytest.raises(PrefjaxError, match="scalar"):
    run("mwu", P, ref, 0.1, jnp.ones(2), 10)

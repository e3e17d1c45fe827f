"""Oracle tests of the density objectives (prefjax.objectives.density) and the 1-D environment (prefjax.density).

Independent answers: numpy float64 re-implementations, finite differences (check_grads), and the implied
optima: the population loss on a small discrete support, minimised by gradient descent, equals the closed form.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

from prefjax.density import grid as grid_lib
from prefjax.errors import PrefjaxError
from prefjax.objectives import density as dens


def _np_sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _np_nll(z, y):
  return -(y * np.log(_np_sigmoid(z)) + (1 - y) * np.log(_np_sigmoid(-z)))


@pytest.fixture
def batch():
  rng = np.random.default_rng(0)
  b = 7
  return dict(lpa=rng.normal(size=b), lpb=rng.normal(size=b), pra=rng.normal(size=b), prb=rng.normal(size=b),
              y=rng.uniform(size=b))


def test_losses_match_numpy_float64(x64, batch):
  lpa, lpb, pra, prb, y = (batch[k] for k in ("lpa", "lpb", "pra", "prb", "y"))
  beta, alpha, delta = 2.5, 0.3, 0.7
  la, lb = lpa - pra, lpb - prb
  expected = {
      "luce": (_np_nll(lpa - lpb, y), {}),
      "dpo": (_np_nll(beta * (la - lb), y), {"beta": beta}),
      "geometric": (_np_nll((la - lb) / alpha + pra - prb, y), {"alpha": alpha}),
      "ipo": (y * (la - lb - 1 / (2 * beta)) ** 2 + (1 - y) * (lb - la - 1 / (2 * beta)) ** 2, {"beta": beta}),
      "slic": (y * np.maximum(0, delta - (lpa - lpb)) + (1 - y) * np.maximum(0, delta - (lpb - lpa)),
               {"delta": delta}),
  }
  for name, (want, hp) in expected.items():
    got = dens.density_loss(name, *(jnp.asarray(batch[k]) for k in ("lpa", "lpb", "pra", "prb", "y")), **hp)
    np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)
  # The family: f = β, g = −β log π_pre is DPO; f = 1/α, g = (1 − 1/α) log π_pre is geometric.
  fam = dens.preference_behaviour_loss(jnp.asarray(lpa), jnp.asarray(lpb), jnp.asarray(y), f_a=beta, f_b=beta,
                                       g_a=-beta * pra, g_b=-beta * prb)
  np.testing.assert_allclose(fam, expected["dpo"][0], rtol=1e-12)
  fam = dens.preference_behaviour_loss(jnp.asarray(lpa), jnp.asarray(lpb), jnp.asarray(y), f_a=1 / alpha,
                                       f_b=1 / alpha, g_a=(1 - 1 / alpha) * pra, g_b=(1 - 1 / alpha) * prb)
  np.testing.assert_allclose(fam, expected["geometric"][0], rtol=1e-12)


def test_aliases_and_unknown_names(batch):
  args = [jnp.asarray(batch[k], jnp.float32) for k in ("lpa", "lpb", "pra", "prb", "y")]
  np.testing.assert_array_equal(dens.density_loss("bradley_terry", *args), dens.density_loss("luce", *args))
  np.testing.assert_array_equal(dens.density_loss("sigmoid", *args, beta=2.0),
                                dens.density_loss("dpo", *args, beta=2.0))
  with pytest.raises(PrefjaxError, match="known density objective names"):
    dens.density_loss("dpoo", *args, beta=1.0)
  with pytest.raises(PrefjaxError, match="beta must be > 0"):
    dens.density_loss("dpo", *args, beta=0.0)
  with pytest.raises(PrefjaxError, match="same shape"):
    dens.dpo_loss(args[0], args[1][:3], args[2], args[3], args[4], beta=1.0)


def test_mixture_logits_match_numpy_and_reduce_to_luce(x64):
  rng = np.random.default_rng(1)
  qa, qb, logits = rng.normal(size=(3, 5)) * 3, rng.normal(size=(3, 5)) * 3, rng.normal(size=3)
  w = np.exp(logits) / np.exp(logits).sum()
  p = (w[:, None] * _np_sigmoid(qa - qb)).sum(0)
  got = dens.mixture_preference_logits(jnp.asarray(qa), jnp.asarray(qb), jnp.asarray(logits))
  np.testing.assert_allclose(got, np.log(p / (1 - p)), rtol=1e-10)
  y = rng.uniform(size=5)
  np.testing.assert_allclose(dens.mixture_loss(jnp.asarray(qa), jnp.asarray(qb), jnp.asarray(logits),
                                               jnp.asarray(y)),
                             -(y * np.log(p) + (1 - y) * np.log(1 - p)), rtol=1e-10)
  # One component is the Luce likelihood, whatever its mixture logit.
  np.testing.assert_allclose(
      dens.mixture_loss(jnp.asarray(qa[:1]), jnp.asarray(qb[:1]), jnp.asarray([0.3]), jnp.asarray(y)),
      dens.luce_loss(jnp.asarray(qa[0]), jnp.asarray(qb[0]), None, None, jnp.asarray(y)), rtol=1e-12)
  with pytest.raises(PrefjaxError, match=r"\[K, B\]"):
    dens.mixture_preference_logits(jnp.asarray(qa), jnp.asarray(qb), jnp.zeros(2))


def test_gradients_match_finite_differences(x64, batch):
  args = [jnp.asarray(batch[k]) for k in ("lpa", "lpb", "pra", "prb")]
  y = jnp.asarray(batch["y"])
  for name, hp in (("dpo", {"beta": 1.7}), ("geometric", {"alpha": 0.4}), ("ipo", {"beta": 0.8}),
                   ("luce", {})):
    check_grads(lambda a, b: jnp.sum(dens.density_loss(name, a, b, args[2], args[3], y, **hp)),
                (args[0], args[1]), order=2, modes=["rev"])
  rng = np.random.default_rng(2)
  qa, qb, lg = (jnp.asarray(rng.normal(size=s)) for s in ((2, 4), (2, 4), (2,)))
  check_grads(lambda a, b, l: jnp.sum(dens.mixture_loss(a, b, l, y[:4])), (qa, qb, lg), order=2, modes=["rev"])


def _population_minimiser(loss_name, log_pre, log_pstar, hp, steps=30):
  """Minimises E_{a,b∼π_pre} E_{y∼Luce(p*)} loss over softmax logits θ (float64) by Newton steps.

  The population loss depends on θ only through differences, so its Hessian is singular along θ ∝ 1: the
  Newton direction uses the pseudo-inverse. Returns (log π, max |gradient|) at the end.
  """
  n = log_pre.shape[0]
  pre = jnp.exp(log_pre)
  pa = jnp.repeat(jnp.arange(n), n)
  pb = jnp.tile(jnp.arange(n), n)
  weight = pre[pa] * pre[pb]
  prob = jax.nn.sigmoid(log_pstar[pa] - log_pstar[pb])

  def pop_loss(theta):
    logp = jax.nn.log_softmax(theta)
    args = (logp[pa], logp[pb], log_pre[pa], log_pre[pb])
    return jnp.sum(weight * (prob * dens.density_loss(loss_name, *args, jnp.ones_like(prob), **hp)
                             + (1 - prob) * dens.density_loss(loss_name, *args, jnp.zeros_like(prob), **hp)))

  @jax.jit
  def newton(theta):
    def body(_, t):
      return t - jnp.linalg.pinv(jax.hessian(pop_loss)(t), hermitian=True) @ jax.grad(pop_loss)(t)
    t = jax.lax.fori_loop(0, steps, body, theta)
    return jax.nn.log_softmax(t), jnp.max(jnp.abs(jax.grad(pop_loss)(t)))

  logp, g = newton(log_pre)
  return logp, float(g)


@pytest.mark.parametrize("name, hp, optimum", [
    ("dpo", {"beta": 4.0}, lambda lpre, lps: dens.dpo_optimum(lpre, lps, 4.0)),
    ("dpo", {"beta": 0.5}, lambda lpre, lps: dens.dpo_optimum(lpre, lps, 0.5)),
    ("geometric", {"alpha": 0.25}, lambda lpre, lps: dens.geometric_optimum(lpre, lps, 0.25)),
    ("luce", {}, lambda lpre, lps: dens.luce_optimum(lps)),
    ("ipo", {"beta": 0.5}, lambda lpre, lps: dens.ipo_optimum(lpre, lps, 0.5)),
])
def test_population_minimiser_equals_implied_optimum(x64, name, hp, optimum):
  rng = np.random.default_rng(3)
  log_pre = jax.nn.log_softmax(jnp.asarray(rng.normal(size=5)))
  log_pstar = jax.nn.log_softmax(jnp.asarray(2 * rng.normal(size=5)))
  got, grad_norm = _population_minimiser(name, log_pre, log_pstar, hp)
  assert grad_norm < 1e-10, grad_norm  # Converged: the comparison below is then limited by float64 only.
  np.testing.assert_allclose(np.exp(got), np.exp(optimum(log_pre, log_pstar)), atol=1e-9)


def test_implied_optima_limits(x64):
  rng = np.random.default_rng(4)
  lpre = jax.nn.log_softmax(jnp.asarray(rng.normal(size=6)))
  lps = jax.nn.log_softmax(jnp.asarray(rng.normal(size=6)))
  np.testing.assert_allclose(dens.geometric_optimum(lpre, lps, 1.0), lps, atol=1e-12)  # α = 1: p*.
  np.testing.assert_allclose(dens.geometric_optimum(lpre, lps, 0.0), lpre, atol=1e-12)  # α = 0: π_pre.
  np.testing.assert_allclose(dens.dpo_optimum(lpre, lps, 1.0), jax.nn.log_softmax(lpre + lps), atol=1e-12)
  # Non-uniform point weights: normalised so that Σ w exp(log π) = 1.
  log_w = jnp.log(jnp.asarray(rng.uniform(0.5, 1.5, size=6)))
  np.testing.assert_allclose(jnp.sum(jnp.exp(dens.dpo_optimum(lpre, lps, 3.0, log_w) + log_w)), 1.0, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------
# The 1-D environment.
# ----------------------------------------------------------------------------------------------------


def test_trapezoid_partition_matches_numpy(x64):
  grid = grid_lib.make_grid(101, dtype=jnp.float64)
  log_q = jnp.sin(grid.x) - 0.05 * grid.x**2
  z = np.trapezoid(np.exp(np.asarray(log_q)), np.asarray(grid.x))
  np.testing.assert_allclose(jnp.exp(grid_lib.trapezoid_log_partition(log_q, grid.dx)), z, rtol=1e-12)
  w = grid_lib.trapezoid_weights(101, grid.dx)
  np.testing.assert_allclose(jnp.sum(w * jnp.exp(grid_lib.normalise(log_q, grid.dx))), 1.0, rtol=1e-12)
  with pytest.raises(PrefjaxError, match="at least 2"):
    grid_lib.make_grid(1)


def test_densities_match_scipy(x64):
  x = np.linspace(-10, 10, 41)
  tn = lambda loc, sd: stats.truncnorm((-10 - loc) / sd, (10 - loc) / sd, loc=loc, scale=sd)
  np.testing.assert_allclose(grid_lib.pretrain_target_logpdf(jnp.asarray(x)), tn(0, 5).logpdf(x), rtol=1e-10)
  want = np.log(0.4 * tn(-2.5, 0.25).pdf(x) + 0.6 * tn(2.5, 1.0).pdf(x))
  got = np.asarray(grid_lib.annotator_logpdf(jnp.asarray(x)))
  finite = np.isfinite(want)
  np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9)
  # The annotator integrates to one on a fine grid.
  grid = grid_lib.make_grid(2**14, dtype=jnp.float64)
  np.testing.assert_allclose(jnp.exp(grid_lib.trapezoid_log_partition(grid_lib.annotator_logpdf(grid.x),
                                                                      grid.dx)), 1.0, atol=1e-6)


def test_total_variation_matches_numpy(x64):
  grid = grid_lib.make_grid(257, dtype=jnp.float64)
  lp = grid_lib.normalise(grid_lib.truncated_normal_logpdf(grid.x, 0.0, 2.0), grid.dx)
  lq = grid_lib.normalise(grid_lib.truncated_normal_logpdf(grid.x, 1.0, 2.0), grid.dx)
  want = 0.5 * np.trapezoid(np.abs(np.exp(np.asarray(lp)) - np.exp(np.asarray(lq))), np.asarray(grid.x))
  np.testing.assert_allclose(grid_lib.total_variation(lp, lq, grid.dx), want, rtol=1e-12)
  assert float(grid_lib.total_variation(lp, lp, grid.dx)) == 0.0


def test_energy_mlp_shape_and_pretraining():
  grid = grid_lib.make_grid(128)
  model = grid_lib.EnergyMLP(16, 2)
  params, mse = grid_lib.pretrain(jax.random.key(0), model, grid, num_steps=300, lr=1e-2)
  assert model.apply({"params": params}, grid.x).shape == (128,)
  target = grid_lib.normalise(grid_lib.pretrain_target_logpdf(grid.x), grid.dx)
  tv = grid_lib.total_variation(grid_lib.model_log_density(model, params, grid), target, grid.dx)
  assert float(mse) < 0.05 and float(tv) < 0.05, (float(mse), float(tv))
  # The paper's architecture: 4 hidden layers of 64 units, one output.
  full = grid_lib.init_energy(jax.random.key(1), grid_lib.EnergyMLP())
  assert len(full) == 5 and full["Dense_0"]["kernel"].shape == (1, 64) and full["Dense_4"]["kernel"].shape == (64, 1)


def test_pairs_and_labels_sampled_from_the_right_laws():
  grid = grid_lib.make_grid(64)
  log_pre = grid_lib.normalise(-0.1 * grid.x**2, grid.dx)
  comps = jnp.stack([grid_lib.normalise(-(grid.x + 2) ** 2, grid.dx), grid_lib.normalise(-(grid.x - 2) ** 2,
                                                                                          grid.dx)])
  n = 200_000
  pairs = grid_lib.make_pairs(jax.random.key(0), log_pre, n, grid.dx, comps, (0.3, 0.7))
  # Indices follow π_pre's mass per point (a chi-square-free check: every cell within 5 standard errors).
  mass = np.asarray(jnp.exp(log_pre) * grid_lib.trapezoid_weights(64, grid.dx))
  freq = np.bincount(np.asarray(pairs.a), minlength=64) / n
  assert np.all(np.abs(freq - mass) <= 5 * np.sqrt(mass * (1 - mass) / n) + 1e-12)
  # Labels: mean equals the mean mixture probability within 5 standard errors.
  p = np.asarray(grid_lib.mixture_probability(comps[:, pairs.a], comps[:, pairs.b], (0.3, 0.7)))
  y = np.asarray(pairs.y)
  assert abs(y.mean() - p.mean()) < 5 * np.sqrt(np.mean(p * (1 - p)) / n)
  with pytest.raises(PrefjaxError, match="needs as many weights"):
    grid_lib.make_pairs(jax.random.key(0), log_pre, 10, grid.dx, comps, (1.0,))


def test_pair_cells_are_the_pairs_regrouped(x64):
  """`pair_cells` with one chunk holds exactly the pairs `make_pairs` draws with the same key: the mixture NLL
  summed over cells equals the per-pair sum (any antisymmetric likelihood; here random component log-densities
  and mixture weights), and its gradient too. Two chunks hold twice the pairs."""
  g = 24
  grid = grid_lib.make_grid(g)
  log_pre = grid_lib.normalise(-0.05 * grid.x**2, grid.dx)
  comps = jnp.stack([grid_lib.normalise(-(grid.x + 2) ** 2, grid.dx), grid_lib.normalise(-(grid.x - 3) ** 2 / 4,
                                                                                          grid.dx)])
  key, n = jax.random.key(4), 3000
  cells = grid_lib.pair_cells(key, log_pre, n, grid.dx, comps, (0.4, 0.6), chunk_pairs=n)
  pairs = jax.jit(lambda k: grid_lib.make_pairs(k, log_pre, n, grid.dx, comps, (0.4, 0.6)))(
      jax.random.fold_in(key, 0))
  assert cells.num_pairs == n and cells.count.sum() == n
  assert np.all(cells.a <= cells.b) and np.all((0 <= cells.wins) & (cells.wins <= cells.count))
  assert len(set(zip(cells.a.tolist(), cells.b.tolist()))) == len(cells.a)  # each cell once
  rng = np.random.default_rng(0)
  logq = jnp.asarray(rng.normal(size=(2, g)))
  def per_pair(logq, logits):
    return jnp.sum(dens.mixture_loss(logq[:, pairs.a], logq[:, pairs.b], logits, pairs.y.astype(logq.dtype)))
  def per_cell(logq, logits):
    z = dens.mixture_preference_logits(logq[:, cells.a], logq[:, cells.b], logits)
    return jnp.sum(cells.wins * jax.nn.softplus(-z) + (cells.count - cells.wins) * jax.nn.softplus(z))
  logits = jnp.asarray([0.3, -0.2])
  np.testing.assert_allclose(per_cell(logq, logits), per_pair(logq, logits), rtol=1e-12)
  for a, b in zip(jax.grad(per_cell, (0, 1))(logq, logits), jax.grad(per_pair, (0, 1))(logq, logits)):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
  chunked = grid_lib.pair_cells(key, log_pre, 2 * n, grid.dx, comps, (0.4, 0.6), chunk_pairs=n)
  assert chunked.count.sum() == 2 * n and chunked.num_pairs == 2 * n
  with pytest.raises(PrefjaxError, match="num_pairs and chunk_pairs must be positive"):
    grid_lib.pair_cells(key, log_pre, 0, grid.dx, comps, (0.4, 0.6))


def test_training_at_the_pairs_distinct_points_equals_training_on_the_grid():
  """DPO/geometric/IPO see log q only at the pairs' points: evaluating the MLP there (what the runner does
  without SLiC, for the paper's 2¹⁶ grid) must give the same training run as evaluating it on the grid."""
  from prefjax.density import experiments  # pylint: disable=g-import-not-at-top
  grid = grid_lib.make_grid(64)
  model = grid_lib.EnergyMLP(8, 2)
  params0 = grid_lib.init_energy(jax.random.key(0), model)
  log_pre = grid_lib.model_log_density(model, params0, grid)
  log_pstar = grid_lib.normalise(grid_lib.annotator_logpdf(grid.x), grid.dx)
  pairs = grid_lib.make_pairs(jax.random.key(1), log_pre, 40, grid.dx, log_pstar[None])
  points, eval_pairs = experiments._distinct_points(pairs)  # pylint: disable=protected-access
  assert len(points) < 64  # 80 draws over 64 points: some repeat, some points are never drawn.
  np.testing.assert_array_equal(points[np.asarray(eval_pairs.a)], np.asarray(pairs.a))
  np.testing.assert_array_equal(points[np.asarray(eval_pairs.b)], np.asarray(pairs.b))
  rows = jnp.asarray([[experiments.FAMILY_IDS["dpo"], 4.0, 0.0],
                      [experiments.FAMILY_IDS["geometric"], 0.25, 0.0]], jnp.float32)
  targets = jnp.stack([log_pstar, log_pstar])
  pre_a, pre_b = log_pre[pairs.a], log_pre[pairs.b]
  seen = []
  run_grid = experiments._make_sweep(  # pylint: disable=protected-access
      model, grid, experiments._sweep_loss(pairs, pre_a, pre_b, None, grid.dx), 8, 1e-2, 4,  # pylint: disable=protected-access
      progress=lambda r, tv, loss: seen.append(r))
  run_points = experiments._make_sweep(  # pylint: disable=protected-access
      model, grid, experiments._sweep_loss(eval_pairs, pre_a, pre_b, None, grid.dx), 8, 1e-2, 4,  # pylint: disable=protected-access
      eval_x=grid.x[points])
  p_grid, tv_grid, loss_grid = run_grid(params0, rows, targets)
  p_points, tv_points, loss_points = run_points(params0, rows, targets)
  assert seen == [0, 1] and tv_grid.shape == (2, 2)
  np.testing.assert_allclose(np.asarray(loss_points), np.asarray(loss_grid), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(tv_points), np.asarray(tv_grid), rtol=1e-4, atol=1e-6)
  # Compare the trained densities, not raw parameters: the output bias is a flat direction of every
  # objective here (a shift of log q cancels), where Adam turns float rounding noise into ±lr steps.
  dens_of = jax.vmap(lambda p: grid_lib.normalise(model.apply({"params": p}, grid.x), grid.dx))
  np.testing.assert_allclose(np.asarray(dens_of(p_points)), np.asarray(dens_of(p_grid)), rtol=1e-4, atol=1e-4)


def test_population_mixture_nll_matches_numpy_and_is_minimal_at_the_truth(x64):
  from prefjax.density import experiments  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(5)
  g = 12
  true = rng.normal(size=(2, g))
  w = np.array([0.3, 0.7])
  mass = rng.dirichlet(np.ones(g))
  model = rng.normal(size=(2, g))
  logits = np.array([0.2, -0.4])

  def np_mix(lq, wts):  # P(i ≻ j) = Σ_k w_k σ(lq_k(i) − lq_k(j)), [g, g].
    return np.einsum("k,kij->ij", wts, _np_sigmoid(lq[:, :, None] - lq[:, None, :]))

  p_true = np_mix(true, w)
  q = np_mix(model, np.exp(logits) / np.exp(logits).sum())
  want = np.sum(mass[:, None] * mass[None, :] * -(p_true * np.log(q) + (1 - p_true) * np.log(1 - q)))
  got = experiments.population_mixture_nll(jnp.asarray(model), jnp.asarray(logits), jnp.asarray(true), w,
                                           jnp.asarray(mass))
  np.testing.assert_allclose(float(got), want, rtol=1e-12)
  # Cross-entropy is minimised by the true probabilities (Gibbs' inequality).
  at_truth = experiments.population_mixture_nll(jnp.asarray(true), jnp.log(jnp.asarray(w)), jnp.asarray(true), w,
                                                jnp.asarray(mass))
  assert float(at_truth) < float(got)

"""Tests for prefjax.objectives (pairwise objectives) against independent numpy float64 answers.

Oracles: the formulas of docs/theory.md §2 re-implemented here in numpy float64 (written from the papers, not
from the library code), brute-force minimisation over pairings for AOT (docs/theory.md §5), finite differences
(`check_grads`), jit == no-jit and vmap == Python loop.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.optimize import linear_sum_assignment

from prefjax import objectives
from prefjax.errors import PrefjaxError
from prefjax.objectives import divergences
from prefjax.objectives import pairwise

CANONICAL = ["sigmoid", "hinge", "ipo", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot",
             "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm", "sft"]
DIVERGENCE_OBJECTIVES = {"sigmoid", "hinge", "ipo", "robust", "exo_pair", "discopop", "sigmoid_norm",
                         "aot_unpaired"}
# A non-zero ε inside each smoothing objective's range.
SMOOTHING = {"sigmoid": 0.2, "robust": 0.2, "exo_pair": 0.3, "aot": 0.2, "aot_unpaired": 0.2}
DIVERGENCE_NAMES = ["reverse_kl", "forward_kl", "js", "alpha"]
ALPHA = 0.3  # not ½, where the two α conventions (the paper's and the other in use) coincide
# β = 1/2 and multiples of 2⁻¹⁰ keep β·Δ, 1/(2β) and the log-ratios exact in float32, so the float32 vs
# float64 comparison measures the objectives' own rounding, not the rounding of the inputs.
BETA = 0.5
TAU = 0.05


# ---------------------------------------------------------------------------------------------------
# Independent numpy float64 oracle.
# ---------------------------------------------------------------------------------------------------


def np_log_sigmoid(z):
  return -np.logaddexp(0.0, -z)


def np_sigmoid(z):
  return np.exp(np_log_sigmoid(z))


def np_score(divergence, rho, alpha):
  """f'(π/π_ref) of Wang et al. 2309.16240 Table 1 (constants dropped where they cancel)."""
  if divergence == "reverse_kl":
    return rho
  if divergence == "forward_kl":
    return 1.0 - np.exp(-rho)
  if divergence == "js":
    u = np.exp(rho)
    return np.log(2.0 * u / (1.0 + u))
  assert divergence == "alpha"
  return -np.expm1(-alpha * rho) / alpha


def np_loss(name, pw, pl, rw, rl, *, beta, eps=0.0, nw=None, nl=None, normalize=False,
            divergence="reverse_kl", alpha=ALPHA, tau=TAU):
  """Per-example losses of docs/theory.md §2's table, in float64."""
  pw, pl, rw, rl = (np.asarray(x, np.float64) for x in (pw, pl, rw, rl))
  if name == "sft":
    return -pw / nw
  if name not in DIVERGENCE_OBJECTIVES:
    divergence = "reverse_kl"
  if name == "sigmoid_norm":
    normalize = True
  sw, sl = np_score(divergence, pw - rw, alpha), np_score(divergence, pl - rl, alpha)
  if normalize:
    sw, sl = sw / nw, sl / nl
  d = sw - sl
  z = beta * d
  if name == "sigmoid":
    return -(1 - eps) * np_log_sigmoid(z) - eps * np_log_sigmoid(-z)
  if name == "sigmoid_norm":
    return -np_log_sigmoid(z)
  if name == "hinge":
    return np.maximum(0.0, 1.0 - z)
  if name == "ipo":
    return (d - 1.0 / (2.0 * beta)) ** 2
  if name == "robust":
    return (-(1 - eps) * np_log_sigmoid(z) + eps * np_log_sigmoid(-z)) / (1 - 2 * eps)
  if name == "exo_pair":
    eps = eps if eps > 0 else 1e-3
    qw, ql = np_sigmoid(z), np_sigmoid(-z)
    return qw * (np.log(qw) - np.log(1 - eps)) + ql * (np.log(ql) - np.log(eps))
  if name == "nca_pair":
    return (-np_log_sigmoid(beta * sw) - 0.5 * np_log_sigmoid(-beta * sw)
            - 0.5 * np_log_sigmoid(-beta * sl))
  if name == "bco_pair":
    return -np_log_sigmoid(beta * sw) - np_log_sigmoid(-beta * sl)
  if name == "sppo_hard":
    return (sw - 1 / (2 * beta)) ** 2 + (sl + 1 / (2 * beta)) ** 2
  if name == "apo_zero":
    return 1 - np_sigmoid(beta * sw) + np_sigmoid(beta * sl)
  if name == "apo_down":
    return np_sigmoid(beta * sw) + 1 - np_sigmoid(beta * (sw - sl))
  if name == "discopop":
    m = np_sigmoid(z / tau)
    return (1 - m) * (-np_log_sigmoid(z)) + m * np.exp(-z)
  if name in ("aot", "aot_unpaired"):
    if name == "aot":
      if normalize:
        u, v = pw / nw - pl / nl, rw / nw - rl / nl
      else:
        u, v = pw - pl, rw - rl
    else:
      u, v = sw, sl
    delta = np.sort(u) - np.sort(v)
    return -(1 - eps) * np_log_sigmoid(beta * delta) - eps * np_log_sigmoid(-beta * delta)
  raise AssertionError(name)


def make_batch(seed, batch=6, lead=()):
  """Sequence log-probs on a 2⁻¹⁰ grid (exact in float32) and integer token counts."""
  rng = np.random.default_rng(seed)
  shape = lead + (batch,)
  grid = lambda x: np.round(x * 1024.0) / 1024.0
  rw = grid(-rng.uniform(1.0, 20.0, shape))
  rl = grid(-rng.uniform(1.0, 20.0, shape))
  pw = grid(rw + rng.normal(0.0, 1.5, shape))
  pl = grid(rl + rng.normal(0.0, 1.5, shape))
  nw = rng.integers(1, 12, shape).astype(np.float64)
  nl = rng.integers(1, 12, shape).astype(np.float64)
  return pw, pl, rw, rl, nw, nl


def switch_grid(name):
  """Every (divergence, length_normalize, ε) that `name` reads."""
  divs = DIVERGENCE_NAMES if name in DIVERGENCE_OBJECTIVES else ["reverse_kl"]
  epss = [0.0, SMOOTHING[name]] if name in SMOOTHING else [0.0]
  return list(itertools.product(divs, [False, True], epss))


def all_switches_on(name):
  """The most demanding configuration `name` accepts (used for grads, jit and vmap)."""
  return dict(divergence="alpha" if name in DIVERGENCE_OBJECTIVES else "reverse_kl",
              length_normalize=True, label_smoothing=SMOOTHING.get(name, 0.0))


def call(name, pw, pl, rw, rl, nw, nl, *, beta=BETA, **kw):
  return objectives.pairwise_loss(name, pw, pl, rw, rl, beta=beta, chosen_lengths=nw,
                                  rejected_lengths=nl, alpha=ALPHA, discopop_tau=TAU, **kw)


# ---------------------------------------------------------------------------------------------------
# Registry and names.
# ---------------------------------------------------------------------------------------------------


def test_names_and_aliases():
  names = objectives.list_objectives()
  assert names == sorted(names)
  assert set(CANONICAL) | {"dpo", "cdpo", "slic", "aot_pair"} == set(names)
  losses = objectives.PAIRWISE_LOSSES
  assert losses["dpo"] is losses["sigmoid"] and losses["cdpo"] is losses["sigmoid"]
  assert losses["slic"] is losses["hinge"]
  # TRL's `aot_pair` sorts chosen and rejected log-ratios separately: our unpaired AOT.
  assert losses["aot_pair"] is losses["aot_unpaired"]
  assert pairwise.PAIRWISE_REGISTRY.canonical("aot_pair") == "aot_unpaired"


def test_generic_registry():
  reg = objectives.Registry("widget")
  reg.register("a", 1)
  reg.alias("b", "a")
  assert reg.get("b") == 1 and reg["a"] == 1 and "b" in reg and len(reg) == 2
  assert reg.names() == ["a", "b"] and dict(reg.view) == {"a": 1, "b": 1}
  with pytest.raises(PrefjaxError, match=r"unknown widget 'aa' \(did you mean 'a'\?\).*known widget "
                                         r"names: a, b"):
    reg.get("aa")
  with pytest.raises(PrefjaxError, match="widget 'a' is already registered"):
    reg.register("a", 2)
  reg.register("a", 2, overwrite=True)
  assert reg.get("a") == 2
  reg.unregister("a")  # removes its aliases too
  assert reg.names() == [] and "b" not in reg


def test_register_pairwise_user_objective():
  pw, pl, rw, rl, nw, nl = make_batch(11)
  square = lambda x, h: (h.beta * x.margins) ** 2
  objectives.register_pairwise("test_square_margin", square, divergence=True)
  try:
    assert "test_square_margin" in objectives.list_objectives()
    got = call("test_square_margin", pw, pl, rw, rl, nw, nl, divergence="js")
    sw, sl = np_score("js", pw - rw, ALPHA), np_score("js", pl - rl, ALPHA)
    np.testing.assert_allclose(got, (BETA * (sw - sl)) ** 2, rtol=1e-5)
    with pytest.raises(PrefjaxError, match="already registered"):
      objectives.register_pairwise("test_square_margin", square)
    with pytest.raises(PrefjaxError, match="label_smoothing is not used by 'test_square_margin'"):
      call("test_square_margin", pw, pl, rw, rl, nw, nl, label_smoothing=0.1)
  finally:
    pairwise.PAIRWISE_REGISTRY.unregister("test_square_margin")
  assert "test_square_margin" not in objectives.list_objectives()


# ---------------------------------------------------------------------------------------------------
# Every objective against the numpy oracle, for every switch it reads.
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CANONICAL)
def test_matches_numpy_float64(name, x64):
  pw, pl, rw, rl, nw, nl = make_batch(0)
  for divergence, normalize, eps in switch_grid(name):
    got = call(name, pw, pl, rw, rl, nw, nl, divergence=divergence, length_normalize=normalize,
               label_smoothing=eps)
    assert got.dtype == jnp.float64 and got.shape == (6,)
    want = np_loss(name, pw, pl, rw, rl, beta=BETA, eps=eps, nw=nw, nl=nl, normalize=normalize,
                   divergence=divergence)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12,
                               err_msg=f"{name} {divergence} normalize={normalize} eps={eps}")


@pytest.mark.parametrize("name", CANONICAL)
def test_float32_matches_float64(name):
  pw, pl, rw, rl, nw, nl = make_batch(1)
  f32 = [x.astype(np.float32) for x in (pw, pl, rw, rl, nw, nl)]
  for divergence, normalize, eps in switch_grid(name):
    got = call(name, *f32, divergence=divergence, length_normalize=normalize, label_smoothing=eps)
    assert got.dtype == jnp.float32
    want = np_loss(name, pw, pl, rw, rl, beta=BETA, eps=eps, nw=nw, nl=nl, normalize=normalize,
                   divergence=divergence)
    # Relative float32 rounding (~1e-7 per op, a few ops); atol covers losses that are differences of
    # O(1)-O(10) terms (robust, apo_*), whose absolute rounding is ~10 ε₃₂ ≈ 1e-6.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6,
                               err_msg=f"{name} {divergence} normalize={normalize} eps={eps}")


def test_aliases_give_the_same_numbers():
  pw, pl, rw, rl, nw, nl = make_batch(2)
  for alias, target, kw in [("dpo", "sigmoid", {}), ("cdpo", "sigmoid", {"label_smoothing": 0.1}),
                            ("slic", "hinge", {}), ("aot_pair", "aot_unpaired", {})]:
    np.testing.assert_array_equal(call(alias, pw, pl, rw, rl, nw, nl, **kw),
                                  call(target, pw, pl, rw, rl, nw, nl, **kw))


def test_exo_pair_zero_smoothing_means_trl_default(x64):
  pw, pl, rw, rl, nw, nl = make_batch(3)
  np.testing.assert_allclose(call("exo_pair", pw, pl, rw, rl, nw, nl, label_smoothing=0.0),
                             call("exo_pair", pw, pl, rw, rl, nw, nl, label_smoothing=1e-3), rtol=1e-14)
  # Also when ε is traced (a vmapped sweep that includes 0).
  sweep = jax.vmap(lambda e: call("exo_pair", pw, pl, rw, rl, nw, nl, label_smoothing=e))(
      jnp.array([0.0, 1e-3]))
  np.testing.assert_allclose(sweep[0], sweep[1], rtol=1e-14)


def test_discopop_is_finite_where_exp_overflows():
  # βΔ = −200: e^{−βΔ} overflows float32, but its weight σ(βΔ/τ) underflows; the product is ~0, and the
  # loss is (1 − m) softplus(200) = 200 (m = σ(−4000) = 0 in float32).
  margin = np.array([-400.0, -300.0, 0.0, 1.0, 2.0, 3.0], np.float32)
  zero = np.zeros(6, np.float32)
  loss = objectives.pairwise_loss("discopop", margin, zero, zero, zero, beta=0.5)
  np.testing.assert_allclose(loss[:2], [200.0, 150.0], rtol=1e-6)
  np.testing.assert_allclose(loss[2:], np_loss("discopop", margin, zero, zero, zero, beta=0.5)[2:],
                             rtol=1e-5)
  grad = jax.grad(lambda x: objectives.pairwise_loss("discopop", x, zero, zero, zero, beta=0.5).sum())(
      margin)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(grad[:2], [-0.5, -0.5], rtol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Gradients, jit and vmap for every objective.
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CANONICAL)
def test_check_grads(name, x64):
  pw, pl, rw, rl, nw, nl = make_batch(4)
  for kw in ({}, all_switches_on(name)):
    f = lambda a, b, c, d, beta, kw=kw: call(name, a, b, c, d, nw, nl, beta=beta, **kw)
    check_grads(f, (pw, pl, rw, rl, BETA), order=1, modes=["rev"])


@pytest.mark.parametrize("name", CANONICAL)
def test_jit_and_vmap(name):
  kw = all_switches_on(name)
  pw, pl, rw, rl, nw, nl = (x.astype(np.float32) for x in make_batch(5, lead=(3,)))
  f = lambda a, b, c, d, e, g: call(name, a, b, c, d, e, g, **kw)
  eager = np.stack([f(pw[k], pl[k], rw[k], rl[k], nw[k], nl[k]) for k in range(3)])
  np.testing.assert_allclose(jax.jit(f)(pw[0], pl[0], rw[0], rl[0], nw[0], nl[0]), eager[0],
                             rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(jax.vmap(f)(pw, pl, rw, rl, nw, nl), eager, rtol=1e-6, atol=1e-7)
  # Hyper-parameter sweep: β (and ε where it is read) traced under jit(vmap).
  betas = np.array([0.1, 0.5, 2.0], np.float32)
  eps = np.array([kw["label_smoothing"]] * 3, np.float32) * np.array([0.0, 0.5, 1.0], np.float32)
  kw_no_eps = {k: v for k, v in kw.items() if k != "label_smoothing"}
  sweep = jax.jit(jax.vmap(lambda b, e: call(name, pw[0], pl[0], rw[0], rl[0], nw[0], nl[0], beta=b,
                                             label_smoothing=e, **kw_no_eps)))(betas, eps)
  loop = np.stack([call(name, pw[0], pl[0], rw[0], rl[0], nw[0], nl[0], beta=float(b),
                        label_smoothing=float(e), **kw_no_eps) for b, e in zip(betas, eps)])
  np.testing.assert_allclose(sweep, loop, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------------
# AOT: the sorted loss is the optimal-transport (minimum over pairings) loss.
# ---------------------------------------------------------------------------------------------------


def logistic_cost(x, beta, eps):
  return -(1 - eps) * np_log_sigmoid(beta * x) - eps * np_log_sigmoid(-beta * x)


@pytest.mark.parametrize("name", ["aot", "aot_unpaired"])
@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_aot_equals_min_over_pairings(name, eps, x64):
  for n in (6, 7):
    pw, pl, rw, rl, nw, nl = make_batch(20 + n, batch=n)
    u, v = (pw - pl, rw - rl) if name == "aot" else (pw - rw, pl - rl)
    perms = np.array(list(itertools.permutations(range(n))))
    brute = logistic_cost(u[None, :] - v[perms], BETA, eps).mean(axis=1).min()
    got = call(name, pw, pl, rw, rl, nw, nl, label_smoothing=eps).mean()
    np.testing.assert_allclose(got, brute, rtol=1e-12, err_msg=f"n={n}")
    # The identity pairing (per-example terms) is a pairing too, so it is never better.
    assert logistic_cost(u - v, BETA, eps).mean() >= got - 1e-12


def test_aot_equals_assignment_for_larger_batches(x64):
  pw, pl, rw, rl, nw, nl = make_batch(30, batch=40)
  u, v = pw - pl, rw - rl
  cost = logistic_cost(u[:, None] - v[None, :], BETA, 0.1)
  rows, cols = linear_sum_assignment(cost)
  np.testing.assert_allclose(call("aot", pw, pl, rw, rl, nw, nl, label_smoothing=0.1).mean(),
                             cost[rows, cols].mean(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------------
# f-divergence limits.
# ---------------------------------------------------------------------------------------------------


def test_alpha_divergence_limits(x64):
  pw, pl, rw, rl, nw, nl = make_batch(6)
  base = dict(beta=BETA, chosen_lengths=nw, rejected_lengths=nl)
  args = (pw, pl, rw, rl)
  for name in ("sigmoid", "ipo", "discopop", "aot_unpaired"):
    rkl = objectives.pairwise_loss(name, *args, divergence="reverse_kl", **base)
    fkl = objectives.pairwise_loss(name, *args, divergence="forward_kl", **base)
    np.testing.assert_allclose(
        objectives.pairwise_loss(name, *args, divergence="alpha", alpha=0.0, **base), rkl, rtol=1e-14)
    # s_α(ρ) = ρ − αρ²/2 + O(α²): |ρ| ≲ 5 here, so α = 1e-7 moves the loss by ≲ 1e-5 relative.
    np.testing.assert_allclose(
        objectives.pairwise_loss(name, *args, divergence="alpha", alpha=1e-7, **base), rkl, rtol=1e-5)
    np.testing.assert_allclose(
        objectives.pairwise_loss(name, *args, divergence="alpha", alpha=1.0, **base), fkl, rtol=1e-12)


def test_alpha_score_is_accurate_and_smooth_near_zero(x64):
  rho = np.linspace(-6.0, 6.0, 13)
  alphas = np.array([1e-9, 1e-5, 0.999e-3, 1e-3, 0.3, 1.0, -0.4])
  score = jax.jit(jax.vmap(divergences.alpha_score, in_axes=(None, 0)))
  np.testing.assert_allclose(score(rho, alphas), -np.expm1(-alphas[:, None] * rho) / alphas[:, None],
                             rtol=1e-13, atol=1e-15)
  np.testing.assert_array_equal(score(rho, np.zeros(1))[0], rho)
  # d s/dρ = e^{−αρ} (= 1 at α = 0) and d s/dα at α = 0 is −ρ²/2.
  grads = jax.jit(jax.vmap(jax.grad(divergences.alpha_score, argnums=(0, 1)), in_axes=(0, None)))
  ds_drho, ds_dalpha = grads(rho, 0.0)
  np.testing.assert_allclose(ds_drho, np.ones(13), rtol=1e-14)
  np.testing.assert_allclose(ds_dalpha, -rho ** 2 / 2, rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(divergences.js_score(rho), np.log(2 / (1 + np.exp(-rho))),
                             rtol=1e-13)


# ---------------------------------------------------------------------------------------------------
# Combinations and metrics.
# ---------------------------------------------------------------------------------------------------


def test_combination_is_weighted_sum(x64):
  pw, pl, rw, rl, nw, nl = make_batch(7)
  sig = call("sigmoid", pw, pl, rw, rl, nw, nl, label_smoothing=0.1)
  sft = call("sft", pw, pl, rw, rl, nw, nl)
  np.testing.assert_allclose(sft, -pw / nw, rtol=1e-14)
  for combo in ({"sigmoid": 1.0, "sft": 0.5}, [("sigmoid", 1.0), ("sft", 0.5)]):
    got = call(combo, pw, pl, rw, rl, nw, nl, label_smoothing=0.1)
    np.testing.assert_allclose(got, sig + 0.5 * sft, rtol=1e-13)
  # Each component reads its own switches: sigmoid_norm always normalises, sigmoid does not.
  got = call({"sigmoid": 2.0, "sigmoid_norm": 1.0}, pw, pl, rw, rl, nw, nl, divergence="js")
  want = (2.0 * np_loss("sigmoid", pw, pl, rw, rl, beta=BETA, divergence="js")
          + np_loss("sigmoid_norm", pw, pl, rw, rl, beta=BETA, nw=nw, nl=nl, divergence="js"))
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_metrics_at_reference_and_in_general():
  pw, pl, rw, rl, nw, nl = (x.astype(np.float32) for x in make_batch(8))
  losses, m = objectives.pairwise_loss_and_metrics("sigmoid", pw, pl, pw, pl, beta=0.1)
  np.testing.assert_allclose(losses, np.full(6, math.log(2.0)), rtol=1e-7)
  for rewards in (m.rewards_chosen, m.rewards_rejected, m.margins, m.accuracies):
    np.testing.assert_array_equal(rewards, np.zeros(6))
  losses, m = objectives.pairwise_loss_and_metrics("ipo", pw, pl, rw, rl, beta=0.25)
  np.testing.assert_allclose(losses, objectives.pairwise_loss("ipo", pw, pl, rw, rl, beta=0.25))
  np.testing.assert_allclose(m.rewards_chosen, 0.25 * (pw.astype(np.float64) - rw), rtol=1e-6)
  np.testing.assert_allclose(m.rewards_rejected, 0.25 * (pl.astype(np.float64) - rl), rtol=1e-6)
  np.testing.assert_allclose(m.margins, m.rewards_chosen - m.rewards_rejected, rtol=1e-6)
  np.testing.assert_array_equal(m.accuracies, (np.asarray(m.margins) > 0).astype(np.float32))
  assert 0 < float(m.accuracies.mean()) < 1
  # Metrics are logging only: no gradient flows through them.
  g = jax.grad(lambda x: objectives.pairwise_loss_and_metrics("ipo", x, pl, rw, rl, beta=0.25)[1]
               .margins.sum())(pw)
  np.testing.assert_array_equal(g, np.zeros(6))


# ---------------------------------------------------------------------------------------------------
# Errors: clear PrefjaxError naming the problem.
# ---------------------------------------------------------------------------------------------------

_X = np.array([-1.0, -2.0, -3.0])
_N = np.array([1.0, 2.0, 3.0])


def _loss(name="sigmoid", *, args=(_X, _X - 1, _X, _X), **kw):
  kw.setdefault("beta", 0.1)
  return objectives.pairwise_loss(name, *args, **kw)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="dpoo"), r"unknown pairwise objective 'dpoo' \(did you mean 'dpo'\?\).*aot, aot_pair"),
    (dict(name=3), "name must be an objective name"),
    (dict(beta=0.0), r"beta must be finite and > 0, got 0\.0"),
    (dict(beta=-1.0), "beta must be finite and > 0"),
    (dict(beta=np.array([0.1, 0.2])), r"beta must be a scalar, got shape \(2,\)"),
    (dict(label_smoothing=0.6), r"label_smoothing must lie in \[0, 0.5\] for 'sigmoid', got 0.6"),
    (dict(name="robust", label_smoothing=0.5), r"must lie in \[0, 0.5\) for 'robust'"),
    (dict(name="exo_pair", label_smoothing=1.0), r"must lie in \[0, 1\) for 'exo_pair'"),
    (dict(name="aot", label_smoothing=-0.1), r"must lie in \[0, 0.5\] for 'aot'"),
    (dict(name="hinge", label_smoothing=0.1), "label_smoothing is not used by 'hinge'"),
    (dict(name="ipo", label_smoothing=0.1), "label_smoothing is not used by 'ipo'"),
    (dict(length_normalize=True), "'sigmoid' needs chosen_lengths and rejected_lengths"),
    (dict(length_normalize=True, chosen_lengths=_N), r"rejected_lengths=None"),
    (dict(name="sigmoid_norm"), "'sigmoid_norm' needs chosen_lengths and rejected_lengths"),
    (dict(name="sft"), "'sft' needs chosen_lengths"),
    (dict(name="sft", chosen_lengths=np.array([1.0, 0.0, 2.0])), "chosen_lengths must be > 0"),
    (dict(chosen_lengths=_N[:2], length_normalize=True, rejected_lengths=_N),
     r"chosen_lengths has shape \(2,\) but policy_chosen_logps has shape \(3,\)"),
    (dict(args=(_X, _X, _X[:2], _X)),
     r"ref_chosen_logps has shape \(2,\) but policy_chosen_logps has shape \(3,\)"),
    (dict(args=(_X[None], _X[None], _X[None], _X[None])),
     r"policy_chosen_logps must be a 1-D array \[B\], got shape \(1, 3\)"),
    (dict(args=(_X[:0],) * 4), "empty batch"),
    (dict(divergence="kl"), r"unknown divergence 'kl'.*alpha, forward_kl, js, reverse_kl"),
    (dict(name="nca_pair", divergence="js"), "divergence='js' is not used by 'nca_pair'"),
    (dict(divergence="alpha", alpha=float("nan")), "alpha must be finite"),
    (dict(name="discopop", discopop_tau=0.0), "discopop_tau must be finite and > 0"),
    (dict(length_normalize="yes"), "length_normalize must be True or False"),
    (dict(name={}), "combination of objectives is empty"),
    (dict(name={"sigmoid": "a"}), "weight of 'sigmoid' must be a real scalar"),
    (dict(name={"sigmoid": -1.0}), "weight of 'sigmoid' must be finite and >= 0"),
    (dict(name={"sigmoid": float("inf")}), "weight of 'sigmoid' must be finite and >= 0"),
    (dict(name=[("sigmoid", 1.0, 2.0)]), r"each entry must be a \(name, weight\) pair"),
    (dict(name=("sigmoid", 1.0)), r"each entry must be a \(name, weight\) pair"),
    (dict(name=[("sigmoid", 1.0), ("sigmoid", 2.0)]), "'sigmoid' appears twice"),
    (dict(name={"sigmoid": 1.0, "bogus": 1.0}), "unknown pairwise objective 'bogus'"),
    (dict(name={"hinge": 1.0, "ipo": 1.0}, label_smoothing=0.1),
     r"label_smoothing is not used by any of \['hinge', 'ipo'\]"),
    (dict(name={"sigmoid": 1.0, "robust": 1.0}, label_smoothing=0.5), "for 'robust'"),
])
def test_errors(kwargs, match):
  with pytest.raises(PrefjaxError, match=match):
    _loss(**kwargs)


def test_errors_are_value_errors_and_traced_values_skip_value_checks():
  assert issubclass(PrefjaxError, ValueError)
  # Under jit, β's value is unknown: no value check, but the shape check still runs.
  f = jax.jit(lambda b: _loss(beta=b))
  assert f(0.1).shape == (3,)
  with pytest.raises(PrefjaxError, match="beta must be a scalar"):
    jax.jit(lambda b: _loss(beta=b))(jnp.ones(2))
  with pytest.raises(PrefjaxError, match="must be a 1-D array"):
    jax.jit(lambda x: _loss(args=(x, x, x, x)))(jnp.ones((2, 3)))

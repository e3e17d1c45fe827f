"""Distributional alignment by one-dimensional optimal transport: AOT (Melnyk et al. 2406.05882).

AOT asks that a distribution U of "good" scores stochastically dominate (first order) a distribution V of
"bad" scores: paired AOT compares the policy's margins log π(y_w) − log π(y_l) with the reference's,
unpaired AOT compares the chosen log-ratios with the rejected ones (docs/theory.md §5). The violation of
dominance is measured by the optimal-transport cost with a convex cost h,

  OT_h(U, V) = ∫₀¹ h(Q_U(t) − Q_V(t)) dt,       on n samples each: (1/n) Σ_i h(u_(i) − v_(i)),

with u_(i), v_(i) the order statistics. For convex h the sorted (monotone) pairing is the optimal one, so
the sorted loss equals min_σ (1/n) Σ_i h(u_i − v_σ(i)) (tested against brute force and
`scipy.optimize.linear_sum_assignment`).

Costs (registry `OT_COSTS`), each a function of z = βx of the scaled difference x = u − v:
logistic log(1 + e^{−z}) (with label smoothing ε: (1 − ε) softplus(−z) + ε softplus(z)), squared hinge
(1 − z)₊² and least squares (1 − z)². The last two are also written (β − x)₊² and (β − x)²; we use
the paper's (1 − βx) form so that β plays the same role (an inverse temperature) for every cost, as it
does in the logistic cost and in `pairwise.aot`. The two differ only by the scaling of x.

Batch coupling: the i-th loss term belongs to the i-th order statistics, so the sort must see the global
batch. Under data parallelism use `sharded_ot_losses` (an all-gather inside `shard_map`), or call the
plain functions under `jit` on globally sharded arrays (XLA then sorts the global array).

Also here: a soft sort (NeuralSort, Grover et al. 1903.08850) for smooth gradients, which tends to the
hard sort as its temperature → 0, and the FSD-violation metric (the fraction of quantile levels t where
Q_chosen(t) < Q_rejected(t)).

Non-finite inputs: a NaN sorts last and a NaN / ±inf gives NaN or infinite loss terms, unchecked by default.
`check_finite=True` on `ot_losses`, `ot_value`, `aot_paired_loss`, `aot_unpaired_loss` and
`sharded_ot_losses` checks the array inputs: eagerly a `PrefjaxError` naming the argument and the first bad
index, under `jit` a `jax.experimental.checkify` check (docs/objectives_checks.md).
"""

import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from prefjax.errors import PrefjaxError
from prefjax.objectives import _checks
from prefjax.objectives import spec
from prefjax.objectives.registry import Registry


# ----------------------------------------------------------------------------------------------------
# Convex costs.
# ----------------------------------------------------------------------------------------------------


def logistic_cost(z, label_smoothing=0.0):
  """Logistic cost log(1 + e^{−z}), smoothed: −(1 − ε) log σ(z) − ε log σ(−z) (2406.05882, AOT's default)."""
  return (1.0 - label_smoothing) * jax.nn.softplus(-z) + label_smoothing * jax.nn.softplus(z)


def squared_hinge_cost(z, label_smoothing=0.0):
  """Squared hinge (1 − z)₊² (2406.05882). `label_smoothing` must be 0 (checked by the callers)."""
  del label_smoothing
  return jax.nn.relu(1.0 - z) ** 2


def least_squares_cost(z, label_smoothing=0.0):
  """Least squares (1 − z)² (2406.05882). `label_smoothing` must be 0 (checked by the callers)."""
  del label_smoothing
  return (1.0 - z) ** 2


OT_COSTS: Registry = Registry("optimal-transport cost")
OT_COSTS.register("logistic", logistic_cost)
OT_COSTS.register("squared_hinge", squared_hinge_cost)
OT_COSTS.register("least_squares", least_squares_cost)
OT_COSTS.alias("sigmoid", "logistic")
OT_COSTS.alias("hinge_squared", "squared_hinge")

_SMOOTHING_COSTS = ("logistic",)


def list_costs():
  """Names of the registered convex costs (aliases included)."""
  return OT_COSTS.names()


# ----------------------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------------------


def _concrete(x):
  return None if isinstance(x, jax.core.Tracer) else np.asarray(x)


def _vector(x, arg):
  x = jnp.asarray(x)
  if x.ndim != 1:
    raise PrefjaxError(f"{arg} must be a 1-D array [B], got shape {x.shape}")
  if x.shape[0] == 0:
    raise PrefjaxError(f"{arg} is empty: need at least one sample")
  return x


def _check_pair(u, v, u_arg, v_arg):
  u, v = _vector(u, u_arg), _vector(v, v_arg)
  if u.shape != v.shape:
    raise PrefjaxError(
        f"{u_arg} has shape {u.shape} but {v_arg} has shape {v.shape}: the sorted pairing needs equal sizes")
  dtype = jnp.result_type(u, v, float)
  return u.astype(dtype), v.astype(dtype)


def _check_hparams(cost, beta, label_smoothing):
  fn = OT_COSTS.get(cost)
  for value, arg in ((beta, "beta"), (label_smoothing, "label_smoothing")):
    if jnp.ndim(value) != 0:
      raise PrefjaxError(f"{arg} must be a scalar, got shape {jnp.shape(value)}")
  beta_value = _concrete(beta)
  if beta_value is not None and not (np.isfinite(beta_value) and beta_value > 0):
    raise PrefjaxError(f"beta must be finite and > 0, got {beta_value}")
  eps = _concrete(label_smoothing)
  if eps is not None:
    if OT_COSTS.canonical(cost) in _SMOOTHING_COSTS:
      if not (np.isfinite(eps) and 0.0 <= eps <= 0.5):
        raise PrefjaxError(f"label_smoothing must lie in [0, 0.5] for the logistic cost, got {eps}")
    elif eps != 0:
      raise PrefjaxError(f"label_smoothing is only used by the logistic cost, got {eps} with cost {cost!r}")
  return fn


# ----------------------------------------------------------------------------------------------------
# Sorting: hard, soft, and global under sharding.
# ----------------------------------------------------------------------------------------------------


def soft_sort(x, temperature):
  """Ascending NeuralSort relaxation of `sort(x)` (Grover et al. 1903.08850, Theorem 4).

  With A_ij = |x_i − x_j| and descending row index i = 1..n, the relaxed permutation matrix is
  P̂_i = softmax(((n + 1 − 2i) x − A 1) / τ); P̂ x is a smooth descending sort, reversed here to ascending.
  Each output is a convex combination of the inputs, and P̂ → the sorting permutation as τ → 0 (for
  distinct inputs), so `soft_sort(x, τ) → jnp.sort(x)`.

  Args:
    x: `[n]` values.
    temperature: scalar τ > 0.

  Returns:
    `[n]` softly sorted values, ascending.
  """
  x = _vector(x, "x")
  t = _concrete(temperature)
  if jnp.ndim(temperature) != 0 or (t is not None and not (np.isfinite(t) and t > 0)):
    raise PrefjaxError(f"temperature must be a finite scalar > 0, got {temperature!r}")
  n = x.shape[0]
  pairwise_abs = jnp.abs(x[:, None] - x[None, :])
  row_sums = pairwise_abs.sum(axis=1)
  scale = (n + 1 - 2 * jnp.arange(1, n + 1, dtype=x.dtype))[:, None]
  logits = (scale * x[None, :] - row_sums[None, :]) / temperature
  descending = jax.nn.softmax(logits, axis=-1) @ x
  return descending[::-1]


def _sort(x, soft_temperature):
  return jnp.sort(x) if soft_temperature is None else soft_sort(x, soft_temperature)


def global_sort(x_local, axis_name, soft_temperature=None):
  """Inside `shard_map`: sorts the global batch whose per-device slices are `x_local`.

  All-gathers the slices along `axis_name` (tiled, so device d's slice lands at rows d·b..(d+1)·b) and
  sorts the result; every device returns the same `[B]` global order statistics.

  Args:
    x_local: `[b]` this device's slice of the batch.
    axis_name: the mesh axis the batch is sharded over.
    soft_temperature: None for the hard sort, else the NeuralSort temperature.

  Returns:
    `[B]` sorted global batch (B = b × number of devices on `axis_name`).
  """
  return _sort(jax.lax.all_gather(x_local, axis_name, tiled=True), soft_temperature)


# ----------------------------------------------------------------------------------------------------
# One-dimensional OT and AOT.
# ----------------------------------------------------------------------------------------------------


def ot_losses(u, v, *, cost="logistic", beta=1.0, label_smoothing=0.0, soft_temperature=None,
              check_finite=False):
  """Per-order-statistic terms of the 1-D OT cost: h(β(u_(i) − v_(i))) (docs/theory.md §5, 2406.05882).

  Their mean is OT_h between the empirical distributions of `u` and `v`; for convex h it equals the minimum
  over all pairings σ of (1/n) Σ_i h(β(u_i − v_σ(i))). Batch-coupled: term i belongs to the i-th order
  statistics, and the sort must see the whole (global) batch.

  Args:
    u: `[n]` samples of the distribution that should dominate (policy margins, chosen log-ratios).
    v: `[n]` samples of the dominated distribution (reference margins, rejected log-ratios).
    cost: a name in `OT_COSTS`: logistic (default), squared_hinge, least_squares.
    beta: scalar β > 0, the scale of the differences inside h.
    label_smoothing: ε ∈ [0, ½] for the logistic cost (must be 0 for the others).
    soft_temperature: None for the exact sort; τ > 0 sorts with NeuralSort (smooth gradients; a
      relaxation, equal to the exact loss only as τ → 0).
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `[n]` losses in sorted order.
  """
  u, v = _check_pair(u, v, "u", "v")
  _checks.check_finite("ot_losses", check_finite, {"u": u, "v": v})
  fn = _check_hparams(cost, beta, label_smoothing)
  delta = _sort(u, soft_temperature) - _sort(v, soft_temperature)
  return fn(beta * delta, label_smoothing)


def ot_value(u, v, *, cost="logistic", beta=1.0, label_smoothing=0.0, check_finite=False):
  """The 1-D OT cost (1/n) Σ_i h(β(u_(i) − v_(i))) = min over pairings (convex h); see `ot_losses`."""
  return ot_losses(u, v, cost=cost, beta=beta, label_smoothing=label_smoothing,
                   check_finite=check_finite).mean()


def aot_paired_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, *,
                    beta, cost="logistic", label_smoothing=0.0, soft_temperature=None, check_finite=False):
  """Paired AOT (2406.05882): the policy's margin distribution should dominate the reference's.

  loss_i = h(β(sort(m^π)_(i) − sort(m^ref)_(i))) with m^π = log π(y_w) − log π(y_l) and
  m^ref = log π_ref(y_w) − log π_ref(y_l). With the logistic cost this is `pairwise_loss("aot", ...)`.

  Args:
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps: `[B]` each.
    beta: scalar β > 0.
    cost: convex cost name (see `OT_COSTS`).
    label_smoothing: ε ∈ [0, ½] (logistic cost only).
    soft_temperature: None (exact sort) or a NeuralSort temperature.
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `[B]` losses in sorted order (batch-coupled; reduce with the mean).
  """
  pw, pl = _check_pair(policy_chosen_logps, policy_rejected_logps, "policy_chosen_logps",
                       "policy_rejected_logps")
  rw, rl = _check_pair(ref_chosen_logps, ref_rejected_logps, "ref_chosen_logps", "ref_rejected_logps")
  _check_pair(pw, rw, "policy_chosen_logps", "ref_chosen_logps")
  _checks.check_finite("aot_paired_loss", check_finite, {
      "policy_chosen_logps": pw, "policy_rejected_logps": pl, "ref_chosen_logps": rw, "ref_rejected_logps": rl})
  return ot_losses(pw - pl, rw - rl, cost=cost, beta=beta, label_smoothing=label_smoothing,
                   soft_temperature=soft_temperature)


def aot_unpaired_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, *,
                      beta, cost="logistic", label_smoothing=0.0, soft_temperature=None,
                      check_finite=False):
  """Unpaired AOT (2406.05882): chosen log-ratios ρ_w should dominate rejected log-ratios ρ_l.

  loss_i = h(β(sort(ρ_w)_(i) − sort(ρ_l)_(i))), ρ = log π − log π_ref. With the logistic cost this is
  `pairwise_loss("aot_unpaired", ...)` (TRL's `aot_pair`).

  Args:
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps: `[B]` each.
    beta: scalar β > 0.
    cost: convex cost name.
    label_smoothing: ε ∈ [0, ½] (logistic cost only).
    soft_temperature: None (exact sort) or a NeuralSort temperature.
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `[B]` losses in sorted order (batch-coupled; reduce with the mean).
  """
  pw, rw = _check_pair(policy_chosen_logps, ref_chosen_logps, "policy_chosen_logps", "ref_chosen_logps")
  pl, rl = _check_pair(policy_rejected_logps, ref_rejected_logps, "policy_rejected_logps",
                       "ref_rejected_logps")
  _check_pair(pw, pl, "policy_chosen_logps", "policy_rejected_logps")
  _checks.check_finite("aot_unpaired_loss", check_finite, {
      "policy_chosen_logps": pw, "policy_rejected_logps": pl, "ref_chosen_logps": rw, "ref_rejected_logps": rl})
  return ot_losses(pw - rw, pl - rl, cost=cost, beta=beta, label_smoothing=label_smoothing,
                   soft_temperature=soft_temperature)


def sharded_ot_losses(u, v, *, mesh, axis_name="data", cost="logistic", beta=1.0, label_smoothing=0.0,
                      soft_temperature=None, check_finite=False):
  """`ot_losses` on a batch sharded over `axis_name` of `mesh`, sorting the global batch.

  Runs under `jax.shard_map`: each device all-gathers both global batches, sorts them (`global_sort`),
  evaluates the cost and keeps its own block of order statistics, so the output is sharded like the input
  and equals the single-device `ot_losses(u, v)` on the same global batch (values and gradients; the
  gradient of the all-gather is a reduce-scatter). Sorting only the local slice instead would compute a
  different (and wrong) loss: the local order statistics are not the global ones.

  Args:
    u: `[B]` global array (B divisible by the size of `axis_name`), any sharding.
    v: `[B]` likewise.
    mesh: a `jax.sharding.Mesh` with an axis `axis_name`.
    axis_name: the data-parallel mesh axis.
    cost, beta, label_smoothing, soft_temperature: as in `ot_losses`.
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `[B]` per-order-statistic losses, sharded over `axis_name`.
  """
  u, v = _check_pair(u, v, "u", "v")
  _checks.check_finite("sharded_ot_losses", check_finite, {"u": u, "v": v})
  fn = _check_hparams(cost, beta, label_smoothing)
  if axis_name not in mesh.shape:
    raise PrefjaxError(f"axis_name {axis_name!r} is not an axis of the mesh (axes: {tuple(mesh.shape)})")
  num_shards = mesh.shape[axis_name]
  if u.shape[0] % num_shards:
    raise PrefjaxError(
        f"batch size {u.shape[0]} is not divisible by the {num_shards} devices of mesh axis {axis_name!r}")
  beta = jnp.asarray(beta, u.dtype)
  label_smoothing = jnp.asarray(label_smoothing, u.dtype)

  def local(u_local, v_local, beta, label_smoothing):
    delta = (global_sort(u_local, axis_name, soft_temperature)
             - global_sort(v_local, axis_name, soft_temperature))
    b = u_local.shape[0]
    mine = jax.lax.dynamic_slice_in_dim(delta, jax.lax.axis_index(axis_name) * b, b)
    return fn(beta * mine, label_smoothing)

  spec = PartitionSpec(axis_name)
  return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, PartitionSpec(), PartitionSpec()),
                       out_specs=spec)(u, v, beta, label_smoothing)


# ----------------------------------------------------------------------------------------------------
# First-order stochastic dominance metric.
# ----------------------------------------------------------------------------------------------------

_MAX_EXACT_LEVELS = 1 << 16


def empirical_quantiles(x, levels):
  """Left-continuous empirical quantile function Q(t) = x_(⌈t n⌉ − 1) (0-based order statistics)."""
  x = jnp.sort(x)
  n = x.shape[0]
  index = jnp.clip(jnp.ceil(levels * n).astype(jnp.int32) - 1, 0, n - 1)
  return x[index]


def fsd_violation(chosen, rejected, *, num_levels: Optional[int] = None):
  """Fraction of quantile levels t ∈ (0, 1) where Q_chosen(t) < Q_rejected(t) (docs/theory.md §5).

  0 means the chosen distribution first-order stochastically dominates the rejected one (AOT's goal),
  1 that it is dominated everywhere. The levels are the midpoints t_k = (k + ½)/L; by default
  L = lcm(n_chosen, n_rejected) (capped at 2¹⁶), where both empirical quantile functions are constant on
  each cell, so the fraction is the exact Lebesgue measure of {t : Q_chosen(t) < Q_rejected(t)}. For equal
  sizes it is the fraction of order statistics with chosen_(i) < rejected_(i).

  Args:
    chosen: `[n]` samples (e.g. chosen rewards, or policy margins).
    rejected: `[m]` samples (m may differ from n).
    num_levels: L, or None for the exact default.

  Returns:
    Scalar fraction in [0, 1].
  """
  chosen, rejected = _vector(chosen, "chosen"), _vector(rejected, "rejected")
  if num_levels is None:
    num_levels = min(math.lcm(chosen.shape[0], rejected.shape[0]), _MAX_EXACT_LEVELS)
  if not isinstance(num_levels, (int, np.integer)) or num_levels < 1:
    raise PrefjaxError(f"num_levels must be a positive integer, got {num_levels!r}")
  dtype = jnp.result_type(chosen, rejected, float)
  levels = (jnp.arange(num_levels, dtype=dtype) + 0.5) / num_levels
  violated = empirical_quantiles(chosen.astype(dtype), levels) < empirical_quantiles(
      rejected.astype(dtype), levels)
  return violated.astype(dtype).mean()


# ----------------------------------------------------------------------------------------------------
# Declarations in the objective index (`prefjax.objectives.spec`): AOT with each non-logistic cost (the
# logistic ones are the pairwise family's `aot` and `aot_unpaired`).
# ----------------------------------------------------------------------------------------------------


def _aot_build(loss_fn, cost):

  def build(options):

    def fn(batch, hp, state, key):
      del key
      return loss_fn(batch.policy_chosen_logps, batch.policy_rejected_logps, batch.ref_chosen_logps,
                     batch.ref_rejected_logps, beta=hp.beta, cost=cost, **options), state

    return spec.Loss(fn)

  return build


_COSTS = [c for c in OT_COSTS.names() if OT_COSTS.canonical(c) == c and c != "logistic"]
for _kind, _loss_fn, _formula in (("paired", aot_paired_loss, "β(sort(m^π)_(i) − sort(m^ref)_(i))"),
                                  ("unpaired", aot_unpaired_loss, "β(sort(ρ_w)_(i) − sort(ρ_l)_(i))")):
  for _cost in _COSTS:
    spec.declare(spec.Objective(
        f"aot_{_kind}_{_cost}", "distributional", "pair", _aot_build(_loss_fn, _cost),
        options=(("soft_temperature", None),), batch_coupled=True, display_name=f"AOT {_kind} ({_cost})",
        arxiv="2406.05882", formula=f"{_cost} cost of {_formula}",
        verified="tests/test_ot.py: the sorted loss equals the optimal pairing (brute force, assignment)"))
del _kind, _loss_fn, _formula, _cost

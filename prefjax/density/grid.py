"""The 1-D density-estimation environment of Dumoulin et al. (arXiv 2311.14115; official notebook
google-deepmind/pbde; docs/theory.md §6).

- Support [−10, 10] discretised on a uniform grid (2¹⁶ points in the paper); densities are normalised with the
  trapezoid rule, Z = Σ_i dx (q_i + q_{i+1})/2, computed in log space.
- The model is an energy-based MLP, log q(x) = −E_θ(x) (4 hidden layers of 64 tanh units), pretrained by
  regressing its output onto log TruncatedNormal(0, 5) over the grid (MSE, Adam with cosine decay).
- The annotator's implicit preference distribution is p* = 0.4·TN(−2.5, 0.25) + 0.6·TN(2.5, 1.0), truncated to
  [−10, 10]. 0.25 and 1.0 are standard deviations: the notebook builds them with
  `tfd.TruncatedNormal(loc, scale, low, high)`, whose `scale` is the standard deviation.
- Pairs a, b ∼ π_pre are drawn on the grid (as the notebook does, `jax.random.choice` over the support);
  Luce labels y ∼ Bernoulli(σ(log p*(a) − log p*(b))); two-annotator labels
  y ∼ Bernoulli(Σ_i w_i σ(log p_i(a) − log p_i(b))).

Pairs are stored as grid indices, so a model evaluated once on the grid gives every pair's log-density by a
gather: one training step costs one MLP pass over the grid, whatever the number of pairs.
"""

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

from prefjax import jit_utils
from prefjax.errors import PrefjaxError

LOW, HIGH = -10.0, 10.0
PAPER_GRID_SIZE = 2**16
PRETRAIN_LOC, PRETRAIN_SCALE = 0.0, 5.0
ANNOTATOR_WEIGHTS = (0.4, 0.6)
ANNOTATOR_LOCS = (-2.5, 2.5)
ANNOTATOR_SCALES = (0.25, 1.0)  # Standard deviations (tfd.TruncatedNormal's `scale`).


class Grid(NamedTuple):
  """A uniform grid: points `x` `[G]` and spacing `dx` (a Python float)."""
  x: jax.Array
  dx: float


def make_grid(num_points=PAPER_GRID_SIZE, low=LOW, high=HIGH, dtype=jnp.float32):
  """`num_points` equally spaced points from `low` to `high` inclusive (the notebook's `jnp.linspace`)."""
  if int(num_points) < 2:
    raise PrefjaxError(f"grid size must be at least 2, got {num_points}")
  if not high > low:
    raise PrefjaxError(f"grid needs high > low, got low={low}, high={high}")
  return Grid(jnp.linspace(low, high, int(num_points), dtype=dtype), (high - low) / (int(num_points) - 1))


def trapezoid_log_partition(log_unnorm, dx):
  """log Z of the trapezoid rule, log Σ_i dx (q_i + q_{i+1})/2, from log q `[G]` (stable in log space)."""
  pair = jnp.logaddexp(log_unnorm[:-1], log_unnorm[1:])
  return logsumexp(pair + jnp.log(0.5) + jnp.log(dx))


def normalise(log_unnorm, dx):
  """Log-density `[G]` normalised by the trapezoid rule."""
  return log_unnorm - trapezoid_log_partition(log_unnorm, dx)


def trapezoid_weights(num_points, dx):
  """Quadrature weights `[G]` (dx/2 at the ends, dx inside): ∫ f ≈ Σ_i w_i f(x_i)."""
  w = jnp.full((int(num_points),), dx)
  return w.at[0].set(dx / 2).at[-1].set(dx / 2)


def total_variation(log_p, log_q, dx):
  """TV(p, q) = ½ ∫ |p − q| dx by the trapezoid rule, for log-densities `[..., G]` on the same grid."""
  diff = jnp.abs(jnp.exp(log_p) - jnp.exp(log_q))
  w = trapezoid_weights(jnp.shape(diff)[-1], dx).astype(diff.dtype)
  return 0.5 * jnp.sum(diff * jnp.broadcast_to(w, diff.shape), axis=-1)


def truncated_normal_logpdf(x, loc, scale, low=LOW, high=HIGH):
  """log density of Normal(loc, scale²) truncated to [low, high] (scale is the standard deviation)."""
  mass = norm.cdf((high - loc) / scale) - norm.cdf((low - loc) / scale)
  inside = (x >= low) & (x <= high)
  return jnp.where(inside, norm.logpdf(x, loc, scale) - jnp.log(mass), -jnp.inf)


def pretrain_target_logpdf(x):
  """log TruncatedNormal(0, 5) on [−10, 10], the pretraining target."""
  return truncated_normal_logpdf(x, PRETRAIN_LOC, PRETRAIN_SCALE)


def annotator_component_logpdfs(x, locs=ANNOTATOR_LOCS, scales=ANNOTATOR_SCALES):
  """`[K, ...]` log-densities of the annotator's truncated-normal components."""
  return jnp.stack([truncated_normal_logpdf(x, l, s) for l, s in zip(locs, scales)])


def annotator_logpdf(x, weights=ANNOTATOR_WEIGHTS, locs=ANNOTATOR_LOCS, scales=ANNOTATOR_SCALES):
  """log p*(x), p* = Σ_k w_k TN(loc_k, scale_k) (default 0.4·TN(−2.5, 0.25) + 0.6·TN(2.5, 1.0))."""
  comps = annotator_component_logpdfs(x, locs, scales)
  log_w = jnp.log(jnp.asarray(weights, comps.dtype)).reshape((-1,) + (1,) * (comps.ndim - 1))
  return logsumexp(comps + log_w, axis=0)


class EnergyMLP(nn.Module):
  """Negative energy −E_θ(x) of a 1-D energy-based model: `num_layers` Dense(width)+tanh, then Dense(1).

  Attributes:
    width: hidden units per layer (64 in the paper).
    num_layers: hidden layers (4 in the paper).
  """
  width: int = 64
  num_layers: int = 4

  @nn.compact
  def __call__(self, x):
    """Maps points `[...]` to unnormalised log-densities `[...]`."""
    h = x[..., None]
    for _ in range(self.num_layers):
      h = jnp.tanh(nn.Dense(self.width)(h))
    return nn.Dense(1)(h)[..., 0]


def init_energy(key, model):
  """Initial parameters of `model` (an EnergyMLP)."""
  return jax.jit(model.init)(key, jnp.zeros((1,), jnp.float32))["params"]


def jit_maybe_fast(fn, fast_compile=False):
  """`jax.jit(fn)`; with `fast_compile`, compiled at XLA optimisation level 0 once per argument shapes.

  The same as `prefjax.jit_utils.jit(fn, fast_compile)`: the fast-compiled executable is cached, so a function
  called in a host loop (the chunked training loops here) compiles once.
  """
  return jit_utils.jit(fn, fast_compile)


def pretrain(key, model, grid, *, num_steps=4096, lr=1e-3, target_logpdf=pretrain_target_logpdf,
             fast_compile=False, chunk_steps=None, progress=None):
  """Fits the model's log-density to `target_logpdf` on the grid: MSE, Adam with cosine decay (full batch).

  The notebook regresses the unnormalised output onto the normalised target, so the pretrained energy is
  close to normalised; downstream code always normalises with the trapezoid rule anyway.

  Args:
    key: PRNG key for the initialisation.
    model: an `EnergyMLP`.
    grid: the `Grid`.
    num_steps: Adam steps (4 096 in the paper).
    lr: initial learning rate of the cosine schedule (1e-3 in the paper).
    target_logpdf: function of x `[G]` → log target density `[G]`.
    fast_compile: see `jit_maybe_fast`.
    chunk_steps: if given (a divisor of `num_steps`), run as a host loop over chunks of this many steps (one
      compiled chunk) calling `progress(steps_done, mse)` after each: for long runs on fine grids.
    progress: see `chunk_steps`.

  Returns:
    (params, final MSE).
  """
  params = init_energy(key, model)
  target = jax.jit(target_logpdf)(grid.x)
  tx = optax.adam(optax.cosine_decay_schedule(lr, int(num_steps)))
  chunk = int(chunk_steps or num_steps)
  if int(num_steps) % chunk:
    raise PrefjaxError(f"chunk_steps ({chunk_steps}) must divide num_steps ({num_steps})")

  def loss_fn(p):
    return jnp.mean((model.apply({"params": p}, grid.x) - target) ** 2)

  def step(carry, _):
    p, s = carry
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), loss

  def run(carry):
    carry, losses = jax.lax.scan(step, carry, None, length=chunk)
    return carry, losses[-1]

  run = jit_maybe_fast(run, fast_compile)
  carry = (params, tx.init(params))
  for i in range(int(num_steps) // chunk):
    carry, mse = run(carry)
    if progress is not None:
      progress((i + 1) * chunk, mse)
  return carry[0], mse


def model_log_density(model, params, grid):
  """The model's normalised log-density on the grid `[G]`."""
  return jax.jit(lambda p, x: normalise(model.apply({"params": p}, x), grid.dx))(params, grid.x)


def sample_indices(key, log_density, num_samples, dx):
  """`num_samples` grid indices drawn with probability ∝ density × quadrature weight (π on the grid).

  Inverse-CDF sampling (cumulative masses, then a binary search per uniform draw): O(G + B log G) time and
  O(G + B) memory. `jax.random.categorical` with `shape=(B,)` draws Gumbel noise of shape `[B, G]`, which
  is 2¹⁶ × 2¹⁶ floats (17 GB) on the paper's grid.
  """
  w = trapezoid_weights(jnp.shape(log_density)[0], dx)
  logits = log_density + jnp.log(w)
  cdf = jnp.cumsum(jnp.exp(logits - jnp.max(logits)))
  u = jax.random.uniform(key, (int(num_samples),), cdf.dtype) * cdf[-1]
  # side="right": index i is drawn iff cdf[i − 1] ≤ u < cdf[i], so zero-mass points are never drawn.
  idx = jnp.searchsorted(cdf, u, side="right")
  return jnp.minimum(idx, cdf.shape[0] - 1).astype(jnp.int32)


class Pairs(NamedTuple):
  """Labelled comparisons on a grid: indices `a`, `b` `[B]` and labels `y` `[B]` (1.0 when a ≻ b)."""
  a: jax.Array
  b: jax.Array
  y: jax.Array


def sample_pair_indices(key, log_density, num_pairs, dx):
  """Two independent index arrays `[B]` drawn from the density (the notebook splits 2B draws in two)."""
  idx = sample_indices(key, log_density, 2 * int(num_pairs), dx)
  return idx[:num_pairs], idx[num_pairs:]


def luce_labels(key, logp_a, logp_b):
  """y ∼ Bernoulli(σ(log p(a) − log p(b))) as float `[B]` (the Luce choice rule)."""
  return jax.random.bernoulli(key, jax.nn.sigmoid(logp_a - logp_b)).astype(jnp.float32)


def mixture_probability(comp_a, comp_b, weights):
  """P(a ≻ b) = Σ_k w_k σ(log p_k(a) − log p_k(b)) for component log-densities `[K, ...]`."""
  w = jnp.asarray(weights, comp_a.dtype).reshape((-1,) + (1,) * (comp_a.ndim - 1))
  return jnp.sum(w * jax.nn.sigmoid(comp_a - comp_b), axis=0)


def mixture_labels(key, comp_a, comp_b, weights):
  """Two-annotator outcomes: y ∼ Bernoulli(Σ_k w_k σ(log p_k(a) − log p_k(b))), float `[B]`."""
  return jax.random.bernoulli(key, mixture_probability(comp_a, comp_b, weights)).astype(jnp.float32)


def make_pairs(key, log_pre, num_pairs, dx, log_targets: Sequence[jax.Array], weights=None):
  """Pairs a, b ∼ π_pre on the grid, labelled by one annotator (Luce) or a mixture of annotators.

  Args:
    key: PRNG key (split inside: one key for the pairs, one for the labels).
    log_pre: `[G]` normalised log π_pre on the grid.
    num_pairs: B.
    dx: grid spacing.
    log_targets: `[K, G]` annotator log-densities on the grid (K = 1: Luce labels).
    weights: `[K]` mixture weights when K > 1.

  Returns:
    `Pairs` of grid indices and labels.
  """
  k_pairs, k_labels = jax.random.split(key)
  a, b = sample_pair_indices(k_pairs, log_pre, num_pairs, dx)
  log_targets = jnp.asarray(log_targets)
  if log_targets.shape[0] == 1:
    y = luce_labels(k_labels, log_targets[0][a], log_targets[0][b])
  else:
    if weights is None or len(weights) != log_targets.shape[0]:
      raise PrefjaxError(f"a mixture of {log_targets.shape[0]} annotators needs as many weights, got {weights}")
    y = mixture_labels(k_labels, log_targets[:, a], log_targets[:, b], weights)
  return Pairs(a, b, y)


class PairCells(NamedTuple):
  """Labelled pairs grouped by grid cell: the sufficient statistics of any pairwise likelihood on a grid.

  Cell c is the unordered grid pair (a_c ≤ b_c); `count` is how many pairs fell in it (in either order)
  and `wins` how many of them a_c won (a pair (b_c, a_c) with label 0 is a win for a_c). A likelihood that
  is antisymmetric in the pair's order (Luce, Bradley–Terry, annotator mixtures: P(a ≻ b) = 1 − P(b ≻ a))
  sums to Σ_c [wins_c log P(a_c ≻ b_c) + (count_c − wins_c) log P(b_c ≻ a_c)], which is the per-pair sum
  regrouped, so training on cells is training on the pairs, at a cost of at most G(G + 1)/2 cells
  whatever the number of pairs. Only occupied cells are kept.
  """
  a: np.ndarray  # [C] int32
  b: np.ndarray  # [C] int32
  count: np.ndarray  # [C] float32
  wins: np.ndarray  # [C] float32
  num_pairs: int


def pair_cells(key, log_pre, num_pairs, dx, log_targets, weights=None, *, chunk_pairs=2**22):
  """Draws `num_pairs` labelled pairs (as `make_pairs`) and returns their `PairCells`.

  Pairs are drawn in chunks of `chunk_pairs` (one key per chunk, `jax.random.fold_in(key, chunk)`) and
  accumulated into a G × G table, so memory stays O(G² + chunk) for 2²⁴ pairs and more.

  Args:
    key: PRNG key.
    log_pre: `[G]` normalised log π_pre on the grid (the pair law is π_pre × π_pre).
    num_pairs: N.
    dx: grid spacing.
    log_targets: `[K, G]` annotator log-densities (K = 1: Luce labels).
    weights: `[K]` mixture weights when K > 1.
    chunk_pairs: pairs per sampling chunk.

  Returns:
    `PairCells` (numpy arrays).
  """
  num_pairs, chunk_pairs = int(num_pairs), int(chunk_pairs)
  if num_pairs < 1 or chunk_pairs < 1:
    raise PrefjaxError(f"pair_cells: num_pairs and chunk_pairs must be positive, got {num_pairs}, "
                       f"{chunk_pairs}")
  g = int(jnp.shape(log_pre)[0])
  log_targets = jnp.asarray(log_targets)

  def add(tables, k, n):
    counts, wins = tables
    p = make_pairs(k, log_pre, n, dx, log_targets, weights)
    return counts.at[p.a, p.b].add(1.0), wins.at[p.a, p.b].add(p.y)

  add = jax.jit(add, static_argnums=2)
  # Counts up to 2²⁴ per cell are exact in float32.
  tables = (jnp.zeros((g, g), jnp.float32), jnp.zeros((g, g), jnp.float32))
  done, chunk = 0, 0
  while done < num_pairs:
    n = min(chunk_pairs, num_pairs - done)
    tables = add(tables, jax.random.fold_in(key, chunk), n)
    done, chunk = done + n, chunk + 1
  counts, wins = (np.asarray(t, np.float64) for t in tables)
  # Fold (b, a) onto (a, b) for a < b: count_ab + count_ba, wins_ab + (count_ba − wins_ba).
  count_u = counts + counts.T - np.diag(np.diag(counts))
  wins_u = wins + (counts - wins).T - np.diag(np.diag(counts - wins))
  a, b = np.triu_indices(g)
  keep = count_u[a, b] > 0
  a, b = a[keep], b[keep]
  return PairCells(a.astype(np.int32), b.astype(np.int32), count_u[a, b].astype(np.float32),
                   wins_u[a, b].astype(np.float32), num_pairs)

"""Aggregating pairwise judgements: Borda, Enhanced Borda Count, order calibration, cyclic triads.

Preference matrices follow docs/theory.md §0: P[i, j] = p(i ≻ j), P + Pᵀ = 1. A judge queried with i shown
first gives J[i, j] = p(first ≻ second), which need not satisfy J + Jᵀ = 1 (position bias);
`calibrate_order` turns it into a preference matrix.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.ranking import battles as battles_lib


def _square(P, name):
  P = jnp.asarray(P)
  if P.ndim < 2 or P.shape[-1] != P.shape[-2]:
    raise PrefjaxError(f"{name} must have shape [..., N, N], got {P.shape}")
  return P


def _eye(P):
  """Boolean identity shaped `[1, …, 1, N, N]` like P (explicit ranks: no silent promotion)."""
  n = P.shape[-1]
  return jnp.eye(n, dtype=bool).reshape((1,) * (P.ndim - 2) + (n, n))


def _check_probabilities(x, name):
  """Raises naming the first NaN or out-of-[0, 1] entry of a concrete array; no-op under tracing."""
  if battles_lib.is_tracer(x):
    return
  battles_lib.check_finite_scores(x, name)
  arr = np.asarray(x)
  bad = (arr < 0) | (arr > 1)
  if bad.any():
    idx = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), arr.shape)
    where = idx[0] if len(idx) == 1 else tuple(int(i) for i in idx)
    raise PrefjaxError(f"{name} row {where} is {arr[idx]} (probabilities must lie in [0, 1])")


def empirical_preferences(counts):
  """Empirical preference matrix from counts: P[i, j] = (W_ij + ½T_ij) / (W_ij + W_ji + T_ij), ½ if unplayed.

  Args:
    counts: `BattleCounts` (or a `Battles` table).

  Returns:
    `[N, N]` preference matrix (P + Pᵀ = 1, ½ on the diagonal).
  """
  counts, _ = battles_lib.as_counts(counts)
  return _empirical_preferences(counts)


@jax.jit
def _empirical_preferences(counts):
  played = counts.wins + counts.wins.T + counts.ties
  won = counts.wins + 0.5 * counts.ties
  return jnp.where(played > 0, won / jnp.where(played > 0, played, 1.0), 0.5)


def borda_count(P):
  """Borda score from pairwise preferences: b_i = Σ_{j≠i} P[i, j] (expected wins against every other).

  For a single full ranking (P[i, j] = 1 if i is above j) this is the classic Borda count, K − 1 − position.

  Args:
    P: `[..., N, N]` preference (or empirical win-rate) matrix.

  Returns:
    `[..., N]` Borda scores.
  """
  return _borda_count(_square(P, "P"))


@jax.jit
def _borda_count(P):
  return jnp.sum(jnp.where(_eye(P), 0.0, P), axis=-1)


def borda_from_rankings(rankings, num_models):
  """Classic Borda count of K-wise rankings: each ranking gives K − 1 − position points.

  Args:
    rankings: `[M, K]` int model ids, best first.
    num_models: N.

  Returns:
    `[N]` total points.
  """
  rankings = jnp.asarray(rankings, jnp.int32)
  if rankings.ndim != 2:
    raise PrefjaxError(f"rankings must have shape [M, K], got {rankings.shape}")
  return _borda_from_rankings(rankings, int(num_models))


@functools.partial(jax.jit, static_argnames=("num_models",))
def _borda_from_rankings(rankings, num_models):
  k = rankings.shape[1]
  points = jnp.broadcast_to(jnp.arange(k - 1, -1, -1, dtype=jnp.float32)[None, :], rankings.shape)
  return jnp.zeros(num_models, jnp.float32).at[rankings.ravel()].add(points.ravel())


def transitive_closure(adjacency):
  """Transitive closure of a directed graph by Floyd–Warshall (Warshall 1962), as a `fori_loop`.

  C[i, j] is True iff there is a path i → … → j of length ≥ 1 (so C[i, i] is True on cycles).

  Args:
    adjacency: `[N, N]` bool, adjacency[i, j] = edge i → j.

  Returns:
    `[N, N]` bool closure.
  """
  adjacency = jnp.asarray(adjacency, bool)
  if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
    raise PrefjaxError(f"adjacency must have shape [N, N], got {adjacency.shape}")
  return _transitive_closure(adjacency)


@jax.jit
def _transitive_closure(adjacency):

  def relax(k, c):
    return c | (c[:, k][:, None] & c[k, :][None, :])

  return jax.lax.fori_loop(0, adjacency.shape[0], relax, adjacency)


class EnhancedBorda(NamedTuple):
  """Result of `enhanced_borda_count`.

  Attributes:
    closure: `[N, N]` bool transitive closure of the win graph (closure[i, j]: i ≻ j, maybe transitively).
    borda: `[N]` number of other nodes each node beats in the closure.
    rank: `[N]` int rank, 1 = best.
    quantile: `[N]` global quantile score Q_g = 1 − (rank − 1)/(N − 1) in [0, 1].
  """
  closure: jax.Array
  borda: jax.Array
  rank: jax.Array
  quantile: jax.Array


def enhanced_borda_count(P, threshold=0.5):
  """Enhanced Borda Count (EBC) of LLaMA-Berry (Zhang et al. 2410.02884, §3.3).

  1. Win-loss matrix M[i, j] = [P[i, j] > threshold] from the pairwise preference model.
  2. Transitive closure C of M (Floyd–Warshall): if i ≻ j and j ≻ k then i ≻ k.
  3. Borda(i) = Σ_{j≠i} C[i, j], the number of nodes i beats in the closure; more is better.
  4. Re-ranking of equal Borda counts by a soft comparison with the preference probabilities: the paper
     orders two tied nodes by P[i, j] vs P[j, i]; for groups of more than two (cycles collapse to one
     Borda count) we use each node's soft Borda score within its group, Σ_{j tied} P[i, j], which is the
     paper's rule for pairs; remaining exact ties go to the lower index.
  5. Global quantile score Q_g(i) = 1 − (rank(i) − 1)/(N − 1).
  The paper then mixes Q_g with a local tree value; that step belongs to its search tree, not here.

  Args:
    P: `[N, N]` preference matrix (e.g. a calibrated judge, `calibrate_order`).
    threshold: a win is P[i, j] > threshold.

  Returns:
    An `EnhancedBorda` tuple.
  """
  P = _square(P, "P")
  if P.ndim != 2:
    raise PrefjaxError(f"enhanced_borda_count: P must have shape [N, N], got {P.shape}")
  _check_probabilities(P, "P")
  return _enhanced_borda_count(P, threshold)


@jax.jit
def _enhanced_borda_count(P, threshold):
  n = P.shape[0]
  off_diag = ~jnp.eye(n, dtype=bool)
  closure = _transitive_closure((P > threshold) & off_diag)
  borda = jnp.sum(closure & off_diag, axis=1)
  same = (borda[:, None] == borda[None, :]) & off_diag
  soft = jnp.sum(jnp.where(same, P, 0.0), axis=1)
  # lexsort: the last key is primary. Sort by Borda (desc), soft score (desc), index (asc).
  order = jnp.lexsort((jnp.arange(n), -soft, -borda))
  rank = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(1, n + 1, dtype=jnp.int32))
  quantile = (n - rank) / max(n - 1, 1)  # = 1 − (rank − 1)/(N − 1)
  return EnhancedBorda(closure, borda, rank, quantile.astype(P.dtype))


def _calibrate_probability(p_ab, p_ba):
  return 0.5 * (p_ab + 1.0 - p_ba)


def _calibrate_log_odds(p_ab, p_ba):
  return jax.nn.sigmoid(0.5 * (jax.scipy.special.logit(p_ab) - jax.scipy.special.logit(p_ba)))


# How `calibrate_order` combines the two presentation orders.
CALIBRATIONS = {"probability": _calibrate_probability, "log_odds": _calibrate_log_odds}


def calibrate_order(p_ab, p_ba, method="probability"):
  """Order-inconsistency calibration (LLM-RankFusion, Zeng et al. 2406.00231 §4): judge both orders.

  With p_ab = p(first ≻ second) when A is shown first and p_ba the same when B is shown first,
  p(A ≻ B) = ½ (p_ab + (1 − p_ba)) ("probability", the default and the paper's first version); or the
  mean of the two log-odds, σ(½ (logit p_ab − logit p_ba)) ("log_odds", its later revision). Either
  way p(A ≻ B) + p(B ≻ A) = 1 exactly and a pure position bias cancels.

  Args:
    p_ab: `[...]` judge probabilities with A first (a `[N, N]` judge matrix J works too: pass J and Jᵀ).
    p_ba: `[...]` judge probabilities with B first, same shape.
    method: one of `CALIBRATIONS`.

  Returns:
    `[...]` calibrated p(A ≻ B).

  Raises:
    PrefjaxError: NaN or out-of-range probabilities (row named), shape mismatch, unknown method.
  """
  if method not in CALIBRATIONS:
    raise PrefjaxError(f"calibrate_order: method must be one of {sorted(CALIBRATIONS)}, got {method!r}")
  p_ab = jnp.asarray(p_ab)
  p_ba = jnp.asarray(p_ba)
  if p_ab.shape != p_ba.shape:
    raise PrefjaxError(f"calibrate_order: p_ab and p_ba shapes differ: {p_ab.shape} vs {p_ba.shape}")
  _check_probabilities(p_ab, "p_ab")
  _check_probabilities(p_ba, "p_ba")
  return _calibrate(p_ab, p_ba, method)


@functools.partial(jax.jit, static_argnames=("method",))
def _calibrate(p_ab, p_ba, method):
  return CALIBRATIONS[method](p_ab, p_ba)


def calibrate_judge_matrix(J, method="probability"):
  """Calibrated preference matrix from a judge matrix J[i, j] = p(first ≻ second | i shown first).

  P = calibrate_order(J, Jᵀ), so P + Pᵀ = 1 and P[i, i] = ½.

  Args:
    J: `[..., N, N]` judge probabilities for every ordered pair (diagonal ignored).
    method: one of `CALIBRATIONS`.

  Returns:
    `[..., N, N]` preference matrix.
  """
  J = _square(J, "J")
  if method not in CALIBRATIONS:
    raise PrefjaxError(
        f"calibrate_judge_matrix: method must be one of {sorted(CALIBRATIONS)}, got {method!r}")
  n = J.shape[-1]
  off_diag = ~np.eye(n, dtype=bool)
  if not battles_lib.is_tracer(J):
    _check_probabilities(np.asarray(J)[..., off_diag], "J (off-diagonal)")
  return _calibrate_matrix(J, method)


@functools.partial(jax.jit, static_argnames=("method",))
def _calibrate_matrix(J, method):
  J = jnp.where(_eye(J), 0.5, J)
  return CALIBRATIONS[method](J, jnp.swapaxes(J, -1, -2))


def order_consistency(p_ab, p_ba, threshold=0.5):
  """Fraction of pairs whose decision survives swapping the order: [p_ab > t] == [p_ba < t].

  Pairs where either order is exactly at the threshold count as inconsistent (LLM-RankFusion's order
  inconsistency, 2406.00231 §3).

  Args:
    p_ab: `[M]` judge probabilities with A first.
    p_ba: `[M]` judge probabilities with B first.
    threshold: decision threshold.

  Returns:
    Scalar fraction in [0, 1].
  """
  p_ab = jnp.asarray(p_ab)
  p_ba = jnp.asarray(p_ba)
  if p_ab.shape != p_ba.shape:
    raise PrefjaxError(f"order_consistency: p_ab and p_ba shapes differ: {p_ab.shape} vs {p_ba.shape}")
  _check_probabilities(p_ab, "p_ab")
  _check_probabilities(p_ba, "p_ba")
  return _order_consistency(p_ab, p_ba, threshold)


@jax.jit
def _order_consistency(p_ab, p_ba, threshold):
  consistent = ((p_ab > threshold) & (p_ba < threshold)) | ((p_ab < threshold) & (p_ba > threshold))
  return jnp.mean(consistent)


def count_cyclic_triads(P, threshold=0.5):
  """Number of intransitive triads {i, j, k} (i ≻ j ≻ k ≻ i) in the majority graph, trace(A³)/3.

  A[i, j] = [P[i, j] > threshold]; LLM-RankFusion (2406.00231 §3) calls these transitive
  inconsistencies. Pairs at exactly the threshold have no edge, so they never close a cycle. 0 for any
  preference matrix that is consistent with a total order (Bradley–Terry, Thurstone, `total_order`).

  Args:
    P: `[..., N, N]` preference matrices.
    threshold: an edge i → j is P[i, j] > threshold.

  Returns:
    `[...]` int32 counts.
  """
  return _count_cyclic_triads(_square(P, "P"), threshold)


@jax.jit
def _count_cyclic_triads(P, threshold):
  a = ((P > threshold) & ~_eye(P)).astype(jnp.int32)
  a3 = jnp.einsum("...ij,...jk,...ki->...", a, a, a)
  return a3 // 3


def transitivity_violation_rate(P, threshold=0.5):
  """Fraction of the C(N, 3) triads that are cyclic (see `count_cyclic_triads`).

  Args:
    P: `[..., N, N]` preference matrices, N ≥ 3.
    threshold: edge threshold.

  Returns:
    `[...]` fractions.
  """
  P = _square(P, "P")
  n = P.shape[-1]
  if n < 3:
    raise PrefjaxError(f"transitivity_violation_rate needs N >= 3, got {n}")
  return _count_cyclic_triads(P, threshold) / (n * (n - 1) * (n - 2) / 6)

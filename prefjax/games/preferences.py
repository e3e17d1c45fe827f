"""Preference matrices: P[..., i, j] = p(y_i ≻ y_j), with P + Pᵀ = 1 and ½ on the diagonal.

Every constructor works on leading batch axes (a context axis, a game axis), so contextual bandits and
batches of games use the same functions. See docs/theory.md §0 and §4.

This is game maths (below the environments, above nothing but `prefjax.errors`), so objectives, games and
environments all import it from here; `prefjax.envs.preferences` re-exports it for older code.
"""

import jax
import jax.numpy as jnp
import jax.scipy.stats as jstats
import numpy as np

from prefjax.errors import PrefjaxError

__all__ = ["bradley_terry", "thurstone", "total_order", "cyclic", "random_preferences", "mixture", "validate"]


def bradley_terry(rewards):
  """Bradley–Terry preferences p(i ≻ j) = σ(r_i − r_j).

  Args:
    rewards: `[..., N]` rewards (leading axes, e.g. contexts, are kept).

  Returns:
    `[..., N, N]` preference matrix.
  """
  rewards = jnp.asarray(rewards)
  return jax.nn.sigmoid(rewards[..., :, None] - rewards[..., None, :])


def thurstone(means, scale=1.0):
  """Thurstone (probit) preferences p(i ≻ j) = Φ((m_i − m_j) / (√2 · scale)).

  Each action's utility is m_i plus independent N(0, scale²) noise; i is preferred when its draw is larger.

  Args:
    means: `[..., N]` mean utilities.
    scale: standard deviation of each utility's noise.

  Returns:
    `[..., N, N]` preference matrix.
  """
  means = jnp.asarray(means)
  diff = means[..., :, None] - means[..., None, :]
  return jstats.norm.cdf(diff / (jnp.sqrt(2.0) * scale))


def total_order(n, dtype=jnp.float32):
  """Deterministic total order y_0 ≻ y_1 ≻ … ≻ y_{n−1}: P[i, j] = 1 for i < j, 0 for i > j, ½ at i = j."""
  i = jnp.arange(n)
  upper = (i[:, None] < i[None, :]).astype(dtype)
  return upper + 0.5 * jnp.eye(n, dtype=dtype)


def cyclic(n=3, p=1.0, dtype=jnp.float32):
  """Balanced cyclic tournament (rock–paper–scissors for n = 3).

  For odd n, action i beats the (n − 1)/2 actions that follow it cyclically with probability p:
  P[i, j] = p if (j − i) mod n ∈ {1, …, (n − 1)/2}, 1 − p for the other off-diagonal entries. Every row
  has the same sum, so the uniform policy is the Nash equilibrium (for any reference, β → 0).

  Args:
    n: number of actions, odd and ≥ 3.
    p: probability that an action beats the ones it dominates, in [0, 1].
    dtype: array dtype.

  Returns:
    `[n, n]` preference matrix.
  """
  if n < 3 or n % 2 == 0:
    raise PrefjaxError(f"cyclic: n must be odd and >= 3, got n={n}")
  if not 0.0 <= p <= 1.0:
    raise PrefjaxError(f"cyclic: p must lie in [0, 1], got p={p}")
  i = np.arange(n)
  gap = (i[None, :] - i[:, None]) % n
  wins = (gap >= 1) & (gap <= (n - 1) // 2)
  mat = np.where(wins, p, 1.0 - p)
  np.fill_diagonal(mat, 0.5)
  return jnp.asarray(mat, dtype=dtype)


def random_preferences(key, n, shape=(), dtype=jnp.float32):
  """Random preference matrices as in EGPO (Zhou et al. 2503.08942, docs/theory.md §4).

  ½ on the diagonal, strictly-lower entries iid U(0, 1), upper triangle = 1 − lowerᵀ.

  Args:
    key: PRNG key.
    n: number of actions.
    shape: leading batch shape (e.g. `(num_games,)`).
    dtype: array dtype.

  Returns:
    `[*shape, n, n]` preference matrices.
  """
  u = jax.random.uniform(key, (*shape, n, n), dtype=dtype)
  lower = jnp.tril(u, k=-1)
  upper = jnp.triu(1.0 - jnp.swapaxes(lower, -1, -2), k=1)
  diag = jnp.broadcast_to(0.5 * jnp.eye(n, dtype=dtype), lower.shape)
  return lower + upper + diag


def mixture(matrices, weights):
  """Annotator mixture Σ_k w_k P_k: a population of annotators with preference matrices P_k.

  Args:
    matrices: `[K, ..., N, N]` per-annotator preference matrices.
    weights: `[K]` non-negative mixture weights summing to one.

  Returns:
    `[..., N, N]` population preference matrix.
  """
  matrices = jnp.asarray(matrices)
  weights = jnp.asarray(weights, dtype=matrices.dtype)
  if weights.ndim != 1 or weights.shape[0] != matrices.shape[0]:
    raise PrefjaxError(
        f"mixture: weights must have shape [{matrices.shape[0]}] (one per annotator), "
        f"got {weights.shape}")
  w = np.asarray(weights)
  if np.any(w < 0) or abs(float(w.sum()) - 1.0) > 1e-5:
    raise PrefjaxError(f"mixture: weights must be non-negative and sum to 1, got {w.tolist()}")
  return jnp.tensordot(weights, matrices, axes=1)


def validate(P, name="P", atol=1e-5):
  """Checks that `P` is a preference matrix; raises `PrefjaxError` naming the problem otherwise.

  Checks (on the host, not traceable): the last two axes are square, entries lie in [0, 1] and are finite,
  and P + Pᵀ = 1 within `atol` (so the diagonal is ½).

  Args:
    P: `[..., N, N]` candidate preference matrix (or batch of them).
    name: how to call the array in the error message.
    atol: tolerance on P + Pᵀ = 1.

  Returns:
    `P` as a numpy array, unchanged.
  """
  arr = np.asarray(P)
  if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
    raise PrefjaxError(f"{name} must have shape [..., N, N], got {arr.shape}")
  if not np.all(np.isfinite(arr)):
    raise PrefjaxError(f"{name} has non-finite entries")
  if arr.min() < -atol or arr.max() > 1 + atol:
    raise PrefjaxError(
        f"{name} entries must lie in [0, 1], got min {arr.min():.4g}, max {arr.max():.4g}")
  err = np.abs(arr + np.swapaxes(arr, -1, -2) - 1.0)
  if err.max() > atol:
    idx = np.unravel_index(np.argmax(err), err.shape)
    raise PrefjaxError(
        f"{name} must satisfy P + P^T = 1 (p(i>j) + p(j>i) = 1); violated by {err.max():.3g} "
        f"at index {tuple(int(i) for i in idx)}")
  return arr

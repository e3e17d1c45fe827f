"""Named preference games with known answers, beyond the matrix families of `prefjax.games.preferences`.

- `munos_annotators(eps)`: a population of three annotator types whose Bradley–Terry optimum is a
  deterministic policy that flips as ε crosses 0, while the Nash equilibrium moves smoothly
  (Munos et al. arXiv:2312.00886, §3.2; docs/theory.md §4).
- `cyclic_worked_example()`: the p = 5/9 rock–paper–scissors game of docs/theory.md §4 (regularised NE uniform,
  offline IPO against a skewed μ not).
- `egpo_games(key, num_games, n)`: EGPO's random games (Zhou et al. arXiv:2503.08942) with π_ref logits.
- `ranking_preferences`, `bradley_terry_fit`: helpers (a deterministic annotator from a ranking; the
  Bradley–Terry maximum-likelihood rewards of a population preference matrix).
"""

import functools
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.games import preferences


def ranking_preferences(ranking, dtype=jnp.float32):
  """Deterministic annotator with a strict ranking: P[i, j] = 1 if i is ranked above j, 0 below, ½ at i = j.

  Args:
    ranking: sequence of the N action indices, best first (a permutation of 0..N−1).
    dtype: array dtype.

  Returns:
    `[N, N]` preference matrix (a permuted `preferences.total_order`).
  """
  ranking = [int(r) for r in ranking]
  n = len(ranking)
  if sorted(ranking) != list(range(n)):
    raise PrefjaxError(f"ranking_preferences: ranking must be a permutation of 0..{n - 1}, got {ranking}")
  position = np.empty(n, dtype=np.int64)
  position[ranking] = np.arange(n)
  order = np.asarray(preferences.total_order(n))  # entries 0, ½, 1: exact in any float dtype
  return jnp.asarray(order[np.ix_(position, position)], dtype=dtype)


class AnnotatorExample(NamedTuple):
  """Munos et al.'s three-annotator population.

  Attributes:
    rankings: the three annotator types' rankings, best first.
    weights: `[3]` population proportions of the types.
    annotator_P: `[3, 3, 3]` each type's deterministic preference matrix.
    P: `[3, 3]` the population preference matrix Σ_k w_k P_k.
    nash: `[3]` the claimed unregularised Nash equilibrium (1/3 + ε/2, 1/3 + ε/2, 1/3 − ε).
    bt_rewards: `[3]` Bradley–Terry maximum-likelihood rewards of P (`bradley_terry_fit`, all pairs equally
      often), mean zero.
    bt_policy: `[3]` the reward-maximising (RLHF, β → 0) policy: one-hot on argmax bt_rewards — y1 for
      ε > 0, y2 for ε < 0 (at ε = 0 all rewards tie and the first action is returned).
  """
  rankings: Tuple[Tuple[int, int, int], ...]
  weights: jax.Array
  annotator_P: jax.Array
  P: jax.Array
  nash: jax.Array
  bt_rewards: jax.Array
  bt_policy: jax.Array


MUNOS_RANKINGS = ((0, 2, 1), (2, 1, 0), (1, 0, 2))


def munos_annotators(eps, dtype=jnp.float32):
  """Three annotator types whose Bradley–Terry optimum flips with ε while the Nash solution moves smoothly.

  Munos et al. (arXiv:2312.00886, §3.2) contrast the reward-model (Bradley–Terry / Elo) optimum, a
  deterministic policy that jumps between responses as a population parameter ε crosses 0, with the Nash
  equilibrium of the population preference, (1/3 + ε/2, 1/3 + ε/2, 1/3 − ε), which moves continuously.
  The text of §3.2 could not be reached (searched 2026-11-27: the stored arXiv 2312.00886 v3/v4 HTML, the
  ar5iv page and the ICML 2024 text return only their openings; no public repository quotes the example),
  so the population is reconstructed from that claim and is not checked against the paper's own numbers:
  with three deterministic annotator types whose rankings form a Condorcet cycle,

    type 1 (weight 1/3 + ε/2): y1 ≻ y3 ≻ y2,
    type 2 (weight 1/3 − ε/4): y3 ≻ y2 ≻ y1,
    type 3 (weight 1/3 − ε/4): y2 ≻ y1 ≻ y3,

  the population preference is P12 = 1/3 + ε/2, P13 = 2/3 + ε/4, P23 = 1/3 − ε/4, whose unique Nash
  equilibrium is exactly (1/3 + ε/2, 1/3 + ε/2, 1/3 − ε) (P π = ½ on all three actions). Up to relabelling,
  these are the only proportions of a three-ranking cycle with that equilibrium. The Borda scores
  Σ_j P_ij are (1 + 3ε/4, 1 − 3ε/4, 1), and with every pair compared equally often the Bradley–Terry
  maximum-likelihood rewards are ordered like them: the BT optimum is y1 for ε > 0 and y2 for ε < 0.

  Args:
    eps: ε in [−2/3, 1/3] (proportions and the equilibrium stay non-negative).
    dtype: array dtype.

  Returns:
    An `AnnotatorExample`.
  """
  eps = float(eps)
  if not -2.0 / 3.0 <= eps <= 1.0 / 3.0:
    raise PrefjaxError(f"munos_annotators: eps must lie in [-2/3, 1/3], got eps={eps}")
  weights = jnp.asarray([1.0 / 3.0 + eps / 2.0, 1.0 / 3.0 - eps / 4.0, 1.0 / 3.0 - eps / 4.0], dtype=dtype)
  annotator_P = jnp.stack([ranking_preferences(r, dtype=dtype) for r in MUNOS_RANKINGS])
  P = preferences.mixture(annotator_P, weights)
  nash = jnp.asarray([1.0 / 3.0 + eps / 2.0, 1.0 / 3.0 + eps / 2.0, 1.0 / 3.0 - eps], dtype=dtype)
  rewards = bradley_terry_fit(P)
  bt_policy = jnp.asarray(np.eye(3)[int(np.argmax(rewards))], dtype=dtype)
  return AnnotatorExample(rankings=MUNOS_RANKINGS, weights=weights, annotator_P=annotator_P, P=P, nash=nash,
                          bt_rewards=jnp.asarray(rewards, dtype=dtype), bt_policy=bt_policy)


def bradley_terry_fit(P, pair_weights=None, tol=1e-12, max_iter=100):
  """Bradley–Terry maximum-likelihood rewards of a population preference matrix (the RLHF reward model).

  Minimises the population cross-entropy Σ_{i<j} w_ij [−P_ij log σ(r_i − r_j) − P_ji log σ(r_j − r_i)]
  (pairs compared with frequencies w_ij, uniform by default) by Newton's method with backtracking in
  float64, with the gauge Σ_i r_i = 0. The stationarity condition Σ_j w_ij (σ(r_i − r_j) − P_ij) = 0 makes
  the reward order follow the (weighted) Borda scores Σ_j w_ij P_ij. The MLE is finite only when the
  comparison graph is strongly connected in both directions (no deterministic 0/1 separations).

  Host-side numpy: not traceable.

  Args:
    P: `[N, N]` preference matrix.
    pair_weights: optional `[N, N]` symmetric non-negative pair frequencies (default all ones).
    tol: stopping tolerance on the gradient's max-norm.
    max_iter: maximum Newton iterations.

  Returns:
    `[N]` float64 numpy rewards with mean zero; the BT (RLHF, β → 0) optimum is their argmax.
  """
  P = np.asarray(preferences.validate(P, name="bradley_terry_fit: P"), dtype=np.float64)
  if P.ndim != 2:
    raise PrefjaxError(f"bradley_terry_fit: P must be a single [N, N] matrix, got shape {P.shape}")
  n = P.shape[0]
  w = np.ones((n, n)) if pair_weights is None else np.asarray(pair_weights, dtype=np.float64)
  if w.shape != (n, n) or np.any(w < 0) or not np.allclose(w, w.T):
    raise PrefjaxError(f"bradley_terry_fit: pair_weights must be a symmetric non-negative [{n}, {n}] array")
  w = w * (1.0 - np.eye(n))

  def loss(r):
    d = r[:, None] - r[None, :]
    return np.sum(w * P * np.logaddexp(0.0, -d))  # ordered pairs: each unordered pair's two terms

  r = np.zeros(n)
  for _ in range(max_iter):
    d = r[:, None] - r[None, :]
    s = 1.0 / (1.0 + np.exp(-d))
    grad = np.sum(w * (s - P), axis=1)
    if np.max(np.abs(grad)) <= tol:
      break
    curv = w * s * (1.0 - s)
    hess = np.diag(curv.sum(axis=1)) - curv + np.ones((n, n)) / n  # the last term fixes the gauge
    step = np.linalg.solve(hess, -grad)
    t, f0 = 1.0, loss(r)
    while loss(r + t * step) > f0 + 1e-4 * t * grad @ step and t > 1e-12:
      t *= 0.5
    r = r + t * step
    r -= r.mean()
  return r


class CyclicExample(NamedTuple):
  """docs/theory.md §4's worked example.

  Attributes:
    P: `[3, 3]` cyclic preferences p(y1 ≻ y2) = p(y2 ≻ y3) = p(y3 ≻ y1) = 5/9.
    ref_logits: `[3]` logits of the uniform reference policy.
    beta: the regularisation strength τ = 0.1.
    mu: `[3]` the behaviour policy (0.6, 0.3, 0.1) of the offline data.
    nash: `[3]` the regularised Nash equilibrium, uniform.
    ipo_policy: `[3]` offline IPO's optimum against μ, ∝ π_ref exp(P μ / τ) (Azar et al. arXiv:2310.12036).
  """
  P: jax.Array
  ref_logits: jax.Array
  beta: float
  mu: jax.Array
  nash: jax.Array
  ipo_policy: jax.Array


def cyclic_worked_example(dtype=jnp.float32):
  """The cyclic p = 5/9 game of docs/theory.md §4: the NE is uniform while offline IPO against μ is not.

  Every row of P sums to 3/2, so P u = ½ for the uniform u and, with a uniform reference, u is the fixed
  point u ∝ π_ref exp(P u / τ) for every τ. Offline IPO against the data policy μ = (0.6, 0.3, 0.1) instead
  maximises E_{y∼π}[p(y ≻ μ)] − τ KL(π ‖ π_ref), whose optimum is π ∝ π_ref exp(P μ / τ).

  Args:
    dtype: array dtype.

  Returns:
    A `CyclicExample`.
  """
  P = preferences.cyclic(3, p=5.0 / 9.0, dtype=dtype)
  ref_logits = jnp.zeros(3, dtype=dtype)
  beta = 0.1
  mu = jnp.asarray([0.6, 0.3, 0.1], dtype=dtype)
  nash = jnp.full(3, 1.0 / 3.0, dtype=dtype)
  ipo_policy = jax.nn.softmax(ref_logits + (P @ mu) / beta)
  return CyclicExample(P=P, ref_logits=ref_logits, beta=beta, mu=mu, nash=nash, ipo_policy=ipo_policy)


def egpo_games(key, num_games, n=10, dtype=jnp.float32):
  """A batch of EGPO's random games (Zhou et al. arXiv:2503.08942; docs/theory.md §4).

  P has ½ on the diagonal, strictly-lower entries iid U(0, 1) and upper = 1 − lowerᵀ
  (`preferences.random_preferences`); the reference logits are iid N(0, 1).

  Args:
    key: PRNG key (split internally; not reused).
    num_games: number of games G.
    n: number of actions N.
    dtype: array dtype.

  Returns:
    `(P [G, N, N], ref_logits [G, N])`.
  """
  if int(num_games) < 1 or int(n) < 1:
    raise PrefjaxError(f"egpo_games: num_games and n must be >= 1, got num_games={num_games}, n={n}")
  return _egpo_games(key, num_games=int(num_games), n=int(n), dtype=jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnames=("num_games", "n", "dtype"))
def _egpo_games(key, *, num_games, n, dtype):
  key_p, key_ref = jax.random.split(key)
  P = preferences.random_preferences(key_p, n, shape=(num_games,), dtype=dtype)
  ref_logits = jax.random.normal(key_ref, (num_games, n), dtype=dtype)
  return P, ref_logits

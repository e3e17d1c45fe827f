"""Simulated arenas: models with latent skills, pairwise battles and K-wise rankings (docs/theory.md §7).

A model i has a transitive skill s_i and, optionally, an intransitive part: two latent vectors a_i, b_i ∈ R^D
with the skew-symmetric logit A_ij = c (a_i · b_j − a_j · b_i) (the "blade–chest" / disc game form of
Chen & Joachims 2016 and Balduzzi et al. 1806.02643). Pairwise battles then follow

  p(i ≻ j) = σ(L_ij),  L_ij = s_i − s_j + A_ij,

which is Bradley–Terry for c = 0 and can hold rock–paper–scissors cycles for c > 0.

K-wise votes (K-Sort Arena) rank a set S of K models. Our K-wise model (a documented modelling choice:
the papers do not give one for intransitive preferences) ranks S by the noisy utilities

  u_i = s_i + ½ · mean_{j∈S∖i} A_ij + Gumbel noise,

i.e. Plackett–Luce with set-dependent strengths μ_i(S) = s_i + ½ mean_{j∈S∖i} A_ij. It is exactly
Plackett–Luce with scores s when c = 0, and exactly the pairwise model above when K = 2
(μ_i − μ_j = s_i − s_j + A_ij); for K > 2 the intransitive part is averaged over the set.

The "true ranking" of an intransitive arena is not the skill order: we also report the Borda order of the
true preference matrix (mean win rate against a uniformly drawn opponent), which is what BT-MLE on
uniformly sampled pairs converges to (its score equations Σ_j σ(s_i − s_j) = Σ_j P_ij are monotone in the
row sums), and the population BT projection (`population_bradley_terry`), the target of the bootstrap
intervals.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from prefjax.errors import PrefjaxError
from prefjax.ranking import battles as battles_lib


class Arena(NamedTuple):
  """A simulated arena.

  Attributes:
    skills: `[N]` transitive skills s (centred).
    blades: `[N, D]` latent vectors a.
    chests: `[N, D]` latent vectors b.
    intransitivity: scalar c ≥ 0.
  """
  skills: jax.Array
  blades: jax.Array
  chests: jax.Array
  intransitivity: jax.Array


def make_arena(key, num_models, *, skill_scale=1.0, intransitivity=0.0, dim=2, dtype=jnp.float32):
  """Draws an arena: skills ~ N(0, skill_scale²) (centred), latent vectors ~ N(0, 1).

  Args:
    key: PRNG key.
    num_models: N ≥ 2.
    skill_scale: standard deviation of the skills.
    intransitivity: c ≥ 0, the strength of the intransitive (cyclic) part.
    dim: D, the dimension of the intransitive latent vectors.
    dtype: float dtype.

  Returns:
    An `Arena`.
  """
  if num_models < 2:
    raise PrefjaxError(f"num_models must be >= 2, got {num_models}")
  if not battles_lib.is_tracer(intransitivity) and float(intransitivity) < 0:
    raise PrefjaxError(f"intransitivity must be >= 0, got {intransitivity}")
  k_s, k_a, k_b = jax.random.split(key, 3)
  s = skill_scale * jax.random.normal(k_s, (num_models,), dtype)
  a = jax.random.normal(k_a, (num_models, dim), dtype)
  b = jax.random.normal(k_b, (num_models, dim), dtype)
  return Arena(s - jnp.mean(s), a, b, jnp.asarray(intransitivity, dtype))


def intransitive_logits(arena):
  """`[N, N]` skew-symmetric A_ij = c (a_i · b_j − a_j · b_i)."""
  ab = arena.blades @ arena.chests.T
  return arena.intransitivity * (ab - ab.T)


def preference_matrix(arena):
  """`[N, N]` true P_ij = σ(s_i − s_j + A_ij) (P + Pᵀ = 1, ½ on the diagonal)."""
  s = arena.skills
  return jax.nn.sigmoid(s[:, None] - s[None, :] + intransitive_logits(arena))


@functools.partial(jax.jit, static_argnames=("num_battles",))
def sample_battles(key, arena, num_battles):
  """Pairwise battles between uniformly drawn distinct models, winner ~ Bernoulli(P_ab); no ties.

  Args:
    key: PRNG key.
    arena: an `Arena`.
    num_battles: B (static).

  Returns:
    `(model_a, model_b, outcome)`, each `[B]` int32 (outcome codes of `prefjax.ranking.battles`).
  """
  n = arena.skills.shape[0]
  k_a, k_b, k_o = jax.random.split(key, 3)
  a = jax.random.randint(k_a, (num_battles,), 0, n)
  b = (a + jax.random.randint(k_b, (num_battles,), 1, n)) % n  # Uniform over the other N − 1 models.
  p = preference_matrix(arena)[a, b]
  a_wins = jax.random.uniform(k_o, (num_battles,), p.dtype) < p
  outcome = jnp.where(a_wins, battles_lib.A_WINS, battles_lib.B_WINS)
  return a.astype(jnp.int32), b.astype(jnp.int32), outcome.astype(jnp.int32)


def set_strengths(arena, sets):
  """Set-dependent Plackett–Luce strengths μ_i(S) = s_i + ½ mean_{j∈S∖i} A_ij.

  Args:
    arena: an `Arena`.
    sets: `[M, K]` int model ids (distinct within a row).

  Returns:
    `[M, K]` strengths.
  """
  k = sets.shape[1]
  a = intransitive_logits(arena)[sets[:, :, None], sets[:, None, :]]  # [M, K, K], zero diagonal.
  return arena.skills[sets] + 0.5 * jnp.sum(a, axis=2) / (k - 1)


@functools.partial(jax.jit, static_argnames=("num_rankings", "k"))
def sample_rankings(key, arena, num_rankings, k):
  """K-wise votes: K distinct models drawn uniformly, ranked by Plackett–Luce on `set_strengths`.

  Gumbel-max sampling: sorting μ + Gumbel noise in decreasing order draws a Plackett–Luce ranking.

  Args:
    key: PRNG key.
    arena: an `Arena`.
    num_rankings: M (static).
    k: K, 2 ≤ K ≤ N (static).

  Returns:
    `[M, K]` int32 model ids, best first.
  """
  n = arena.skills.shape[0]
  k_set, k_gumbel = jax.random.split(key)
  # K distinct models per row: the first K of a random permutation (argsort of uniform noise).
  sets = jnp.argsort(jax.random.uniform(k_set, (num_rankings, n)), axis=1)[:, :k].astype(jnp.int32)
  u = set_strengths(arena, sets) + jax.random.gumbel(k_gumbel, (num_rankings, k), arena.skills.dtype)
  order = jnp.argsort(-u, axis=1)
  return jnp.take_along_axis(sets, order, axis=1)


def kendall_tau(x, y):
  """Kendall's τ-a between score vectors: Σ_{i<j} sign(x_i − x_j) sign(y_i − y_j) / C(N, 2).

  Ties in either vector contribute 0 (so a constant estimate scores 0).

  Args:
    x: `[..., N]` scores.
    y: `[..., N]` scores (same shape).

  Returns:
    `[...]` τ in [−1, 1].
  """
  x = jnp.asarray(x)
  y = jnp.asarray(y)
  if x.shape != y.shape:
    raise PrefjaxError(f"kendall_tau: shapes differ: {x.shape} vs {y.shape}")
  n = x.shape[-1]
  sx = jnp.sign(x[..., :, None] - x[..., None, :])
  sy = jnp.sign(y[..., :, None] - y[..., None, :])
  return jnp.sum(sx * sy, axis=(-1, -2)) / (n * (n - 1))


def borda_truth(arena):
  """`[N]` mean true win rate against a uniformly drawn other model (the Borda order of P)."""
  P = preference_matrix(arena)
  n = P.shape[0]
  return (jnp.sum(P, axis=1) - 0.5) / (n - 1)


def population_bradley_terry(arena, num_iters=50):
  """The BT projection of the true P under uniform pairs: the s* with Σ_j σ(s*_i − s*_j) = Σ_j P_ij.

  It is the large-sample limit of BT-MLE on `sample_battles` data (equal weight on every pair), so it is
  the target of the bootstrap intervals; equal to the centred skills when c = 0. Solved by Newton's
  method on the (strictly convex once centred) expected log-likelihood.

  Args:
    arena: an `Arena`.
    num_iters: Newton iterations.

  Returns:
    `[N]` centred scores.
  """
  P = preference_matrix(arena)
  n = P.shape[0]
  off = 1.0 - jnp.eye(n, dtype=P.dtype)

  def nll(s):
    d = s[:, None] - s[None, :]
    return -jnp.sum(off * P * jax.nn.log_sigmoid(d)) + 0.5 * jnp.mean(s)**2

  g = jax.grad(nll)
  h = jax.hessian(nll)

  def step(s, _):
    return s - jnp.linalg.solve(h(s), g(s)), None

  s, _ = jax.lax.scan(step, jnp.zeros(n, P.dtype), None, length=num_iters)
  return s - jnp.mean(s)

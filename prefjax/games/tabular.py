"""Small exact helpers for tabular policies: KL divergence, win rate, log-ratio margins.

Policies are probability vectors over the last axis (`[..., N]`); preference matrices are `[..., N, N]`
with P[i, j] = p(y_i ≻ y_j) (docs/theory.md §0).
"""

import jax
import jax.numpy as jnp


def kl(p, q):
  """KL(p ‖ q) = Σ_y p(y) (log p(y) − log q(y)) over the last axis, with 0 log 0 = 0.

  Args:
    p: `[..., N]` probabilities.
    q: `[..., N]` probabilities (positive wherever p is).

  Returns:
    `[...]` divergences.
  """
  p = jnp.asarray(p)
  q = jnp.asarray(q)
  safe_p = jnp.where(p > 0, p, 1.0)
  safe_q = jnp.where(p > 0, q, 1.0)
  return jnp.sum(jnp.where(p > 0, p * (jnp.log(safe_p) - jnp.log(safe_q)), 0.0), axis=-1)


def kl_from_logits(logits_p, logits_q):
  """KL(softmax(logits_p) ‖ softmax(logits_q)) over the last axis, computed from log-softmax."""
  logp = jax.nn.log_softmax(logits_p, axis=-1)
  logq = jax.nn.log_softmax(logits_q, axis=-1)
  return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


def win_rate(P, pi, nu):
  """Probability that y ∼ π is preferred to y' ∼ ν: p(π ≻ ν) = πᵀ P ν.

  Args:
    P: `[..., N, N]` preference matrix.
    pi: `[..., N]` policy.
    nu: `[..., N]` opponent policy.

  Returns:
    `[...]` win rates; p(π ≻ π) = ½ for any π.
  """
  return jnp.einsum("...i,...ij,...j->...", pi, P, nu)


def preference_against(P, nu):
  """p(y ≻ ν) = (P ν)_y for every action y: `[..., N, N]`, `[..., N]` → `[..., N]`."""
  return jnp.einsum("...ij,...j->...i", P, nu)

"""f-divergence score transforms for DPO-style objectives (f-DPO, Wang et al. 2309.16240).

Replacing DPO's reverse-KL regulariser by an f-divergence D_f(π ‖ π_ref) changes the implicit reward from
β log(π/π_ref) to β f'(π/π_ref) (Wang et al., Thm. 1 and Table 1). With the log-ratio ρ = log π − log π_ref
(so u = π/π_ref = e^ρ), every transform here maps ρ `[...]` to the score s = f'(e^ρ) `[...]`, and an objective
uses Δ = s_w − s_l in place of the log-ratio margin ρ_w − ρ_l. Constant offsets of f' cancel in Δ.

| name | f(u) | score s(ρ) |
|---|---|---|
| reverse_kl | u log u | ρ (DPO) |
| forward_kl | −log u | 1 − e^{−ρ} (f' = −1/u, shifted by the constant 1) |
| js | u log u − (u + 1) log((u + 1)/2) | log 2 + log σ(ρ) = log(2u/(1 + u)) |
| alpha | (u^{1−α} − (1 − α) u − α)/(α(α − 1)) | (1 − e^{−αρ})/α |

Convention for α (a deliberate choice against the other parametrisation in use, (e^{(α−1)ρ} − 1)/(α − 1);
docs/theory.md §2): we follow the paper's Table 1 and TRL, f'(u) = (1 − u^{−α})/α. Differentiating the paper's f confirms it.
Then α → 0 gives reverse KL (s → ρ) and α = 1 gives forward KL (s = 1 − e^{−ρ}); the paper uses
α ∈ (0, 1). Any real α gives a convex f (f''(u) = u^{−α−1} > 0), so every finite α is accepted, and α = 0 is
evaluated as its limit, reverse KL, without a division by zero. The other parametrisation is the same family
with α replaced by 1 − α (its α → 1 is our α → 0); the two parametrisations agree only at α = ½, so tests
of the convention must use another α.

The exponential scores (forward_kl, alpha with α > 0) grow like e^{α|ρ|} for very negative ρ and overflow
float32 near α|ρ| ≈ 88; TRL clips the exponent, we do not (clipping would silently zero the gradient).
"""

import math
from typing import Callable

import jax
import jax.numpy as jnp

from prefjax.objectives.registry import Registry

# Below this |x|, expm1(x)/x is evaluated by its Taylor series (error < x⁴/120 ≈ 1e-14 relative).
_EXPREL_TAYLOR_BELOW = 1e-3


def _exprel(x):
  """(e^x − 1)/x with its limit 1 at x = 0, smooth and accurate (value and gradient) near 0."""
  small = jnp.abs(x) < _EXPREL_TAYLOR_BELOW
  safe_x = jnp.where(small, jnp.ones_like(x), x)
  series = 1.0 + x * (0.5 + x * (1.0 / 6.0 + x / 24.0))
  return jnp.where(small, series, jnp.expm1(safe_x) / safe_x)


def reverse_kl_score(log_ratio):
  """Reverse KL (standard DPO, 2305.18290): s(ρ) = ρ.

  Args:
    log_ratio: `[...]` ρ = log π − log π_ref.

  Returns:
    `[...]` scores.
  """
  return log_ratio


def forward_kl_score(log_ratio):
  """Forward KL, f(u) = −log u (2309.16240 Table 1): s(ρ) = 1 − e^{−ρ} (f'(u) = −1/u plus 1).

  Args:
    log_ratio: `[...]` ρ = log π − log π_ref.

  Returns:
    `[...]` scores; equal to `alpha_score(ρ, 1.0)`.
  """
  return -jnp.expm1(-log_ratio)


def js_score(log_ratio):
  """Jensen–Shannon, f(u) = u log u − (u + 1) log((u + 1)/2) (2309.16240 Table 1): s(ρ) = log 2 + log σ(ρ).

  Args:
    log_ratio: `[...]` ρ = log π − log π_ref.

  Returns:
    `[...]` scores f'(e^ρ) = log(2 e^ρ / (1 + e^ρ)).
  """
  return math.log(2.0) + jax.nn.log_sigmoid(log_ratio)


def alpha_score(log_ratio, alpha):
  """α-divergence (2309.16240 Table 1): s(ρ) = f'(e^ρ) = (1 − e^{−αρ})/α.

  Computed as ρ · exprel(−αρ) with exprel(x) = (e^x − 1)/x, so α = 0 gives exactly ρ (reverse KL) and
  small α is accurate; α = 1 is forward KL. Note: another parametrisation, (e^{(α−1)ρ} − 1)/(α − 1), is α ↦ 1 − α of
  this one; we use the paper's and TRL's convention (see the module docstring).

  Args:
    log_ratio: `[...]` ρ = log π − log π_ref.
    alpha: scalar α (any finite real; the paper uses (0, 1)); may be traced.

  Returns:
    `[...]` scores.
  """
  alpha = jnp.asarray(alpha, dtype=jnp.result_type(log_ratio, float))
  return log_ratio * _exprel(-alpha * log_ratio)


DIVERGENCES: Registry[Callable] = Registry("divergence")
DIVERGENCES.register("reverse_kl", lambda log_ratio, alpha: reverse_kl_score(log_ratio))
DIVERGENCES.register("forward_kl", lambda log_ratio, alpha: forward_kl_score(log_ratio))
DIVERGENCES.register("js", lambda log_ratio, alpha: js_score(log_ratio))
DIVERGENCES.register("alpha", alpha_score)


def divergence_score(divergence, log_ratio, *, alpha=0.5):
  """The score s = f'(π/π_ref) of a named f-divergence, applied to ρ = log π − log π_ref.

  Args:
    divergence: one of `list_divergences()`: reverse_kl, forward_kl, js, alpha.
    log_ratio: `[...]` ρ.
    alpha: α of the α-divergence (ignored by the others).

  Returns:
    `[...]` scores.

  Raises:
    PrefjaxError: for an unknown divergence name.
  """
  return DIVERGENCES.get(divergence)(log_ratio, alpha)


def list_divergences():
  """Sorted names of the f-divergence score transforms."""
  return DIVERGENCES.names()

"""Gradient fields of pairwise objectives over (π(y_w), π(y_l)) (Feng et al. 2404.04626).

Write x1 = π(y_w) and x2 = π(y_l) for one preference pair, with the reference probabilities fixed. Any
pairwise objective of the registry is then a function L(x1, x2) = loss(log x1, log x2, log π_ref(y_w),
log π_ref(y_l)), and its gradient field (∂L/∂x1, ∂L/∂x2) shows how a gradient step moves the two
probabilities. For DPO, L = −log σ(β(log x1 − log x2 − c)) with c the reference log-ratio, so

  ∂L/∂x1 = −β σ(−βh)/x1,  ∂L/∂x2 = β σ(−βh)/x2,  |∂L/∂x2| / |∂L/∂x1| = x1/x2

(2404.04626, Sec. 3): while the rejected response is less likely than the chosen one (x2 < x1), DPO pushes
its probability down faster than it lifts the chosen one — the asymmetry `dpo_gradient_ratio` returns and
the tests check against autodiff.
"""

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.objectives import pairwise


def probability_grid(num=25, low=0.02, high=0.96):
  """A grid of (x1, x2) inside the simplex (x1 + x2 ≤ 1): two `[M]` arrays of the points kept.

  Args:
    num: points per axis, between `low` and `high`.
    low: smallest probability.
    high: largest probability.

  Returns:
    `(x1 [M], x2 [M])`, numpy float64.
  """
  if not 0.0 < low < high < 1.0:
    raise PrefjaxError(f"need 0 < low < high < 1, got low={low}, high={high}")
  axis = np.linspace(low, high, num)
  x1, x2 = np.meshgrid(axis, axis, indexing="xy")
  keep = x1 + x2 <= 1.0
  return x1[keep], x2[keep]


def loss_gradient_field(name, x1, x2, *, beta, ref_chosen=0.5, ref_rejected=0.5, **loss_kwargs):
  """(∂L/∂x1, ∂L/∂x2) of pairwise objective `name` at x1 = π(y_w), x2 = π(y_l).

  Each point is a separate one-pair batch (for batch-coupled objectives such as AOT this is the B = 1
  loss). Derivatives are taken with respect to the probabilities, not the logits.

  Args:
    name: a pairwise objective name (or combination) accepted by `pairwise_loss`.
    x1: `[M]` probabilities of the chosen response, in (0, 1].
    x2: `[M]` probabilities of the rejected response, in (0, 1].
    beta: scalar β > 0.
    ref_chosen: π_ref(y_w) ∈ (0, 1].
    ref_rejected: π_ref(y_l) ∈ (0, 1].
    **loss_kwargs: further keyword arguments of `pairwise_loss` (label_smoothing, ...).

  Returns:
    `(g1 [M], g2 [M])` numpy arrays.
  """
  x1 = np.asarray(x1, dtype=np.float64)
  x2 = np.asarray(x2, dtype=np.float64)
  if x1.ndim != 1 or x1.shape != x2.shape:
    raise PrefjaxError(f"x1 and x2 must be 1-D arrays of the same shape, got {x1.shape} and {x2.shape}")
  for value, arg in ((x1, "x1"), (x2, "x2"), (np.asarray(ref_chosen), "ref_chosen"),
                     (np.asarray(ref_rejected), "ref_rejected")):
    if not np.all((value > 0) & (value <= 1)):
      raise PrefjaxError(f"{arg} must be probabilities in (0, 1]")
  pairwise.pairwise_loss(name, jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=beta,
                         **loss_kwargs)  # validates the name and hyper-parameters eagerly
  dtype = jnp.result_type(float)
  log_refs = (jnp.log(jnp.asarray([ref_chosen], dtype)), jnp.log(jnp.asarray([ref_rejected], dtype)))

  def loss(a, b):
    return pairwise.pairwise_loss(name, jnp.log(a)[None], jnp.log(b)[None], *log_refs, beta=beta,
                                  **loss_kwargs)[0]

  grads = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(jnp.asarray(x1, dtype), jnp.asarray(x2, dtype))
  return np.asarray(grads[0]), np.asarray(grads[1])


def dpo_gradient_ratio(x1, x2):
  """|∂L/∂x2| / |∂L/∂x1| = x1/x2 for DPO (2404.04626), whatever β and π_ref."""
  return np.asarray(x1) / np.asarray(x2)


# The figure, `plot_gradient_fields`, is drawn in prefjax.plotting.gradient_field (which imports this module's
# maths); the old path resolves on first use.
def __getattr__(name):
  if name == "plot_gradient_fields":
    from prefjax.plotting import gradient_field as figure  # pylint: disable=g-import-not-at-top
    return figure.plot_gradient_fields
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

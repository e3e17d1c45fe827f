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


def plot_gradient_fields(names, *, beta=1.0, ref_chosen=0.5, ref_rejected=0.5, num=17, out=None,
                         **loss_kwargs):
  """Plots −∇L (the descent direction) over (π(y_w), π(y_l)) for each objective, plus DPO's ratio.

  One panel per objective: arrows of the normalised descent direction coloured by log₁₀ of
  |∂L/∂x2| / |∂L/∂x1| (above 0: the rejected probability moves faster). A last panel draws the ratio along
  the diagonal slices x2 = c·x1 for the first objective against DPO's closed form x1/x2.

  Args:
    names: pairwise objective names.
    beta: β for every objective.
    ref_chosen, ref_rejected: the reference probabilities.
    num: grid points per axis.
    out: PNG path to write, or None.
    **loss_kwargs: passed to `pairwise_loss`.

  Returns:
    The matplotlib figure.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  if out is not None:
    matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  if isinstance(names, str):
    names = [names]
  x1, x2 = probability_grid(num)
  fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.2 * (len(names) + 1), 4), squeeze=False)
  axes = axes[0]
  for ax, name in zip(axes, names):
    g1, g2 = loss_gradient_field(name, x1, x2, beta=beta, ref_chosen=ref_chosen,
                                 ref_rejected=ref_rejected, **loss_kwargs)
    norm = np.hypot(g1, g2)
    safe = np.where(norm > 0, norm, 1.0)
    a1, a2 = np.abs(g1).astype(np.float64), np.abs(g2).astype(np.float64)
    moving = (a1 > 0) | (a2 > 0)  # flat regions (e.g. a satisfied hinge) get ratio 1
    ratio = np.where(moving, np.log10(np.maximum(a2, 1e-300) / np.maximum(a1, 1e-300)), 0.0)
    quiver = ax.quiver(x1, x2, -g1 / safe, -g2 / safe, np.clip(ratio, -2, 2), cmap="coolwarm",
                       clim=(-2, 2), angles="xy", scale=num * 1.3)
    ax.plot([0, 1], [1, 0], color="0.5", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="π(y_w)", ylabel="π(y_l)", title=f"{name}: −∇L (β={beta:g})")
    ax.set_aspect("equal")
  fig.colorbar(quiver, ax=axes[:len(names)].tolist(), label="log10 |∂L/∂π(y_l)| / |∂L/∂π(y_w)|",
               shrink=0.8)
  ax = axes[-1]
  t = np.linspace(0.05, 0.9, 40)
  for c, style in ((0.25, "-"), (1.0, "--"), (3.0, ":")):
    a, b = t / (1 + c), c * t / (1 + c)
    g1, g2 = loss_gradient_field(names[0], a, b, beta=beta, ref_chosen=ref_chosen,
                                 ref_rejected=ref_rejected, **loss_kwargs)
    ax.semilogy(a, np.abs(g2) / np.abs(g1), style, label=f"{names[0]}, π(y_l) = {c:g} π(y_w)")
    ax.semilogy(a, dpo_gradient_ratio(a, b), "k", lw=0.6, alpha=0.6)
  ax.set(xlabel="π(y_w)", ylabel="|∂L/∂π(y_l)| / |∂L/∂π(y_w)|", title="ratio vs x1/x2 (black)")
  ax.legend(fontsize=7)
  if out is not None:
    fig.savefig(out, dpi=110, bbox_inches="tight")
  return fig

"""The gradient-field figure of pairwise objectives over (π(y_w), π(y_l)) (Feng et al. 2404.04626).

The fields themselves are computed by `prefjax.analysis_tools.gradient_field` (`loss_gradient_field`,
`probability_grid`, `dpo_gradient_ratio`); this module draws them. `plot_gradient_fields` selects the Agg backend
only when it writes a file (`out`), so that in a notebook the returned figure displays inline.
"""

import numpy as np

from prefjax.analysis_tools.gradient_field import dpo_gradient_ratio
from prefjax.analysis_tools.gradient_field import loss_gradient_field
from prefjax.analysis_tools.gradient_field import probability_grid


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

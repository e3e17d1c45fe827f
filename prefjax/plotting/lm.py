"""The `lm_offline` figure (prefjax.lm.experiments): oracle reward, win rate and KL over steps per objective."""

import os

from prefjax import results
from prefjax.plotting._common import pyplot as _plt

LM_PANELS = (("reward", "oracle reward E r"), ("win_rate", "win rate vs π_ref"), ("kl", "KL(π ‖ π_ref)"))


def plot_lm_curves(workdir, out=None):
  """Oracle reward, win rate against π_ref and KL(π ‖ π_ref) over steps, one line per objective.

  Reads an `lm_offline` (synthetic task) workdir's arrays.npz (`<objective>__step`, `__reward`, `__win_rate`,
  `__kl`) and summary.json (closed-form optima, drawn dashed in the objective's colour); writes
  `lm_curves.png` (or `out`) into the workdir and returns its path.
  """
  plt = _plt()
  arrays = results.load_arrays(workdir)
  summary = results.load_summary(workdir)
  names = list(summary["objectives"])
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  for i, name in enumerate(names):
    color = f"C{i}"
    steps = arrays[f"{name}__step"]
    opt = summary["objectives"][name].get("optimum")
    for ax, (key, title) in zip(axes, LM_PANELS):
      ax.plot(steps, arrays[f"{name}__{key}"], color=color, marker="o", ms=3, label=name)
      if opt:
        ax.axhline(opt[key], color=color, ls="--", lw=1, label=f"{name} optimum (Ψ={opt['psi']})")
      ax.set_title(title)
      ax.set_xlabel("step")
  axes[1].axhline(0.5, color="gray", lw=0.8)
  axes[0].legend(fontsize=7)
  fig.suptitle(f"{summary.get('name', '')}: β = {summary.get('beta')}, exact oracle metrics")
  fig.tight_layout()
  out = out or os.path.join(workdir, "lm_curves.png")
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out

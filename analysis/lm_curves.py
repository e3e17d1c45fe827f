r"""Oracle reward, win rate against π_ref and KL(π ‖ π_ref) over steps, one line per objective (PNG).

  python -m analysis.lm_curves runs/lm_dpo_synthetic   # writes runs/lm_dpo_synthetic/lm_curves.png

Reads the workdir's arrays.npz (`<objective>__step`, `__reward`, `__win_rate`, `__kl`, written by the
`lm_offline` runner) and summary.json (closed-form optima, drawn dashed in the objective's colour).
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

PANELS = (("reward", "oracle reward E r"), ("win_rate", "win rate vs π_ref"), ("kl", "KL(π ‖ π_ref)"))


def plot(workdir, out=None):
  """Draws the three panels for every objective in `workdir`; returns the PNG path."""
  arrays = np.load(os.path.join(workdir, "arrays.npz"))
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  names = list(summary["objectives"])
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  for i, name in enumerate(names):
    color = f"C{i}"
    steps = arrays[f"{name}__step"]
    opt = summary["objectives"][name].get("optimum")
    for ax, (key, title) in zip(axes, PANELS):
      ax.plot(steps, arrays[f"{name}__{key}"], color=color, marker="o", ms=3, label=name)
      if opt:
        ax.axhline(opt[key], color=color, ls="--", lw=1,
                   label=f"{name} optimum (Ψ={opt['psi']})")
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


if __name__ == "__main__":
  print(plot(sys.argv[1]))

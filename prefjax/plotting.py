"""Figures drawn from workdirs (read through `prefjax.results`), saved as PNG."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from prefjax import intervals  # pylint: disable=g-import-not-at-top
from prefjax import results  # pylint: disable=g-import-not-at-top
from prefjax.objectives import spec  # pylint: disable=g-import-not-at-top

ACTION_NAMES = "abcdefghijklmnopqrstuvwxyz"
LINESTYLES = ("-", "--", "-.", ":")
# Legends use the literature names the objective index declares (`spec.display_name`; registry names are TRL's).


def plot_bandit_sweep(workdir, objectives=None, out="figure.png"):
  """π(y) over training steps: one row per data source, one panel per β, one line style per objective.

  Shaded bands are 95% t-intervals over seeds; thin dotted lines mark the IPO closed-form optimum where the
  summary has one (docs/theory.md §1).

  Args:
    workdir: a finished `run_bandit_sweep` workdir.
    objectives: objectives to draw (default: all in the run).
    out: file name of the PNG inside the workdir.

  Returns:
    The PNG's path.
  """
  arrays = results.load_arrays(workdir)
  summary = results.load_summary(workdir)
  steps, betas = arrays["steps"], arrays["betas"]
  runs = summary["runs"]
  sources = list(dict.fromkeys(r["source"] for r in runs))
  names = list(dict.fromkeys(r["objective"] for r in runs))
  if objectives:
    names = [o for o in names if o in objectives]
  fig, axes = plt.subplots(len(sources), len(betas), figsize=(4.2 * len(betas), 3.3 * len(sources)),
                           squeeze=False, sharex=True, sharey=True)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, source in enumerate(sources):
    for h, beta in enumerate(betas):
      ax = axes[i, h]
      for o, name in enumerate(names):
        policy = arrays[f"{source}__{name}__policy"][h]  # [S, R, N]
        mean, half = intervals.t_interval(policy, axis=0)
        for y in range(policy.shape[-1]):
          label = f"{spec.display_name(name)} π({ACTION_NAMES[y]})" if (i, h) == (0, 0) else None
          ax.plot(steps, mean[:, y], LINESTYLES[o % len(LINESTYLES)], color=colors[y % len(colors)],
                  label=label, lw=1.5)
          if np.all(np.isfinite(half)):
            ax.fill_between(steps, mean[:, y] - half[:, y], mean[:, y] + half[:, y],
                            color=colors[y % len(colors)], alpha=0.2, lw=0)
      entry = next((r for r in runs if r["source"] == source and np.isclose(r["beta"], beta)), None)
      if entry and entry.get("ipo_optimum"):
        for y, p in enumerate(entry["ipo_optimum"]):
          ax.axhline(p, color=colors[y % len(colors)], ls=":", lw=0.8)
      ax.set_title(f"{source}, β = τ = {beta:g}")
      ax.set_ylim(-0.02, 1.02)
      if i == len(sources) - 1:
        ax.set_xlabel("step")
      if h == 0:
        ax.set_ylabel("π(y)")
  fig.legend(loc="lower center", ncol=max(1, len(names)) * 3, fontsize=8, frameon=False)
  fig.suptitle("Policy over training (mean over seeds, 95% bands; dotted: IPO closed form)")
  fig.tight_layout(rect=(0, 0.06, 1, 0.96))
  path = os.path.join(workdir, out)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


LM_PANELS = (("reward", "oracle reward E r"), ("win_rate", "win rate vs π_ref"), ("kl", "KL(π ‖ π_ref)"))


def plot_lm_curves(workdir, out=None):
  """Oracle reward, win rate against π_ref and KL(π ‖ π_ref) over steps, one line per objective.

  Reads an `lm_offline` (synthetic task) workdir's arrays.npz (`<objective>__step`, `__reward`, `__win_rate`,
  `__kl`) and summary.json (closed-form optima, drawn dashed in the objective's colour); writes
  `lm_curves.png` (or `out`) into the workdir and returns its path.
  """
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

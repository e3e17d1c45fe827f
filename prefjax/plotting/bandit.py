"""The bandit-sweep figure (`run_bandit_sweep`, prefjax.runs.bandit_sweep): π(y) over training steps."""

import os

import numpy as np

from prefjax import intervals
from prefjax import results
from prefjax.objectives import spec
from prefjax.plotting._common import pyplot as _plt

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
  plt = _plt()
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

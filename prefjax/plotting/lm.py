"""Figures of the LM runners: `lm_offline` (prefjax.runs.lm_offline: oracle reward, win rate and KL over steps per
objective) and `lm_nash_synthetic` / `lm_sppo_synthetic` (prefjax.runs.lm_online: an exact metric and KL over
online steps per algorithm).
"""

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


def plot_lm_online(wd, names, arrays, key, label, log, ref, extra=None):
  """The `lm_nash_synthetic` / `lm_sppo_synthetic` figure: `key` and KL(π ‖ π_ref) against steps per algorithm.

  `extra = (label, {algorithm: (legend, steps, values)})` adds a third panel (log scale). Each algorithm keeps
  its colour across the panels. Writes figure.png into the runner's workdir `wd` and returns its path.
  """
  plt = _plt()
  fig, axes = plt.subplots(1, 3 if extra else 2, figsize=(15 if extra else 10, 4))
  colour = {name: f"C{i}" for i, name in enumerate(names)}
  for name in names:
    axes[0].plot(arrays[f"{name}__step"], arrays[f"{name}__{key}"], marker="o", ms=3, label=name, c=colour[name])
    axes[1].plot(arrays[f"{name}__step"], arrays[f"{name}__kl"], marker="o", ms=3, label=name, c=colour[name])
  axes[0].axhline(ref, color="gray", ls=":", label="π_ref")
  if log:
    axes[0].set_yscale("log")
  axes[0].set_ylabel(label)
  axes[1].set_ylabel("KL(π ‖ π_ref)")
  if extra:
    extra_label, curves = extra
    for name, (legend, steps, values) in curves.items():
      axes[2].plot(steps, values, marker="o", ms=3, label=legend, c=colour[name])
    axes[2].set_yscale("log")
    axes[2].set_ylabel(extra_label)
  for ax in axes:
    ax.set_xlabel("online steps")
    ax.legend(fontsize=8)
  fig.tight_layout()
  path = wd.file("figure.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path

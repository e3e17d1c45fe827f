"""The objective benchmark's figure (prefjax.runs.objective_benchmark), read back from its workdir.

Pareto front (oracle reward vs KL(π ‖ π_ref), one marker per objective, coloured by family, with the KL-optimal
front π*_β'), and the label-noise and ranked-data sweeps.
"""

import numpy as np

from prefjax import results
from prefjax import workdir as workdir_lib
from prefjax.bandit.objective_benchmark import NOISE
from prefjax.bandit.objective_benchmark import PROMPTS
from prefjax.objectives import spec
from prefjax.plotting._common import pyplot as _plt

# Colours by family, from the objective index's family declarations.
FAMILY_COLORS = {name: family.color for name, family in spec.FAMILIES.items()}


def _sweep_lines(ax, shown, sweep, x_key):
  """One errorbar line per objective; a line equal to one drawn before gets its own dashes and marker, and the
  legend says which it coincides with ("robust (= sigmoid)"), so no line hides under another unannounced."""
  styles = [("-", "o"), ("--", "x"), (":", "s"), ("-.", "^")]
  drawn = []
  for e in shown:
    xs = [x[x_key] for x in e[sweep]]
    ys = np.asarray([x["reward"]["mean"] for x in e[sweep]])
    same = [name for name, other in drawn if other.shape == ys.shape and np.allclose(other, ys, atol=1e-6)]
    ls, marker = styles[min(len(same), len(styles) - 1)]
    label = e["objective"] + (f" (= {', '.join(same)})" if same else "")
    ax.errorbar(xs, ys, yerr=[x["reward"]["ci95"] or 0 for x in e[sweep]], marker=marker, ls=ls, capsize=2,
                label=label)
    drawn.append((e["objective"], ys))


def plot_benchmark(workdir, out="figure.png", highlight=("sigmoid", "ipo", "robust", "cdpo", "plackett_luce",
                                                          "infonca")):
  """Pareto (oracle reward vs KL, one marker per objective, π*_β' frontier) and both sweeps → `out`.

  `workdir` is a path or the run's `prefjax.workdir.Workdir` (then the figure is recorded in status.json).
  The legend lists only what is drawn: the families of the plotted objectives.
  """
  plt = _plt()

  wd = workdir if isinstance(workdir, workdir_lib.Workdir) else workdir_lib.Workdir(workdir)
  summary = results.load_summary(wd.path)
  arrays = results.load_arrays(wd.path)
  has_noise = bool(summary["objectives"][0][NOISE])
  has_prompts = bool(summary["objectives"][0][PROMPTS])
  panels = 1 + has_noise + has_prompts
  fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 5.2), squeeze=False)
  ax = axes[0, 0]
  ax.plot(arrays["frontier_kl"], arrays["frontier_reward"], "k-", lw=1, label="π*_β' (KL-optimal front)")
  ax.plot([summary["optimum"]["kl"]], [summary["optimum"]["reward"]], "k*", ms=12,
          label=f"π*_β, β = {summary['beta']:g}")
  ax.plot([0], [summary["reference"]["reward"]], "ks", ms=7, label="π_ref")
  markers = "ovD^<>phPX*"
  points = {}  # Objectives at the same point (e.g. rDPO = DPO without noise) share one label.
  for i, e in enumerate(summary["objectives"]):
    color = FAMILY_COLORS.get(e["family"], "tab:gray")
    ax.errorbar(e["kl"]["mean"], e["reward"]["mean"], xerr=e["kl"]["ci95"] or 0, yerr=e["reward"]["ci95"] or 0,
                fmt=markers[i % len(markers)], color=color, ms=6, capsize=2, alpha=0.85)
    points.setdefault((round(e["kl"]["mean"], 6), round(e["reward"]["mean"], 6)), []).append(e["objective"])
  for (kl, reward), names in points.items():
    ax.annotate(" = ".join(names), (kl, reward), fontsize=7, xytext=(3, 3), textcoords="offset points")
  drawn = list(dict.fromkeys(e["family"] for e in summary["objectives"]))
  for family in drawn:  # Only the families plotted (one entry per family; markers differ per objective).
    ax.plot([], [], "o", color=FAMILY_COLORS.get(family, "tab:gray"), label=f"{family} (colour)")
  max_kl = max([summary["optimum"]["kl"]] + [e["kl"]["mean"] for e in summary["objectives"]])
  ax.set_xlim(-0.05 * max_kl, 1.6 * max_kl)
  ax.set_xlabel("KL(π ‖ π_ref)")
  ax.set_ylabel("oracle reward E r̄")
  ax.set_title("Pareto: oracle reward vs KL (seed mean ± 95% CI)")
  ax.legend(fontsize=7, loc="lower right")
  shown = [e for e in summary["objectives"] if e["objective"] in highlight] or summary["objectives"][:6]
  col = 1
  if has_noise:
    ax = axes[0, col]
    col += 1
    _sweep_lines(ax, shown, NOISE, "noise")
    ax.axhline(summary["optimum"]["reward"], color="k", lw=0.8, ls="--", label="π*_β")
    ax.set_xlabel("label flip rate ε")
    ax.set_ylabel("oracle reward")
    ax.set_title("Label-noise sweep")
    ax.legend(fontsize=7)
  if has_prompts:
    ax = axes[0, col]
    _sweep_lines(ax, shown, PROMPTS, "num_prompts")
    ax.axhline(summary["optimum"]["reward"], color="k", lw=0.8, ls="--", label="π*_β")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("prompts in the dataset")
    ax.set_ylabel("oracle reward")
    ax.set_title("Ranked-data sweep")
    ax.legend(fontsize=7)
  fig.tight_layout()
  path = wd.file(out)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path

"""Figures of the preference-game experiments (prefjax.runs.games; docs/theory.md §4), one per runner.

Each draws figure.png into the runner's workdir (`wd.file("figure.png")`) from the arrays the runner has just
written. Lines that coincide on a panel are drawn so that none hides under another (`_distinct_lines`).
"""

import numpy as np

from prefjax.plotting._common import pyplot as _plt


def _fmt(x):
  return f"{x:g}"  # The runners' number format (array keys such as `steps__beta0.1`).


_LINE_STYLES = (("--", "o"), (":", "s"), ("-.", "^"), ((0, (5, 1, 1, 1)), "x"))
LOG_FLOOR = 1e-17  # Log-scale panels draw values below this (exact zeros: an exact equilibrium) at it.


def _coincide(a, b, log, span):
  """Whether two curves look the same on the panel: within 0.5% of the panel's range (in decades on a log
  axis, where `span` is that range in decades) on at least 90% of the points."""
  if a.shape != b.shape:
    return False
  if log:
    close = np.abs(np.log10(a) - np.log10(b)) <= max(0.005 * span, 0.01)
  else:
    close = np.abs(a - b) <= 0.005 * span
  return bool(np.mean(close) >= 0.9)


def _distinct_lines(ax, x, curves, log=False, floor=LOG_FLOOR, **kw):
  """Plots `curves` [(label, y, style)] so that none hides under another one.

  A curve that looks like one drawn before it (`_coincide`) gets its own dash pattern and markers, and its
  legend entry says which it coincides with: "(= spin)" when equal to 1e-9, "(≈ spin)" when only visually
  the same. On a log axis (`log`) values below `floor` are drawn at it, so an exact 0 stays visible.
  """
  ys = [np.asarray(y, np.float64) for _, y, _ in curves]
  if log:
    ys = [np.maximum(y, floor) for y in ys]
    ax.set_yscale("log")
  finite = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.zeros(1)
  if log:
    finite = np.log10(finite[finite > 0])
  span = float(np.ptp(finite)) if finite.size else 1.0
  drawn = []
  for (label, _, style), y in zip(curves, ys):
    name_of_curve = label
    same = [(name, np.allclose(other, y, rtol=1e-9, atol=0)) for name, other in drawn
            if _coincide(other, y, log, span)]
    style = dict(style or {})
    if same:
      ls, marker = _LINE_STYLES[min(len(same), len(_LINE_STYLES)) - 1]
      style.update(linestyle=ls, marker=marker, markevery=max(1, y.size // 8), ms=4, lw=1.2)
      label = f"{label} ({'; '.join(('= ' if exact else '≈ ') + name for name, exact in same)})"
    ax.plot(x if x is not None else np.arange(y.size), y, label=label, **style, **kw)
    drawn.append((name_of_curve, y))


def plot_egpo(wd, summary, arrays):
  """`run_egpo`'s figure: one panel per β, the median duality gap over games × seeds vs updates (log scale)."""
  plt = _plt()
  settings = summary["settings"]
  fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4.5), squeeze=False)
  colors = plt.get_cmap("tab10").colors
  for ax, s in zip(axes[0], settings):
    b = _fmt(s["beta"])
    steps = arrays[f"steps__beta{b}"]
    curves = []
    for name in sorted(s["runs"]):
      algo, mode = name.split("__")
      gap = np.median(arrays[f"gap__beta{b}__{name}"].reshape(-1, steps.size), axis=0)
      color = colors[sorted({n.split("__")[0] for n in s["runs"]}).index(algo) % 10]
      curves.append((f"{algo} ({mode})", gap, {"color": color, "linestyle": "--" if mode == "exact" else "-"}))
    _distinct_lines(ax, steps, curves, log=True, floor=1e-300)
    ax.set_xlabel("updates t")
    ax.set_ylabel("duality gap (median over games)")
    ax.set_title(f"β = {b}, lr = {_fmt(s['lr'])} ({summary['policy']})")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(wd.file("figure.png"), dpi=100)
  plt.close(fig)


def plot_nash_md_rate(wd, config, arrays):
  """`run_nash_md_rate`'s figure: max KL(π* ‖ π_T) over games per β against the bound 8/(β²(T+1))."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6, 4.5))
  for i, beta in enumerate(config.betas):
    b = _fmt(beta)
    c = plt.get_cmap("tab10").colors[i % 10]
    ax.plot(arrays["steps"], arrays[f"kl__beta{b}"].max(0), color=c, label=f"max KL, β={b}")
    ax.plot(arrays["steps"], arrays[f"bound__beta{b}"], color=c, linestyle=":", label=f"8/(β²(T+1)), β={b}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("T")
  ax.set_ylabel("KL(π* ‖ π_T)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(wd.file("figure.png"), dpi=100)
  plt.close(fig)


def plot_selfplay_cycles(wd, config, arrays, games):
  """`run_selfplay_cycles`' figure: MWU exploitability (last, average) per game, SPPO soft vs hard, SPIN family.

  `games` names the games of the MWU panel (`mwu__{game}__exploit_*` arrays).
  """
  plt = _plt()
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
  # Lines that coincide (with history = 1 the history variants of SPIN are SPIN itself) are drawn with
  # their own dashes and markers, and the legend says so.
  _distinct_lines(axes[0], arrays["steps"], [
      (f"{gname}: {kind}", arrays[f"mwu__{gname}__exploit_{key}"],
       {"color": f"C{g}", "linestyle": "-" if key == "last" else "--"})
      for g, gname in enumerate(games) for kind, key in (("last", "last"), ("average", "avg"))], log=True)
  axes[0].set_title(f"MWU / exact SPPO: exploitability (0 drawn at {LOG_FLOOR:g})")
  axes[0].set_xlabel("step")
  _distinct_lines(axes[1], np.arange(1, config.sppo_iterations + 1), [
      (label, arrays[f"sppo__{label}__exploit"], {"color": f"C{i}", "marker": "o", "ms": 3})
      for i, label in enumerate(("soft", "hard"))])
  axes[1].set_title("tabular SPPO (sampled): exploitability")
  axes[1].set_xlabel("SPPO iteration")
  axes[1].xaxis.set_major_locator(plt.MaxNLocator(integer=True))
  _distinct_lines(axes[2], arrays["steps"], [
      (k.split("__")[1], arrays[k], {"color": f"C{i}"})
      for i, k in enumerate(k for k in arrays if k.startswith("spin"))], log=True)
  axes[2].set_title(f"SPIN family: TV to p_data (history = {config.history})")
  axes[2].set_xlabel("step")
  for ax in axes:
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(wd.file("figure.png"), dpi=100)
  plt.close(fig)


def plot_online_dpo_vs_ipo(wd, arrays, losses):
  """`run_online_dpo_vs_ipo`'s figure: median duality gap over games per online loss (`losses` names them)."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6, 4.5))
  for name in losses:
    ax.plot(arrays["steps"], np.median(arrays[f"gap__{name}"], 0), label=f"online {name.upper()}")
  ax.set_yscale("log")
  ax.set_xlabel("SGD steps")
  ax.set_ylabel("duality gap (median over games)")
  ax.legend()
  fig.tight_layout()
  fig.savefig(wd.file("figure.png"), dpi=100)
  plt.close(fig)


def plot_annotator_flip(wd, config, eps, bt, arrays):
  """`run_annotator_flip`'s figure: π(y1) against ε for the BT optimum `bt`, the LP and the regularised Nash."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6, 4.5))
  ax.plot(eps, bt[:, 0], "o-", label="BT optimum π(y1)")
  ax.plot(eps, arrays["nash_lp"][:, 0], "s-", label="Nash π(y1) (LP)")
  ax.plot(eps, arrays["nash_regularised"][:, 0], "^-", label=f"regularised Nash π(y1), β={config.beta}")
  ax.set_xlabel("ε")
  ax.set_ylabel("π(y1)")
  ax.legend()
  fig.tight_layout()
  fig.savefig(wd.file("figure.png"), dpi=100)
  plt.close(fig)

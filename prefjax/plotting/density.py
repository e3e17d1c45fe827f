"""Figures of the density-estimation experiments (prefjax.runs.density; docs/theory.md §6), written to `path`."""

import numpy as np

from prefjax.plotting._common import pyplot as _plt


def plot_pbde_toy(path, arrays, families):
  """`run_pbde_toy`'s figure: per family and hyper-parameter, the learned π, π_pre, p* and the implied optimum."""
  plt = _plt()
  x = np.asarray(arrays["x"])
  pre, pstar = np.exp(arrays["log_pre"]), np.exp(arrays["log_pstar"])
  ncols = max(len(arrays[f"{f}__hparams"]) for f in families)
  fig, axes = plt.subplots(len(families), ncols, figsize=(3.2 * ncols, 2.6 * len(families)), squeeze=False,
                           sharex=True)
  label = {"dpo": "β", "geometric": "α", "ipo": "τ"}
  for row, fam in enumerate(families):
    hp = np.asarray(arrays[f"{fam}__hparams"])
    for col in range(ncols):
      ax = axes[row, col]
      if col >= len(hp):
        ax.axis("off")
        continue
      ax.plot(x, pstar, "--", color="C0", alpha=0.6, label="annotator p*")
      ax.plot(x, pre, ":", color="C1", alpha=0.8, label="π_pre")
      ax.plot(x, np.exp(arrays[f"{fam}__log_density"][col]), color="C2", label="learned π")
      opt = np.asarray(arrays[f"{fam}__log_optimum"][col])
      if not np.isnan(opt).all():
        ax.plot(x, np.exp(opt), "-.", color="C3", alpha=0.8, label="analytic optimum")
        ax.set_title(f"{fam} {label[fam]} = {hp[col, 0]:g}", fontsize=9)
      else:
        ax.set_title(f"slic δ = {hp[col, 0]:g}, λ = {hp[col, 1]:g}", fontsize=9)
      ax.set_xlim(-10, 10)
  axes[0, 0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def plot_pbde_misspecified(path, x, comps, single, matched, weights, w_learned, best, hx, heats):
  """`run_pbde_misspecified`'s figure: both models' densities against the annotators, and P(a ≻ b) heatmaps."""
  plt = _plt()
  x = np.asarray(x)
  fig, axes = plt.subplots(1, 5, figsize=(22, 4.2), layout="constrained")
  for j in range(comps.shape[0]):
    axes[0].plot(x, np.exp(comps[j]), "--", color=f"C{j}", alpha=0.6, label=f"annotator {j} (w={weights[j]})")
    if j < matched.shape[0]:
      wl = w_learned[best[j]] if best is not None else w_learned[j]
      axes[0].plot(x, np.exp(matched[j]), color=f"C{j}", label=f"learned {j} (w={wl:.2f})")
  axes[0].set_title("two-component model")
  axes[0].legend(fontsize=7)
  for j in range(comps.shape[0]):
    axes[1].plot(x, np.exp(comps[j]), "--", color=f"C{j}", alpha=0.6, label=f"annotator {j}")
  axes[1].plot(x, np.exp(single), color="C2", label="single-annotator model")
  axes[1].set_title("single-annotator model")
  axes[1].legend(fontsize=7)
  for ax in axes[:2]:
    ax.set_xlim(-10, 10)
    ax.set_xlabel("x")
  axes[0].set_ylabel("density")
  ext = (float(hx[0]), float(hx[-1]), float(hx[-1]), float(hx[0]))
  for ax, h, title in zip(axes[2:], heats, ("true P(a ≻ b)", "single model", "two-component model")):
    im = ax.imshow(np.asarray(h), extent=ext, vmin=0, vmax=1, cmap="RdBu_r")
    ax.set_title(title)
    ax.set_xlabel("b")
  axes[2].set_ylabel("a")
  fig.colorbar(im, ax=axes[2:], shrink=0.8, label="P(a ≻ b)")
  fig.savefig(path, dpi=90)
  plt.close(fig)

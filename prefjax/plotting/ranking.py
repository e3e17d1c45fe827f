"""The arena-ranking figure (prefjax.runs.ranking; docs/theory.md §7), written to `path`."""

import math

import numpy as np

from prefjax import intervals
from prefjax.plotting._common import pyplot as _plt


def wilson_interval(p, n, z=1.959963984540054):
  """Wilson score interval (low, high) of a proportion `p` observed in `n` trials; inside [0, 1]."""
  if n <= 0:
    return 0.0, 1.0
  denom = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denom
  return max(0.0, centre - half), min(1.0, centre + half)


def plot_arena_ranking(path, votes, settings, tau, k, summary, methods):
  """`run_arena_ranking`'s figure: Kendall τ against votes per setting and method (`methods`: the order of
  `tau`'s second axis), and the bootstrap intervals' coverage with Wilson 95% bars."""
  plt = _plt()
  fig, axes = plt.subplots(1, len(settings) + 1, figsize=(5.5 * (len(settings) + 1), 4.2))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  votes = np.asarray(votes)
  for s_idx, setting in enumerate(settings):
    ax = axes[s_idx]
    for m_idx, method in enumerate(methods):
      mean, half = intervals.t_interval(tau[s_idx, m_idx], axis=1)
      label = f"{method} (K = {k})" if method in ("pl_kwise", "bt_kwise_pairs") else method
      ax.plot(votes, mean, "o-", color=colors[m_idx], label=label, ms=3)
      # Kendall τ lies in [−1, 1]: the t-interval's band is clipped to that range.
      ax.fill_between(votes, np.clip(mean - half, -1.0, 1.0), np.clip(mean + half, -1.0, 1.0),
                      color=colors[m_idx], alpha=0.2)
      if method == "pl_kwise":
        ax.plot(votes * (k - 1), mean, ":", color=colors[m_idx], label=f"pl_kwise, {k - 1} votes/ranking")
    ax.set_xscale("log")
    ax.set(xlabel="votes (one K-wise ranking = one vote)", ylabel="Kendall τ to the true ranking",
           title=setting)
    ax.legend(fontsize=7)
  ax = axes[-1]
  cov = np.asarray([summary["settings"][s]["bootstrap"]["coverage"] for s in settings])
  # Wilson 95% score intervals for the covered fraction: inside [0, 1] (a ±2 SE bar crosses 1 near it).
  lo, hi = zip(*(wilson_interval(summary["settings"][s]["bootstrap"]["coverage"],
                                 summary["settings"][s]["bootstrap"]["num_intervals"]) for s in settings))
  err = np.stack([cov - np.asarray(lo), np.asarray(hi) - cov])
  ax.bar(range(len(settings)), cov, yerr=err, capsize=3, color=colors[:len(settings)])
  ci = summary["settings"][settings[0]]["bootstrap"]["ci"]
  ax.axhline(ci, color="k", ls="--", label=f"nominal {ci:g}")
  ax.set_xticks(range(len(settings)), settings, fontsize=8)
  ax.set(ylim=(0.5, 1.0), ylabel="coverage of the population BT scores (Wilson 95% bars)",
         title=f"Bootstrap {ci:g} intervals, {summary['settings'][settings[0]]['bootstrap']['votes']} battles")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)

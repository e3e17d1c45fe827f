"""The `curation_loop` figure (prefjax.runs.curation; docs/theory.md §8), written to `path`."""

import numpy as np

from prefjax.plotting._common import pyplot as _plt


def plot_curation_loop(path, ks, lams, exp_reward, tilt_reward, by_k, a_lam, lam0, sks, slams, sampled_reward,
                       exact, tilt, x, p0):
  """`run_curation_loop`'s figure: expected reward over generations by K and by λ, TV to p₀e^{tr} against K,
  and the sampled loop (±2 SE bands) against the exact map."""
  plt = _plt()
  fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
  gens = np.arange(exp_reward.shape[-1])
  ax = axes[0]
  for a in np.argsort(ks):
    ax.plot(gens, exp_reward[a, lam0], label=f"K = {int(ks[a])}")
  ax.plot(gens, tilt_reward, "k--", label="K = ∞ (p₀e^{tr})")
  ax.set(xlabel="generation t", ylabel="E_{p_t}[r]", title="Expected reward, λ = 0 (exact map)")
  ax.legend(fontsize=7)
  ax = axes[1]
  order = np.argsort(ks)
  ax.loglog(ks[order], [by_k[i]["tv_to_tilted_final"] for i in order], "o-", label="TV(p_T, p₀e^{Tr}/Z)")
  ax.loglog(ks[order], [by_k[i]["max_tv_to_tilted"] for i in order], "s--", label="max_t TV(p_t, p₀e^{tr}/Z)")
  ax.set(xlabel="K", ylabel="total variation", title="Convergence to p₀e^{tr} as K grows")
  ax.legend(fontsize=7)
  ax = axes[2]
  for l in np.argsort(lams):
    ax.plot(gens, exp_reward[a_lam, l], label=f"λ = {lams[l]:g}")
  ax.set(xlabel="generation t", ylabel="E_{p_t}[r]",
         title=f"Real-data fraction λ (K = {int(ks[a_lam])}, exact)")
  ax.legend(fontsize=7)
  ax = axes[3]
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  i = 0
  for a, k in enumerate(sks):
    for l, lam in enumerate(slams):
      c = colors[i % len(colors)]
      i += 1
      m = sampled_reward[a, l].mean(0)
      s = sampled_reward[a, l].std(0, ddof=1) / np.sqrt(sampled_reward.shape[2])
      ax.fill_between(gens, m - 2 * s, m + 2 * s, color=c, alpha=0.3)
      ak = int(np.flatnonzero(ks == k)[0]) if k in ks else None
      li = int(np.flatnonzero(np.isclose(lams, lam))[0]) if np.any(np.isclose(lams, lam)) else None
      if ak is not None and li is not None:
        ax.plot(gens, exp_reward[ak, li], color=c, lw=1, label=f"K = {int(k)}, λ = {lam:g}")
  ax.set(xlabel="generation t", ylabel="E[r]", title="Sampled loop (±2 SE bands) vs exact map (lines)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)

r"""Annotator misspecification in the density-estimation view (Dumoulin et al. 2311.14115, THEORY.md §6).

Command (about ten minutes on a 2-core CPU; `:quick` about a minute):
  python -m experiments.main --config=experiments/configs/pbde_misspecified.py --workdir=runs/pbde_misspecified

Setting: pairs a, b ∼ π_pre (the pbde_toy pretraining) labelled by two annotators, TN(−2.5, 0.25) with weight
0.4 and TN(2.5, 1.0) with weight 0.6: p(a ≻ b) = Σ_i w_i σ(log p_i(a) − log p_i(b)), no annotator ids. A
single-annotator Luce model (one energy MLP) and a two-component model (two energy MLPs + learned mixture
logits), both trained by maximum likelihood from random initialisations, full batch, Adam with cosine decay.
Same CPU deviations from the paper's grid and schedule as pbde_toy (see its docstring).

Expected result (summary.json, figure.png): the two-component model's components each within TV 0.05 of the
true annotator densities and its weights near 0.4/0.6; the single-annotator model fits neither component;
the P(a ≻ b) heatmaps of the two-component model match the truth, the single model's do not.
"""

from experiments.configs import common
import ml_collections


def get_config(arg=None):
  arg = common.parse_arg(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.experiment = "pbde_misspecified"
  c.name = "pbde_misspecified"
  c.seed = 0
  c.grid_size = 2**9  # Paper: 2**16 (see pbde_toy).
  c.width = 64
  c.num_layers = 4
  c.pretrain_steps = 2048  # π_pre, the distribution the pairs are drawn from.
  c.pretrain_lr = 1e-3
  c.num_pairs = 2**15
  c.num_components = 2  # Energies in the mixture model (the data have two annotators).
  c.num_steps = 4096  # From random initialisations: more steps than the fine-tuning runs of pbde_toy.
  c.lr = 2e-3  # Cosine-decayed Adam (random initialisations: a larger step than pbde_toy).
  c.record_every = 128
  c.heatmap_points = 128  # Grid points per axis of the P(a ≻ b) heatmaps.
  c.fast_compile = False  # XLA optimisation level 0: compiles faster, runs slower (for :quick).
  c.figure = True
  if arg.quick:
    c.fast_compile = False
    c.grid_size = 256
    c.width = 32
    c.pretrain_steps = 300
    c.num_pairs = 2048
    c.num_steps = 256
    c.lr = 3e-3
    c.record_every = 64
    c.heatmap_points = 32
  return c

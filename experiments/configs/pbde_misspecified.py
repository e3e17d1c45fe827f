r"""Annotator misspecification in the density-estimation view (Dumoulin et al. 2311.14115, THEORY.md §6).

Command (about 9 minutes on the shared 2-core CPU at load ~15-20, a few on a quiet one; `:quick` about a
minute):
  python -m experiments.main --config=experiments/configs/pbde_misspecified.py --workdir=runs/pbde_misspecified

Setting: pairs a, b ∼ π_pre (the pbde_toy pretraining) labelled by two annotators, TN(−2.5, 0.25) with weight
0.4 and TN(2.5, 1.0) with weight 0.6: p(a ≻ b) = Σ_i w_i σ(log p_i(a) − log p_i(b)), no annotator ids. A
single-annotator Luce model (one energy MLP) and a two-component model (two energy MLPs + learned mixture
logits), both trained by maximum likelihood from random initialisations, full batch, Adam with cosine decay.
Grid 2⁹ (see pbde_toy; the trapezoid normaliser of both true components is exact to 1e-15 on it, so the grid
is not what limits the fit).

Why 2¹⁶ pairs and lr 2e-2 (the paper: 2¹⁵ pairs; earlier defaults 2¹⁵ and 2e-3 gave narrow-component TV
0.077). Diagnosis on the exact population objective (`prefjax.density.experiments.population_mixture_nll`:
true pair law π_pre × π_pre and true label probabilities, no sampling): the model is well specified, so the
true components are the population optimum, but the loss is almost flat in the narrow component's width:
widening σ from 0.25 to 0.275 (TV 0.046) costs 2.7e-5 nats per pair, to 0.3 (TV 0.088) 1.0e-4, while
shifting its location by 0.05 (TV 0.080) costs 3.1e-3. Over 2¹⁵ pairs the width at the TV-0.05 scale is
worth under one nat of log-likelihood (σ's standard error ≈ 0.019, TV ≈ 0.035), so it is estimation error;
and the flat direction is also slow to optimise: with the old schedule (lr 2e-3, 4 096 steps) even the
population objective is still at narrow TV 0.093 at step 3 072 (2¹⁸ sampled pairs follow it: 0.188 vs
0.177 at step 1 024). Sampled runs (seed 0, narrow/broad TV at the end): lr 1e-2, 2¹⁵ pairs, 4 096 steps: 0.050/0.043 (the broad one overfits
the 2¹⁵ pairs); lr 1e-2, 2¹⁷ pairs: 0.079/0.015 at step 3 072 (stopped); lr 1e-2, 2¹⁶ pairs, 8 192 steps:
0.031/0.020 at step 1 536 but 0.209/0.028 at the end, although its exact population excess NLL (0.0017
nats/pair) is lower than the defaults' (0.0018): along the flat width direction the fit wanders with the
sample, so longer training can make it worse, and held-out NLL cannot pick the iterate either.

Measured with the defaults (seed 0; shared 2-core CPU at load ~15-20: 548 s): two-component TVs 0.043
(narrow) and 0.026 (broad), weights 0.399/0.601; the single-annotator model is at TV 0.886/0.525 from the
components; population excess NLL 0.0018 (mixture) vs 0.113 (single); max |ΔP(a ≻ b)| over the heatmap
0.38 vs 0.47 (both peak at the narrow bump's steep edge). Seed 1 with the same defaults (239 s at load ~5):
0.106 (narrow) and 0.034 (broad), single 0.886/0.532, population excess 0.0017 vs 0.113. So the bar is met
at seed 0 only, not robustly: the narrow component's width is weakly identified at 2¹⁵-2¹⁷ pairs and the
fit lands anywhere from TV 0.03 to 0.2 along that flat direction depending on the sample and schedule, while
the broad component (≤ 0.034) and the single model's failure (≥ 0.5) are stable. Open: a sturdier fix is
many more pairs, made cheap by training on per-cell sufficient statistics (wins and counts per grid pair
(a, b): at most G² cells whatever the number of pairs, so 2²⁰ pairs cost per step what 2¹⁸ do), checked over
several seeds.

Expected result (summary.json, figure.png): the two-component model's components each within TV 0.05 of the
true annotator densities (seed 0; not every seed, see above) and its weights near 0.4/0.6; the single-annotator model fits neither component;
the P(a ≻ b) heatmaps of the two-component model match the truth, the single model's do not;
`population_excess_nll_*` are the fits' exact excess risks.
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
  # 2× the paper's 2**15: the likelihood barely sees the narrow component's width (see the docstring), so
  # 2**15 pairs leave it uncertain at the TV 0.05 scale (and the broad component overfits them).
  c.num_pairs = 2**16
  c.num_components = 2  # Energies in the mixture model (the data have two annotators).
  c.num_steps = 4096  # From random initialisations (8 192, the paper's count, overfits: see the docstring).
  # Cosine-decayed Adam. The width is a flat direction of the loss: at 2e-3 even the exact population
  # objective is still at TV 0.09 after 3 072 of 4 096 steps.
  c.lr = 2e-2
  c.record_every = 128
  c.holdout_fraction = 0.0  # Last fraction of the pairs held out (scored at every record).
  c.early_stopping = False  # Keep the iterate with the lowest held-out NLL (needs holdout_fraction > 0).
  c.print_every_records = 8  # Progress line every this many records.
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

r"""The density-estimation paper's 1-D toy (Dumoulin et al. 2311.14115; notebook google-deepmind/pbde).

Command (minutes on a 2-core CPU, see below; `:paper` about 20 minutes; `:quick` about a minute):
  python -m experiments.main --config=experiments/configs/pbde_toy.py --workdir=runs/pbde_toy

Setting (docs/theory.md §6): energy MLP 4×64 tanh pretrained to TruncatedNormal(0, 5) on [−10, 10]; 2¹⁵ pairs
a, b ∼ π_pre with Luce labels from p* = 0.4·TN(−2.5, 0.25) + 0.6·TN(2.5, 1.0); full-batch Adam with cosine
decay from π_pre. Sweeps: DPO β ∈ {1, 4, 16}, geometric α ∈ {1, 1/4, 1/16}, IPO τ ∈ {0.1, 0.5, 1},
SLiC δ ∈ {0, .25, .5, 1, 2} × λ ∈ {0, 1}.

CPU defaults differ from the paper in three places, each a config field: a 2⁹-point grid (`grid_size`; the
paper's 2¹⁶ makes every step evaluate the MLP at tens of thousands of points: `:paper` below, 20 minutes),
4 096 fine-tuning steps at lr 1e-3 (`num_steps`, `lr`; the paper: 8 192 at 1e-4) and 2 048 pretraining steps
(`pretrain_steps`; the paper: 4 096). The 19 runs are one vmapped program; on a shared CPU, split them over processes with
`--config.families="('dpo','geometric')"` etc. (the pairs and π_pre depend on the seed only, so the split
runs see identical data).

Paper scale, `pbde_toy.py:paper`: grid 2¹⁶, 4 096 pretraining steps, 8 192 steps at Adam 1e-4 (cosine), 2¹⁵
pairs, DPO β = 4 and geometric α = 1/4 (add the other sweeps on the command line). It runs on CPU: pairs are
drawn by inverse CDF and the IPO optimum row by row (the former categorical sampler and the N × N IPO matrix
needed 17 GB each at 2¹⁶ points), and without SLiC each step evaluates the MLP only at the pairs' 38 472
distinct points (of 65 536; the same gradient, `_distinct_points`). The trapezoid normaliser is not the cost:
it runs once per recorded TV (every 256 steps), a forward pass. Measured on the idle 2-core CPU (27 Nov 2026,
09:02-09:23 UTC): 1 230 s in all — pretraining 0.09 s/step (MSE 2.0e-5, TV 0.0014 to TN(0, 5)), fine-tuning
both runs in one vmapped program 0.10 s/step (854 s for 8 192 steps); final TV to the implied optimum
0.0073 (DPO β = 4) and 0.0069 (geometric α = 1/4), under the 0.02 bar from step 3 072 on (0.0174 / 0.0151
there); 0.0071 / 0.0068 against the optima built with TN(0, 5) in place of π_pre, as the notebook
plots them. (Earlier per-step figures of 2.9-4.3 s were taken with the machine's cores shared ~20 ways.)

Expected result (summary.json, figure.png): DPO ends at π ∝ π_pre p*^{1/β} and the geometric objective at
π ∝ π_pre^{1−α} p*^α (TV < 0.02 at β = 4 and α = 1/4, `acceptance`); IPO ends at π ∝ π_pre e^{p(y≻π_pre)/τ};
SLiC without regularisation (λ = 0) drifts away from π_pre, λ = 1 keeps it close.

`:quick` is a smoke test of the same code paths (grid 2⁸, 2 048 pairs, 300 pretraining and 256 fine-tuning
steps), far too small for the TV < 0.02 acceptance threshold, which applies to the full config (grid 2⁹,
2¹⁵ pairs, 2 048 + 4 096 steps) and `:paper`: it ends with `acceptance.dpo_beta_4_ok` and
`geometric_alpha_0.25_ok` false, as expected, and summary.json's `acceptance_note` says so. Measured (seed 0,
two runs, identical to every digit shown): pretraining MSE 9.4e-2 (TV 0.106 to TN(0, 5)); TV to the implied
optimum 0.189 (DPO β = 4) and 0.199 (geometric α = 1/4), still falling (from 0.237 / 0.266 at step 64). What
`:quick` does check (tests/test_density_experiments.py): every closed-form family's TV falls, and stronger
regularisation keeps the policy closer to π_pre.
"""

from experiments.configs import common
import ml_collections


def get_config(arg=None):
  arg = common.parse_arg(arg, quick=False, paper=False)
  c = ml_collections.ConfigDict()
  c.experiment = "pbde_toy"
  c.name = "pbde_toy"  # Written into summary.json.
  c.seed = 0  # One key for pretraining, pairs and labels (split inside).
  c.grid_size = 2**9  # Grid points on [−10, 10] (paper: 2**16); pairs and normaliser live on this grid.
  c.width = 64  # Hidden units of the energy MLP (paper: 64).
  c.num_layers = 4  # Hidden tanh layers (paper: 4).
  c.pretrain_steps = 2048  # Adam steps fitting log π_pre to log TN(0, 5) (paper: 4096).
  c.pretrain_lr = 1e-3  # Cosine-decayed from this (paper: 1e-3).
  c.num_pairs = 2**15  # Labelled pairs a, b ∼ π_pre (paper: 2**15).
  c.num_steps = 4096  # Full-batch fine-tuning steps (paper: 8192).
  c.lr = 1e-3  # Cosine-decayed Adam learning rate (paper: 1e-4 with twice the steps).
  c.record_every = 128  # Steps between recorded TV/loss values.
  c.families = ("dpo", "geometric", "ipo", "slic")  # Which sweeps to run (one compiled program each).
  c.dpo_betas = (1.0, 4.0, 16.0)
  c.geometric_alphas = (1.0, 0.25, 0.0625)
  c.ipo_taus = (0.1, 0.5, 1.0)
  c.slic_deltas = (0.0, 0.25, 0.5, 1.0, 2.0)
  c.slic_lambdas = (0.0, 1.0)
  c.print_every_records = 8  # Print the TVs every this many records (long runs report their progress).
  c.fast_compile = False  # XLA optimisation level 0: compiles faster, runs slower (for :quick).
  c.figure = True  # figure.png: learned densities over the analytic curves.
  if arg.paper:
    # The paper's setting (docs/theory.md §6): grid 2¹⁶, 4 096 pretraining steps, 8 192 fine-tuning steps at
    # Adam 1e-4 with cosine decay, 2¹⁵ pairs, full batch. The acceptance runs only (DPO β = 4, geometric
    # α = 1/4); add families/values on the command line. Without SLiC the MLP is evaluated at the pairs'
    # distinct points only (the normaliser is needed only for the recorded TVs).
    c.grid_size = 2**16
    c.pretrain_steps = 4096
    c.num_steps = 8192
    c.lr = 1e-4
    c.record_every = 256
    c.print_every_records = 1
    c.families = ("dpo", "geometric")
    c.dpo_betas = (4.0,)
    c.geometric_alphas = (0.25,)
  if arg.quick:
    c.fast_compile = False  # For tests and notebooks: a coarse grid, few pairs and steps; the same code paths.
    c.grid_size = 256
    c.width = 32
    c.pretrain_steps = 300
    c.num_pairs = 2048
    c.num_steps = 256
    c.lr = 3e-3
    c.record_every = 64
    c.slic_deltas = (0.0, 1.0)
  return c

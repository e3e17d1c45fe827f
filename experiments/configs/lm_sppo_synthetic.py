r"""SPPO iterations on a transitive (Bradley–Terry) synthetic LM task (issue 7).

Command (`:quick` runs in the test suite; runtimes and results measured below):
  python -m experiments.main --config=experiments/configs/lm_sppo_synthetic.py --workdir=runs/lm_sppo_synthetic
  python -m experiments.main --config=experiments/configs/lm_sppo_synthetic.py:quick --workdir=runs/lm_sppo_quick

Setting (prefjax.lm.synthetic, prefjax.lm.online): one-token prompts, responses of R tokens over V (all
N = V^R enumerated exactly), a Bradley–Terry preference over a random additive reward (no cycles). π_ref is a
small GPT-2-style transformer trained by SFT on the task's μ. SPPO (Wu et al. arXiv:2405.00675): each
iteration draws K responses per prompt from the previous iterate π_t, scores soft win rates among them with
the exact preference, and regresses log π_θ/π_t on (P̂ − ½)/β; π_t ← π_θ every `iteration_steps` steps.

Expected result: the exact win rate against π_ref rises iteration after iteration (multiplicative weights
π_{t+1} ∝ π_t exp(P π_t / β) on a transitive game moves mass towards better responses every iteration);
summary.json `win_rate_per_iteration` and `claim_holds`.

Measured (CPU, deterministic; CPU seconds — the shared 2-core machine ran at load ≈ 20):
  :quick (C = 2, V = 3, R = 2, N = 9; π_ref = the initial near-uniform transformer; 4 iterations of 30 steps,
  K = 4, β = 1), 24 s of CPU: win rate against π_ref per iteration 0.500, 0.520, 0.541, 0.562, 0.581 → claim
  holds.
  full (C = 4, V = 4, R = 3, N = 64; π_ref by SFT; 2-layer d_model 32; 5 iterations of 100 steps), 50 s of
  CPU (10 min of wall time at load ≈ 20): 0.500, 0.536, 0.570, 0.603, 0.638, 0.665 → claim holds.
"""

import ml_collections

from experiments.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.experiment = "lm_sppo_synthetic"
  c.name = "lm_sppo_synthetic"
  c.algorithms = "sppo"  # Comma-separated; "sppo,spin,alpha_spin" adds the self-play baselines.
  c.beta = 1.0  # SPPO's 1/η: the per-iteration step of the multiplicative-weights update.
  c.claim_margin = 0.05  # claim_holds also needs the last iteration's win rate >= 0.5 + margin.
  c.seed = 0
  c.figure = True
  c.verbose = True
  c.fast_compile = False
  c.online = ml_collections.ConfigDict()
  c.online.batch_size = 32  # Prompts per step (K responses each).
  c.online.num_samples = 4  # K: responses per prompt for the soft win rates (self included).
  c.online.iteration_steps = 100  # Steps per SPPO iteration (fits π_{t+1} to the iteration's target).
  c.online.num_steps = 500  # 5 iterations.
  c.online.learning_rate = 3e-3
  c.online.schedule = "constant"  # Every iteration gets the same optimisation budget.
  c.online.warmup_steps = 0
  c.online.min_lr_ratio = 0.0
  c.online.grad_clip = 1.0
  c.online.labels = "probabilities"
  c.online.mixture_weight = 0.1  # Unused by SPPO.
  c.online.log_every = 50
  c.online.eval_every = 100  # One exact evaluation per iteration (must equal iteration_steps).
  c.online.checkpoint_every = 100
  c.synthetic = ml_collections.ConfigDict()
  c.synthetic.seed = 0
  c.synthetic.num_prompts = 4
  c.synthetic.vocab_size = 4
  c.synthetic.response_len = 3
  c.synthetic.sft_scale = 1.0
  c.synthetic.reward_scale = 1.0
  c.synthetic.nontransitive_scale = 0.0  # Transitive (Bradley–Terry): the claim is about a reward.
  c.synthetic.sft_steps = 100  # Exact full-batch SFT of π_ref on μ (0: π_ref = the initial transformer).
  c.synthetic.sft_learning_rate = 1e-2
  c.model = ml_collections.ConfigDict()
  c.model.d_model = 32
  c.model.num_layers = 2
  c.model.num_heads = 2
  c.model.d_ff = 64
  c.model.style = "gpt2"
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  if arg.quick:  # For tests and the notebook.
    c.synthetic.num_prompts = 2
    c.synthetic.vocab_size = 3
    c.synthetic.response_len = 2
    c.synthetic.sft_steps = 0  # π_ref = the initial (near-uniform) transformer: no SFT compilation.
    c.model.d_model = 16
    c.model.num_layers = 1
    c.model.num_heads = 1
    c.model.d_ff = 32
    c.online.iteration_steps = 30
    c.online.eval_every = 30
    c.online.num_steps = 120
    c.online.learning_rate = 1e-2
    c.online.log_every = 30
    c.online.checkpoint_every = 0
    c.fast_compile = True
  return c

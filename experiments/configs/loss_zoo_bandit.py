r"""Every registered pairwise objective on the same bandits, side by side ("loss zoo").

Command (a few minutes on a 2-core CPU; `:quick` about a minute):
  python -m experiments.main --config=experiments/configs/loss_zoo_bandit.py --workdir=runs/loss_zoo

Sources: the IPO paper's D1 and "(a, c) never observed" datasets (offline, mini-batches of 9 with
replacement), and an online Bradley–Terry bandit with rewards (1, 0, −1) and a uniform behaviour policy (fresh
pairs every step, Bernoulli labels). Objectives: every pairwise objective in prefjax.objectives, plus DPO under
the other f-divergences and cDPO. Everything else as in the IPO experiment (uniform π_ref, Adam 0.01).

Writes table.md: for each source, objective and β, the seed-mean final policy, KL(π ‖ π_ref), total-variation
distance to the IPO/ΨPO optimum (Ψ = identity) and to the RLHF optimum softmax(log π_ref + r/β) (the
Bradley–Terry bandit only), and whether the policy collapsed to a deterministic one (max π > 0.999).
Expected: on D1 the objectives with a logistic/unbounded link (DPO, cDPO with small ε, AOT, …) collapse, the
squared-loss ones (IPO, SPPO-hard) stop at finite margins; on the Bradley–Terry bandit DPO lands near the
RLHF optimum and IPO near the ΨPO optimum.
"""

import ml_collections

from experiments.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, quick=False)
  c = common.bandit_sweep_config()
  c.name = "loss_zoo_bandit"
  c.datasets = ("d1", "unobserved")
  c.bradley_terry_rewards = (1.0, 0.0, -1.0)
  c.objectives = ("sigmoid", "cdpo", "dpo_forward_kl", "dpo_js", "dpo_alpha", "hinge", "ipo", "robust",
                  "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero",
                  "apo_down", "discopop", "sigmoid_norm", "sft")
  # Labels that are not objective names map to one through `objective`; other keys are the objective's
  # keyword arguments (label_smoothing is swept-capable and set per objective here).
  c.objective_settings = ml_collections.ConfigDict({
      "cdpo": {"objective": "sigmoid", "label_smoothing": 0.1},
      "dpo_forward_kl": {"objective": "sigmoid", "divergence": "forward_kl"},
      "dpo_js": {"objective": "sigmoid", "divergence": "js"},
      "dpo_alpha": {"objective": "sigmoid", "divergence": "alpha", "alpha": 0.5},
      "robust": {"label_smoothing": 0.1},
      "exo_pair": {"label_smoothing": 1e-3},
  })
  c.betas = (0.1, 0.5, 1.0)
  c.write_table = True
  c.figure = False
  if arg.quick:  # Every objective, on D1 and the Bradley–Terry bandit; time is mostly compilation.
    c.datasets = ("d1",)
    c.num_steps = 1_000
    c.num_seeds = 2
    c.record_every = 500
    c.fast_compile = True
  return c

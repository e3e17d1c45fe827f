r"""EGPO's neural simulations (Zhou et al. arXiv:2503.08942; docs/theory.md §4): MLP policies, N = 100 actions.

Command (measured 6 min 53 s wall, 94 CPU-seconds, on the shared 2-core CPU at load average ~20, 2026-11-27,
most of it the one XLA program of the ten runs; `:quick` takes seconds):
  python -m experiments.main --config=experiments/configs/egpo_neural.py --workdir=runs/egpo_neural

Setting: N = 100, 10 EGPO random games; policy = EGPO's MLP (depth 3, width 10, ReLU, a learned input
vector; Xavier-normal weights, zero biases), π_ref = the network at initialisation, π_0 = π_ref; plain SGD
with EGPO's neural settings (β = 0.01, 10 000 iterations, lr 0.003) for the five algorithms, exact and
sampled. Decision: each game has its own network (EGPO's code shares the layers across its batch of games).

Expected result (measured with this config, summary.json, final gap over the 10 games, median / max):
EGPO exact's gap falls fastest — median below 1e-9 after 800 updates, then at float32's floor, final
9.8e-14 / 1.2e-13; online IPO 1 exact gets there too, later (median below 1e-9 after 1 500 updates; final
1.0e-13 / 1.5e-13); Nash-MD exact (EGPO's mixture step) stalls at 1.9e-10 / 3.5e-10, online IPO 2 exact at
2.5e-6 / 1.9e-3 and Nash-MD-PG exact does not move from the start (6.3e-2 / 9.9e-2). The sampled runs
(100 samples per loss) stay at their noise floor, 2e-2 – 6e-2 (EGPO 6.0e-2, online IPO 1 4.2e-2, Nash-MD
5.0e-2, online IPO 2 2.1e-2, Nash-MD-PG 6.3e-2). The MLP's output layer has a bias per action, so it can
represent every policy of the 100-action game: the exact gaps go to zero (an earlier note here expected a
plateau from the 10 hidden units; measurement says otherwise).
"""

from experiments.configs import egpo_tabular
from experiments.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, quick=False)
  c = egpo_tabular.get_config()
  c.name = "egpo_neural"
  c.policy = "neural"  # EGPO's NeuralPolicy.
  c.depth = 3  # EGPO: depth 3.
  c.width = 10  # EGPO: hidden width D = 10.
  c.num_actions = 100  # EGPO's neural N = 100.
  c.game_seed = 0
  c.betas = (0.01,)  # EGPO's exact neural setting.
  c.iterations = (10_000,)
  c.lrs = (0.003,)
  c.float64 = False  # Networks train in float32, like EGPO's.
  if arg.quick:
    c.num_games = 2
    c.num_actions = 20
    c.iterations = (100,)
    c.num_records = 5
    c.num_samples = 20
    c.algorithms = ("online_ipo_1", "egpo")
  return c

r"""EGPO's neural simulations (Zhou et al. arXiv:2503.08942; THEORY.md §4): MLP policies, N = 100 actions.

Command (tens of minutes on a 2-core CPU; `:quick` takes seconds):
  python -m experiments.main --config=experiments/configs/egpo_neural.py --workdir=runs/egpo_neural

Setting: N = 100, 10 EGPO random games; policy = EGPO's MLP (depth 3, width 10, ReLU, a learned input
vector; Xavier-normal weights, zero biases), π_ref = the network at initialisation, π_0 = π_ref; plain SGD
with EGPO's neural settings (β = 0.01, 10 000 iterations, lr 0.003) for the five algorithms, exact and
sampled. Decision: each game has its own network (EGPO's code shares the layers across its batch of games).

Expected result: EGPO's gap falls fastest; a network with 10 hidden units cannot represent every
equilibrium of a 100-action game exactly, so gaps plateau above zero (the paper's figure shows the same).
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

r"""Munos et al. arXiv:2312.00886 §3.2: the Bradley–Terry optimum flips with ε, the Nash solution moves smoothly.

Command (seconds on a 2-core CPU):
  python -m experiments.main --config=experiments/configs/annotator_flip.py --workdir=runs/annotator_flip

Setting: three annotator types in proportions (1/3 + ε/2, 1/3 − ε/4, 1/3 − ε/4)
(`prefjax.games.instances.munos_annotators`) for ε on a grid through 0.

Expected result: `bt_flips` true (y2 for ε < 0, y1 for ε > 0: a jump of 1 in π(y1)), while the Nash solution
(1/3 + ε/2, 1/3 + ε/2, 1/3 − ε) is matched by the LP to ~1e-12 and moves by at most 1.5 × the ε step.
"""

import ml_collections

from experiments.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.experiment = "annotator_flip"
  c.name = "annotator_flip"
  c.eps = tuple(float(e) for e in (-0.2, -0.15, -0.1, -0.05, -0.01, 0.01, 0.05, 0.1, 0.15, 0.2))  # Through 0.
  c.beta = 0.05  # Regularised Nash for contrast.
  c.figure = True
  if arg.quick:
    c.eps = (-0.1, -0.01, 0.01, 0.1)
  return c

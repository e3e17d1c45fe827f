r"""Munos et al. arXiv:2312.00886 §3.2: the Bradley–Terry optimum flips with ε, the Nash solution moves smoothly.

Command (seconds on a 2-core CPU):
  python -m experiments.main --config=experiments/configs/annotator_flip.py --workdir=runs/annotator_flip

Setting: three annotator types in proportions (1/3 + ε/2, 1/3 − ε/4, 1/3 − ε/4)
(`prefjax.games.instances.munos_annotators`) for ε on a grid through 0.

Expected result: `bt_flips` true (y2 for ε < 0, y1 for ε > 0: a jump of 1 in π(y1)), while the Nash solution
(1/3 + ε/2, 1/3 + ε/2, 1/3 − ε) is matched by the LP to float64 round-off and moves by at most the ε step
(measured 2026-12-03, two runs identical: LP vs claimed max deviation 3.3e-16; largest jump between
neighbouring ε 0.050 for the LP and claimed solutions, y3's share 1/3 − ε, against ε steps of up to 0.05;
0.044 for the regularised Nash at β = 0.05). `:quick` (ε ∈ {−0.1, −0.01, 0.01, 0.1}) gives the same flags.

The config is checked before anything is written (`validate_annotator_flip`: ε strictly increasing within
[−2/3, 1/3], at least two values; β > 0); a finished run in the workdir is not rerun (docs/workdir.md).
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

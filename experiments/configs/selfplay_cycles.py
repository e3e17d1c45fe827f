r"""Self-play dynamics: multiplicative weights / SPPO last vs average iterate; soft vs hard SPPO; SPIN family.

Command (about a minute on a 2-core CPU; `:quick` takes seconds):
  python -m experiments.main --config=experiments/configs/selfplay_cycles.py --workdir=runs/selfplay_cycles

Setting (docs/theory.md §4): exact multiplicative weights (exact SPPO, Wu et al. arXiv:2405.00675) on
rock–paper–scissors and on an EGPO random game from a non-equilibrium start; tabular SPPO with K = 6 sampled
responses (official best/worst soft win rates vs `sppo_hard`); SPIN, α-SPIN and their fictitious-play
history versions (Alami et al. arXiv:2404.04291) fitting a data distribution; smooth fictitious play.

Expected result: the average iterate's exploitability falls towards 0 while the last iterate's stays away
from 0 on the cyclic game (it cycles); SPIN variants approach p_data (α-SPIN a π_ref-tilted version of it).
Measured 2026-12-03 (9 s wall on the idle 2-core CPU; two runs identical): on rock–paper–scissors the average
iterate ends at exploitability 0.0025 while the last iterate ends at 0.30 (0.48 at most over the second
half); on the random game MWU's last iterate reaches an exact equilibrium (exploitability 0 from step ~2 400;
drawn at 1e-17 on the log axis), the average 0.0017; SPPO's final exploitability 0.0075 (soft win rates) vs
0.00067 (hard); SPIN's TV to p_data 7e-17 with or without history, α-SPIN's 0.107 with or without history
(the same fixed point: in figure.png the coinciding curves get their own dashes and markers, and the legend
marks them "(= …)" or "(≈ …)"); smooth fictitious play's final gap 5.0e-9. The run prints a line per phase
(nine: MWU × 2 games, SPPO × 2, SPIN × 4, fictitious play) and stops between phases on SIGTERM/SIGINT.
"""

import ml_collections

from experiments.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.experiment = "selfplay_cycles"
  c.name = "selfplay_cycles"
  c.num_actions = 5  # Size of the random game.
  c.game_seed = 0
  c.seed = 0
  c.beta = 0.1  # Only for the recorded regularised gaps and fictitious play's smoothing.
  c.eta = 0.1  # MWU step (SPPO's 1/β).
  c.num_steps = 10_000
  c.record_every = 100
  c.sppo_beta = 1.0  # SPPO's β (its step is 1/β).
  c.sppo_iterations = 20  # Outer SPPO iterations.
  c.sppo_inner_steps = 200  # SGD steps per iteration on the sampled SPPO loss.
  c.sppo_lr = 0.05
  c.sppo_k = 6  # Responses per prompt for the soft win rates.
  c.spin_eta = 0.5  # 1/λ.
  c.alpha = 0.3  # α-SPIN's weight of π_ref.
  c.history = 3  # Fictitious-play history length.
  c.figure = True
  if arg.quick:
    c.num_steps = 500
    c.record_every = 50
    c.sppo_iterations = 3
    c.sppo_inner_steps = 20
    c.history = 1  # Reuses SPIN's compiled program (the history length is static).
  return c

r"""Arena ranking: Kendall τ vs number of votes for BT-MLE, Elo, Borda and K-wise Plackett–Luce.

Command (3.3 CPU-minutes, mostly compiling one program per vote count: 15 min wall on a busy 2-core CPU;
`:quick` about 1 CPU-minute):
  python -m experiments.main --config=experiments/configs/arena_ranking.py --workdir=runs/arena_ranking

Setting (docs/theory.md §7; prefjax.ranking.simulate): 12 models with skills ~ N(0, 1); transitive arenas
(c = 0) and arenas with an intransitive blade–chest component (c = 0.5); pairwise battles between uniform
pairs; K-wise votes rank K = 4 uniformly drawn models (Plackett–Luce with set-averaged intransitive
strengths). One K-wise ranking counts as one vote (K-Sort Arena's accounting; summary.json also charges
K − 1 and C(K, 2) votes per ranking). 64 simulations (fresh arena and votes each), vmapped.

Expected result (summary.json, figure.png; measured with seed 0): every method's τ rises with the votes.
Transitive: 4-wise Plackett–Luce reaches τ = 0.8 after ~73 votes against ~295 for BT-MLE, ~359 for Elo
and ~365 for Borda (K-Sort Arena's claim holds per vote, and still per choice: 219 votes when a ranking is
charged K − 1 = 3; not per implied pair: 438 at C(4, 2) = 6), and PL's τ exceeds BT's at every V.
Intransitive (c = 0.5): PL leads at small V (0.77 vs 0.53 at V = 50) but plateaus at τ ≈ 0.92 to the
Borda truth, which BT-MLE and Borda overtake by V = 3200: set-averaged K-wise votes estimate a different
target than uniform pairwise battles. Bootstrap 95% intervals cover the population BT scores at
0.938 ± 0.009 (transitive) and 0.932 ± 0.009 (intransitive) at 3000 battles. In figure.png the τ bands (95%
t-intervals over simulations) are clipped to τ's range [−1, 1], and the coverage bars are Wilson 95% intervals
(inside [0, 1]).
"""

from experiments.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, quick=False)
  c = common.ml_collections.ConfigDict()
  c.experiment = "arena_ranking"
  c.num_models = 12  # Chatbot-Arena-like leaderboard slice; C(12, 2) = 66 pairs.
  c.skill_scale = 1.0  # Skills ~ N(0, skill_scale²): neighbours in the ranking are ~0.2 apart.
  c.intransitivity = (0.0, 0.5)  # c per setting: 0 = transitive; 0.5 adds rock–paper–scissors cycles.
  c.dim = 2  # Dimension of the intransitive latent vectors.
  c.k = 4  # K of the K-wise votes (K-Sort Arena shows 4 models at a time).
  c.votes = (50, 100, 200, 400, 800, 1600, 3200)  # V: votes per simulation (log-spaced).
  c.num_simulations = 64  # Repeated simulations per V (vmapped): the t-intervals on τ are over these.
  c.l2 = 0.01  # Weak Gaussian prior on the summed NLL so the MLEs exist at small V (same for BT and PL).
  c.elo_k_factor = 4.0  # Chatbot Arena's K-factor (rating points; scale 400, base 10).
  c.tau_target = 0.8  # Votes needed to reach this mean τ are reported per method and accounting.
  c.coverage_votes = 3000  # Battles per simulation for the bootstrap-coverage check.
  c.bootstrap_rounds = 100  # Bootstrap replicates per interval (Chatbot Arena uses 100-1000).
  c.ci = 0.95  # Nominal interval level.
  c.seed = 0
  c.figure = True
  c.fast_compile = False  # XLA optimisation level 0: compiles faster, runs slower (for :quick).
  if arg.quick:  # For tests and notebooks: fewer models, vote counts and simulations.
    c.num_models = 8
    c.votes = (50, 400)
    c.num_simulations = 16
    c.coverage_votes = 1000
    c.bootstrap_rounds = 50
    c.fast_compile = True
  return c

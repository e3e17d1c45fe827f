"""Preference models and rankings: battles tables, BT/Thurstone/PL/ties/outside-option MLE, Elo, Borda.

docs/theory.md §7. Typical use:

  battles = ranking.load_battles("arena.jsonl")
  fit = ranking.fit_bradley_terry(battles)                 # centred natural-log scores
  ci = ranking.bootstrap_bradley_terry(key, battles, 200)  # percentile intervals
  ratings = ranking.elo_scale(fit.scores)                  # Chatbot Arena's 400/ln 10 · s + 1000

Rating-based (RbRL, 2307.16348) class likelihoods for absolute ratings: `prefjax.ranking.ratings`.
"""

from prefjax.ranking.aggregate import borda_count
from prefjax.ranking.aggregate import borda_from_rankings
from prefjax.ranking.aggregate import calibrate_judge_matrix
from prefjax.ranking.aggregate import calibrate_order
from prefjax.ranking.aggregate import CALIBRATIONS
from prefjax.ranking.aggregate import count_cyclic_triads
from prefjax.ranking.aggregate import empirical_preferences
from prefjax.ranking.aggregate import enhanced_borda_count
from prefjax.ranking.aggregate import EnhancedBorda
from prefjax.ranking.aggregate import order_consistency
from prefjax.ranking.aggregate import transitive_closure
from prefjax.ranking.aggregate import transitivity_violation_rate
from prefjax.ranking.battles import A_WINS
from prefjax.ranking.battles import B_WINS
from prefjax.ranking.battles import BattleCounts
from prefjax.ranking.battles import Battles
from prefjax.ranking.battles import battles_from_arrays
from prefjax.ranking.battles import battles_from_records
from prefjax.ranking.battles import check_counts
from prefjax.ranking.battles import count_battles
from prefjax.ranking.battles import load_battles
from prefjax.ranking.battles import OUTCOME_LABELS
from prefjax.ranking.battles import TIE
from prefjax.ranking.elo import elo_from_battles
from prefjax.ranking.elo import elo_scale
from prefjax.ranking.elo import elo_to_scores
from prefjax.ranking.elo import online_elo
from prefjax.ranking.models import Bootstrap
from prefjax.ranking.models import bootstrap_bradley_terry
from prefjax.ranking.models import bootstrap_scores
from prefjax.ranking.models import bradley_terry_nll
from prefjax.ranking.models import davidson_nll
from prefjax.ranking.models import Fit
from prefjax.ranking.models import fit_bradley_terry
from prefjax.ranking.models import fit_outside_option
from prefjax.ranking.models import fit_plackett_luce
from prefjax.ranking.models import fit_thurstone
from prefjax.ranking.models import outside_option_log_probs
from prefjax.ranking.models import outside_option_nll
from prefjax.ranking.models import plackett_luce_nll
from prefjax.ranking.models import rankings_to_counts
from prefjax.ranking.models import rao_kupper_nll
from prefjax.ranking.models import thurstone_nll
from prefjax.ranking.models import TIE_MODELS
from prefjax.ranking.ratings import fit_rbrl
from prefjax.ranking.ratings import load_ratings
from prefjax.ranking.ratings import Ratings
from prefjax.ranking.ratings import ratings_from_records
from prefjax.ranking.ratings import rbrl_loss

"""Preference-learning objectives as pure functions of arrays, looked up by name in explicit registries.

Pairwise (DPO family, THEORY.md §2 and §5): `pairwise_loss(name, policy_chosen_logps, policy_rejected_logps,
ref_chosen_logps, ref_rejected_logps, *, beta, ...)` returns per-example losses `[B]`;
`pairwise_loss_and_metrics` adds TRL-style reward metrics. `list_objectives()` gives the accepted names
(TRL's `loss_type` names included), `register_pairwise` adds new ones.
"""

from prefjax.objectives.divergences import DIVERGENCES
from prefjax.objectives.divergences import divergence_score
from prefjax.objectives.divergences import list_divergences
from prefjax.objectives.pairwise import PAIRWISE_LOSSES
from prefjax.objectives.pairwise import PairwiseHParams
from prefjax.objectives.pairwise import PairwiseInputs
from prefjax.objectives.pairwise import PairwiseMetrics
from prefjax.objectives.pairwise import PairwiseObjective
from prefjax.objectives.pairwise import SmoothingRange
from prefjax.objectives.pairwise import is_batch_coupled
from prefjax.objectives.pairwise import list_objectives
from prefjax.objectives.pairwise import pairwise_loss
from prefjax.objectives.pairwise import pairwise_loss_and_metrics
from prefjax.objectives.pairwise import register_pairwise
from prefjax.objectives.registry import Registry

__all__ = [
    "DIVERGENCES",
    "PAIRWISE_LOSSES",
    "PairwiseHParams",
    "PairwiseInputs",
    "PairwiseMetrics",
    "PairwiseObjective",
    "Registry",
    "SmoothingRange",
    "divergence_score",
    "is_batch_coupled",
    "list_divergences",
    "list_objectives",
    "pairwise_loss",
    "pairwise_loss_and_metrics",
    "register_pairwise",
]

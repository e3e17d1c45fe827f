"""Preference-learning objectives as pure functions of arrays, declared once in one objective index.

The index (`spec`): `get(name)` returns an objective's declaration (family, data contract, options,
closed-form optimum, paper, what it was verified against); `list_objectives(family=..., contract=...)` lists
them; `declare(Objective(...))` adds one. Trainers consume objectives by contract, so a new objective on an
existing contract reaches them by name (docs/adding_an_objective.md; the generated list: docs/objectives.md).

Pairwise (DPO family, docs/theory.md §2 and §5): `pairwise_loss(name, policy_chosen_logps, policy_rejected_logps,
ref_chosen_logps, ref_rejected_logps, *, beta, ...)` returns per-example losses `[B]`;
`pairwise_loss_and_metrics` adds TRL-style reward metrics. `list_objectives(family="pairwise",
aliases=True)` gives the accepted names (TRL's `loss_type` names included), `register_pairwise` adds new ones.

Other families live in their modules, each with its own entry point or registry:
- `listwise` — K responses per prompt: `listwise_loss(name, ...)` (InfoNCA, NCA, Plackett–Luce, PRO, LiPO-λ,
  MPO), Curry-DPO curricula, AMPO subset selection (docs/theory.md §3);
- `ot` — optimal-transport (AOT) losses with convex costs, soft sorting, a global sort under sharding and the
  FSD-violation metric (§5);
- `margins` — MMPO soft targets, β-DPO's batch-adaptive β, γ-PO margins (§2);
- `single` — single-response and cross-prompt objectives: DRO, BCO, JPO, Cringe, SimpleMix (§2);
- `density` — the density-estimation view: Luce/Bradley–Terry, DPO, geometric, IPO and SLiC likelihoods on
  densities, the preference-behaviour family and annotator mixtures, with closed-form optima (§6);
- `nash` — Nash-learning and self-play objectives on preference games: online IPO, Nash-MD(-PG), EGPO's
  extragradient step, SPPO, SPIN, each with an exact and a sampled twin (§4);
- `sequence` — their per-prompt twins on sampled sequences' log-probs, which the online LM trainer
  differentiates: online DPO / IPO, Nash-MD-PG, SPPO, SPIN.

Input checks: shapes always, hyper-parameter values when concrete; NaN / ±inf inputs only on request, with
`check_finite=True` on the entry points of every family (eager `PrefjaxError`, or a `jax.experimental.checkify`
check under `jit`; see docs/objectives_checks.md).
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
from prefjax.objectives.pairwise import pairwise_loss
from prefjax.objectives.pairwise import pairwise_loss_and_metrics
from prefjax.objectives.pairwise import register_pairwise
from prefjax.objectives.registry import Registry
from prefjax.objectives import density
from prefjax.objectives import pairwise
from prefjax.objectives import listwise
from prefjax.objectives import margins
from prefjax.objectives import nash
from prefjax.objectives import ot
from prefjax.objectives import sequence
from prefjax.objectives import single
from prefjax.objectives import spec
from prefjax.objectives.spec import CONTRACTS
from prefjax.objectives.spec import FAMILIES
from prefjax.objectives.spec import Objective
from prefjax.objectives.spec import declare
from prefjax.objectives.spec import get

__all__ = [
    "DIVERGENCES",
    "PAIRWISE_LOSSES",
    "PairwiseHParams",
    "PairwiseInputs",
    "PairwiseMetrics",
    "PairwiseObjective",
    "Registry",
    "SmoothingRange",
    "density",
    "divergence_score",
    "is_batch_coupled",
    "listwise",
    "margins",
    "nash",
    "ot",
    "sequence",
    "single",
    "spec",
    "CONTRACTS",
    "FAMILIES",
    "Objective",
    "declare",
    "get",
    "list_divergences",
    "list_objectives",
    "pairwise_loss",
    "pairwise_loss_and_metrics",
    "register_pairwise",
]


def list_objectives(family=None, contract=None, *, aliases=None):
  """Names of the declared objectives (see `spec.list_objectives`).

  With no argument it keeps its earlier meaning, the pairwise objectives' names with aliases (what
  `pairwise_loss` accepts); give `family=` and/or `contract=` to list any family's.
  """
  if family is None and contract is None:
    return pairwise.list_objectives() if aliases in (None, True) else spec.list_objectives("pairwise")
  return spec.list_objectives(family, contract, aliases=bool(aliases))

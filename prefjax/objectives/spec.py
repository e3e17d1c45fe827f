"""The objective index: every objective declared once, with its data contract and what is known about it.

An `Objective` says what a trainer needs to know to train with it and what a reader needs to trust it:

- its name, aliases and family (the module that holds its maths);
- its *data contract* (`CONTRACTS`): what one example of a batch holds — a preference pair, K responses with
  scores or a ranking, one response with a binary label or a scalar reward, a game's policy, a density's
  samples. A trainer feeds contracts, not families: a new objective on an existing contract reaches every
  trainer that feeds that contract by name, with no other file touched;
- `build(options) -> Loss`: the per-example loss over the contract's batch type (`PairBatch`,
  `RankingBatch`, `SingleBatch`, ...), with its static options (name → default) checked here;
- whether it reads label smoothing ε, couples the examples of a batch (a sort, a batch statistic) or carries
  state between steps (a running mean), or needs a learned value V(x) beside the policy;
- its closed-form population optimum where one is known (`optimum`: "rlhf" for π* ∝ π_ref e^{r/β}, i.e.
  Ψ = logit in the ΨPO family, or "ipo" for Ψ = identity), its display name, paper (arXiv id), formula and
  what it was verified against (the tests that check it).

`get(name)` returns a declaration (aliases and "family:name" accepted; an unknown name is a `PrefjaxError`
with a close match); `list_objectives(family=..., contract=...)` lists them. Tables that other modules used to
keep by hand (optimum kinds, display names, family colours) are read from here: `optimum_psi`,
`display_name`, `FAMILIES[...].color`. docs/objectives.md is generated from this index (`markdown_table`;
tests/test_objective_spec.py fails when the file is stale).

The same name may exist in two families (the density view has its own `dpo`, `ipo`, `slic`): a bare name
resolves to the family declared first (`FAMILY_ORDER`: pairwise before density), and "density:dpo" names
the other one.
"""

import dataclasses
import difflib
import types
from typing import Any, Callable, NamedTuple, Optional

import jax

from prefjax.errors import PrefjaxError

# ----------------------------------------------------------------------------------------------------
# Data contracts and their batch types.
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Contract:
  """What one example of a batch holds, for objectives of this contract.

  Attributes:
    name: the contract's name ("pair", "ranking", ...).
    holds: the batch's fields, in words (shapes with B examples, K responses).
    batch_type: the NamedTuple a `Loss` receives (None for contracts whose trainers call the family's own
      functions: games, densities).
    jsonl: the LM trainer's JSONL row format for it, or "" when no LM trainer feeds it yet.
  """
  name: str
  holds: str
  batch_type: Any = None
  jsonl: str = ""


class PairBatch(NamedTuple):
  """A batch of preference pairs (contracts "pair" and "scored_pair").

  Attributes:
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps: `[B]` summed
      sequence log-probs of the chosen (y_w) and rejected (y_l) responses under the policy and the
      reference (a bandit: log π(y)).
    chosen_lengths, rejected_lengths: `[B]` token counts (ones in a bandit), or None.
    chosen_scores, rejected_scores: `[B]` the responses' quality scores ("scored_pair": MMPO's margin
      m = score_w − score_l), else None.
  """
  policy_chosen_logps: jax.Array
  policy_rejected_logps: jax.Array
  ref_chosen_logps: jax.Array
  ref_rejected_logps: jax.Array
  chosen_lengths: Optional[jax.Array] = None
  rejected_lengths: Optional[jax.Array] = None
  chosen_scores: Optional[jax.Array] = None
  rejected_scores: Optional[jax.Array] = None


class RankingBatch(NamedTuple):
  """K responses per prompt (contract "ranking").

  Attributes:
    policy_logps, ref_logps: `[B, K]` summed log-probs.
    rewards: `[B, K]` scores, higher is better (reward-labelled objectives), or None.
    ranks: `[B, K]` integer ranks, 0 = best (rank-labelled objectives; also derivable from tie-free
      rewards), or None.
    lengths: `[B, K]` token counts, or None.
  """
  policy_logps: jax.Array
  ref_logps: jax.Array
  rewards: Optional[jax.Array] = None
  ranks: Optional[jax.Array] = None
  lengths: Optional[jax.Array] = None


class SingleBatch(NamedTuple):
  """One response per example (contract "single").

  Attributes:
    policy_logps, ref_logps: `[B]` summed log-probs.
    desirable: `[B]` bool, thumbs-up / thumbs-down (binary-feedback objectives), or None.
    rewards: `[B]` scalar rewards (reward-labelled objectives), or None.
    values: `[B]` a learned V(x) (objectives with `needs_value`), or None.
    lengths: `[B]` token counts, or None.
  """
  policy_logps: jax.Array
  ref_logps: jax.Array
  desirable: Optional[jax.Array] = None
  rewards: Optional[jax.Array] = None
  values: Optional[jax.Array] = None
  lengths: Optional[jax.Array] = None


class CrossPromptBatch(NamedTuple):
  """Each prompt's labelled pair and one pair of responses to two different prompts (contract "cross_prompt")."""
  conditional: PairBatch
  joint: PairBatch


class TokenPairBatch(NamedTuple):
  """A preference pair plus the policy's per-token distribution over the rejected response (contract "token").

  Attributes:
    pair: the `PairBatch`.
    rejected_logits: `[B, T, V]` the policy's logits at each rejected-response position.
    rejected_tokens: `[B, T]` the rejected response's tokens.
    rejected_mask: `[B, T]` 1 on real tokens.
  """
  pair: PairBatch
  rejected_logits: jax.Array
  rejected_tokens: jax.Array
  rejected_mask: jax.Array


class HParams(NamedTuple):
  """The swept hyper-parameters every loss receives (scalars; may be traced, so sweeps vmap over them)."""
  beta: jax.Array
  label_smoothing: jax.Array = 0.0


_CONTRACT_LIST = (
    Contract("pair", "a preference pair: policy and reference log-probs of y_w and y_l, [B] each, with token "
             "counts", PairBatch, "prompt, chosen, rejected"),
    Contract("scored_pair", "a preference pair with both responses' quality scores, [B] each", PairBatch,
             "prompt, chosen, rejected, chosen_score, rejected_score"),
    Contract("ranking", "K responses per prompt: log-probs [B, K] with scores or a ranking [B, K]", RankingBatch,
             "prompt, responses (K), scores (K)"),
    Contract("single", "one response per example: log-probs [B] with a binary label or a scalar reward",
             SingleBatch, "prompt, completion, label (true/false) or reward"),
    Contract("cross_prompt", "each prompt's labelled pair and a pair of responses to two different prompts",
             CrossPromptBatch),
    Contract("token", "a preference pair and the policy's per-token distribution over the rejected response",
             TokenPairBatch),
    Contract("game", "a policy over N responses and a preference matrix P (exact) or sampled duels"),
    Contract("density", "labelled pairs of samples scored by a density model and a pretrained density"),
)


# ----------------------------------------------------------------------------------------------------
# Declarations.
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Loss:
  """A built objective: per-example losses over one contract's batch.

  Attributes:
    fn: `fn(batch, hp: HParams, state, key) -> (losses [B], new_state)`; stateless objectives return the
      state they were given; `key` is a fresh PRNG key per step (used by keyed objectives such as β-DPO's
      filter). Pure, jit- and vmap-compatible.
    init_state: `init_state(key) -> state` (the empty tuple for stateless objectives).
    needs_value: whether the batch must carry a learned V(x) (`SingleBatch.values`).
    needs_labels: whether the objective reads binary labels (`SingleBatch.desirable`), so every example must
      have one (a reward alone is not enough).
  """
  fn: Callable
  init_state: Callable = lambda key: ()
  needs_value: bool = False
  needs_labels: bool = False


@dataclasses.dataclass(frozen=True)
class Family:
  """A family of objectives: the module that holds their maths, and how figures draw them."""
  name: str
  module: str
  color: str
  doc: str


@dataclasses.dataclass(frozen=True)
class Objective:
  """One declared objective.

  Attributes:
    name: its canonical name (unique within its family).
    family: a `FAMILIES` name.
    contract: a `CONTRACTS` name.
    build: `build(options: dict) -> Loss`, or None for contracts whose trainers call the family's own
      functions ("game", "density").
    aliases: other names for it.
    options: `((name, default), ...)` static options `build` accepts (anything else is refused).
    uses_label_smoothing: whether it reads ε (else a non-zero ε is refused).
    batch_coupled: whether an example's loss depends on the rest of the batch (a sort, a batch statistic).
    stateful: whether it carries state between steps (`Loss.init_state`).
    optimum: "rlhf" (π* ∝ π_ref e^{r/β}), "ipo" (the IPO closed form), or None (none known).
    display_name: the name figures and tables show (default: `name`).
    alias_display_names: `((alias, display name), ...)` where an alias has its own (cDPO).
    arxiv: the paper's arXiv id ("" for a method without one).
    formula: the per-example loss in one line.
    verified: what it was checked against (tests, reference implementations).
  """
  name: str
  family: str
  contract: str
  build: Optional[Callable] = None
  aliases: tuple = ()
  options: tuple = ()
  uses_label_smoothing: bool = False
  batch_coupled: bool = False
  stateful: bool = False
  optimum: Optional[str] = None
  display_name: str = ""
  alias_display_names: tuple = ()
  arxiv: str = ""
  formula: str = ""
  verified: str = ""

  def __post_init__(self):
    if not isinstance(self.name, str) or not self.name or ":" in self.name:
      raise PrefjaxError(f"objective name must be a non-empty string without ':', got {self.name!r}")
    if self.family not in FAMILIES:
      raise PrefjaxError(f"objective {self.name!r}: unknown family {self.family!r}; known: {sorted(FAMILIES)}")
    if self.contract not in CONTRACTS:
      raise PrefjaxError(f"objective {self.name!r}: unknown contract {self.contract!r}; known: "
                         f"{sorted(CONTRACTS)}")
    if self.optimum not in (None, "rlhf", "ipo"):
      raise PrefjaxError(f"objective {self.name!r}: optimum must be None, 'rlhf' or 'ipo', got {self.optimum!r}")
    if self.build is None and CONTRACTS[self.contract].batch_type is not None:
      raise PrefjaxError(f"objective {self.name!r}: contract {self.contract!r} needs a build function")
    object.__setattr__(self, "aliases", tuple(self.aliases))
    object.__setattr__(self, "options", tuple((str(k), v) for k, v in self.options))
    object.__setattr__(self, "alias_display_names", tuple(self.alias_display_names))
    if not self.display_name:
      object.__setattr__(self, "display_name", self.name)

  @property
  def qualified_name(self) -> str:
    return f"{self.family}:{self.name}"

  def loss(self, **options) -> Loss:
    """`build` with `options` over the declared defaults; an unknown option is a `PrefjaxError`."""
    if self.build is None:
      raise PrefjaxError(f"objective {self.name!r} (contract {self.contract!r}) has no per-batch loss: its "
                         f"trainers call prefjax.objectives.{self.family}'s functions")
    defaults = dict(self.options)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
      raise PrefjaxError(f"objective {self.name!r} does not take option(s) {unknown}; it takes "
                         f"{sorted(defaults) or 'none'}")
    return self.build({**defaults, **options})


CONTRACTS = types.MappingProxyType({c.name: c for c in _CONTRACT_LIST})

_FAMILY_LIST = (
    Family("pairwise", "prefjax.objectives.pairwise", "tab:blue",
           "offline pairwise objectives over (y_w, y_l), the DPO family with TRL's loss_type names"),
    Family("listwise", "prefjax.objectives.listwise", "tab:orange", "K responses per prompt: scores or rankings"),
    Family("distributional", "prefjax.objectives.ot", "tab:green",
           "distributional alignment (AOT) with convex optimal-transport costs"),
    Family("single", "prefjax.objectives.single", "tab:red", "single responses: binary feedback or rewards"),
    Family("margins", "prefjax.objectives.margins", "tab:purple", "soft and adaptive margins on pairs"),
    Family("cross_prompt", "prefjax.objectives.single", "tab:brown", "pairs within and across prompts"),
    Family("unlikelihood", "prefjax.objectives.single", "tab:pink", "pairs with token-level unlikelihood"),
    Family("nash", "prefjax.objectives.nash", "tab:olive", "Nash learning and self-play on preference games"),
    Family("density", "prefjax.objectives.density", "tab:cyan", "the density-estimation view of preferences"),
)
FAMILIES = types.MappingProxyType({f.name: f for f in _FAMILY_LIST})
FAMILY_ORDER = tuple(f.name for f in _FAMILY_LIST)

_BY_FAMILY: dict[str, dict[str, Objective]] = {f: {} for f in FAMILY_ORDER}
_ALIASES: dict[str, dict[str, str]] = {f: {} for f in FAMILY_ORDER}


def declare(objective: Objective, *, overwrite: bool = False) -> Objective:
  """Adds `objective` to the index and returns it; a taken name (or alias) in its family needs `overwrite`."""
  if not isinstance(objective, Objective):
    raise PrefjaxError(f"declare() takes an Objective, got {type(objective).__name__}")
  table, aliases = _BY_FAMILY[objective.family], _ALIASES[objective.family]
  for n in (objective.name,) + objective.aliases:
    taken = n in table or n in aliases
    if taken and not overwrite:
      raise PrefjaxError(f"{objective.family} objective {n!r} is already declared; pass overwrite=True to "
                         f"replace it")
  if overwrite:
    _remove(objective.family, objective.name)
    for a in objective.aliases:
      aliases.pop(a, None)
  table[objective.name] = objective
  for a in objective.aliases:
    aliases[a] = objective.name
  return objective


def _remove(family, name):
  table, aliases = _BY_FAMILY[family], _ALIASES[family]
  table.pop(name, None)
  for a in [a for a, target in aliases.items() if target == name]:
    del aliases[a]
  aliases.pop(name, None)


def undeclare(name: str) -> Objective:
  """Removes a declared objective (and its aliases) from the index; returns it."""
  objective = get(name)
  _remove(objective.family, objective.name)
  return objective


def _lookup(family, name):
  if name in _BY_FAMILY[family]:
    return _BY_FAMILY[family][name]
  if name in _ALIASES[family]:
    return _BY_FAMILY[family][_ALIASES[family][name]]
  return None


def _all_names():
  out = set()
  for family in FAMILY_ORDER:
    out.update(_BY_FAMILY[family])
    out.update(_ALIASES[family])
    out.update(f"{family}:{n}" for n in list(_BY_FAMILY[family]) + list(_ALIASES[family]))
  return sorted(out)


def get(name: str) -> Objective:
  """The declared objective called `name` (a name, an alias, or "family:name").

  Raises:
    PrefjaxError: for an unknown name, with a close match and where to find the list.
  """
  if isinstance(name, str):
    if ":" in name:
      family, _, bare = name.partition(":")
      if family in _BY_FAMILY:
        found = _lookup(family, bare)
        if found is not None:
          return found
    else:
      for family in FAMILY_ORDER:
        found = _lookup(family, name)
        if found is not None:
          return found
  message, candidates = f"unknown objective {name!r}", _all_names()
  if isinstance(name, str) and name.partition(":")[0] in _BY_FAMILY:
    family, _, bare = name.partition(":")
    message = f"unknown {family} objective {bare!r}"
    candidates = [f"{family}:{n}" for n in list(_BY_FAMILY[family]) + list(_ALIASES[family])]
  if isinstance(name, str):
    close = difflib.get_close_matches(name, candidates, n=1)
    if close:
      message += f" (did you mean {close[0]!r}?)"
  raise PrefjaxError(f"{message}; prefjax.objectives.list_objectives() lists them, docs/objectives.md "
                     f"describes them")


def canonical(name: str) -> str:
  """The canonical name of `name` (an alias gives the name it stands for)."""
  return get(name).name


def list_objectives(family: Optional[str] = None, contract: Optional[str] = None, *,
                    aliases: bool = False) -> list[str]:
  """Names of the declared objectives, in declaration order by family.

  Args:
    family: only this family's (a `FAMILIES` name).
    contract: only this contract's (a `CONTRACTS` name).
    aliases: include aliases.

  Returns:
    Names; a name that a family declared earlier in `FAMILY_ORDER` also uses is given as "family:name".
  """
  if family is not None and family not in FAMILIES:
    raise PrefjaxError(f"unknown objective family {family!r}; known: {list(FAMILY_ORDER)}")
  if contract is not None and contract not in CONTRACTS:
    raise PrefjaxError(f"unknown data contract {contract!r}; known: {list(CONTRACTS)}")
  out, taken = [], set()  # names (and aliases) of the families declared earlier
  for fam in FAMILY_ORDER:
    for obj in _BY_FAMILY[fam].values():
      if (family is None or fam == family) and (contract is None or obj.contract == contract):
        for n in (obj.name,) + (obj.aliases if aliases else ()):
          out.append(n if n not in taken else f"{fam}:{n}")
    taken.update(_BY_FAMILY[fam])
    taken.update(_ALIASES[fam])
  return out


def objectives(family: Optional[str] = None, contract: Optional[str] = None) -> list[Objective]:
  """The declarations themselves, filtered like `list_objectives` (no aliases)."""
  return [get(n) for n in list_objectives(family, contract)]


def display_name(name: str) -> str:
  """The display name of objective `name` (an alias's own where it has one); unknown names are returned as given."""
  try:
    objective = get(name)
  except PrefjaxError:
    return name
  bare = name.partition(":")[2] if ":" in name else name
  return dict(objective.alias_display_names).get(bare, objective.display_name)


_PSI = {"rlhf": "logit", "ipo": "identity"}


def optimum_kind(name: str, label_smoothing: float = 0.0) -> Optional[str]:
  """"rlhf" or "ipo" where objective `name`'s population optimum is known in closed form, else None.

  Label smoothing ε > 0 moves the optimum of the objectives that read it, so they have none known then.
  """
  try:
    objective = get(name)
  except PrefjaxError:
    return None
  if objective.uses_label_smoothing and label_smoothing:
    return None
  return objective.optimum


def optimum_psi(name: str, label_smoothing: float = 0.0) -> Optional[str]:
  """The ΨPO Ψ ("logit" for the RLHF optimum, "identity" for IPO's) of `optimum_kind`, or None."""
  kind = optimum_kind(name, label_smoothing)
  return None if kind is None else _PSI[kind]


def check_contract(name: str, supported, trainer: str) -> Objective:
  """The objective `name` if its contract is one of `supported`; else a `PrefjaxError` naming both."""
  objective = get(name)
  if objective.contract not in supported:
    raise PrefjaxError(f"{trainer} cannot train objective {name!r}: its data contract is "
                       f"{objective.contract!r} ({CONTRACTS[objective.contract].holds}); {trainer} feeds the "
                       f"contracts {list(supported)}")
  return objective


# ----------------------------------------------------------------------------------------------------
# The generated reference (docs/objectives.md).
# ----------------------------------------------------------------------------------------------------


def _cell(text):
  return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table() -> str:
  """docs/objectives.md: every declared objective, grouped by family, and the contracts."""
  lines = ["# Objectives", "",
           "Generated from the objective index (`prefjax.objectives.spec`); do not edit by hand. Regenerate "
           "with `python -m prefjax.objectives.spec > docs/objectives.md` (tests/test_objective_spec.py fails "
           "when this file is stale). How to add one: docs/adding_an_objective.md.", "",
           "## Data contracts", "", "| contract | one example holds | LM JSONL row |", "|---|---|---|"]
  for c in _CONTRACT_LIST:
    lines.append(f"| `{c.name}` | {_cell(c.holds)} | {_cell(c.jsonl) or '—'} |")
  for fam in _FAMILY_LIST:
    declared = list(_BY_FAMILY[fam.name].values())
    if not declared:
      continue
    lines += ["", f"## {fam.name}", "", f"{fam.doc[0].upper() + fam.doc[1:]} (`{fam.module}`).", "",
              "| name | aliases | contract | formula | paper | optimum | ε | coupled / stateful | verified against |",
              "|---|---|---|---|---|---|---|---|---|"]
    for o in declared:
      flags = ", ".join(f for f, on in (("batch-coupled", o.batch_coupled), ("stateful", o.stateful)) if on)
      paper = f"[{o.arxiv}](https://arxiv.org/abs/{o.arxiv})" if o.arxiv else "—"
      lines.append(f"| `{o.name}` ({_cell(o.display_name)}) | {', '.join(f'`{a}`' for a in o.aliases) or '—'} "
                   f"| `{o.contract}` | {_cell(o.formula) or '—'} | {paper} | {o.optimum or '—'} "
                   f"| {'yes' if o.uses_label_smoothing else '—'} | {flags or '—'} | {_cell(o.verified) or '—'} |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  # The package's own copy of this module holds the declarations (this file runs as a second copy, __main__).
  from prefjax.objectives import spec as _declared  # pylint: disable=g-import-not-at-top
  print(_declared.markdown_table(), end="")

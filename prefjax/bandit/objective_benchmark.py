"""Every registered preference objective trained on the same contextual-bandit data, with exact metrics.

`run_objective_benchmark(config, workdir)` (experiment `objective_benchmark`) draws one
contextual preference bandit (`prefjax.bandit.contextual`), and for every objective of every family trains a
feature policy (linear or MLP, logits offset by log π_ref) with Adam on mini-batches of prompts from an
offline dataset sampled from π_ref. Every objective sees the same datasets (the dataset of seed s is drawn
from seed s's key, whatever the objective) and is evaluated exactly: oracle reward, KL(π ‖ π_ref), win rate
against π_ref, TV distance to π*_β ∝ π_ref e^{r̄/β}, and the FSD violation of the policy's reward distribution
against π_ref's.

Objectives come from the objective index (`prefjax.objectives.spec`) by name, and reach the benchmark
through one adapter per data contract (`ADAPTERS`), not per family:

| contract | what the adapter builds from the bandit's data | objectives (today) |
|---|---|---|
| pair | the pair (y_1, y_2) with its BT label | pairwise (DPO, IPO, rDPO, AOT, ...), distributional (`aot_paired_<cost>`, `aot_unpaired_<cost>`), margins (`beta_dpo`, `gamma_po`) |
| scored_pair | the labelled pair with both responses' scores | `mmpo` (soft target σ(γ (score_w − score_l))) |
| ranking | all K responses with their PL ranking (rank-labelled objectives) or graded labels K−1−rank (or the scalar scores, `config.listwise_labels = "scores"`) for reward-labelled ones | listwise (InfoNCA, NCA, PL, PRO, LiPO-λ, MPO) |
| single | each labelled pair as two single responses, y_w a thumbs-up and y_l a thumbs-down, each with its score; DRO's value V(x) = w·[c_x, 1] is trained with the policy | `dro` (DRO-V), `bco` |
| cross_prompt | each prompt's labelled pair and one pair across prompts (`jpo_pairs`) | `jpo` |
| token | the labelled pair and the policy's whole distribution (a response is one token) | `cringe` (pairwise Cringe) |

A family (summary.json's "family", the figure's colour) is the objective's declared family. Stateful and
keyed objectives carry their state through the training scan (β-DPO's running margin statistics, BCO's
running reward shift δ, JPO's annotator key) and get a fresh PRNG key per step (β-DPO's filter, Cringe's
top-k sampling); γ-PO's margins come from each batch's reward gaps (the official history queue is not used).
Options not swept by the config are the declarations' defaults (`BETA_DPO_DEFAULTS`, `GAMMA_PO_DEFAULTS`,
`CRINGE_DEFAULTS`, MMPO's γ = 1), overridable per objective in `config.objective_settings`.

Each objective is run on one grid of "settings" (label-noise rate ε, number of prompts used) that holds the
main run, the label-noise sweep and the ranked-data (prompt-count) sweep; the datasets have `num_prompts`
prompts and a setting with fewer prompts trains on the first ones. Settings × seeds are vmapped and all
objectives are one XLA program (one compilation), as in `prefjax.bandit.train.make_sweep`.

Workdir:
- config.json; metrics.jsonl — one line per (objective, setting, recorded step), seed means of the metrics;
- arrays.npz — `steps` [R]; `settings_noise` [H], `settings_prompts` [H]; `frontier_beta` [F],
  `frontier_kl` [F], `frontier_reward` [F] (π*_β' for a grid of β'); and per objective
  `{objective}__{metric}` [H, S, R] for metric in loss, reward, kl, win_rate, tv_to_optimum, fsd_violation
  (settings × seeds × recorded steps);
- summary.json — the reference policy's and π*_β's metrics, per objective the seed-mean final metrics with
  95% t-intervals (main setting), the label-noise sweep (with each seed's final reward, and the verdict of
  `label_noise_verdict`: whether the best robust objective beats DPO at the highest noise, decided by the
  95% interval of the paired per-seed difference, so "no significant difference" when it contains 0), the
  ranked-data sweep (prompts each objective needs to reach `target_gain` of π*_β's reward gain over π_ref,
  with the range the 95% intervals allow, and whether listwise objectives need fewer than DPO: only when
  those ranges separate, `ranked_data_verdict`), and the run time;
- table.md, figure.png (Pareto front: oracle reward vs KL, one marker per objective, π*_β' frontier; the
  label-noise and ranked-data sweeps);
- status.json (the workdir contract of `prefjax.workdir`; `validate_objective_benchmark` checks the whole
  config before anything is written).
"""

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from prefjax import jit_utils
from prefjax.bandit import contextual
from prefjax.bandit import train as train_lib
from prefjax.errors import PrefjaxError
from prefjax.objectives import spec
from prefjax.objectives.margins import BETA_DPO_DEFAULTS  # noqa: F401  (the defaults now live with the objective)
from prefjax.objectives.margins import GAMMA_PO_DEFAULTS  # noqa: F401
from prefjax.objectives.registry import Registry
from prefjax.objectives.single import CRINGE_DEFAULTS  # noqa: F401

METRICS = ("loss",) + contextual.Evaluation._fields
MAIN, NOISE, PROMPTS = "main", "label_noise", "ranked_data"


# ----------------------------------------------------------------------------------------------------
# Adapters: one per data contract (`prefjax.objectives.spec.CONTRACTS`), from the bandit's data to the
# contract's batch. Objectives come from the objective index by name; no family has its own adapter.
# ----------------------------------------------------------------------------------------------------


class Batch(NamedTuple):
  """What an adapter sees for B prompts (the policy's and reference's log-probs and the labels).

  Attributes:
    logp: `[B, K]` log π(y_k | x).
    ref_logp: `[B, K]` log π_ref(y_k | x).
    data: the `contextual.Dataset` rows of the batch.
  """
  logp: jax.Array
  ref_logp: jax.Array
  data: contextual.Dataset
  values: jax.Array = None  # `[B]` V(x) for objectives with a value function (DRO), else None.
  log_probs: jax.Array = None  # `[B, N]` log π(· | x) over all N responses (token-level Cringe), else None.
  index: jax.Array = None  # `[B]` int32 dataset rows of the batch (JPO's fixed cross-prompt labels).


class BenchHParams(NamedTuple):
  """Swept values of one setting (scalars; `sweep` adds leading axes)."""
  beta: jax.Array
  lr: jax.Array
  label_smoothing: jax.Array
  noise: jax.Array
  num_prompts: jax.Array  # int32: train on the first num_prompts prompts of the dataset.


def _pair(batch):
  """(chosen, rejected) log-probs of policy and reference from columns 0/1 and the pair label."""
  c = batch.data.chosen[:, None]
  pick = lambda x, i: jnp.take_along_axis(x[:, :2], i, axis=1)[:, 0]
  return pick(batch.logp, c), pick(batch.logp, 1 - c), pick(batch.ref_logp, c), pick(batch.ref_logp, 1 - c)


def _pair_batch(batch):
  pw, pl, rw, rl = _pair(batch)
  ones = jnp.ones_like(pw)
  c = batch.data.chosen[:, None]
  s = batch.data.scores[:, :2]
  return spec.PairBatch(pw, pl, rw, rl, ones, ones, jnp.take_along_axis(s, c, 1)[:, 0],
                        jnp.take_along_axis(s, 1 - c, 1)[:, 0])


def _ranking_batch(batch, labels):
  k = batch.logp.shape[1]
  ranks = batch.data.ranks
  # Graded labels ψ = K − 1 − rank (higher is better) from the ranking, or the scalar scores.
  rewards = (k - 1 - ranks).astype(batch.logp.dtype) if labels == "ranks" else batch.data.scores
  return spec.RankingBatch(batch.logp, batch.ref_logp, rewards=rewards, ranks=ranks)


def _single_batch(batch):
  """Each labelled pair as two single responses: y_w a thumbs-up, y_l a thumbs-down, each with its score."""
  p = _pair_batch(batch)
  both = lambda a, b: jnp.concatenate([a, b])
  desirable = both(jnp.ones_like(p.policy_chosen_logps, bool), jnp.zeros_like(p.policy_rejected_logps, bool))
  values = None if batch.values is None else both(batch.values, batch.values)
  return spec.SingleBatch(both(p.policy_chosen_logps, p.policy_rejected_logps),
                          both(p.ref_chosen_logps, p.ref_rejected_logps), desirable=desirable,
                          rewards=both(p.chosen_scores, p.rejected_scores), values=values)


def jpo_pairs(batch, label_key):
  """JPO's cross-prompt pairs of a batch: (x_b, y_b1) against (x_b', y_b'1), b' = b + 1 mod B.

  The joint annotator scores each dataset row's first response once, u = score + Gumbel noise, the noise
  drawn from `label_key` folded with the row index (so a row's score is fixed for the whole run); the pair's
  label is u_b > u_b'. With Gumbel noise P(row b wins) = σ(score_b − score_b'): Bradley–Terry on the
  (possibly flipped) utilities of two different prompts.

  Args:
    batch: `Batch` with `index`.
    label_key: PRNG key, constant over the run.

  Returns:
    `(policy_chosen, ref_chosen, policy_rejected, ref_rejected)`, `[B]` each.
  """
  noise = jax.vmap(lambda i: jax.random.gumbel(jax.random.fold_in(label_key, i)))(batch.index)
  utility = batch.data.scores[:, 0] + noise.astype(batch.data.scores.dtype)
  partner = lambda x: jnp.roll(x, -1)
  wins = utility > partner(utility)
  logp, ref = batch.logp[:, 0], batch.ref_logp[:, 0]
  pick = lambda a, b: jnp.where(wins, a, b)
  return (pick(logp, partner(logp)), pick(ref, partner(ref)), pick(partner(logp), logp),
          pick(partner(ref), ref))


def _cross_prompt_batch(batch, label_key):
  pw, rw, pl, rl = jpo_pairs(batch, label_key)
  return spec.CrossPromptBatch(_pair_batch(batch), spec.PairBatch(pw, pl, rw, rl))


def _token_batch(batch):
  c = batch.data.chosen[:, None]
  rejected = jnp.take_along_axis(batch.data.responses[:, :2], 1 - c, axis=1)  # [B, 1]: the "token" y_l
  return spec.TokenPairBatch(_pair_batch(batch), batch.log_probs[:, None, :], rejected,
                             jnp.ones(rejected.shape, batch.logp.dtype))


@dataclasses.dataclass(frozen=True)
class Adapter:
  """How the benchmark feeds one data contract.

  Attributes:
    data_format: the data in words (summary.json's "data").
    make_batch: `(Batch, adapter_state, **options) -> the contract's batch`.
    options: `((name, default), ...)` the adapter's own options (data choices, not the objective's).
    init_state: `(key) -> adapter_state` (JPO's annotator key), default none.
    needs_log_probs: whether `Batch.log_probs` (the policy's whole distribution) is needed.
  """
  data_format: str
  make_batch: Callable
  options: tuple = ()
  init_state: Callable = lambda key: ()
  needs_log_probs: bool = False


ADAPTERS = {
    "pair": Adapter("pairs", lambda b, st: _pair_batch(b)),
    "scored_pair": Adapter("pairs with both responses' scores", lambda b, st: _pair_batch(b)),
    "ranking": Adapter("rankings", lambda b, st, labels: _ranking_batch(b, labels), (("labels", "ranks"),)),
    "single": Adapter("single responses (each pair's y_w thumbs-up, y_l thumbs-down, with scores)",
                      lambda b, st: _single_batch(b)),
    "cross_prompt": Adapter("pairs within and across prompts", _cross_prompt_batch,
                            init_state=lambda key: key),  # The joint annotator's noise key, fixed per run.
    "token": Adapter("pairs, token level", lambda b, st: _token_batch(b), needs_log_probs=True),
}


def make_loss(name, options=()):
  """The benchmark's loss for objective `name`: `loss(Batch, BenchHParams, state, key) -> (scalar, state)`.

  `options` mix the objective's options (its declaration's `options`) and the contract adapter's (the
  ranking adapter's `labels`: "ranks" or "scores"); anything else is a `PrefjaxError`. The loss has
  `init_state(key)`, and `needs_value` / `needs_log_probs` when the trainer must provide V(x) or the policy's
  whole distribution.
  """
  objective = spec.check_contract(name, tuple(ADAPTERS), "the bandit objective benchmark")
  adapter = ADAPTERS[objective.contract]
  options = dict(options)
  adapter_options = {k: options.pop(k, default) for k, default in adapter.options}
  if "labels" in adapter_options and adapter_options["labels"] not in ("ranks", "scores"):
    raise PrefjaxError(f"listwise labels must be 'ranks' or 'scores', got {adapter_options['labels']!r}")
  built = objective.loss(**options)

  def loss(batch, hp, state, key):
    adapter_state, loss_state = state
    losses, loss_state = built.fn(adapter.make_batch(batch, adapter_state, **adapter_options),
                                  spec.HParams(hp.beta, hp.label_smoothing), loss_state, key)
    return losses.mean(), (adapter_state, loss_state)

  loss.init_state = lambda key: (adapter.init_state(key), built.init_state(key))
  loss.needs_value = built.needs_value
  loss.needs_log_probs = adapter.needs_log_probs
  return loss


@dataclasses.dataclass(frozen=True)
class Family:
  """A family's view for the benchmark: its objectives that a contract adapter feeds (from the index)."""
  name: str

  def names(self):
    """Canonical names of the family's objectives the benchmark can train (sorted)."""
    return sorted(n for n in spec.list_objectives(self.name) if spec.get(n).contract in ADAPTERS)

  def make_loss(self, name, options=()):
    objective = spec.get(name if ":" in name else f"{self.name}:{name}")
    return make_loss(objective.qualified_name, options)

  def uses_label_smoothing(self, name):
    return spec.get(f"{self.name}:{name}").uses_label_smoothing

  @property
  def data_format(self):
    contracts = sorted({spec.get(f"{self.name}:{n}").contract for n in self.names()})
    return "; ".join(ADAPTERS[c].data_format for c in contracts)


FAMILIES: Registry[Family] = Registry("objective family")
for _family in spec.FAMILY_ORDER:
  if any(o.contract in ADAPTERS for o in spec.objectives(_family)):
    FAMILIES.register(_family, Family(_family))
del _family


def available_families():
  """Names of the families the benchmark trains (those with an objective of a fed contract), sorted."""
  return FAMILIES.names()


def list_benchmark_objectives():
  """{objective name: family name} for every objective of every benchmark family."""
  out = {}
  for family in available_families():
    for name in FAMILIES.get(family).names():
      out.setdefault(name, family)
  return out


def resolve_objective(name):
  """The family of objective `name` (an alias is kept as given); `family:name` forces a family.

  Unknown names, and objectives whose contract the benchmark does not feed, are a `PrefjaxError`.
  """
  if ":" in name:
    family, _, bare = name.partition(":")
    FAMILIES.get(family)
    objective = spec.get(name)
    spec.check_contract(name, tuple(ADAPTERS), "the bandit objective benchmark")
    return objective.family, bare
  objective = spec.check_contract(name, tuple(ADAPTERS), "the bandit objective benchmark")
  return objective.family, name


# ----------------------------------------------------------------------------------------------------
# Training: a whole run as one pure function; settings × seeds vmapped; objectives in one program.
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  """Static settings of a run (changing one recompiles)."""
  num_prompts: int = 256
  k: int = 4
  score_noise: float = 0.0
  policy: str = "linear"
  hidden: int = 32
  num_steps: int = 2000
  batch_size: int = 32
  record_every: int = 500
  optimizer: str = "adam"


def make_train(loss_fn, config):
  """Returns `train(key, hparams, params) -> metrics`: sample data, train, evaluate exactly.

  Args:
    loss_fn: `loss(Batch, BenchHParams) -> scalar`, or (with an `init_state(key)` attribute) the stateful
      protocol of `make_loss`: `loss(Batch, BenchHParams, state, key) -> (scalar, state)`.
    config: `BenchConfig`.

  Returns:
    A pure function of a PRNG key, scalar `BenchHParams` and `contextual.ContextualParams`, returning a dict
    metric → `[R + 1]` (recorded every `record_every` steps and at step 0), metrics `METRICS` and `step`.
  """
  if config.optimizer not in train_lib.OPTIMIZERS:
    raise PrefjaxError(f"unknown optimizer {config.optimizer!r}; known: {sorted(train_lib.OPTIMIZERS)}")
  if config.num_steps <= 0 or config.record_every <= 0 or config.num_steps % config.record_every:
    raise PrefjaxError(
        f"num_steps ({config.num_steps}) must be a positive multiple of record_every ({config.record_every})")
  if config.batch_size <= 0:
    raise PrefjaxError(f"batch_size must be positive, got {config.batch_size}")
  transform = train_lib.OPTIMIZERS[config.optimizer]()
  num_records = config.num_steps // config.record_every
  needs_value = getattr(loss_fn, "needs_value", False)
  needs_log_probs = getattr(loss_fn, "needs_log_probs", False)
  init_state = getattr(loss_fn, "init_state", None)  # Stateful / keyed losses (see `make_loss`).

  def train(key, hp, params):
    k_data, k_init, k_steps, k_loss = jax.random.split(key, 4)  # The first three as split(key, 3).
    data = contextual.sample_dataset(k_data, params, config.num_prompts, config.k, noise=hp.noise,
                                     score_noise=config.score_noise)
    policy = contextual.init_policy(k_init, config.policy, params.features.shape[-1], config.hidden)
    if needs_value:  # V(x) = w·[c_x, 1], trained jointly (DRO).
      policy = dict(policy, value=jnp.zeros((params.context_features.shape[-1] + 1,), jnp.float32))
    k_state, k_loss_steps = jax.random.split(k_loss)
    loss_state = () if init_state is None else init_state(k_state)

    def batch_loss(policy, rows, index, loss_state, loss_key):
      logits = contextual.policy_logits(policy, params)
      ctx = rows.context[:, None]
      values = None
      if needs_value:
        c = params.context_features[rows.context]
        values = c @ policy["value"][:-1] + policy["value"][-1]
      batch = Batch(logits[ctx, rows.responses], params.ref_logits[ctx, rows.responses], rows, values,
                    logits[rows.context] if needs_log_probs else None, index)
      if init_state is None:
        return loss_fn(batch, hp), loss_state
      return loss_fn(batch, hp, loss_state, loss_key)

    grad_fn = jax.value_and_grad(batch_loss, has_aux=True)

    def step(carry, t):
      policy, opt_state, loss_state = carry
      idx = jax.random.randint(jax.random.fold_in(k_steps, t), (config.batch_size,), 0, hp.num_prompts)
      (loss, loss_state), grads = grad_fn(policy, jax.tree.map(lambda a: a[idx], data), idx, loss_state,
                                          jax.random.fold_in(k_loss_steps, t))
      updates, opt_state = transform.update(grads, opt_state, policy)
      policy = jax.tree.map(lambda p, u: p - hp.lr * u, policy, updates)
      return (policy, opt_state, loss_state), loss

    def snapshot(policy, step_count, loss):
      ev = contextual.evaluate(contextual.policy_logits(policy, params), params, hp.beta)
      return dict(ev._asdict(), loss=jnp.asarray(loss, jnp.float32), step=jnp.asarray(step_count, jnp.int32))

    def record(carry, r):
      carry, losses = jax.lax.scan(step, carry, r * config.record_every + jnp.arange(config.record_every))
      return carry, (snapshot(carry[0], (r + 1) * config.record_every, losses.mean()), losses[0])

    carry = (policy, transform.init(policy), loss_state)
    _, (rest, first_losses) = jax.lax.scan(record, carry, jnp.arange(num_records))
    first = snapshot(policy, 0, first_losses[0])
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)

  return train


def make_sweep(trains, fast_compile=False):
  """`sweep(keys [S], [BenchHParams [H]], params) -> [metrics [H, S, R+1]]`, every objective in one program."""

  def over_grid(fn):
    return jax.vmap(jax.vmap(fn, in_axes=(0, None, None)), in_axes=(None, 0, None))

  grids = [over_grid(fn) for fn in trains]

  def run_all(keys, hparams, params):
    return [grid(keys, hp, params) for grid, hp in zip(grids, hparams)]

  sweep = jax.jit(run_all)
  return jit_utils.compile_fast(sweep) if fast_compile else sweep


# ----------------------------------------------------------------------------------------------------
# The experiment.
# ----------------------------------------------------------------------------------------------------
#
# `run_objective_benchmark`, its verdicts and table.md live in `prefjax.runs.objective_benchmark`, the figure
# (`plot_benchmark`) in `prefjax.plotting.benchmark`; their names resolve here too, imported on first use (both
# modules import this one).

_RUNNER_NAMES = (
    "LOSS", "TIE", "UNDETERMINED", "WIN", "_fmt", "_frontier", "_gain", "_hparams", "_needed", "_noise_rate",
    "_noise_verdict_line", "_objective_list", "_plain", "_settings", "_stats", "compare", "format_table",
    "label_noise_verdict", "make_env", "ranked_data_verdict", "run_objective_benchmark",
    "validate_objective_benchmark")
_FIGURE_NAMES = ("FAMILY_COLORS", "_sweep_lines", "plot_benchmark")


def __getattr__(name):
  if name in _RUNNER_NAMES:
    from prefjax.runs import objective_benchmark as runner  # pylint: disable=g-import-not-at-top
    return getattr(runner, name)
  if name in _FIGURE_NAMES:
    from prefjax.plotting import benchmark as figure  # pylint: disable=g-import-not-at-top
    return getattr(figure, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

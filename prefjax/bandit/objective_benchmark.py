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
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefjax import config_checks as cc
from prefjax import intervals
from prefjax import jit_utils
from prefjax import preemption
from prefjax import workdir as workdir_lib
from prefjax.bandit import contextual
from prefjax.bandit import train as train_lib
from prefjax.errors import PrefjaxError
from prefjax.objectives import spec
from prefjax.objectives.margins import BETA_DPO_DEFAULTS  # noqa: F401  (the defaults now live with the objective)
from prefjax.objectives.margins import GAMMA_PO_DEFAULTS  # noqa: F401
from prefjax.objectives.pairwise import PAIRWISE_REGISTRY
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


def _settings(config):
  """The grid [(kind, noise, num_prompts)] of the main run and both sweeps (deduplicated, kinds merged)."""
  grid = {}
  grid.setdefault((float(config.main_noise), int(config.num_prompts)), []).append(MAIN)
  for eps in config.label_noise_levels:
    grid.setdefault((float(eps), int(config.num_prompts)), []).append(NOISE)
  for m in config.prompt_counts:
    grid.setdefault((0.0, int(m)), []).append(PROMPTS)
  return [(kinds, noise, m) for (noise, m), kinds in sorted(grid.items())]


def _noise_rate(config, field, value):
  ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
  if not ok or not 0.0 <= float(value) < 0.5:
    raise PrefjaxError(f"config.{field}: label-noise rates must lie in [0, 0.5), got {value!r}")


def validate_objective_benchmark(config):
  """Checks every field `run_objective_benchmark` reads; raises a one-line `PrefjaxError` naming the field.

  Beyond types and ranges: every objective resolves to a family and builds its loss with its options (no
  compilation), label smoothing is given only to objectives that read it and lies in their range, the
  prompt counts fit the datasets, K fits the bandit, and record_every divides num_steps.
  """
  cc.string(config, "name")
  # The bandit.
  cc.integer(config, "env_seed")
  cc.integer(config, "num_contexts", low=1)
  num_responses = cc.integer(config, "num_responses", low=2)
  cc.integer(config, "context_dim", low=1)
  cc.choice(config, "reward_kind", contextual.REWARD_KINDS)
  cc.positive(config, "reward_scale")
  cc.number(config, "ref_scale", low=0)
  cc.integer(config, "num_annotators", low=1)
  # The data.
  num_prompts = cc.integer(config, "num_prompts", low=1)
  k = cc.integer(config, "responses_per_prompt")
  if not 2 <= k <= num_responses:
    raise PrefjaxError(f"K mismatch: config.responses_per_prompt = {k} must lie in "
                       f"[2, num_responses = {num_responses}]")
  cc.number(config, "score_noise", low=0)
  cc.choice(config, "listwise_labels", ("ranks", "scores"))
  # The policy and its training.
  cc.choice(config, "policy", contextual.POLICY_KINDS)
  cc.positive_int(config, "hidden")
  cc.positive(config, "beta", "lr")
  cc.choice(config, "optimizer", train_lib.OPTIMIZERS)
  cc.positive_int(config, "num_steps", "batch_size", "record_every", "num_seeds")
  cc.divides(config, "record_every", "num_steps")
  cc.integer(config, "seed")
  cc.boolean(config, "fast_compile", "figure")
  # The sweeps.
  _noise_rate(config, "main_noise", cc.get(config, "main_noise"))
  levels = cc.get(config, "label_noise_levels")
  if isinstance(levels, (str, bytes)) or not isinstance(levels, (list, tuple)):
    raise PrefjaxError(f"config.label_noise_levels must be a list of numbers like (0.0, 0.2), got {levels!r}")
  for i, eps in enumerate(levels):
    _noise_rate(config, f"label_noise_levels[{i}]", eps)
  counts = cc.get(config, "prompt_counts")
  if isinstance(counts, (str, bytes)) or not isinstance(counts, (list, tuple)):
    raise PrefjaxError(f"config.prompt_counts must be a list of whole numbers like (8, 32), got {counts!r}")
  for i, m in enumerate(counts):
    whole = isinstance(m, (int, float, np.integer, np.floating)) and not isinstance(m, bool) and float(m) == int(m)
    if not whole or not 1 <= int(m) <= num_prompts:
      raise PrefjaxError(f"config.prompt_counts entries must lie in [1, num_prompts = {num_prompts}], "
                         f"got {m!r} (config.prompt_counts[{i}])")
  cc.names(config, "robust_objectives", non_empty=False)
  cc.string(config, "baseline_objective", non_empty=True)
  cc.number(config, "target_gain", low=0, high=1, low_open=True)
  # The objectives: names, families, options and label smoothing.
  cc.names(config, "exclude_objectives", non_empty=False)
  if not hasattr(config.objective_settings, "get"):
    raise PrefjaxError(f"config.objective_settings must be a dict, got {config.objective_settings!r}")
  try:
    objective_list = _objective_list(config)
  except PrefjaxError as e:
    raise PrefjaxError(str(e) if str(e).startswith("config.") else f"config.objectives: {e}") from None
  for label, family, name, options, eps in objective_list:
    try:
      FAMILIES.get(family).make_loss(name, options)
    except PrefjaxError as e:
      raise PrefjaxError(f"config.objectives: {label!r}: {e} (config.objective_settings.{label})") from None
    except TypeError as e:
      raise PrefjaxError(f"config.objectives: {label!r}: bad option in config.objective_settings.{label}: "
                         f"{e}") from None
    try:
      hash(options)
    except TypeError:
      raise PrefjaxError(f"config.objective_settings.{label}: options must be numbers or names, got "
                         f"{dict(options)}") from None
    if family == "pairwise" and eps not in (0, 0.0, "noise"):
      allowed = PAIRWISE_REGISTRY.get(name).label_smoothing
      if not (np.isfinite(float(eps)) and allowed.contains(float(eps))):
        raise PrefjaxError(f"config.objective_settings.{label}.label_smoothing must lie in {allowed} for "
                           f"{name!r}, got {eps!r}")


def _objective_list(config):
  """[(label, family, name, options, label_smoothing)] of `config.objectives` ('all' expands)."""
  labels = []
  for entry in cc.names(config, "objectives"):
    if entry == "all":
      labels += [n for n in list_benchmark_objectives() if n not in tuple(config.exclude_objectives)]
    elif entry.endswith(":all"):
      family = entry[:-4]
      FAMILIES.get(family)
      labels += [n for n in FAMILIES.get(family).names() if n not in tuple(config.exclude_objectives)]
    else:
      labels.append(entry)
  if not labels:
    raise PrefjaxError("config.objectives selects no objective")
  if len(set(labels)) != len(labels):
    raise PrefjaxError(f"config.objectives names an objective twice: {labels}")
  out = []
  for label in labels:
    settings = config.objective_settings.get(label, {})
    if not hasattr(settings, "items"):
      raise PrefjaxError(f"config.objective_settings.{label} must be a dict of settings, got {settings!r}")
    settings = dict(settings.to_dict() if hasattr(settings, "to_dict") else settings)
    objective = settings.pop("objective", label)
    if not isinstance(objective, str):
      raise PrefjaxError(f"config.objective_settings.{label}.objective must be an objective name, got "
                         f"{objective!r}")
    family, name = resolve_objective(objective)
    eps = settings.pop("label_smoothing", 0.0)
    if eps != "noise" and (not isinstance(eps, (int, float)) or isinstance(eps, bool)):
      raise PrefjaxError(f"objective_settings[{label!r}].label_smoothing must be a number or 'noise'")
    if family == "listwise":
      settings.setdefault("labels", config.listwise_labels)
    fam = FAMILIES.get(family)
    if eps not in (0, 0.0) and not fam.uses_label_smoothing(name):
      raise PrefjaxError(f"objective {label!r} does not use label smoothing, got {eps!r}")
    out.append((label, family, name, tuple(sorted(settings.items())), eps))
  return out


def _hparams(config, settings, eps):
  noise = np.asarray([s[1] for s in settings], np.float32)
  smoothing = noise if eps == "noise" else np.full_like(noise, float(eps))
  n = len(settings)
  return BenchHParams(beta=jnp.full((n,), config.beta, jnp.float32), lr=jnp.full((n,), config.lr, jnp.float32),
                      label_smoothing=jnp.asarray(smoothing), noise=jnp.asarray(noise),
                      num_prompts=jnp.asarray([s[2] for s in settings], jnp.int32))


def make_env(config):
  """The benchmark's bandit from `config` (its own seed, so every run of a config sees the same bandit)."""
  return contextual.make_params(
      jax.random.PRNGKey(config.env_seed), num_contexts=config.num_contexts,
      num_responses=config.num_responses, context_dim=config.context_dim, reward_kind=config.reward_kind,
      reward_scale=config.reward_scale, ref_scale=config.ref_scale, num_annotators=config.num_annotators)


def _frontier(params, betas):
  evs = [contextual.evaluate(contextual.optimal_logits(params, b), params, b) for b in betas]
  return np.asarray([float(e.kl) for e in evs]), np.asarray([float(e.reward) for e in evs])


def _stats(x):
  mean, half = intervals.t_interval(np.asarray(x, np.float64), axis=0)
  return {"mean": float(mean), "ci95": None if not np.isfinite(half) else float(half)}


@workdir_lib.experiment(validate=validate_objective_benchmark)
def run_objective_benchmark(config, wd):
  """Runs the benchmark described by `config` and writes the workdir (see the module docstring).

  Called as `run_objective_benchmark(config, workdir, *, overwrite=False, command=None)`
  (`prefjax.workdir.experiment`: validated first, a finished run of the same config is returned as it is).
  """
  t_start = time.time()
  objective_list = _objective_list(config)
  settings = _settings(config)
  params = make_env(config)
  bench = BenchConfig(num_prompts=config.num_prompts, k=config.responses_per_prompt,
                      score_noise=config.score_noise, policy=config.policy, hidden=config.hidden,
                      num_steps=config.num_steps, batch_size=config.batch_size,
                      record_every=config.record_every, optimizer=config.optimizer)
  trains = [make_train(FAMILIES.get(family).make_loss(name, options), bench)
            for _, family, name, options, _ in objective_list]
  hparams = [_hparams(config, settings, eps) for *_, eps in objective_list]
  keys = jax.random.split(jax.random.PRNGKey(config.seed), config.num_seeds)
  print(f"objective_benchmark: {len(trains)} objectives x {len(settings)} settings x {config.num_seeds} seeds "
        f"x {config.num_steps} steps", flush=True)
  t0 = time.time()
  outputs = make_sweep(trains, fast_compile=config.fast_compile)(keys, hparams, params)
  outputs = jax.tree.map(np.asarray, outputs)
  train_seconds = time.time() - t0
  print(f"trained (compile + run) in {train_seconds:.1f}s", flush=True)
  preemption.check("after training, before writing the results")

  frontier_betas = np.geomspace(config.beta / 8, config.beta * 64, 25)
  f_kl, f_reward = _frontier(params, frontier_betas)
  arrays = {"steps": outputs[0]["step"][0, 0], "settings_noise": np.asarray([s[1] for s in settings]),
            "settings_prompts": np.asarray([s[2] for s in settings]), "frontier_beta": frontier_betas,
            "frontier_kl": f_kl, "frontier_reward": f_reward}
  for (label, *_), out in zip(objective_list, outputs):
    for m in METRICS:
      arrays[f"{label}__{m}"] = out[m]
    for h, (kinds, noise, prompts) in enumerate(settings):
      for r, step in enumerate(arrays["steps"]):
        wd.append_metrics({"objective": label, "noise": noise, "num_prompts": prompts, "step": int(step),
                           **{m: float(out[m][h, :, r].mean()) for m in METRICS}})
  wd.write_arrays(arrays)

  ref_eval = contextual.evaluate(params.ref_logits, params, config.beta)
  opt_eval = contextual.evaluate(contextual.optimal_logits(params, config.beta), params, config.beta)
  summary = {
      "experiment": config.name, "beta": config.beta, "num_seeds": config.num_seeds,
      "num_steps": config.num_steps, "policy": config.policy,
      "reference": {k: float(v) for k, v in ref_eval._asdict().items()},
      "optimum": {k: float(v) for k, v in opt_eval._asdict().items()},
      "settings": [{"kinds": k, "noise": n, "num_prompts": m} for k, n, m in settings],
      "objectives": [], "train_seconds": train_seconds,
  }
  main = next(h for h, s in enumerate(settings) if MAIN in s[0])
  for (label, family, name, options, eps), out in zip(objective_list, outputs):
    entry = {"objective": label, "family": family, "name": name, "data": FAMILIES.get(family).data_format,
             "options": dict(options), "label_smoothing": eps}
    entry.update({m: _stats(out[m][main, :, -1]) for m in METRICS})
    entry[NOISE] = [{"noise": s[1], **{m: _stats(out[m][h, :, -1]) for m in ("reward", "win_rate", "tv_to_optimum")},
                     # Every objective sees the same datasets per seed: verdicts compare seeds pairwise.
                     "reward_per_seed": [float(v) for v in out["reward"][h, :, -1]]}
                    for h, s in enumerate(settings) if NOISE in s[0]]
    entry[PROMPTS] = [{"num_prompts": s[2], **{m: _stats(out[m][h, :, -1]) for m in ("reward", "tv_to_optimum")}}
                      for h, s in enumerate(settings) if PROMPTS in s[0]]
    summary["objectives"].append(entry)
  summary["label_noise_verdict"] = label_noise_verdict(summary, config)
  summary["ranked_data_verdict"] = ranked_data_verdict(summary, config)
  summary["seconds"] = time.time() - t_start
  wd.write_summary(summary)
  wd.write_text("table.md", format_table(summary))
  if config.figure:
    plot_benchmark(wd)
  summary["seconds"] = time.time() - t_start
  wd.write_summary(summary)
  print(f"objective_benchmark done in {summary['seconds']:.1f}s", flush=True)
  return summary


def _gain(reward, summary):
  """Fraction of π*_β's reward gain over π_ref that a policy's reward achieves."""
  ref, opt = summary["reference"]["reward"], summary["optimum"]["reward"]
  return (reward - ref) / (opt - ref)


WIN, LOSS, TIE, UNDETERMINED = "wins", "loses", "no significant difference", "undetermined"


def compare(a_seeds=None, b_seeds=None, a_stats=None, b_stats=None, level=0.95):
  """Whether A beats B in seed-mean oracle reward, respecting the intervals; returns (verdict, difference).

  With per-seed values of both (the same datasets and seeds: a paired design), the verdict reads the
  Student-t `level` interval of the per-seed difference A − B: WIN when it lies above 0, LOSS below 0, TIE
  ("no significant difference") when it contains 0. Without them (a summary written before the per-seed
  values were stored) the two `{"mean", "ci95"}` intervals must separate for a WIN or LOSS. UNDETERMINED when
  there is no interval (one seed). `difference` is `{"mean", "half_width", "level"}`: the seed-mean
  difference and the half-width of its `level` interval (None without per-seed values).
  """
  if a_seeds is not None and b_seeds is not None and len(a_seeds) == len(b_seeds):
    d = np.asarray(a_seeds, np.float64) - np.asarray(b_seeds, np.float64)
    mean, half = intervals.t_interval(d, axis=0, level=level)
    diff = {"mean": float(mean), "half_width": None if not np.isfinite(half) else float(half), "level": level}
    if diff["half_width"] is None:
      return UNDETERMINED, diff
    if mean - half > 0:
      return WIN, diff
    if mean + half < 0:
      return LOSS, diff
    return TIE, diff
  if a_stats is None or b_stats is None or a_stats.get("ci95") is None or b_stats.get("ci95") is None:
    return UNDETERMINED, None
  if a_stats["mean"] - a_stats["ci95"] > b_stats["mean"] + b_stats["ci95"]:
    return WIN, None
  if a_stats["mean"] + a_stats["ci95"] < b_stats["mean"] - b_stats["ci95"]:
    return LOSS, None
  return TIE, None


def label_noise_verdict(summary, config):
  """At the highest noise: the best robust objective (by seed-mean oracle reward) vs the baseline (DPO).

  The verdict (`compare`) reads the interval of the paired per-seed difference at family-wise level 95% over
  the robust objectives compared (Bonferroni: each interval at 1 − 0.05/m, since the best of m is selected):
  "wins" only when that interval lies above 0, "no significant difference" when it contains 0.
  """
  by_label = {e["objective"]: e for e in summary["objectives"]}
  levels = [float(e) for e in config.label_noise_levels]
  if not levels or config.baseline_objective not in by_label:
    return None
  robust = [r for r in config.robust_objectives if r in by_label and r != config.baseline_objective]
  if not robust:
    return None
  top = max(levels)
  at = lambda label: next(x for x in by_label[label][NOISE] if x["noise"] == top)
  base = at(config.baseline_objective)
  level = 1 - 0.05 / len(robust)
  verdicts = {}
  for r in robust:
    v, d = compare(at(r).get("reward_per_seed"), base.get("reward_per_seed"), at(r)["reward"], base["reward"],
                   level=level)
    verdicts[r] = {"verdict": v, "difference": d}
  best = max(robust, key=lambda r: at(r)["reward"]["mean"])
  ranking = sorted(by_label, key=lambda l: -at(l)["reward"]["mean"])
  return {"noise": top, "baseline": config.baseline_objective, "baseline_reward": _plain(base["reward"]),
          "best_robust": best, "best_robust_reward": _plain(at(best)["reward"]),
          "difference": verdicts[best]["difference"], "verdict": verdicts[best]["verdict"],
          "family_wise_level": 0.95, "num_compared": len(robust),
          "robust_beats_baseline": verdicts[best]["verdict"] == WIN,
          "robust_verdicts": {r: v["verdict"] for r, v in verdicts.items()},
          "robust_rewards": {r: at(r)["reward"]["mean"] for r in robust},
          "ranking_by_reward": ranking}


def _plain(stats):
  return {"mean": stats["mean"], "ci95": stats["ci95"]}


def _needed(entry, summary, target):
  """Prompts needed to reach `target` gain: (by the seed mean, optimistic low, conservative high), None = never.

  The low end is the first P whose upper 95% bound reaches the target, the high end the first P whose lower
  bound does (None when no interval: one seed).
  """
  rows = sorted(entry[PROMPTS], key=lambda x: x["num_prompts"])
  first = lambda ok: next((x["num_prompts"] for x in rows if ok(x)), None)
  by_mean = first(lambda x: _gain(x["reward"]["mean"], summary) >= target)
  if any(x["reward"]["ci95"] is None for x in rows):
    return by_mean, None, None
  low = first(lambda x: _gain(x["reward"]["mean"] + x["reward"]["ci95"], summary) >= target)
  high = first(lambda x: _gain(x["reward"]["mean"] - x["reward"]["ci95"], summary) >= target)
  return by_mean, low, high


def ranked_data_verdict(summary, config):
  """Prompts each objective needs to reach `target_gain` of π*'s reward gain; listwise vs the baseline.

  A listwise objective needs "fewer" prompts than the baseline only when the ranges the 95% intervals allow
  separate (its conservative count below the baseline's optimistic one; never reaching the target counts as
  more than every P), "more" in the mirror case, otherwise "no significant difference" ("undetermined" with
  one seed).
  """
  if not config.prompt_counts:
    return None
  needed, ranges = {}, {}
  for e in summary["objectives"]:
    by_mean, low, high = _needed(e, summary, config.target_gain)
    needed[e["objective"]] = by_mean
    ranges[e["objective"]] = [low, high]
  big = 10 * max(config.prompt_counts)
  inf = lambda v: big if v is None else v
  base = ranges.get(config.baseline_objective)
  verdicts = {}
  for e in summary["objectives"]:
    if e["family"] != "listwise":
      continue
    low, high = ranges[e["objective"]]
    if base is None or any(x["reward"]["ci95"] is None for x in e[PROMPTS]):
      verdicts[e["objective"]] = UNDETERMINED
    elif inf(high) < inf(base[0]):
      verdicts[e["objective"]] = "fewer"
    elif inf(base[1]) < inf(low):
      verdicts[e["objective"]] = "more"
    else:
      verdicts[e["objective"]] = TIE
  return {"target_gain": config.target_gain, "prompts_needed": needed, "prompts_needed_range": ranges,
          "baseline": config.baseline_objective, "listwise_vs_baseline": verdicts,
          "listwise_fewer_than_baseline": {k: v == "fewer" for k, v in verdicts.items()}}


# ----------------------------------------------------------------------------------------------------
# Table and figure (read back from the workdir).
# ----------------------------------------------------------------------------------------------------


def _fmt(s):
  if s["ci95"] is None:
    return f"{s['mean']:.3f}"
  return f"{s['mean']:.3f} ± {s['ci95']:.3f}"


def format_table(summary):
  """Markdown: the main setting's metrics per objective (seed mean ± 95% CI), then both sweeps."""
  lines = [f"β = {summary['beta']:g}, policy = {summary['policy']}, {summary['num_seeds']} seeds. "
           f"π_ref: reward {summary['reference']['reward']:.3f}; π*_β: reward {summary['optimum']['reward']:.3f}, "
           f"KL {summary['optimum']['kl']:.3f}, win rate {summary['optimum']['win_rate']:.3f}.", "",
           "| objective | family | data | oracle reward | KL(π‖π_ref) | win rate vs π_ref | TV to π* | FSD violation |",
           "|---|---|---|---|---|---|---|---|"]
  for e in sorted(summary["objectives"], key=lambda e: -e["reward"]["mean"]):
    lines.append(f"| {e['objective']} | {e['family']} | {e['data']} | {_fmt(e['reward'])} | {_fmt(e['kl'])} | "
                 f"{_fmt(e['win_rate'])} | {_fmt(e['tv_to_optimum'])} | {_fmt(e['fsd_violation'])} |")
  noise = summary["objectives"][0][NOISE]
  if noise:
    levels = [x["noise"] for x in noise]
    lines += ["", "Label-noise sweep: oracle reward (seed mean) at flip rate ε", "",
              "| objective | " + " | ".join(f"ε = {n:g}" for n in levels) + " |",
              "|---|" + "---|" * len(levels)]
    for e in summary["objectives"]:
      lines.append(f"| {e['objective']} | " + " | ".join(f"{x['reward']['mean']:.3f}" for x in e[NOISE]) + " |")
    v = summary.get("label_noise_verdict")
    if v:
      lines += ["", _noise_verdict_line(summary, v)]
  prompts = summary["objectives"][0][PROMPTS]
  if prompts:
    counts = [x["num_prompts"] for x in prompts]
    lines += ["", "Ranked-data sweep: oracle reward (seed mean) with P prompts", "",
              "| objective | " + " | ".join(f"P = {m}" for m in counts) + " |", "|---|" + "---|" * len(counts)]
    for e in summary["objectives"]:
      lines.append(f"| {e['objective']} | " + " | ".join(f"{x['reward']['mean']:.3f}" for x in e[PROMPTS]) + " |")
    v = summary.get("ranked_data_verdict")
    if v:
      most = max(counts)
      show = lambda n: f">{most}" if n is None else str(n)
      ranges = v.get("prompts_needed_range", {})
      def needed(k, n):
        low, high = ranges.get(k) or (None, None)
        return f"{k} {show(n)}" + ("" if low is None and high is None else f" [{show(low)}–{show(high)}]")

      lines += ["", f"Prompts needed to reach {v['target_gain']:.0%} of π*'s reward gain (seed mean; in brackets "
                f"the range the 95% intervals allow): "
                + ", ".join(needed(k, n) for k, n in v["prompts_needed"].items()) + "."]
      verdicts = v.get("listwise_vs_baseline")
      if verdicts:
        lines.append(f"Listwise vs {v['baseline']}: " + ", ".join(
            f"{k} needs {w} prompts" if w in ("fewer", "more") else f"{k}: {w}" for k, w in verdicts.items())
                     + ".")
  return "\n".join(lines) + "\n"


def _noise_verdict_line(summary, v):
  """The label-noise verdict sentence of table.md (old summaries: the verdict from the two intervals)."""
  verdict = v.get("verdict")
  diff = v.get("difference")
  if verdict is None:  # A summary written before the verdict read the intervals.
    verdict, diff = compare(a_stats=v["best_robust_reward"], b_stats=v["baseline_reward"])
  if diff is not None and diff.get("half_width") is not None:
    how = (f"paired difference over seeds {diff['mean']:+.3f} ± {diff['half_width']:.3f} "
           f"({v.get('family_wise_level', 0.95):.0%} family-wise over {v.get('num_compared', 1)} robust "
           f"objective(s): each at {diff['level']:.2%})")
  else:
    how = "the two 95% intervals" + (" overlap" if verdict == TIE else "")
  said = {WIN: "robust wins", LOSS: "robust loses", TIE: "no significant difference",
          UNDETERMINED: "undetermined (one seed: no interval)"}[verdict]
  return (f"At ε = {v['noise']:g}: best robust objective {v['best_robust']} ({_fmt(v['best_robust_reward'])}) "
          f"vs {v['baseline']} ({_fmt(v['baseline_reward'])}); {how}: {said}.")


# Colours by family, from the objective index's family declarations.
FAMILY_COLORS = {name: family.color for name, family in spec.FAMILIES.items()}


def _sweep_lines(ax, shown, sweep, x_key):
  """One errorbar line per objective; a line equal to one drawn before gets its own dashes and marker, and the
  legend says which it coincides with ("robust (= sigmoid)"), so no line hides under another unannounced."""
  styles = [("-", "o"), ("--", "x"), (":", "s"), ("-.", "^")]
  drawn = []
  for e in shown:
    xs = [x[x_key] for x in e[sweep]]
    ys = np.asarray([x["reward"]["mean"] for x in e[sweep]])
    same = [name for name, other in drawn if other.shape == ys.shape and np.allclose(other, ys, atol=1e-6)]
    ls, marker = styles[min(len(same), len(styles) - 1)]
    label = e["objective"] + (f" (= {', '.join(same)})" if same else "")
    ax.errorbar(xs, ys, yerr=[x["reward"]["ci95"] or 0 for x in e[sweep]], marker=marker, ls=ls, capsize=2,
                label=label)
    drawn.append((e["objective"], ys))


def plot_benchmark(workdir, out="figure.png", highlight=("sigmoid", "ipo", "robust", "cdpo", "plackett_luce",
                                                          "infonca")):
  """Pareto (oracle reward vs KL, one marker per objective, π*_β' frontier) and both sweeps → `out`.

  `workdir` is a path or the run's `prefjax.workdir.Workdir` (then the figure is recorded in status.json).
  The legend lists only what is drawn: the families of the plotted objectives.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from prefjax import results  # pylint: disable=g-import-not-at-top

  wd = workdir if isinstance(workdir, workdir_lib.Workdir) else workdir_lib.Workdir(workdir)
  summary = results.load_summary(wd.path)
  arrays = results.load_arrays(wd.path)
  has_noise = bool(summary["objectives"][0][NOISE])
  has_prompts = bool(summary["objectives"][0][PROMPTS])
  panels = 1 + has_noise + has_prompts
  fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 5.2), squeeze=False)
  ax = axes[0, 0]
  ax.plot(arrays["frontier_kl"], arrays["frontier_reward"], "k-", lw=1, label="π*_β' (KL-optimal front)")
  ax.plot([summary["optimum"]["kl"]], [summary["optimum"]["reward"]], "k*", ms=12,
          label=f"π*_β, β = {summary['beta']:g}")
  ax.plot([0], [summary["reference"]["reward"]], "ks", ms=7, label="π_ref")
  markers = "ovD^<>phPX*"
  points = {}  # Objectives at the same point (e.g. rDPO = DPO without noise) share one label.
  for i, e in enumerate(summary["objectives"]):
    color = FAMILY_COLORS.get(e["family"], "tab:gray")
    ax.errorbar(e["kl"]["mean"], e["reward"]["mean"], xerr=e["kl"]["ci95"] or 0, yerr=e["reward"]["ci95"] or 0,
                fmt=markers[i % len(markers)], color=color, ms=6, capsize=2, alpha=0.85)
    points.setdefault((round(e["kl"]["mean"], 6), round(e["reward"]["mean"], 6)), []).append(e["objective"])
  for (kl, reward), names in points.items():
    ax.annotate(" = ".join(names), (kl, reward), fontsize=7, xytext=(3, 3), textcoords="offset points")
  drawn = list(dict.fromkeys(e["family"] for e in summary["objectives"]))
  for family in drawn:  # Only the families plotted (one entry per family; markers differ per objective).
    ax.plot([], [], "o", color=FAMILY_COLORS.get(family, "tab:gray"), label=f"{family} (colour)")
  max_kl = max([summary["optimum"]["kl"]] + [e["kl"]["mean"] for e in summary["objectives"]])
  ax.set_xlim(-0.05 * max_kl, 1.6 * max_kl)
  ax.set_xlabel("KL(π ‖ π_ref)")
  ax.set_ylabel("oracle reward E r̄")
  ax.set_title("Pareto: oracle reward vs KL (seed mean ± 95% CI)")
  ax.legend(fontsize=7, loc="lower right")
  shown = [e for e in summary["objectives"] if e["objective"] in highlight] or summary["objectives"][:6]
  col = 1
  if has_noise:
    ax = axes[0, col]
    col += 1
    _sweep_lines(ax, shown, NOISE, "noise")
    ax.axhline(summary["optimum"]["reward"], color="k", lw=0.8, ls="--", label="π*_β")
    ax.set_xlabel("label flip rate ε")
    ax.set_ylabel("oracle reward")
    ax.set_title("Label-noise sweep")
    ax.legend(fontsize=7)
  if has_prompts:
    ax = axes[0, col]
    _sweep_lines(ax, shown, PROMPTS, "num_prompts")
    ax.axhline(summary["optimum"]["reward"], color="k", lw=0.8, ls="--", label="π*_β")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("prompts in the dataset")
    ax.set_ylabel("oracle reward")
    ax.set_title("Ranked-data sweep")
    ax.legend(fontsize=7)
  fig.tight_layout()
  path = wd.file(out)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path

"""A whole bandit training run as one pure function, vmapped over hyper-parameters × seeds.

`make_train(config, env)` returns `train(key, hparams, env_params, ref_logits) -> (final_state, metrics)`:
a tabular softmax policy (logits `[X, N]`, one row per context) trained on pairs sampled from `env` with any
registered pairwise objective (`prefjax.objectives.pairwise_loss`) and an optax gradient transformation.
Swept scalars (β, learning rate, label smoothing) are array arguments in `HParams`, so sweeps vmap without
recompiling; shapes, step counts and the objective's name are static (`TrainConfig`). Metrics are recorded
every `record_every` steps inside the scan so memory stays bounded (docs/design.md §3; purejaxrl's `make_train`).
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from prefjax import jit_utils
from prefjax import objectives
from prefjax.objectives import spec
from prefjax.envs import bandit
from prefjax.errors import PrefjaxError
from prefjax.games import tabular


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Static settings of a bandit run (changing one recompiles).

  Attributes:
    objective: registered pairwise objective name, or a tuple of (name, weight) pairs.
    num_steps: optimiser steps; a multiple of `record_every`.
    batch_size: pairs per step.
    record_every: steps between recorded metrics.
    optimizer: key of `OPTIMIZERS` (the learning rate is applied outside it, so it can be swept).
    objective_kwargs: static keyword arguments of the objective (divergence, length_normalize, alpha, ...),
      as a tuple of (key, value) pairs so the config stays hashable.
    count_batches: on a small fixed dataset with a per-example objective, draw each batch as the counts of
      every row (`prefjax.envs.bandit.BatchCounts`: the same distribution as sampling B rows with
      replacement, for one random word per step instead of B) and weight the rows' losses by them.
  """
  objective: Any = "ipo"
  num_steps: int = 1000
  batch_size: int = 9
  record_every: int = 100
  optimizer: str = "adam"
  objective_kwargs: tuple = ()
  count_batches: bool = True


class HParams(NamedTuple):
  """Swept scalars (each a float array; leading axes are added by `sweep`)."""
  beta: jax.Array
  lr: jax.Array
  label_smoothing: jax.Array


class TrainState(NamedTuple):
  logits: jax.Array  # [X, N] policy logits, one row per context.
  opt_state: Any


class Metrics(NamedTuple):
  """Recorded every `record_every` steps, plus step 0: a leading axis of size num_steps/record_every + 1."""
  step: jax.Array  # [R] optimiser steps taken.
  policy: jax.Array  # [R, X, N] π(y | x).
  loss: jax.Array  # [R] mean batch loss over the steps since the last record (step 0: first batch at init).
  kl: jax.Array  # [R] KL(π ‖ π_ref) averaged over contexts.


# Optimisers without their learning rate (`updates ← −lr · transform(grads)`), so lr is a traced scalar.
OPTIMIZERS = {
    "adam": optax.scale_by_adam,
    "sgd": optax.identity,
    "rmsprop": optax.scale_by_rms,
}


def make_hparams(beta, lr, label_smoothing=0.0):
  """Builds `HParams` from scalars or arrays of the same shape (float32)."""
  beta, lr, label_smoothing = (jnp.asarray(v, jnp.float32) for v in (beta, lr, label_smoothing))
  shape = jnp.broadcast_shapes(beta.shape, lr.shape, label_smoothing.shape)
  return HParams(*(jnp.broadcast_to(v, shape) for v in (beta, lr, label_smoothing)))


def make_train(config, env):
  """Returns `train(key, hparams, env_params, ref_logits) -> (TrainState, Metrics)`.

  Args:
    config: `TrainConfig`.
    env: a `PairDataset` or `PreferenceBandit` (anything with `sample(key, params, batch_size) -> Pairs`).

  Returns:
    A pure function: `key` a PRNG key, `hparams` scalar `HParams`, `env_params` the env's params,
    `ref_logits` `[X, N]` reference (and initial) logits. The policy starts at π_ref.
  """
  if config.optimizer not in OPTIMIZERS:
    raise PrefjaxError(f"unknown optimizer {config.optimizer!r}; known: {sorted(OPTIMIZERS)}")
  if config.num_steps <= 0 or config.record_every <= 0 or config.num_steps % config.record_every:
    raise PrefjaxError(
        f"num_steps ({config.num_steps}) must be a positive multiple of record_every ({config.record_every})")
  if config.batch_size <= 0:
    raise PrefjaxError(f"batch_size must be positive, got {config.batch_size}")
  declared = _check_objective(config)
  transform = OPTIMIZERS[config.optimizer]()
  objective_kwargs = dict(config.objective_kwargs)
  declared_loss = None if declared is None else declared.loss(**objective_kwargs)
  num_records = config.num_steps // config.record_every

  def batch_loss(logits, pairs, ref_chosen, ref_rejected, weights, hparams):
    """Σ_i weights_i ℓ_i over the pairs `[B]` (weights 1/B for a sampled batch); reference log-probs given."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    ones = jnp.ones(pairs.chosen.shape, jnp.float32)  # A bandit action is one token.
    chosen, rejected = logp[pairs.context, pairs.chosen], logp[pairs.context, pairs.rejected]
    if declared_loss is None:
      losses = objectives.pairwise_loss(
          config.objective, chosen, rejected, ref_chosen, ref_rejected, beta=hparams.beta,
          label_smoothing=hparams.label_smoothing, chosen_lengths=ones, rejected_lengths=ones, **objective_kwargs)
    else:  # Another family's pair-contract objective, through its declared loss.
      losses, _ = declared_loss.fn(spec.PairBatch(chosen, rejected, ref_chosen, ref_rejected, ones, ones),
                                   spec.HParams(hparams.beta, hparams.label_smoothing), (), None)
    return jnp.sum(weights * losses)

  grad_fn = jax.value_and_grad(batch_loss)

  def apply(state, loss_and_grads, hparams):
    loss, grads = loss_and_grads
    updates, opt_state = transform.update(grads, state.opt_state, state.logits)
    return TrainState(state.logits - hparams.lr * updates, opt_state), loss

  def train(key, hparams, env_params, ref_logits):
    ref_logits = jnp.asarray(ref_logits, jnp.float32)
    state = TrainState(logits=ref_logits, opt_state=transform.init(ref_logits))
    counter = _batch_counter(config, env, env_params)

    ref_logp = jax.nn.log_softmax(ref_logits, axis=-1)  # Computed once, outside the step loop.

    if counter is None:  # Materialise each sampled batch.
      uniform = jnp.full((config.batch_size,), 1.0 / config.batch_size)

      def step(state, t):
        pairs = env.sample(jax.random.fold_in(key, t), env_params, config.batch_size)
        ref_chosen = ref_logp[pairs.context, pairs.chosen]
        ref_rejected = ref_logp[pairs.context, pairs.rejected]
        loss_and_grads = grad_fn(state.logits, pairs, ref_chosen, ref_rejected, uniform, hparams)
        return apply(state, loss_and_grads, hparams)

      def chunk_inputs(r):
        return r * config.record_every + jnp.arange(config.record_every)
    else:  # Weight every dataset row by its count in the batch: one random word per step.
      rows = env.rows(env_params)
      ref_chosen = ref_logp[rows.context, rows.chosen]
      ref_rejected = ref_logp[rows.context, rows.rejected]

      def step(state, bits):
        weights = counter.sample(bits).astype(jnp.float32) / config.batch_size
        loss_and_grads = grad_fn(state.logits, rows, ref_chosen, ref_rejected, weights, hparams)
        return apply(state, loss_and_grads, hparams)

      def chunk_inputs(r):
        return jax.random.bits(jax.random.fold_in(key, r), (config.record_every,), jnp.uint32)

    def record(state, r):
      state, losses = jax.lax.scan(step, state, chunk_inputs(r))
      snapshot = _snapshot(state.logits, ref_logits, (r + 1) * config.record_every, jnp.mean(losses))
      return state, (snapshot, losses[0])

    init_state = state
    state, (rest, first_losses) = jax.lax.scan(record, state, jnp.arange(num_records))
    # Step 0: the initial policy, with the loss of the first batch before any update.
    first = _snapshot(init_state.logits, ref_logits, 0, first_losses[0])
    metrics = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    return state, metrics

  return train


def _batch_counter(config, env, env_params):
  """The exact count sampler when batches of a small fixed dataset can be drawn as counts, else None.

  Needs a per-example objective (AOT's sort couples the batch) and a `PairDataset` whose batches have at most
  `BatchCounts.build`'s number of distinct count vectors; `config.count_batches=False` turns it off.
  """
  if not (config.count_batches and isinstance(env, bandit.PairDataset)):
    return None
  if objectives.is_batch_coupled(config.objective):
    return None
  return bandit.BatchCounts.build(env_params.chosen.shape[0], config.batch_size)


def _snapshot(logits, ref_logits, step, loss):
  return Metrics(step=jnp.asarray(step, jnp.int32), policy=jax.nn.softmax(logits, axis=-1),
                 loss=jnp.asarray(loss, jnp.float32),
                 kl=jnp.mean(tabular.kl_from_logits(logits, ref_logits)))


# The data contracts this trainer feeds (`prefjax.objectives.spec.CONTRACTS`).
CONTRACTS = ("pair",)


def _check_objective(config):
  """Fails early, outside any trace, on an unknown objective, another contract or bad static arguments.

  Returns the index's declaration for a pair-contract objective outside the pairwise registry (trained
  through its declared loss), None for the registry's names and combinations (`pairwise_loss` with its
  switches).
  """
  if isinstance(config.objective, str):
    declared = spec.check_contract(config.objective, CONTRACTS, "the bandit trainer")
    if config.objective not in objectives.PAIRWISE_LOSSES:
      if declared.stateful:
        raise PrefjaxError(f"objective {config.objective!r} carries state between steps; the tabular bandit "
                           f"trainer does not (the objective benchmark, prefjax.bandit.objective_benchmark, does)")
      declared.loss(**dict(config.objective_kwargs))
      return declared
  one = jnp.zeros((1,), jnp.float32)
  objectives.pairwise_loss(config.objective, one, one, one, one, beta=1.0, chosen_lengths=one + 1,
                           rejected_lengths=one + 1, **dict(config.objective_kwargs))
  return None


def make_sweep(train, fast_compile=False):
  """Returns a jitted `sweep(keys, hparams, env_params, ref_logits)` over hyper-parameters × seeds.

  `keys` is `[S]` PRNG keys (one per seed), `hparams` an `HParams` with a leading axis `[H]`; env params and
  reference logits are shared. The result `(TrainState, Metrics)` has leading axes `[H, S]`: one jitted call
  runs every setting and seed (`jit(vmap(vmap(train)))`, docs/design.md §3).

  `train` may also be a list of train functions (several objectives on the same env); then `hparams` is a
  list with one `HParams` per function and the result a list of `(TrainState, Metrics)`. All of them are
  compiled as one XLA program, which compiles several times faster than one program per objective.

  Args:
    train: from `make_train`, or a list of them.
    fast_compile: compile with XLA's backend optimisation level 0 — about twice as fast to compile and
      several times slower to run; for short runs (tests, `:quick` variants) whose time is compilation.
  """

  def over_grid(fn):
    return jax.vmap(jax.vmap(fn, in_axes=(0, None, None, None)), in_axes=(None, 0, None, None))

  if callable(train):
    sweep = jax.jit(over_grid(train))
  else:
    grids = [over_grid(fn) for fn in train]

    def run_all(keys, hparams, env_params, ref_logits):
      return [grid(keys, hp, env_params, ref_logits) for grid, hp in zip(grids, hparams)]

    sweep = jax.jit(run_all)
  return jit_utils.compile_fast(sweep) if fast_compile else sweep

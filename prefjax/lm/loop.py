"""The one training loop of the LM trainers, and the optimiser configuration they share.

A trainer is a jitted `step(state, batch) -> (state, metrics)` plus `run`: the offline trainer
(`prefjax.lm.train.train`) and the online / self-play trainer (`prefjax.lm.online.train_online`) differ only in
their state, their step, how a batch is prepared on the host and which metrics they record. `run` does the
rest, the same way for every trainer:

- resume: the latest checkpoint in `<workdir>/checkpoints` (orbax, `prefjax.checkpoint.Checkpointer`)
  restores the state pytree and the data iterator's position; metrics.jsonl is cut back to the restored step
  (a step is never recorded twice);
- evaluation at step 0 (a fresh run), every `eval_every` steps and at the end, logged as eval/<name>;
- a metrics record every `log_every` steps (and at every evaluation and the last step) appended to
  metrics.jsonl, with a progress line;
- checkpoints every `checkpoint_every` steps, at the end, and when SIGTERM / SIGINT arrive
  (`prefjax.preemption`: the step in flight finishes, is checkpointed, and `Preempted` is raised);
- bad numbers: the step reports a problem (`check(metrics, step)` returns an exception, e.g. a non-finite
  loss, `NonFiniteError`); the state the step returns is the last good one (steps do not apply a bad update), which
  is checkpointed before the exception is raised.

`OptimConfig` holds the fields both trainers' configs share (the optimiser, the schedule, the loop's cadence
and the seed); `prefjax.lm.train.TrainConfig` and `prefjax.lm.online.OnlineConfig` extend it with their own
fields, so a config keeps its flat field names (`--config.train.learning_rate`). The two differ in one
default: the offline trainer decays its learning rate (`schedule="cosine"`), the online trainer keeps it
constant.
"""

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np
import optax

from prefjax import checkpoint as ckpt
from prefjax import preemption
from prefjax.errors import PrefjaxError
from prefjax.workdir import Workdir

CHECKPOINTS = "checkpoints"


class NonFiniteError(PrefjaxError):
  """Training hit a non-finite loss or gradient; the last good state is checkpointed."""


def _cosine(cfg):
  return optax.warmup_cosine_decay_schedule(
      0.0, cfg.learning_rate, max(cfg.warmup_steps, 0), max(cfg.num_steps, cfg.warmup_steps + 1),
      end_value=cfg.learning_rate * cfg.min_lr_ratio)


def _linear(cfg):
  return optax.join_schedules([
      optax.linear_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1)),
      optax.linear_schedule(cfg.learning_rate, cfg.learning_rate * cfg.min_lr_ratio,
                            max(cfg.num_steps - cfg.warmup_steps, 1))], [cfg.warmup_steps])


def _constant(cfg):
  if cfg.warmup_steps == 0:
    return optax.constant_schedule(cfg.learning_rate)
  return optax.join_schedules([
      optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps),
      optax.constant_schedule(cfg.learning_rate)], [cfg.warmup_steps])


SCHEDULES = {"cosine": _cosine, "linear": _linear, "constant": _constant}


def make_optimizer(cfg):
  """AdamW with the configured schedule and global-norm clipping; returns `(tx, schedule)`."""
  schedule = SCHEDULES[cfg.schedule](cfg)
  parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
  parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay))
  return optax.chain(*parts), schedule


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """The optimiser (AdamW, `make_optimizer`), its schedule and the loop's cadence.

  Attributes:
    num_steps: optimiser steps.
    learning_rate: peak learning rate.
    schedule: "cosine", "linear" or "constant" after `warmup_steps` of linear warm-up from 0.
    warmup_steps: linear warm-up steps.
    min_lr_ratio: final learning rate / peak for the decaying schedules.
    grad_clip: global-norm clipping threshold (0 disables).
    weight_decay: AdamW decoupled weight decay.
    b1, b2, eps: Adam moments.
    log_every: steps between metrics records and progress lines.
    eval_every: steps between evaluations (0: only at the start and end).
    checkpoint_every: steps between checkpoints (0: only at the end and on SIGTERM/SIGINT / bad numbers).
    keep_checkpoints: how many checkpoints to keep.
    seed: data order and PRNG key.
  """
  num_steps: int = 100
  learning_rate: float = 1e-4
  schedule: str = "cosine"
  warmup_steps: int = 0
  min_lr_ratio: float = 0.0
  grad_clip: float = 1.0
  weight_decay: float = 0.0
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  log_every: int = 1
  eval_every: int = 0
  checkpoint_every: int = 0
  keep_checkpoints: int = 2
  seed: int = 0

  def __post_init__(self):
    name = type(self).__name__
    for field in ("num_steps", "log_every", "keep_checkpoints"):
      v = getattr(self, field)
      if not isinstance(v, (int, np.integer)) or v < 1:
        raise PrefjaxError(f"{name}.{field} must be a positive integer, got {v!r}")
    for field in ("warmup_steps", "eval_every", "checkpoint_every"):
      v = getattr(self, field)
      if not isinstance(v, (int, np.integer)) or v < 0:
        raise PrefjaxError(f"{name}.{field} must be an integer >= 0, got {v!r}")
    if self.schedule not in SCHEDULES:
      raise PrefjaxError(f"{name}.schedule: unknown {self.schedule!r}; known: {sorted(SCHEDULES)}")
    if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
            and self.learning_rate > 0):
      raise PrefjaxError(f"{name}.learning_rate must be finite and > 0, got {self.learning_rate!r}")
    if not self.grad_clip >= 0:
      raise PrefjaxError(f"{name}.grad_clip must be >= 0, got {self.grad_clip}")
    if not 0 <= self.min_lr_ratio <= 1:
      raise PrefjaxError(f"{name}.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


class LoopResult(NamedTuple):
  state: Any
  history: list  # the metrics records written this call
  preempted: bool  # always False: SIGTERM/SIGINT raise `prefjax.preemption.Preempted` after saving
  resumed_from: Optional[int]


def abstract_state(state):
  """Shapes, dtypes and shardings of `state`: the target a checkpoint is restored into."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def run(cfg, workdir, state, iterator, step: Callable, *, meta=None, prepare: Optional[Callable] = None,
        check: Optional[Callable] = None, record: Optional[Callable] = None,
        evaluate: Optional[Callable] = None, progress: Optional[Callable] = None,
        on_save: Optional[Callable] = None, on_step: Optional[Callable] = None, verbose=True):
  """Trains (or resumes) for `cfg.num_steps` optimiser steps; writes metrics.jsonl and checkpoints/.

  Args:
    cfg: an `OptimConfig` (num_steps, the cadence fields, keep_checkpoints).
    workdir: directory (str or `Workdir`).
    state: the freshly initialised state pytree, with a `step` field (int32 scalar: optimiser steps taken);
      replaced by the latest checkpoint's when there is one.
    iterator: yields host batches; `state()` (a JSON dict) / `restore(state)` keep its position.
    step: `step(state, batch) -> (state, metrics)`, usually jitted; the returned state must be the last
      good one when `check` reports a problem.
    meta: a JSON dict stored beside each checkpoint (e.g. the model and trainer configs).
    prepare: `prepare(batch) -> batch` on the host before the timed step (checks, reference-cache lookups).
    check: `check(metrics, step, state) -> exception or None` on the fetched metrics (pops the fields it
      reads; `step` is the 1-based step just taken, `state` the one `step` returned); an exception is raised
      after that state is checkpointed.
    record: `record(metrics, batch, seconds) -> dict`: the record's fields (default: the metrics as floats);
      "step" and "epoch" (`iterator.state()["epoch"]`) come first.
    evaluate: `evaluate(params, step) -> dict of floats`, logged as eval/<name>.
    progress: `progress(record) -> str`, printed when `verbose` and a record is logged.
    on_save: called after each checkpoint (e.g. to write a cache beside it).
    on_step: `on_step(step, record)` after each step's bookkeeping (tests use it to simulate a crash).
    verbose: print the progress lines and a line when resuming.

  Returns:
    `LoopResult`.

  Raises:
    whatever `check` returns (the last good state checkpointed first);
    prefjax.preemption.Preempted: SIGTERM or SIGINT received (the state after the current step is
      checkpointed first; calling `run` again with the same workdir resumes from it).
  """
  workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
  meta = jax.tree.map(lambda x: x if isinstance(x, (int, float, str, bool, type(None))) else str(x), meta or {})
  checkpointer = ckpt.Checkpointer(workdir.file(CHECKPOINTS), max_to_keep=cfg.keep_checkpoints)
  resumed_from = checkpointer.latest_step()
  if resumed_from is not None:
    state, extra = checkpointer.restore(abstract_state(state))
    iterator.restore(extra["iterator"])
    if verbose:
      print(f"resumed from {checkpointer.directory} step {resumed_from}", flush=True)
  # metrics.jsonl holds no step twice: lines after the restored checkpoint (all of them when there is none: a
  # run killed before its first checkpoint starts again) are from the lost part of an earlier attempt.
  workdir.truncate_metrics(resumed_from)
  history = []

  def save(at):
    checkpointer.save(at, state, {"iterator": iterator.state(), **meta})
    if on_save is not None:
      on_save()

  def log(rec):
    workdir.append_metrics(rec)
    history.append(rec)

  start = int(jax.device_get(state.step))
  if evaluate is not None and start == 0:
    log({"step": 0, **{f"eval/{k}": v for k, v in evaluate(state.params, 0).items()}})

  with preemption.handle_signals():
    for i in range(start, cfg.num_steps):
      batch = next(iterator)
      if prepare is not None:
        batch = prepare(batch)
      t0 = time.perf_counter()
      state, metrics = step(state, batch)
      metrics = jax.device_get(metrics)
      seconds = time.perf_counter() - t0
      problem = check(metrics, i + 1, state) if check is not None else None
      if problem is not None:
        save(int(jax.device_get(state.step)))
        checkpointer.close()
        raise problem
      rec = {"step": i + 1, "epoch": iterator.state().get("epoch", 0),
             **(record(metrics, batch, seconds) if record is not None
                else {k: float(v) for k, v in metrics.items()})}
      done = i + 1 == cfg.num_steps
      if evaluate is not None and (done or (cfg.eval_every and (i + 1) % cfg.eval_every == 0)):
        rec.update({f"eval/{k}": v for k, v in evaluate(state.params, i + 1).items()})
      if done or (i + 1) % cfg.log_every == 0 or any(k.startswith("eval/") for k in rec):
        log(rec)
        if verbose and progress is not None:
          print(progress(rec), flush=True)
      if on_step is not None:
        on_step(i + 1, rec)
      stop = preemption.requested() is not None
      if done or (cfg.checkpoint_every and (i + 1) % cfg.checkpoint_every == 0) or stop:
        save(i + 1)
      if stop:
        checkpointer.close()
        preemption.check(f"checkpointed step {i + 1} of {cfg.num_steps} in {checkpointer.directory}")
  checkpointer.close()
  return LoopResult(state, history, False, resumed_from)


def non_finite(metrics, step, state, directory):
  """The `NonFiniteError` for a step whose loss or gradient norm is not finite (`state`: the last good one)."""
  return NonFiniteError(
      f"non-finite loss ({metrics['loss']}) or grad_norm ({metrics['grad_norm']}) at step {step}; stopped with "
      f"the last good state (step {int(jax.device_get(state.step))}) checkpointed in {directory}")


def progress_bar(step, num_steps, width=20):
  done = int(width * step / num_steps)
  return f"[{'#' * done}{'.' * (width - done)}]"

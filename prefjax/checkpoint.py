"""Checkpoints of LM training state with orbax's `CheckpointManager` (the `args` API) and auto-resume.

A checkpoint holds two items:
- "state": the training pytree {params, opt_state, step, key}; PRNG keys are stored as raw key data
  (`jax.random.key_data`) and re-wrapped on restore, so typed keys round-trip.
- "extra": a JSON dict (data-iterator state, model config, anything the trainer needs to resume).

Restoring takes an abstract target (`jax.ShapeDtypeStruct`s with shardings for the *current* mesh), so a
checkpoint written on 8 devices restores on 1 (and vice versa): orbax reshards on read. A checkpoint whose
shapes do not match the target (another model shape) fails with a `PrefjaxError` listing the differing
arrays before anything is read.
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from prefjax.errors import PrefjaxError


def _is_key(x):
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _abstract_is_key(x):
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def keys_to_data(tree):
  """Replaces every typed PRNG key in `tree` by its raw key data (uint32)."""
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract_key_data(x):
  shape = jax.eval_shape(jax.random.key_data, x)
  return jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=getattr(x, "sharding", None))


def _abstract(tree):
  """Abstract (ShapeDtypeStruct) version of `tree` with key leaves replaced by key data."""
  def leaf(x):
    if _abstract_is_key(x):
      return _abstract_key_data(x)
    if isinstance(x, jax.ShapeDtypeStruct):
      return x
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=getattr(x, "sharding", None))
  return jax.tree.map(leaf, tree)


def _rewrap(template, restored):
  def leaf(t, r):
    if _abstract_is_key(t):
      impl = jax.random.key_impl(t) if isinstance(t, jax.Array) else None
      return jax.random.wrap_key_data(r, impl=impl) if impl is not None else jax.random.wrap_key_data(r)
    return r
  return jax.tree.map(leaf, template, restored)


def _path_str(path):
  """'params/layer_0/kernel' whatever the container types (dicts, NamedTuples, lists) on either side."""
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


class Checkpointer:
  """Saves and restores {state pytree, extra JSON} under `directory` (steps as subdirectories).

  Args:
    directory: where the checkpoints live (created if missing); usually `<workdir>/checkpoints`.
    max_to_keep: keep this many most recent checkpoints (None keeps all).
  """

  def __init__(self, directory, max_to_keep=2):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(), "extra": ocp.JsonCheckpointHandler()})

  def latest_step(self):
    """The newest saved step, or None."""
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, step, state, extra=None):
    """Writes checkpoint `step` (overwriting nothing: an existing step is left as is)."""
    step = int(step)
    if step in self._manager.all_steps():
      return False
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(keys_to_data(state)),
        extra=ocp.args.JsonSave(dict(extra or {}))), force=True)
    self._manager.wait_until_finished()
    return True

  def check_compatible(self, step, target):
    """Raises `PrefjaxError` when checkpoint `step`'s arrays differ in structure or shape from `target`."""
    meta = self._manager.item_metadata(step)
    stored = meta["state"] if not hasattr(meta, "state") else meta.state
    if stored is None:
      return
    stored_shapes = {_path_str(p): tuple(getattr(x, "shape", ()))
                     for p, x in jax.tree_util.tree_flatten_with_path(stored)[0]}
    wanted = {_path_str(p): tuple(x.shape)
              for p, x in jax.tree_util.tree_flatten_with_path(_abstract(target))[0]}
    problems = []
    for name in sorted(set(stored_shapes) | set(wanted)):
      a, b = stored_shapes.get(name), wanted.get(name)
      if a != b:
        problems.append(f"{name}: checkpoint {a if a is not None else 'missing'} vs model "
                        f"{b if b is not None else 'missing'}")
    if problems:
      shown = "; ".join(problems[:8]) + (f"; … ({len(problems) - 8} more)" if len(problems) > 8 else "")
      raise PrefjaxError(
          f"checkpoint {self.directory} step {step} does not match the current model/optimiser "
          f"(a different model shape or config?): {shown}")

  def restore(self, target, step=None):
    """Restores checkpoint `step` (default: latest) onto `target`'s shapes, dtypes and shardings.

    Args:
      target: a pytree like the saved state: arrays or `jax.ShapeDtypeStruct`s (with `sharding` set to
        place the restored arrays on the current mesh; any device count).
      step: which step; None for the latest.

    Returns:
      `(state, extra)`, or None when there is no checkpoint.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    self.check_compatible(step, target)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(target)), extra=ocp.args.JsonRestore()))
    return _rewrap(target, restored["state"]), dict(restored["extra"] or {})

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()

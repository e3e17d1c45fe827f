"""Input checks shared by the objective modules (shapes always; values only when not traced)."""

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError


def concrete(x):
  """The value of `x` as a numpy array, or None when it is traced (value checks are then skipped)."""
  return None if isinstance(x, jax.core.Tracer) else np.asarray(x)


def batch_arrays(arrays, names):
  """Checks that `arrays` are non-empty 1-D `[B]` arrays of one shape; returns them in a common float dtype."""
  out = [jnp.asarray(x) for x in arrays]
  for x, name in zip(out, names):
    if x.ndim != 1:
      raise PrefjaxError(f"{name} must be a 1-D array [B], got shape {x.shape}")
    if x.shape != out[0].shape:
      raise PrefjaxError(
          f"{name} has shape {x.shape} but {names[0]} has shape {out[0].shape}: all must be [B]")
  if out[0].shape[0] == 0:
    raise PrefjaxError("empty batch: B = 0 examples")
  dtype = jnp.result_type(*out, float)
  return [x.astype(dtype) for x in out]

"""Input checks shared by the objective modules (shapes always; values only when not traced)."""

import jax
import jax.numpy as jnp
from jax.experimental import checkify
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


# ----------------------------------------------------------------------------------------------------
# The opt-in finiteness check of the objectives' inputs (`check_finite=True`; docs/objectives_checks.md).


def _first_bad_index(shape, flat):
  """How messages name element `flat` of an array of `shape`: an int for 1-D, a tuple otherwise."""
  if len(shape) == 1:
    return int(flat)
  return tuple(int(i) for i in np.unravel_index(int(flat), shape))


def check_finite(fn, enabled, arrays):
  """Opt-in check that the objective `fn`'s array inputs hold no NaN or ±inf (no-op unless `enabled`).

  With `enabled` False (the default of every `check_finite=` option) this returns at once and adds nothing
  to a traced computation: the jaxpr is the one without the option. Otherwise, for each `name: array` of
  `arrays` (None entries and integer / boolean arrays are skipped):
  - a concrete array (eager call) is checked on the host: `PrefjaxError` naming `fn`, the argument, the
    first non-finite entry's index (row-major) and its value;
  - a traced array (under `jit`, `vmap`, `grad`, `scan`) gets a `jax.experimental.checkify.check` with the
    same message (index and value filled in at run time). Run the function under
    `checkify.checkify(...)` to get the error back (`err.throw()` raises it); a `checkify.check` staged
    under `jit` without `checkify.checkify` is rejected by JAX at trace time.

  Args:
    fn: the objective's name, for messages.
    enabled: the caller's `check_finite` option (a Python bool).
    arrays: dict `{argument name: array or None}`, checked in order.
  """
  if not enabled:
    return
  for name, x in arrays.items():
    if x is None:
      continue
    if isinstance(x, jax.core.Tracer):
      _checkify_finite(fn, name, x)
      continue
    value = np.asarray(x)
    if not jnp.issubdtype(value.dtype, jnp.inexact):
      continue
    bad = ~np.isfinite(value if jnp.issubdtype(value.dtype, jnp.complexfloating)
                       else value.astype(np.float64))
    if bad.any():
      flat = int(np.flatnonzero(bad.ravel())[0])
      raise PrefjaxError(
          f"{fn}: {name} has a non-finite value {value.ravel()[flat]} at index "
          f"{_first_bad_index(value.shape, flat)} (check_finite=True: inputs must be finite)")


def _checkify_finite(fn, name, x):
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.inexact) or x.size == 0:
    return
  ok = jnp.isfinite(x).ravel()
  flat = jnp.argmin(ok)  # the first False, row-major
  if x.ndim == 1:
    where, coords = "{}", [flat]
  else:
    where, coords = "(" + ", ".join(["{}"] * x.ndim) + ")", list(jnp.unravel_index(flat, x.shape))
  message = (f"{fn}: {name} has a non-finite value {{}} at index {where} "
             "(check_finite=True: inputs must be finite)")
  checkify.check(jnp.all(ok), message, x.ravel()[flat], *coords)

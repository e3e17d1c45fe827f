"""Checks of experiment config fields, each raising a one-line `PrefjaxError` that names the field.

Runners call these in their `validate(config)` (see `prefjax.workdir.experiment`), so a bad config is
refused before anything is written to the workdir. Fields are given by dotted name (`"online.batch_size"`).
"""

import math
import numbers

from prefjax.errors import PrefjaxError


def get(config, field):
  """The value of dotted `field` in `config` (a ConfigDict or dict)."""
  value = config
  for part in field.split("."):
    try:
      value = value[part]
    except (KeyError, TypeError):
      raise PrefjaxError(f"config.{field} is missing") from None
  return value


def _is_number(x):
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def number(config, field, *, low=None, high=None, low_open=False, high_open=False):
  """A finite real number in [low, high] (open ends with `low_open`/`high_open`); returns it as float."""
  x = get(config, field)
  if not _is_number(x) or not math.isfinite(x):
    raise PrefjaxError(f"config.{field} must be a finite number, got {x!r}")
  bad_low = low is not None and (x <= low if low_open else x < low)
  bad_high = high is not None and (x >= high if high_open else x > high)
  if bad_low or bad_high:
    if high is None:
      want = f"{'>' if low_open else '>='} {low:g}"
    elif low is None:
      want = f"{'<' if high_open else '<='} {high:g}"
    else:
      want = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    raise PrefjaxError(f"config.{field} must be {want}, got {x!r}")
  return float(x)


def positive(config, *fields):
  """Each field a finite number > 0."""
  for field in fields:
    number(config, field, low=0, low_open=True)


def integer(config, field, *, low=None, high=None):
  """A whole number (an int, or a float with no fraction) in [low, high]; returns it as int."""
  x = get(config, field)
  if not _is_number(x) or not math.isfinite(x) or int(x) != x:
    raise PrefjaxError(f"config.{field} must be a whole number, got {x!r}")
  x = int(x)
  if (low is not None and x < low) or (high is not None and x > high):
    bounds = f">= {low}" if high is None else (f"<= {high}" if low is None else f"in [{low}, {high}]")
    raise PrefjaxError(f"config.{field} must be {bounds}, got {x}")
  return x


def positive_int(config, *fields):
  """Each field a whole number ≥ 1."""
  for field in fields:
    integer(config, field, low=1)


def non_negative_int(config, *fields):
  """Each field a whole number ≥ 0."""
  for field in fields:
    integer(config, field, low=0)


def numbers_list(config, field, *, low=None, high=None, low_open=False, high_open=False, non_empty=True):
  """A list/tuple of finite numbers each in [low, high]; returns it as a tuple of floats."""
  xs = get(config, field)
  if isinstance(xs, (str, bytes)) or not isinstance(xs, (list, tuple)):
    raise PrefjaxError(f"config.{field} must be a list of numbers like (0.1, 0.5), got {xs!r}")
  if non_empty and not xs:
    raise PrefjaxError(f"config.{field} is empty: give at least one number")
  out = []
  for i, x in enumerate(xs):
    probe = {"v": x}
    try:
      out.append(number(probe, "v", low=low, high=high, low_open=low_open, high_open=high_open))
    except PrefjaxError as e:
      raise PrefjaxError(str(e).replace("config.v", f"config.{field}[{i}]")) from None
  return tuple(out)


def positive_list(config, field):
  """A non-empty list of finite numbers > 0."""
  return numbers_list(config, field, low=0, low_open=True)


def choice(config, field, known):
  """A value among `known`."""
  x = get(config, field)
  if x not in known:
    raise PrefjaxError(f"config.{field}: unknown {x!r}; known: {sorted(known)}")
  return x


def names(config, field, known=None, *, non_empty=True):
  """A list/tuple of names, or one comma-separated string; each among `known` when given."""
  x = get(config, field)
  if isinstance(x, str):
    items = [n.strip() for n in x.split(",") if n.strip()]
  elif isinstance(x, (list, tuple)) and all(isinstance(n, str) for n in x):
    items = list(x)
  else:
    raise PrefjaxError(f"config.{field} must be a list of names (or comma-separated names), got {x!r}")
  if non_empty and not items:
    raise PrefjaxError(f"config.{field} is empty: give at least one name")
  if known is not None:
    unknown = [n for n in items if n not in known]
    if unknown:
      raise PrefjaxError(f"config.{field}: unknown {unknown}; known: {sorted(known)}")
  return items


def boolean(config, *fields):
  """Each field True or False (a bool, or numpy's bool)."""
  for field in fields:
    x = get(config, field)
    if not isinstance(x, bool) and type(x).__name__ != "bool_":
      raise PrefjaxError(f"config.{field} must be True or False, got {x!r}")


def string(config, field, *, non_empty=False):
  """A str (non-empty when `non_empty`); returns it."""
  x = get(config, field)
  if not isinstance(x, str) or (non_empty and not x.strip()):
    raise PrefjaxError(f"config.{field} must be a{' non-empty' if non_empty else ''} string, got {x!r}")
  return x


def divides(config, divisor_field, field):
  """config.divisor_field divides config.field (both already checked to be whole numbers ≥ 1)."""
  d, n = int(get(config, divisor_field)), int(get(config, field))
  if n % d:
    raise PrefjaxError(f"config.{divisor_field} ({d}) must divide config.{field} ({n})")

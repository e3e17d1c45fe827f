"""Errors raised on bad user input, so callers see a clear message instead of a JAX traceback."""


class PrefjaxError(ValueError):
  """Bad input to a prefjax function: the message names the argument (field, file, line)."""


def check(condition, message):
  """Raises `PrefjaxError(message)` unless `condition` holds (a Python bool, checked eagerly)."""
  if not condition:
    raise PrefjaxError(message)

"""Registry of experiment runners: `config.experiment` → `run(config, workdir)`.

Runners are imported lazily so that `experiments/main.py` starts fast and an experiment pulls in only what it
needs.
"""

import importlib

from prefjax.errors import PrefjaxError

RUNNERS = {
    "bandit_sweep": "prefjax.bandit.runs:run_bandit_sweep",
}


def get_runner(name):
  """Returns the run function registered under `name`, listing the known names otherwise."""
  if name not in RUNNERS:
    raise PrefjaxError(f"config.experiment = {name!r} is not a known experiment; known: {sorted(RUNNERS)}")
  module, attr = RUNNERS[name].split(":")
  return getattr(importlib.import_module(module), attr)

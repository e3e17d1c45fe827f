r"""The one entry point of prefjax experiments.

  python -m experiments.main --config=experiments/configs/ipo_bandit.py[:quick] --workdir=runs/ipo_bandit \
      [--config.field=value ...]

The config file's `get_config(arg)` builds a locked ml_collections ConfigDict: overriding a field that does
not exist is an error naming the field. `config.experiment` selects the runner (`prefjax.runners`), which
writes config.json, metrics.jsonl, arrays.npz, summary.json and figures into the workdir.

Library INFO logs (orbax logs every checkpoint operation) would bury the progress lines, so only warnings and
errors are logged unless `--verbosity=0` (or another level) is given.
"""

import os
import sys

from absl import app
from absl import logging
from absl import flags
from ml_collections import config_flags

from prefjax import runners
from prefjax.errors import PrefjaxError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the run's outputs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  try:
    run = runners.get_runner(config.experiment)
    summary = run(config, _WORKDIR.value)
  except PrefjaxError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"wrote {os.path.abspath(_WORKDIR.value)} ({summary.get('seconds', 0.0):.1f} s)")


if __name__ == "__main__":
  app.run(main)

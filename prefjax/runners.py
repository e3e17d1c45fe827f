"""Registry of experiment runners: `config.experiment` → `run(config, workdir)`.

Runners are imported lazily so that `experiments/main.py` starts fast and an experiment pulls in only what it
needs.
"""

import importlib
import importlib.util

from prefjax.errors import PrefjaxError

RUNNERS = {
    "bandit_sweep": "prefjax.bandit.runs:run_bandit_sweep",
    # Nash learning and self-play on preference games (docs/theory.md §4).
    "egpo": "prefjax.games.experiments:run_egpo",
    "nash_md_rate": "prefjax.games.experiments:run_nash_md_rate",
    "selfplay_cycles": "prefjax.games.experiments:run_selfplay_cycles",
    "online_dpo_vs_ipo": "prefjax.games.experiments:run_online_dpo_vs_ipo",
    "annotator_flip": "prefjax.games.experiments:run_annotator_flip",
    # The density-estimation view (docs/theory.md §6), arenas (§7) and curated loops (§8).
    "pbde_toy": "prefjax.density.experiments:run_pbde_toy",
    "pbde_misspecified": "prefjax.density.experiments:run_pbde_misspecified",
    "arena_ranking": "prefjax.ranking.experiments:run_arena_ranking",
    "curation_loop": "prefjax.curation:run_curation_loop",
    # Every objective on a contextual preference bandit (docs/theory.md §2, §3, §5).
    "objective_benchmark": "prefjax.bandit.objective_benchmark:run_objective_benchmark",
    # Transformer language models.
    "lm_offline": "prefjax.lm.experiments:run_lm_offline",
    "lm_nash_synthetic": "prefjax.lm.online_experiments:run_lm_nash_synthetic",
    "lm_sppo_synthetic": "prefjax.lm.online_experiments:run_lm_sppo_synthetic",
}


def get_runner(name):
  """Returns the run function registered under `name`, listing the known names otherwise."""
  if name not in RUNNERS or not _available(RUNNERS[name]):
    known = sorted(k for k, v in RUNNERS.items() if _available(v))
    raise PrefjaxError(f"config.experiment = {name!r} is not a known experiment; known: {known}")
  module, attr = RUNNERS[name].split(":")
  return getattr(importlib.import_module(module), attr)


def _available(target):
  """Whether the runner's module exists (families land one at a time)."""
  try:
    return importlib.util.find_spec(target.split(":")[0]) is not None
  except ModuleNotFoundError:
    return False

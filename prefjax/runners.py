"""Registry of experiment runners: `config.experiment` → `run(config, workdir)`.

Runners are imported lazily so that `experiments/main.py` starts fast and an experiment pulls in only what it
needs. They live in `prefjax.runs`.
"""

import importlib

from prefjax.errors import PrefjaxError

RUNNERS = {
    "bandit_sweep": "prefjax.runs.bandit_sweep:run_bandit_sweep",
    # Nash learning and self-play on preference games (docs/theory.md §4).
    "egpo": "prefjax.runs.games:run_egpo",
    "nash_md_rate": "prefjax.runs.games:run_nash_md_rate",
    "selfplay_cycles": "prefjax.runs.games:run_selfplay_cycles",
    "online_dpo_vs_ipo": "prefjax.runs.games:run_online_dpo_vs_ipo",
    "annotator_flip": "prefjax.runs.games:run_annotator_flip",
    # The density-estimation view (docs/theory.md §6), arenas (§7) and curated loops (§8).
    "pbde_toy": "prefjax.runs.density:run_pbde_toy",
    "pbde_misspecified": "prefjax.runs.density:run_pbde_misspecified",
    "arena_ranking": "prefjax.runs.ranking:run_arena_ranking",
    "curation_loop": "prefjax.runs.curation:run_curation_loop",
    # Every objective on a contextual preference bandit (docs/theory.md §2, §3, §5).
    "objective_benchmark": "prefjax.runs.objective_benchmark:run_objective_benchmark",
    # Transformer language models.
    "lm_offline": "prefjax.runs.lm_offline:run_lm_offline",
    "lm_nash_synthetic": "prefjax.runs.lm_online:run_lm_nash_synthetic",
    "lm_sppo_synthetic": "prefjax.runs.lm_online:run_lm_sppo_synthetic",
}


def get_runner(name):
  """Returns the run function registered under `name`, listing the known names otherwise."""
  if name not in RUNNERS:
    raise PrefjaxError(f"config.experiment = {name!r} is not a known experiment; known: {sorted(RUNNERS)}")
  module, attr = RUNNERS[name].split(":")
  return getattr(importlib.import_module(module), attr)

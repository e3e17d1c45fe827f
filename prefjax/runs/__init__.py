"""Experiment runners, one module per group, registered by name in `prefjax.runners` (`config.experiment`).

- `bandit_sweep`: `run_bandit_sweep` (tabular pairwise bandit: objectives × data sources × β × seeds);
- `objective_benchmark`: `run_objective_benchmark` (every objective on one contextual bandit), its verdicts and
  table.md;
- `games`: `run_egpo`, `run_nash_md_rate`, `run_selfplay_cycles`, `run_online_dpo_vs_ipo`, `run_annotator_flip`;
- `density`: `run_pbde_toy`, `run_pbde_misspecified`;
- `ranking`: `run_arena_ranking`;
- `curation`: `run_curation_loop`;
- `lm_offline`: `run_lm_offline` (offline preference training of a transformer, one run per objective);
- `lm_online`: `run_lm_nash_synthetic`, `run_lm_sppo_synthetic` (online and self-play training of a
  transformer on the synthetic LM task).

Each runner is a `prefjax.workdir.experiment` (the config validated first, a finished run of the same config
returned as it is), reads the library (objectives, environments, trainers) and writes the workdir; its figures
are drawn by the matching module of `prefjax.plotting` (the LM runners' by `prefjax.plotting.lm`). The old paths
of these runners (`prefjax.bandit.runs`, `prefjax.games.experiments`, `prefjax.lm.experiments`,
`prefjax.lm.online_experiments`, ...) re-export them.

The package imports nothing itself: `experiments/main.py` imports only the runner it runs.
"""

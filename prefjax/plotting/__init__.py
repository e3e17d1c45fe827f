"""Figures, one module per family; the only place prefjax draws (matplotlib, Agg backend, saved as PNG).

- `bandit`: `plot_bandit_sweep` (a `bandit_sweep` workdir, read through `prefjax.results`);
- `benchmark`: `plot_benchmark` (an `objective_benchmark` workdir);
- `games`: `plot_egpo`, `plot_nash_md_rate`, `plot_selfplay_cycles`, `plot_online_dpo_vs_ipo`,
  `plot_annotator_flip` (from the runner's arrays);
- `density`: `plot_pbde_toy`, `plot_pbde_misspecified`;
- `ranking`: `plot_arena_ranking`;
- `curation`: `plot_curation_loop`;
- `lm`: `plot_lm_curves` (an `lm_offline` workdir), `plot_lm_online` (`lm_nash_synthetic`, `lm_sppo_synthetic`);
- `gradient_field`: `plot_gradient_fields` (gradient fields of pairwise objectives; no workdir).

The runners of `prefjax.runs` call these and save through their workdir (`wd.file(...)`); `analysis/` redraws
from finished workdirs. A figure module loads matplotlib when it draws, not when it is imported, and this package
imports a figure module when one of its names is first used, so a runner pulls in only its own family's.
Everything the module `prefjax/plotting.py` (which this package replaced) had still imports from here.
"""

import importlib

# Name → the figure module that defines it.
_MODULES = {
    "ACTION_NAMES": "bandit", "LINESTYLES": "bandit", "plot_bandit_sweep": "bandit",
    "FAMILY_COLORS": "benchmark", "plot_benchmark": "benchmark",
    "plot_egpo": "games", "plot_nash_md_rate": "games", "plot_selfplay_cycles": "games",
    "plot_online_dpo_vs_ipo": "games", "plot_annotator_flip": "games", "LOG_FLOOR": "games",
    "plot_pbde_toy": "density", "plot_pbde_misspecified": "density",
    "plot_arena_ranking": "ranking",
    "plot_curation_loop": "curation",
    "LM_PANELS": "lm", "plot_lm_curves": "lm", "plot_lm_online": "lm",
    "plot_gradient_fields": "gradient_field",
}
# The old module's own imports, which were importable from it too.
_OLD_IMPORTS = {"os": "bandit", "np": "bandit", "intervals": "bandit", "results": "bandit", "spec": "bandit"}

__all__ = sorted(_MODULES)


def __getattr__(name):
  if name in ("matplotlib", "plt"):  # The old module imported pyplot (Agg backend) when it was imported.
    from prefjax.plotting import _common  # pylint: disable=g-import-not-at-top
    plt = _common.pyplot()
    import matplotlib  # pylint: disable=g-import-not-at-top
    return plt if name == "plt" else matplotlib
  module = _MODULES.get(name) or _OLD_IMPORTS.get(name)
  if module is None:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__():
  return sorted(set(globals()) | set(_MODULES) | set(_OLD_IMPORTS) | {"matplotlib", "plt"})

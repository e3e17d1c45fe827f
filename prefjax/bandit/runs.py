"""The old path of the `bandit_sweep` runner: it lives in `prefjax.runs.bandit_sweep` (the figure in
`prefjax.plotting.bandit`); this module re-exports it.
"""

from prefjax.runs.bandit_sweep import *  # noqa: F403

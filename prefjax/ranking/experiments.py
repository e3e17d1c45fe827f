"""The old path of the `arena_ranking` runner: it lives in `prefjax.runs.ranking` (the figure in
`prefjax.plotting.ranking`); this module re-exports it.
"""

from prefjax.plotting.ranking import wilson_interval  # noqa: F401
from prefjax.runs.ranking import *  # noqa: F403

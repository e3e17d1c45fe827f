"""The old path of the preference-game runners: they live in `prefjax.runs.games` (figures in
`prefjax.plotting.games`); this module re-exports them.
"""

from prefjax.plotting.games import LOG_FLOOR  # noqa: F401
from prefjax.runs.games import *  # noqa: F403

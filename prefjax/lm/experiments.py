"""The old path of the `lm_offline` runner: it lives in `prefjax.runs.lm_offline` (the figure in
`prefjax.plotting.lm`); this module re-exports it.
"""

from prefjax.runs.lm_offline import *  # noqa: F403

"""The old path of the `lm_nash_synthetic` and `lm_sppo_synthetic` runners: they live in `prefjax.runs.lm_online`
(the figure in `prefjax.plotting.lm`); this module re-exports them.
"""

from prefjax.runs.lm_online import *  # noqa: F403
from prefjax.runs.lm_online import _spin_fixed_point_kls  # noqa: F401

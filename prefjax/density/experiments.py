"""The old path of the density-estimation runners: they live in `prefjax.runs.density` (the trainer and the
population NLL in `prefjax.density.train`, the figures in `prefjax.plotting.density`); this module re-exports
them.
"""

from prefjax.density.train import make_sweep as _make_sweep  # noqa: F401
from prefjax.runs.density import *  # noqa: F403
from prefjax.runs.density import _distinct_points  # noqa: F401
from prefjax.runs.density import _sweep_loss  # noqa: F401

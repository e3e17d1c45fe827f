"""Moved to `prefjax.games.preferences` (preference matrices are game maths); this re-exports it.

`from prefjax.envs import preferences` keeps working; new code imports `prefjax.games.preferences`.
"""

from prefjax.games.preferences import *  # noqa: F401,F403  (the public constructors, `__all__` there)
from prefjax.games.preferences import __all__  # noqa: F401

"""prefjax: preference-learning objectives, exact oracles and trainers in JAX."""

__version__ = "0.1.0"

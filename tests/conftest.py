"""Test configuration: silent rank promotion is an error (DESIGN.md §4.7)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
  """Runs the test body with float64 enabled (oracles are checked in double precision)."""
  with jax.enable_x64(True):
    yield

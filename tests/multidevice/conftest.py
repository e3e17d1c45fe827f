"""Tests on 8 simulated CPU devices, run in one subprocess by tests/test_multidevice.py.

That test starts `python -m pytest tests/multidevice` with XLA_FLAGS=--xla_force_host_platform_device_count=8
(set before jax is imported, as it must be); the main run (`pytest -n 2`) never collects this folder
(tests/conftest.py ignores it without the flag, and so does this file).
"""

import os
import pathlib

import jax
import pytest

FLAG = "--xla_force_host_platform_device_count=8"

if FLAG not in os.environ.get("XLA_FLAGS", ""):
  collect_ignore_glob = ["*.py"]  # Not under the flag: nothing here can run (run tests/test_multidevice.py).
else:
  assert jax.device_count() == 8, jax.devices()


@pytest.fixture
def out_dir(tmp_path):
  """Where a test leaves files for the 1-device parent (PREFJAX_MULTIDEVICE_OUT), else a temporary folder."""
  path = os.environ.get("PREFJAX_MULTIDEVICE_OUT")
  return pathlib.Path(path) if path else tmp_path

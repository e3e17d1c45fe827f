"""Mesh sharding on one device: mesh and batch errors.

The 8-simulated-device tests (the offline and online trainers follow 1 device's losses; the 8-device
checkpoint restores on 1 device) are in tests/multidevice/test_sharding_8.py, run in one subprocess with
XLA_FLAGS set before jax is imported by tests/test_multidevice.py.
"""

import jax
import numpy as np
import pytest

from prefjax import sharding as shd
from prefjax.errors import PrefjaxError


def test_mesh_and_batch_errors():
  mesh = shd.make_mesh()
  assert mesh.axis_names == shd.MESH_AXES and mesh.size == jax.device_count()
  with pytest.raises(PrefjaxError, match="number of devices"):
    shd.make_mesh(data=3)
  with pytest.raises(PrefjaxError, match="positive"):
    shd.make_mesh(fsdp=0)
  batch = shd.shard_batch({"x": np.arange(6).reshape(3, 2)}, mesh)
  np.testing.assert_array_equal(batch["x"], np.arange(6).reshape(3, 2))
  assert shd.initialize_distributed() is False  # single process: no-op

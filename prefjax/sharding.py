"""Device meshes and `NamedSharding`s for LM training: data and fsdp axes (tensor optional).

One code path for 1 CPU, 8 simulated CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=8`),
one GPU, or a TPU pod slice (call `initialize_distributed()` first on every host). Parameters and optimiser
state are sharded through the model's logical axis names (`LOGICAL_AXIS_RULES`, defined here and re-exported
as `prefjax.lm.model.LOGICAL_AXIS_RULES`: "embed" over fsdp — ZeRO-3 style — and the wide matmul dimensions
over tensor); batches are split along their leading (batch) dimension over data × fsdp. Results on 1 and 8
devices agree to float tolerance (tests/test_sharding.py).
"""

import os

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from prefjax.errors import PrefjaxError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Logical parameter/activation axis names -> mesh axes. "embed" is sharded over fsdp (ZeRO-3 style
# parameter sharding), the wide matmul dimensions over tensor; batch over data and fsdp together.
# "kv_heads" goes to "tensor" as well: with GQA the tensor axis size must divide num_kv_heads.
LOGICAL_AXIS_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("kv", None),
    ("norm", None),
    ("position", None),
)

# Environment variables that announce a multi-process job (Cloud TPU, SLURM, or JAX's own coordinator).
_MULTIHOST_ENV = ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def initialize_distributed(force=False, **kwargs):
  """Calls `jax.distributed.initialize(**kwargs)` when this is a multi-process job (or `force`).

  On a single host this is a no-op, so scripts can always call it first. On a TPU pod slice or a SLURM/GPU
  cluster JAX discovers the coordinator from the environment; pass `coordinator_address`, `num_processes`
  and `process_id` explicitly elsewhere.

  Returns:
    True when `jax.distributed.initialize` was called.
  """
  multihost = force or bool(kwargs) or any(
      os.environ.get(name) not in (None, "", "1") if name == "SLURM_NTASKS" else os.environ.get(name)
      for name in _MULTIHOST_ENV)
  if not multihost:
    return False
  jax.distributed.initialize(**kwargs)
  return True


def make_mesh(data=-1, fsdp=1, tensor=1, devices=None):
  """A `Mesh` with axes ("data", "fsdp", "tensor") over `devices` (default: every device).

  Args:
    data: size of the data-parallel axis; -1 takes what is left after fsdp and tensor.
    fsdp: size of the fully-sharded axis (parameters and optimiser state split over it, batch too).
    tensor: size of the tensor-parallel axis (must divide the model's heads, kv heads and MLP width).
    devices: a list of devices (e.g. `jax.devices()[:1]`).

  Returns:
    `jax.sharding.Mesh` of shape (data, fsdp, tensor).
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  for name, size in (("fsdp", fsdp), ("tensor", tensor)):
    if not isinstance(size, (int, np.integer)) or size < 1:
      raise PrefjaxError(f"make_mesh: {name} must be a positive integer, got {size!r}")
  if data == -1:
    if n % (fsdp * tensor):
      raise PrefjaxError(f"make_mesh: {n} devices are not divisible by fsdp×tensor = {fsdp * tensor}")
    data = n // (fsdp * tensor)
  if not isinstance(data, (int, np.integer)) or data < 1 or data * fsdp * tensor != n:
    raise PrefjaxError(f"make_mesh: data×fsdp×tensor = {data}×{fsdp}×{tensor} must equal the number of "
                       f"devices ({n})")
  return Mesh(np.asarray(devices, dtype=object).reshape(data, fsdp, tensor), MESH_AXES)


def batch_sharding(mesh, batch_axis=0):
  """Sharding of a batch array: dimension `batch_axis` over data × fsdp, the rest replicated."""
  return NamedSharding(mesh, P(*([None] * batch_axis), BATCH_AXES))


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_divisor(mesh):
  """How many ways a batch is split (its leading dimension must be a multiple)."""
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def logical_shardings(boxed_tree, mesh, rules=LOGICAL_AXIS_RULES):
  """`NamedSharding`s for a tree whose leaves may carry logical-axis boxes (params, optimiser state).

  Unboxed leaves (step counters, scalars) are replicated. Optimiser states built by `tx.init` on boxed
  parameters keep the boxes, so moments are sharded like their parameters.
  """
  specs = nn.get_partition_spec(boxed_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, rules)


def shard_batch(batch, mesh, batch_axis=0):
  """Places a dict of host (numpy) arrays on the mesh, split along dimension `batch_axis`.

  Multi-host: each process passes its own slice of the global batch
  (`jax.make_array_from_process_local_data`).
  """
  sharding = batch_sharding(mesh, batch_axis)
  out = {}
  for name, x in batch.items():
    x = np.asarray(x)
    if x.ndim <= batch_axis or x.shape[batch_axis] * jax.process_count() % batch_divisor(mesh):
      raise PrefjaxError(f"shard_batch: {name} has shape {x.shape} per process; the global batch "
                         f"(axis {batch_axis}) must be a multiple of data×fsdp = {batch_divisor(mesh)}")
    out[name] = jax.make_array_from_process_local_data(sharding, x)
  return out

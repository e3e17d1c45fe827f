"""prefjax.objectives.ot on 8 simulated devices: the sharded AOT loss equals the single-device one."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from prefjax.objectives import ot

CONFIGS = (("logistic", 0.1, None), ("squared_hinge", 0.0, None), ("least_squares", 0.0, 0.5))


def _all_costs(loss_fn):
  """One compiled program per variant: every cost's (mean loss, grads, per-term losses)."""
  def run(a, b):
    out = []
    for cost, eps, temp in CONFIGS:
      kw = dict(cost=cost, beta=0.7, label_smoothing=eps, soft_temperature=temp)
      mean = lambda a, b, kw=kw: loss_fn(a, b, **kw).mean()
      value, grads = jax.value_and_grad(mean, argnums=(0, 1))(a, b)
      out.append((value, grads, loss_fn(a, b, **kw)))
    return out
  return jax.jit(run)


def test_sharded_loss_equals_single_device_on_8_cpu_devices():
  """The globally sorted loss on inputs sharded over 8 devices (and jit's global view of them) equals the
  single-device loss, its per-term losses and gradients, to float32 summation order; a per-device sort would
  not (the test can tell it apart), and the output stays sharded."""
  mesh = Mesh(np.array(jax.devices()), ("data",))
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  rng = np.random.default_rng(0)
  u = jnp.asarray(rng.normal(size=32), jnp.float32)
  v = jnp.asarray(rng.normal(size=32) + 0.5, jnp.float32)
  us, vs = jax.device_put(u, sharding), jax.device_put(v, sharding)
  single = _all_costs(ot.ot_losses)(u, v)
  sharded_fn = lambda a, b, **kw: ot.sharded_ot_losses(a, b, mesh=mesh, axis_name="data", **kw)
  sharded = _all_costs(sharded_fn)(us, vs)
  global_view = _all_costs(ot.ot_losses)(us, vs)  # jit's global view of globally sharded inputs
  # What a per-device sort would compute (the bug this guards against), in numpy.
  z = 0.7 * (np.sort(np.asarray(u).reshape(8, 4), 1) - np.sort(np.asarray(v).reshape(8, 4), 1))
  local = {"logistic": np.mean(0.9 * np.logaddexp(0, -z) + 0.1 * np.logaddexp(0, z)),
           "squared_hinge": np.mean(np.maximum(0, 1 - z) ** 2)}
  for (cost, _, _), want, got, view in zip(CONFIGS, single, sharded, global_view):
    want_value, got_value = float(want[0]), float(got[0])
    scale = max(1.0, abs(want_value))
    # float32: identical sorted inputs, only the mean's summation order may differ.
    assert abs(got_value - want_value) <= 1e-6 * scale, (cost, got_value, want_value)
    assert abs(float(view[0]) - want_value) <= 1e-6 * scale, (cost, float(view[0]), want_value)
    per_term = float(np.abs(np.asarray(got[2]) - np.asarray(want[2])).max())
    assert per_term <= 1e-6 * scale, (cost, per_term)
    grad = float(max(np.abs(np.asarray(g) - np.asarray(w)).max() for g, w in zip(got[1], want[1])))
    assert grad <= 1e-6, (cost, grad)
    if cost in local:  # the test can tell a local sort apart
      assert abs(float(local[cost]) - want_value) > 1e-3, (cost, local[cost], want_value)
    assert "data" in str(got[2].sharding.spec), got[2].sharding.spec

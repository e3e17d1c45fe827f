"""prefjax.jit_utils: the fast-compile path compiles once per abstract signature and agrees with `jax.jit`."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from prefjax import jit_utils


class CountingJitted:
  """A jitted function that counts its `lower(...)` calls (each is followed by one `compile`)."""

  def __init__(self, jitted):
    self.jitted = jitted
    self.__wrapped__ = jitted  # The signature (for static arguments) is the function's.
    self.lowerings = 0

  def __call__(self, *args, **kwargs):
    return self.jitted(*args, **kwargs)

  def lower(self, *args, **kwargs):
    self.lowerings += 1
    return self.jitted.lower(*args, **kwargs)


@contextlib.contextmanager
def compile_events():
  """Collects jax's tracing, lowering and XLA-compilation events while the block runs."""
  events = []

  def listener(event, *args, **kwargs):
    del args, kwargs
    if event.startswith("/jax/core/compile/"):
      events.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield events
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def f(x, y):
  return jnp.tanh(x) @ y + jnp.sum(y)


def _args(shape, seed=0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return rng.normal(size=shape).astype(dtype), rng.normal(size=shape[::-1]).astype(dtype)


def test_compiles_once_per_shapes_and_dtypes_and_matches_jit():
  counted = CountingJitted(jax.jit(f))
  fast = jit_utils.compile_fast(counted)
  plain = jax.jit(f)
  for seed in range(3):  # Same shapes, new values: one compilation.
    args = _args((3, 4), seed)
    np.testing.assert_allclose(fast(*args), plain(*args), rtol=1e-6, atol=1e-6)
  assert counted.lowerings == 1 and fast.cache_size() == 1
  np.testing.assert_allclose(fast(*_args((5, 2))), plain(*_args((5, 2))), rtol=1e-6, atol=1e-6)  # New shapes.
  assert counted.lowerings == 2
  fast(*_args((3, 4), 7))  # The first shapes again: cached.
  assert counted.lowerings == 2
  x, y = _args((3, 4))
  fast(jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.bfloat16))  # New dtypes.
  assert counted.lowerings == 3 and fast.cache_size() == 3


def test_repeated_calls_do_no_jax_work():
  def h(x, y):  # A new function: its first call is traced (jax's own caches know nothing of it).
    return f(x, y) * 3.0

  fast = jit_utils.jit(h, fast_compile=True)
  with compile_events() as first:
    fast(*_args((2, 6)))
  with compile_events() as again:
    for seed in range(3):
      fast(*_args((2, 6), seed))
  assert "/jax/core/compile/jaxpr_trace_duration" in first
  assert not again  # Neither traced, lowered nor compiled again.


def test_static_arguments_pytrees_and_keywords():
  def g(tree, n, *, scale):
    return scale * sum(jnp.sum(v ** n) for v in jax.tree.leaves(tree))

  fast = jit_utils.jit(g, fast_compile=True, static_argnames=("n",))
  plain = jax.jit(g, static_argnames=("n",))
  tree = {"a": np.arange(3.0, dtype=np.float32), "b": (np.ones((2, 2), np.float32),)}
  for scale in (1.0, 2.0, 3.0):  # A dynamic keyword argument: its value does not recompile.
    np.testing.assert_allclose(fast(tree, 2, scale=scale), plain(tree, 2, scale=scale), rtol=1e-6)
  assert fast.cache_size() == 1
  np.testing.assert_allclose(fast(tree, 3, scale=1.0), plain(tree, 3, scale=1.0), rtol=1e-6)  # New static.
  assert fast.cache_size() == 2
  np.testing.assert_allclose(fast(tree, n=3, scale=1.0), plain(tree, n=3, scale=1.0), rtol=1e-6)  # By name.
  size = fast.cache_size()
  fast({"a": tree["a"]}, 2, scale=1.0)  # A new tree structure.
  assert fast.cache_size() == size + 1


def test_static_argnums_of_a_prejitted_function():
  jitted = jax.jit(lambda x, k: x * k, static_argnums=1)
  fast = jit_utils.compile_fast(jitted, static_argnums=1)
  x = np.arange(4.0, dtype=np.float32)
  assert np.array_equal(fast(x, 2), jitted(x, 2)) and np.array_equal(fast(x + 1, 2), jitted(x + 1, 2))
  assert fast.cache_size() == 1
  assert np.array_equal(fast(x, 5), jitted(x, 5)) and fast.cache_size() == 2


def test_inside_another_trace_and_without_fast_compile():
  fast = jit_utils.jit(f, fast_compile=True)
  args = _args((3, 3))
  outer = jax.jit(lambda x, y: fast(x, y) * 2.0)  # Traced: inlined into the outer program.
  np.testing.assert_allclose(outer(*args), 2.0 * jax.jit(f)(*args), rtol=1e-6, atol=1e-6)
  assert fast.cache_size() == 0
  plain = jit_utils.jit(f)
  assert not hasattr(plain, "cache_size")  # Plain `jax.jit`.
  np.testing.assert_allclose(plain(*args), jax.jit(f)(*args))

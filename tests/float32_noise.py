"""Float32 rounding scale of a computation, measured on the computation itself.

Two float32 programs for the same mathematical function (another attention kernel, padding, a KV cache,
a windowed head, packed rows) agree only up to rounding, and how large that rounding is depends on the
magnitudes inside the computation (sums of large terms that cancel, softmaxes of large scores), not on the
size of the result: a gradient that is mathematically zero is float32 noise of the size of the terms that
cancel in it. So the tolerance is measured rather than guessed from the output.

Backward-error view: each float32 operation returns the exact result of its inputs moved by at most half an
ulp. Moving every parameter by one ulp in a random direction and recomputing gives a change of the same
order as the rounding of one pass through the computation (the propagated effect of a one-ulp error on every
weight, plus the rounding noise of a second evaluation); `noise_scale` takes the largest change over a few
such draws, per output array. Two paths that each round differently then differ by at most a small multiple
of it: `FACTOR` = 2 x 2 allows for two independent rounding patterns adding (path A's and path B's) and for
the activations' rounding, which the weight nudge does not reproduce (each activation is rounded about as
often as the weights it meets). On the transformer tests (tests/test_lm_model.py) the two paths differ by
0.2-0.7 of the nudge's change. A wrong computation (a dropped mask, a wrong position) moves the
outputs by orders of magnitude more, so the comparison keeps its power; each test that uses this also checks
that.
"""

import jax
import numpy as np

# Per-array bound on |path A - path B| in units of the measured one-ulp sensitivity (see the module doc).
FACTOR = 4.0


def _nudge(tree, rng):
  def one(x):
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
      return x
    up = rng.random(x.shape) < 0.5
    return np.where(up, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)).astype(x.dtype)
  return jax.tree.map(one, tree)


def noise_scale(fn, params, *args, draws=3, seed=0):
  """Per output array: max over `draws` of max |fn(params nudged by one ulp, *args) - fn(params, *args)|, and
  at least one float32 ulp of the array's largest entry.

  `fn` returns an array or a pytree of arrays; the result has its structure, with one float per array.
  """
  base = jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(fn(params, *args)))
  rng = np.random.default_rng(seed)
  scale = jax.tree.map(lambda _: 0.0, base)
  for _ in range(draws):
    out = jax.device_get(fn(_nudge(jax.device_get(params), rng), *args))
    scale = jax.tree.map(lambda s, o, b: max(s, float(np.max(np.abs(np.asarray(o, np.float64) - b), initial=0.0))),
                         scale, out, base)
  # Floor: one float32 ulp of the largest output. Each path rounds its result (and the last sums that make
  # it) at that magnitude, which a nudge whose effect is below the output's spacing cannot reveal.
  return jax.tree.map(lambda s, b: max(s, float(np.spacing(np.float32(np.max(np.abs(b), initial=0.0))))),
                      scale, base)


def assert_close(actual, expected, noise, err_msg=""):
  """|actual - expected| <= FACTOR * noise elementwise (noise: one float from `noise_scale`)."""
  np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=0,
                             atol=FACTOR * noise, err_msg=err_msg)


def assert_tree_close(actual, expected, noise):
  """`assert_close` leaf by leaf over three pytrees of the same structure."""
  for (path, a), e, n in zip(jax.tree_util.tree_flatten_with_path(actual)[0], jax.tree.leaves(expected),
                             jax.tree.leaves(noise)):
    assert_close(a, e, n, err_msg=jax.tree_util.keystr(path))


def ratio(actual, expected, noise):
  """max |actual - expected| / noise (for reporting how much room a comparison has)."""
  d = float(np.max(np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64)), initial=0.0))
  return d / noise if noise > 0 else (0.0 if d == 0 else np.inf)

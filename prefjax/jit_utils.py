"""Jitting with an optional fast-compile mode for short runs (tests, `:quick` variants, notebooks).

`jit(fn, fast_compile=True, **jit_kwargs)` is the one fast-compile path of the package: the function is
compiled with `FAST_COMPILER_OPTIONS` once per abstract signature of its arguments (the pytree structure, each
array's shape, dtype, weak type and sharding, the values of the static arguments), and the executable is
cached, so a function called in a host loop compiles once. `compile_fast(jitted)` does the same for a function
that is already jitted (its shardings, donation and static arguments are kept).
"""

import inspect

import jax

# XLA's backend optimisation level 0: about twice as fast to compile, several times slower to run.
FAST_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _as_tuple(x):
  if x is None:
    return ()
  return (x,) if isinstance(x, (int, str)) else tuple(x)


def _static_args(fn, static_argnums, static_argnames):
  """`(argnums, argnames)` of the static arguments, each named one also by position and back (as jax.jit)."""
  argnums, argnames = set(_as_tuple(static_argnums)), set(_as_tuple(static_argnames))
  try:
    params = list(inspect.signature(fn).parameters.values())
  except (TypeError, ValueError):  # No signature (a builtin, a callable object): take them as given.
    return frozenset(argnums), frozenset(argnames)
  positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
  names = [p.name for p in positional]
  argnums |= {names.index(n) for n in argnames if n in names}
  argnames |= {positional[i].name for i in argnums
               if -len(positional) <= i < len(positional) and positional[i].kind != inspect.Parameter.POSITIONAL_ONLY}
  return frozenset(argnums), frozenset(argnames)


def _leaf_signature(x):
  """What a compiled executable depends on in one argument leaf (not its values)."""
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return (tuple(x.shape), str(x.dtype), bool(getattr(x, "weak_type", False)), getattr(x, "sharding", None))
  return (type(x),)  # A Python scalar: traced as a weakly typed scalar of its kind.


class _FastCompiled:
  """`jitted`, compiled with `FAST_COMPILER_OPTIONS` on the first call of each abstract signature."""

  def __init__(self, jitted, static_argnums=(), static_argnames=()):
    self._jitted = jitted
    self._static_argnums, self._static_argnames = _static_args(jitted, static_argnums, static_argnames)
    self._executables = {}
    self.__wrapped__ = jitted
    self.__doc__ = getattr(jitted, "__doc__", None)

  def _split(self, args, kwargs):
    """(signature key, dynamic args, dynamic kwargs): the static arguments go into the key only."""
    nums = {i % len(args) if i < 0 else i for i in self._static_argnums if -len(args) <= i < len(args)}
    static = (tuple((i, args[i]) for i in sorted(nums)),
              tuple(sorted((k, v) for k, v in kwargs.items() if k in self._static_argnames)))
    dyn_args = tuple(a for i, a in enumerate(args) if i not in nums)
    dyn_kwargs = {k: v for k, v in kwargs.items() if k not in self._static_argnames}
    leaves, treedef = jax.tree.flatten((dyn_args, dyn_kwargs))
    return (static, treedef, tuple(_leaf_signature(x) for x in leaves)), dyn_args, dyn_kwargs, leaves

  def __call__(self, *args, **kwargs):
    key, dyn_args, dyn_kwargs, leaves = self._split(args, kwargs)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
      return self._jitted(*args, **kwargs)  # Inside another trace: inlined, compiled with the outer program.
    if key not in self._executables:
      lowered = self._jitted.lower(*args, **kwargs)
      self._executables[key] = lowered.compile(compiler_options=FAST_COMPILER_OPTIONS)
    return self._executables[key](*dyn_args, **dyn_kwargs)

  def cache_size(self):
    """How many executables were compiled (one per abstract signature seen)."""
    return len(self._executables)


def compile_fast(jitted, *, static_argnums=(), static_argnames=()):
  """Wraps a jitted function: compiled with `FAST_COMPILER_OPTIONS` once per abstract signature, then cached.

  Args:
    jitted: a `jax.jit`-ed function (its shardings, donation and static arguments are kept).
    static_argnums: the positions `jitted` was given as `static_argnums` (those values are not passed to the
      compiled executable; each value gets its own compilation).
    static_argnames: the names `jitted` was given as `static_argnames`.

  Returns:
    A callable with the signature of `jitted`; `cache_size()` counts its compilations.
  """
  return _FastCompiled(jitted, static_argnums, static_argnames)


def jit(fn, fast_compile=False, **jit_kwargs):
  """`jax.jit(fn, **jit_kwargs)`, or with `fast_compile` the same compiled at optimisation level 0.

  For runs whose time is mostly compilation; the results are the same up to rounding, only the generated code
  is slower. The fast executable is compiled once per abstract signature of the arguments (`compile_fast`).
  """
  jitted = jax.jit(fn, **jit_kwargs)
  if not fast_compile:
    return jitted
  return compile_fast(jitted, static_argnums=jit_kwargs.get("static_argnums"),
                      static_argnames=jit_kwargs.get("static_argnames"))

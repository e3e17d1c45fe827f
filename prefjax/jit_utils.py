"""Jitting with an optional fast-compile mode for short runs (tests, `:quick` variants, notebooks)."""

import jax

# XLA's backend optimisation level 0: about twice as fast to compile, several times slower to run.
FAST_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def compile_fast(jitted):
  """Wraps a jitted function so that each call compiles it with `FAST_COMPILER_OPTIONS`, then runs it."""

  def compile_and_run(*args):
    return jitted.lower(*args).compile(compiler_options=FAST_COMPILER_OPTIONS)(*args)

  return compile_and_run


def jit(fn, fast_compile=False):
  """`jax.jit(fn)`, or with `fast_compile` a function that compiles it at optimisation level 0 when called.

  For runs whose time is mostly compilation; the results are the same, only the generated code is slower.
  """
  jitted = jax.jit(fn)
  return compile_fast(jitted) if fast_compile else jitted

"""Test configuration: silent rank promotion is an error (docs/design.md); the default tier compiles at -O0.

The default tier (`pytest -n 2`, whose `-m` expression leaves out the acceptance tier) runs with
`jax_disable_most_optimizations`: its time is mostly XLA compilation, and no test's tolerance depends on the
optimisation level (docs/testing.md). `JAX_DISABLE_MOST_OPTIMIZATIONS=1` is exported too, so subprocesses
(`python -m experiments.main`, the 8-device run of tests/multidevice) compile the same way. A test marked
`xla_optimized` (execution-bound: thousands of compiled steps) opts back into XLA's optimisations. The
acceptance tier (`-m acceptance`) compiles with XLA's default optimisations, as users run.

At the end of a default-tier run, every test whose call phase took over 30 s is listed (docs/testing.md:
the 30 s rule).
"""

import os
import shutil
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # pylint: disable=g-import-not-at-top
from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

jax.config.update("jax_numpy_rank_promotion", "raise")

# Flag used by tests/test_multidevice.py to run tests/multidevice in a subprocess of 8 simulated devices;
# the main run never collects that folder.
MULTIDEVICE_FLAG = "--xla_force_host_platform_device_count=8"
if MULTIDEVICE_FLAG not in os.environ.get("XLA_FLAGS", ""):
  collect_ignore = ["multidevice"]

SLOW_CALL_SECONDS = 30.0


def _is_default_tier(config):
  """True when the `-m` expression deselects a test marked only `acceptance` (the default tier)."""
  markexpr = config.getoption("markexpr") or ""
  if not markexpr.strip():
    return False
  from _pytest.mark.expression import Expression  # pylint: disable=g-import-not-at-top
  return not Expression.compile(markexpr).evaluate(lambda name, **kwargs: name == "acceptance")


class _SlowCalls:
  """Lists, after a default-tier run, every test whose call phase took over 30 s (the 30 s rule)."""

  def __init__(self):
    self.calls = []

  def pytest_runtest_logreport(self, report):  # With xdist, the workers' reports arrive in the controller.
    if report.when == "call" and report.duration > SLOW_CALL_SECONDS:
      self.calls.append((report.duration, report.nodeid))

  def pytest_terminal_summary(self, terminalreporter):
    terminalreporter.section(f"default-tier tests over {SLOW_CALL_SECONDS:.0f} s")
    if not self.calls:
      terminalreporter.write_line(f"none: every call phase took at most {SLOW_CALL_SECONDS:.0f} s")
      return
    for duration, nodeid in sorted(self.calls, reverse=True):
      terminalreporter.write_line(f"{duration:7.2f}s  {nodeid}")
    terminalreporter.write_line("each of these should move to the acceptance tier or become cheaper "
                                "(docs/testing.md)")


# The default tier's XLA compilation cache: one folder for the run, made empty by the controller and shared by
# the xdist workers and every subprocess they start (the variables below are jax's own settings).
CACHE_ENV = {"JAX_COMPILATION_CACHE_DIR": None, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
             "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _share_compilation_cache(config):
  """Many tests compile the same programs (the same model step, the same runner, the same eager op) in fresh
  jit closures, in both workers and in `python -m experiments.main` subprocesses; a cache on disk compiles
  each once per run. It starts empty (a new temporary folder, removed at the end), so a run from a fresh
  clone pays every compilation once, and a cached executable is the one the same compilation returns."""
  if hasattr(config, "workerinput"):
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR")  # the controller's, inherited
    if not path:
      return
  else:
    path = tempfile.mkdtemp(prefix="prefjax-test-xla-cache-")
    config._prefjax_cache_dir = path  # pylint: disable=protected-access
  os.environ.update({k: v or path for k, v in CACHE_ENV.items()})
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  compilation_cache.reset_cache()


def pytest_configure(config):
  if not _is_default_tier(config):
    return
  os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  jax.config.update("jax_disable_most_optimizations", True)
  _share_compilation_cache(config)
  if not hasattr(config, "workerinput"):  # The xdist controller (or a run without -n) reports.
    config.pluginmanager.register(_SlowCalls(), "prefjax_slow_calls")


def pytest_unconfigure(config):
  path = getattr(config, "_prefjax_cache_dir", None)
  if path:
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _xla_optimized(request):
  """A test marked `xla_optimized` compiles with XLA's optimisations in the default tier too: its time is
  running compiled code (thousands of steps), which -O0 slows down, not compiling it."""
  off = "jax_disable_most_optimizations"
  if request.node.get_closest_marker("xla_optimized") is None or not jax.config.values[off]:
    yield
    return
  jax.config.update(off, False)
  try:
    yield
  finally:
    jax.config.update(off, True)


@pytest.fixture
def x64():
  """Runs the test body with float64 enabled (oracles are checked in double precision)."""
  with jax.enable_x64(True):
    yield

"""Test configuration: silent rank promotion is an error (docs/design.md); the default tier compiles at -O0.

The default tier (`pytest -n 2`, whose `-m` expression leaves out the acceptance tier) runs with
`jax_disable_most_optimizations`: its time is mostly XLA compilation, and no test's tolerance depends on the
optimisation level (docs/testing.md). `JAX_DISABLE_MOST_OPTIMIZATIONS=1` is exported too, so subprocesses
(`python -m experiments.main`, the 8-device run of tests/multidevice) compile the same way. A test marked
`xla_optimized` (execution-bound: thousands of compiled steps) opts back into XLA's optimisations. The
acceptance tier (`-m acceptance`) compiles with XLA's default optimisations, as users run.

XLA runs its CPU kernels on one thread per test process (two workers on two cores). At the end of a default-tier
run, every test whose call phase took over 30 s is listed (docs/testing.md: the 30 s rule).
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

# Each test process runs XLA's CPU kernels on one thread: `pytest -n 2` on 2 cores keeps both busy with two
# workers, and more threads per worker only contend with the other worker (the default tier measured 378 s
# against 396 s). Set before jax starts XLA; subprocesses inherit it. Numerics are unchanged up to float32
# rounding, which every comparison allows for (docs/testing.md).
SINGLE_THREAD_FLAG = "--xla_cpu_multi_thread_eigen=false"
if SINGLE_THREAD_FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + SINGLE_THREAD_FLAG).strip()

import jax  # pylint: disable=g-import-not-at-top
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


def pytest_configure(config):
  if not _is_default_tier(config):
    return
  os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  jax.config.update("jax_disable_most_optimizations", True)

  if not hasattr(config, "workerinput"):  # The xdist controller (or a run without -n) reports.
    config.pluginmanager.register(_SlowCalls(), "prefjax_slow_calls")


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

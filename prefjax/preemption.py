"""Stopping a run cleanly on SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C).

While `handle_signals()` is active, the first SIGTERM or SIGINT only sets a flag: training loops poll it at
each step boundary (`check(...)`), save what they can (a checkpoint) and raise `Preempted`, which the
experiment runner turns into an "interrupted" mark in the workdir and the entry point into a non-zero exit
code (128 + the signal number, as a shell reports a process killed by it) and a line saying how to resume.
A second signal while the flag is set stops at once with `KeyboardInterrupt` (nothing more is saved; the
workdir is still marked interrupted, and the last checkpoint stays).

Outside the main thread Python cannot install handlers, so there `handle_signals()` does nothing.
"""

import contextlib
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):  # Not a PrefjaxError: nothing is wrong with the input.
  """The run stopped at a step boundary because SIGTERM or SIGINT was received.

  Attributes:
    signum: the signal received.
    where: what was saved, e.g. "checkpointed step 40 of <workdir>/dpo".
  """

  def __init__(self, signum, where=""):
    self.signum = int(signum)
    self.where = where
    name = signal.Signals(self.signum).name
    super().__init__(f"{name} received: stopped{'; ' + where if where else ''}")


_STATE = {"depth": 0, "signum": None, "previous": {}}


def _handler(signum, frame):
  del frame
  if _STATE["signum"] is not None:  # The second signal: stop now.
    raise KeyboardInterrupt(f"{signal.Signals(signum).name} received twice")
  _STATE["signum"] = signum
  print(f"\n{signal.Signals(signum).name} received: stopping at the next step boundary "
        f"(send it again to stop at once)", file=sys.stderr, flush=True)


@contextlib.contextmanager
def handle_signals():
  """Within the block, SIGTERM and SIGINT set the stop flag instead of killing the process.

  Re-entrant: nested blocks share the outer block's handlers and flag. The flag is cleared when the
  outermost block is entered, and the previous handlers are restored when it exits.
  """
  main = threading.current_thread() is threading.main_thread()
  if _STATE["depth"] == 0:
    _STATE["signum"] = None
    if main:
      _STATE["previous"] = {s: signal.signal(s, _handler) for s in SIGNALS}
  _STATE["depth"] += 1
  try:
    yield
  finally:
    _STATE["depth"] -= 1
    if _STATE["depth"] == 0:
      for s, previous in _STATE["previous"].items():
        signal.signal(s, previous)
      _STATE["previous"] = {}


def requested():
  """The signal number received inside `handle_signals()`, or None."""
  return _STATE["signum"]


def check(where=""):
  """Raises `Preempted` when a stop was requested (call it at step boundaries, after saving)."""
  if _STATE["signum"] is not None:
    raise Preempted(_STATE["signum"], where)


def exit_code(signum):
  """The exit status for a run stopped by `signum` (128 + signum: 143 for SIGTERM, 130 for SIGINT)."""
  return 128 + int(signum)

"""Runs `python -m experiments.main ARGS` with one injected fault (tests/test_fault_injection.py).

The fault is `$PREFJAX_FAULT = KIND:WHERE:STEP` (or empty for none), with WHERE the name of the sub-run folder
(an objective of lm_offline) whose metrics or checkpoint the fault hits:
- `sft::` — SIGKILL once the reference's SFT is done, before any training step;
- `kill:WHERE:STEP` — SIGKILL right after the metrics line of STEP is written (before that step's checkpoint);
- `torn:WHERE:STEP` — half of STEP's metrics line is written, then SIGKILL (a torn last line);
- `checkpoint:WHERE:STEP` — SIGKILL inside the checkpoint write of STEP (the state item written or being
  written in orbax's temporary folder, the step not committed);
- `sigterm:WHERE:STEP` — SIGTERM to itself after STEP's metrics line (the run saves, marks itself
  interrupted and exits 143).
The library has no test hooks: this wraps its functions from outside.
"""

import json
import os
import signal
import sys


def _install(kind, where, step):
  from prefjax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  def hits(wd, record):
    return os.path.basename(wd.path) == where and record.get("step") == step

  if kind == "sft":
    from prefjax.lm import synthetic  # pylint: disable=g-import-not-at-top
    original = synthetic.train_reference

    def train_reference(*args, **kwargs):
      out = original(*args, **kwargs)
      os.kill(os.getpid(), signal.SIGKILL)
      return out

    synthetic.train_reference = train_reference
  elif kind in ("kill", "torn", "sigterm"):
    original = workdir_lib.Workdir.append_metrics

    def append_metrics(self, record):
      if kind == "torn" and hits(self, record):
        line = json.dumps(workdir_lib.to_jsonable(record), sort_keys=True)
        with open(self.file(workdir_lib.METRICS), "a", encoding="utf-8") as f:
          f.write(line[:len(line) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
      original(self, record)
      if hits(self, record):
        os.kill(os.getpid(), signal.SIGKILL if kind == "kill" else signal.SIGTERM)

    workdir_lib.Workdir.append_metrics = append_metrics
  elif kind == "checkpoint":
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    from prefjax import checkpoint as ckpt  # pylint: disable=g-import-not-at-top
    original_save = ckpt.Checkpointer.save
    original_json = ocp.JsonCheckpointHandler.async_save
    armed = {"on": False}

    def save(self, s, state, extra=None):
      armed["on"] = os.path.basename(os.path.dirname(self.directory)) == where and int(s) == step
      return original_save(self, s, state, extra)

    async def async_save(self, *args, **kwargs):
      if armed["on"]:
        os.kill(os.getpid(), signal.SIGKILL)
      return await original_json(self, *args, **kwargs)

    ckpt.Checkpointer.save = save
    ocp.JsonCheckpointHandler.async_save = async_save
  else:
    raise ValueError(f"unknown fault {kind!r}")


def main():
  fault = os.environ.get("PREFJAX_FAULT", "")
  if fault:
    kind, where, step = fault.split(":")
    _install(kind, where, int(step) if step else None)
  from experiments import main as entry  # pylint: disable=g-import-not-at-top
  sys.exit(entry.main(["experiments.main"] + sys.argv[1:]))


if __name__ == "__main__":
  main()

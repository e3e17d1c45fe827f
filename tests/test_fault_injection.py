"""Fault injection (acceptance tier): an LM experiment killed at several points, and SIGTERM'd once, then rerun,
ends with the same record as an uninterrupted run, bit for bit on CPU, with no step duplicated or missing.

Each run is a real `python -m experiments.main` process (through tests/fault_driver.py, which injects the
fault from outside the library). Covered by the default tier in parts: tests/test_workdir.py (the workdir
contract, torn metrics lines, exit codes), tests/test_checkpoint.py (resume after a simulated crash).
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from resume_helpers import TIMING

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "fault_driver.py")
# lm_dpo_synthetic:quick shrunk: 2 objectives x 40 steps, checkpoints every 10, evaluations every 20.
OVERRIDES = ["--config.objective=sigmoid,ipo", "--config.num_steps=40", "--config.checkpoint_every=10",
             "--config.eval_every=20", "--config.log_every=5", "--config.warmup_steps=5",
             "--config.synthetic.sft_steps=20", "--config.synthetic.num_pairs=256", "--config.figure=False"]


def _run(workdir, fault=""):
  env = {**os.environ, "PREFJAX_FAULT": fault}
  cmd = [sys.executable, DRIVER, "--config=experiments/configs/lm_dpo_synthetic.py:quick",
         f"--workdir={workdir}", *OVERRIDES]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _records(path):
  with open(path, encoding="utf-8") as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f if line.strip()]


def _status(workdir):
  with open(os.path.join(workdir, "status.json"), encoding="utf-8") as f:
    return json.load(f)


@pytest.mark.acceptance
def test_kills_and_sigterm_then_rerun_match_an_uninterrupted_run(tmp_path):
  full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
  r = _run(full)
  assert r.returncode == 0, r.stderr[-3000:]

  faults = [
      ("sft::", -signal.SIGKILL),             # before any checkpoint (SFT done, no training step yet)
      ("kill:sigmoid:15", -signal.SIGKILL),   # after step 15's line, last checkpoint at 10
      ("checkpoint:sigmoid:30", -signal.SIGKILL),  # inside the write of checkpoint 30
      ("sigterm:ipo:15", 128 + signal.SIGTERM),    # clean stop: checkpoint 15, status interrupted
      ("torn:ipo:25", -signal.SIGKILL),       # half of step 25's line on disk
  ]
  for fault, code in faults:
    r = _run(cut, fault)
    assert r.returncode == code, (fault, r.returncode, r.stderr[-3000:])
    status = _status(cut)
    assert status["state"] != "complete", fault
    assert not os.path.exists(os.path.join(cut, "summary.json")), fault
    if fault.startswith("sigterm"):
      assert status["state"] == "interrupted" and "SIGTERM" in status["message"], status
      assert "resume with" in r.stderr and "experiments.main" in status["resume"], r.stderr[-2000:]
  r = _run(cut)
  assert r.returncode == 0, r.stderr[-3000:]
  assert _status(cut)["state"] == "complete"
  assert "resumed from" in r.stdout

  for name in ("metrics.jsonl", "sigmoid/metrics.jsonl", "ipo/metrics.jsonl"):
    a, b = _records(os.path.join(full, name)), _records(os.path.join(cut, name))
    assert a == b, name
  steps = [r["step"] for r in _records(os.path.join(cut, "ipo", "metrics.jsonl"))]
  assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == 40, steps
  with np.load(os.path.join(full, "arrays.npz")) as fa, np.load(os.path.join(cut, "arrays.npz")) as fb:
    assert sorted(fa.files) == sorted(fb.files)
    for k in fa.files:
      np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)
  with open(os.path.join(full, "summary.json")) as f:
    sa = json.load(f)
  with open(os.path.join(cut, "summary.json")) as f:
    sb = json.load(f)
  sa.pop("seconds"), sb.pop("seconds")
  assert sa == sb

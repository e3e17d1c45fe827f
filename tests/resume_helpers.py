"""Shared by the resume and workdir tests: a simulated crash after a given step, metrics.jsonl read back by step,
and a byte-for-byte snapshot of a folder."""

import json
import os

# Wall-clock metrics: they differ between an uninterrupted and a resumed run, everything else must not.
TIMING = ("tokens_per_second", "step_seconds", "mfu", "generated_tokens_per_second", "train_tokens_per_second")


class Crash(Exception):
  """Raised by `crash_after(step)`'s hook: the process 'dies' after that step, before its checkpoint."""


def crash_after(crash_step):
  """An `on_step(step, record)` hook for the trainers that raises `Crash` once `crash_step` is done."""

  def on_step(step, record):
    del record
    if step == crash_step:
      raise Crash()

  return on_step


def records_by_step(path):
  """`{step: record without TIMING}` from `path` (a workdir, or its metrics.jsonl)."""
  if os.path.isdir(path):
    path = os.path.join(path, "metrics.jsonl")
  out = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        r = json.loads(line)
        out[r["step"]] = {k: v for k, v in r.items() if k not in TIMING}
  return out


def snapshot(path):
  """{relative path: bytes} of every file under `path` (to check that a refused run changed nothing)."""
  out = {}
  for root, _, files in os.walk(path):
    for f in files:
      p = os.path.join(root, f)
      with open(p, "rb") as fh:
        out[os.path.relpath(p, path)] = fh.read()
  return out

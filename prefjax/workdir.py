"""The workdir is the record of a run: config.json, metrics.jsonl, arrays.npz, summary.json, figures.

Writers flush as they go (metrics are appended one JSON line at a time, files are replaced atomically), so a
crash loses at most the line being written. Readers live in `prefjax.results`.
"""

import json
import math
import os
import tempfile

import numpy as np

CONFIG = "config.json"
METRICS = "metrics.jsonl"
ARRAYS = "arrays.npz"
SUMMARY = "summary.json"


def to_jsonable(value):
  """Converts numpy/jax scalars and arrays, tuples and ConfigDicts into plain JSON values (NaN → None)."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
    return to_jsonable(value.tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _atomic_write(path, write):
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


class Workdir:
  """Writes the files of one run under `path` (created if missing)."""

  def __init__(self, path):
    self.path = os.path.abspath(path)
    os.makedirs(self.path, exist_ok=True)

  def file(self, name):
    """Absolute path of `name` inside the workdir."""
    return os.path.join(self.path, name)

  def write_json(self, name, obj):
    data = json.dumps(to_jsonable(obj), indent=2, sort_keys=True).encode()
    _atomic_write(self.file(name), lambda f: f.write(data + b"\n"))

  def write_config(self, config):
    self.write_json(CONFIG, config)

  def write_summary(self, summary):
    self.write_json(SUMMARY, summary)

  def append_metrics(self, record):
    """Appends one JSON object (one logged step) to metrics.jsonl and flushes it to disk."""
    with open(self.file(METRICS), "a", encoding="utf-8") as f:
      f.write(json.dumps(to_jsonable(record), sort_keys=True) + "\n")
      f.flush()

  def write_arrays(self, arrays):
    """Writes a dict of name → array to arrays.npz (replacing the file atomically)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _atomic_write(self.file(ARRAYS), lambda f: np.savez_compressed(f, **arrays))

  def write_text(self, name, text):
    _atomic_write(self.file(name), lambda f: f.write(text.encode()))

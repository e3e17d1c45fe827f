"""Readers of workdirs (see `prefjax.workdir`); analysis scripts read runs only through these."""

import json
import os

import numpy as np

from prefjax import workdir as workdir_lib
from prefjax.errors import PrefjaxError


def _path(workdir, name):
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    raise PrefjaxError(f"{path} does not exist: is {workdir!r} the workdir of a finished run?")
  return path


def load_config(workdir):
  with open(_path(workdir, workdir_lib.CONFIG), encoding="utf-8") as f:
    return json.load(f)


def load_summary(workdir):
  with open(_path(workdir, workdir_lib.SUMMARY), encoding="utf-8") as f:
    return json.load(f)


def load_metrics(workdir):
  """Returns the list of JSON objects in metrics.jsonl, naming the line of any malformed entry."""
  path = _path(workdir, workdir_lib.METRICS)
  records = []
  with open(path, encoding="utf-8") as f:
    for i, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise PrefjaxError(f"{path}:{i}: malformed JSON line ({e.msg})") from None
  return records


def load_arrays(workdir):
  """Returns arrays.npz as a dict of numpy arrays."""
  with np.load(_path(workdir, workdir_lib.ARRAYS)) as data:
    return {k: data[k] for k in data.files}

"""The workdir is the record of a run: config.json, status.json, metrics.jsonl, arrays.npz, summary.json, figures.

The contract every experiment runner keeps (see docs/workdir.md):

- The config is validated completely before anything is written; a bad config leaves the workdir as it was.
- A workdir holding a finished run of the same config is reported as done (nothing is rerun); one holding an
  unfinished run of the same config is resumed (resumable runners: the LM trainers) or started again from
  scratch (the others, whose whole runs take seconds to minutes); one holding a run of another config or
  experiment is refused with a message naming the differing fields, unless `overwrite=True`
  (`--overwrite` on the command line), which deletes the old run's files first.
- status.json says where the run is: "running", "complete", "interrupted" (SIGTERM/SIGINT: see
  `prefjax.preemption`; with the command that resumes it) or "failed" (with the error). A run killed
  outright (SIGKILL, a power cut) stays "running", which a rerun treats like "interrupted".
- config.json, summary.json, arrays.npz and every other whole file are written atomically (a temporary
  file renamed into place, mode 0644 under the usual umask 022); metrics.jsonl is appended one flushed
  line at a time and never holds a step twice: runners that cannot resume rewrite it, resumable trainers
  cut it back to the restored checkpoint (a torn last line from a kill is dropped).
- summary.json is written only by a run that reached its end, and status "complete" only after it and the
  figures.

Readers live in `prefjax.results`.
"""

import datetime
import functools
import json
import math
import os
import shutil
import tempfile

import numpy as np

from prefjax import preemption
from prefjax.errors import PrefjaxError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
ARRAYS = "arrays.npz"
SUMMARY = "summary.json"
STATUS = "status.json"
CHECKPOINTS = "checkpoints"

RUNNING, COMPLETE, INTERRUPTED, FAILED = "running", "complete", "interrupted", "failed"

# Names a prefjax run writes at the top of its workdir, whatever the runner (for `overwrite`).
RECORD_FILES = (CONFIG, STATUS, METRICS, ARRAYS, SUMMARY, CHECKPOINTS, "table.md", "reference_logps.npz")


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


_FILE_MODE = 0o666 & ~_umask()


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
  """Writes `path` through a temporary file in the same folder renamed into place (mode 0644).

  An OSError becomes a `PrefjaxError` naming `path` (not the temporary file).
  """
  directory = os.path.dirname(os.path.abspath(path))
  tmp = None
  try:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    os.fchmod(fd, _FILE_MODE)  # mkstemp creates 0600; the record is as readable as any other file.
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.replace(tmp, path)
  except OSError as e:
    raise PrefjaxError(f"cannot write {path}: {e.strerror or e}") from None
  finally:
    if tmp is not None and os.path.exists(tmp):
      os.remove(tmp)


def _now():
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _normalised(config):
  """The JSON form of a config, as config.json stores it (tuples become lists, NaN None)."""
  return json.loads(json.dumps(to_jsonable(config), sort_keys=True))


def _differences(old, new, prefix="", out=None):
  """['field: old → new', ...] between two JSON configs (nested dicts walked, dotted names)."""
  out = [] if out is None else out
  for k in sorted(set(old) | set(new)):
    a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
    if isinstance(a, dict) and isinstance(b, dict):
      _differences(a, b, f"{prefix}{k}.", out)
    elif a != b:
      out.append(f"{prefix}{k}: {json.dumps(a)} → {json.dumps(b)}")
  return out


def _read_json(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def check_path(path):
  """The absolute workdir path, or a `PrefjaxError` for an empty path or one that cannot be a folder."""
  if path is None or not str(path).strip():
    raise PrefjaxError("the workdir is empty: give a folder for the run's outputs, e.g. --workdir=runs/NAME")
  path = os.path.abspath(os.path.expanduser(str(path)))
  if os.path.exists(path) and not os.path.isdir(path):
    raise PrefjaxError(f"workdir {path} is a file, not a folder: give another --workdir")
  parent = os.path.dirname(path)
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if parent and not os.path.isdir(parent):
    raise PrefjaxError(f"workdir {path} cannot be created: {parent} is a file, not a folder")
  return path


class Workdir:
  """Writes the files of one run under `path` (created if missing).

  `Workdir(path)` is the plain writer (trainers called from a script use it); `Workdir.begin` opens a workdir
  for an experiment under the contract of the module docstring.
  """

  def __init__(self, path):
    self.path = check_path(path)
    try:
      os.makedirs(self.path, exist_ok=True)
    except OSError as e:
      raise PrefjaxError(f"cannot create workdir {self.path}: {e.strerror or e}") from None
    self.finished = None  # The summary of a finished run found by `begin`.
    self._status = None   # status.json's contents once `begin` has written it.

  # --- the contract -------------------------------------------------------------------------------------

  @classmethod
  def begin(cls, path, config, *, resumable=False, overwrite=False):
    """Opens `path` for a run of `config` (already validated) under the workdir contract.

    Returns a `Workdir` whose `finished` is the stored summary when the same config already ran to the end
    (nothing is written then), and None when the run is to be done (config.json and status "running"
    written; for a non-resumable runner, an earlier unfinished attempt's files removed).

    Raises:
      PrefjaxError: the path cannot be a workdir (empty, a file, under a file, not writable), or it holds
        a run of another config or experiment and `overwrite` is False.
    """
    path = check_path(path)
    new = _normalised(config)
    old = _read_json(os.path.join(path, CONFIG)) if os.path.isdir(path) else None
    status = _read_json(os.path.join(path, STATUS)) if os.path.isdir(path) else None
    leftovers = [n for n in RECORD_FILES if os.path.exists(os.path.join(path, n))]
    if old is None and leftovers and not overwrite:
      raise PrefjaxError(
          f"workdir {path} holds run files ({', '.join(leftovers)}) but no readable {CONFIG}: choose another "
          f"--workdir, or pass --overwrite to replace them")
    if old is not None and old != new and not overwrite:
      what = (f"experiment {old.get('experiment')!r}" if old.get("experiment") != new.get("experiment")
              else "another config")
      diff = _differences(old, new) if isinstance(old, dict) else ["<unreadable>"]
      shown = "; ".join(diff[:6]) + (f"; … ({len(diff) - 6} more)" if len(diff) > 6 else "")
      raise PrefjaxError(
          f"workdir {path} holds a run of {what} ({shown}): choose another --workdir, or pass --overwrite "
          f"to replace it")
    wd = cls(path)
    if old is not None and old != new:  # overwrite
      wd._remove_record(status)
    elif old is None and leftovers:  # overwrite of files without a config
      wd._remove_record(status)
    elif old is not None:
      state = (status or {}).get("state")
      summary = _read_json(wd.file(SUMMARY))
      # Workdirs written before status.json existed count as finished when they hold a summary.
      finished = state == COMPLETE or (status is None and summary is not None)
      if finished and summary is not None and not overwrite:
        wd.finished = summary
        return wd
      if overwrite or not resumable:
        wd._remove_record(status)
      else:
        wd._remove(SUMMARY)
    wd.write_json(CONFIG, config)
    files = sorted(set((status or {}).get("files", [])) | {CONFIG, STATUS}) if resumable else [CONFIG, STATUS]
    wd._status = {"state": RUNNING, "experiment": new.get("experiment"), "started": _now(), "files": files}
    wd._write_status()
    return wd

  def set_state(self, state, **fields):
    """Records the run's state (RUNNING, COMPLETE, INTERRUPTED, FAILED) and any message in status.json."""
    if self._status is None:
      self._status = {"files": []}
    for k in ("message", "resume"):
      self._status.pop(k, None)
    self._status.update(state=state, updated=_now(), **{k: v for k, v in fields.items() if v is not None})
    self._write_status()

  @property
  def status(self):
    return dict(self._status or _read_json(self.file(STATUS)) or {})

  def _write_status(self):
    data = json.dumps(to_jsonable(self._status), indent=2, sort_keys=True).encode()
    _atomic_write(self.file(STATUS), lambda f: f.write(data + b"\n"))

  def _track(self, name):
    top = os.path.normpath(name).split(os.sep)[0]
    if self._status is not None and top not in self._status["files"] and not top.startswith(".tmp-"):
      self._status["files"] = sorted(self._status["files"] + [top])
      self._write_status()

  def _remove(self, name):
    p = self.file(name)
    if os.path.isdir(p) and not os.path.islink(p):
      shutil.rmtree(p)
    elif os.path.lexists(p):
      os.remove(p)

  def _remove_record(self, status):
    """Deletes an earlier run's files: those status.json lists, the standard names, and its figures."""
    names = set(RECORD_FILES) | set((status or {}).get("files", []))
    for name in sorted(names):
      if name and os.sep not in name and name not in (".", ".."):
        self._remove(name)

  # --- writers ------------------------------------------------------------------------------------------

  def file(self, name):
    """Absolute path of `name` inside the workdir (a file the run writes is recorded in status.json)."""
    self._track(name)
    return os.path.join(self.path, name)

  def subdir(self, name):
    """A `Workdir` for `name` inside this one (an objective's or algorithm's own run), recorded here."""
    self._track(name)
    return Workdir(os.path.join(self.path, name))

  def write_json(self, name, obj):
    data = json.dumps(to_jsonable(obj), indent=2, sort_keys=True).encode()
    _atomic_write(self.file(name), lambda f: f.write(data + b"\n"))

  def write_config(self, config):
    self.write_json(CONFIG, config)

  def write_summary(self, summary):
    self.write_json(SUMMARY, summary)

  def append_metrics(self, record):
    """Appends one JSON object (one logged step) to metrics.jsonl and flushes it to disk."""
    path = self.file(METRICS)
    try:
      with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(to_jsonable(record), sort_keys=True) + "\n")
        f.flush()
    except OSError as e:
      raise PrefjaxError(f"cannot write {path}: {e.strerror or e}") from None

  def write_metrics(self, records):
    """Replaces metrics.jsonl by `records` (one JSON line each), atomically."""
    data = "".join(json.dumps(to_jsonable(r), sort_keys=True) + "\n" for r in records).encode()
    _atomic_write(self.file(METRICS), lambda f: f.write(data))

  def truncate_metrics(self, last_step):
    """Keeps the metrics.jsonl lines with step ≤ `last_step` (None: none), dropping a torn last line.

    A resumed trainer calls this with the restored checkpoint's step, so no step is logged twice.
    """
    path = os.path.join(self.path, METRICS)
    if not os.path.exists(path):
      return
    kept = []
    with open(path, encoding="utf-8", errors="replace") as f:
      for line in f:
        try:
          record = json.loads(line)
        except ValueError:  # A line torn by a kill mid-write (or any garbage): not a logged step.
          continue
        if last_step is not None and isinstance(record, dict) and record.get("step", 0) <= last_step:
          kept.append(record)
    self.write_metrics(kept)

  def write_arrays(self, arrays):
    """Writes a dict of name → array to arrays.npz (replacing the file atomically)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _atomic_write(self.file(ARRAYS), lambda f: np.savez_compressed(f, **arrays))

  def write_text(self, name, text):
    _atomic_write(self.file(name), lambda f: f.write(text.encode()))


def experiment(validate=None, *, resumable=False):
  """Decorates `run(config, wd) -> summary` into a runner `run(config, workdir, *, overwrite=False,
  command=None)` that keeps the workdir contract.

  The runner validates the config (`validate(config)` raises `PrefjaxError`), opens the workdir with
  `Workdir.begin` (returning the stored summary of a finished run), runs `run` with SIGTERM/SIGINT handled
  (`prefjax.preemption`), and records the outcome in status.json: "complete", "interrupted" (with
  `command`, the command that resumes the run, when given) or "failed".
  """

  def wrap(fn):
    @functools.wraps(fn)
    def run(config, workdir, *, overwrite=False, command=None):
      if validate is not None:
        validate(config)
      wd = workdir if isinstance(workdir, Workdir) else Workdir.begin(
          workdir, config, resumable=resumable, overwrite=overwrite)
      if wd.finished is not None:
        print(f"{wd.path} already holds a finished run of this config (summary.json); nothing to do "
              f"(--overwrite runs it again)", flush=True)
        return wd.finished
      resume = command or "rerun the same call with the same workdir"
      with preemption.handle_signals():
        try:
          summary = fn(config, wd)
        except preemption.Preempted as e:
          wd.set_state(INTERRUPTED, message=str(e), resume=resume)
          raise
        except KeyboardInterrupt as e:
          wd.set_state(INTERRUPTED, message=f"KeyboardInterrupt {e}".strip(), resume=resume)
          raise
        except BaseException as e:
          wd.set_state(FAILED, message=f"{type(e).__name__}: {e}")
          raise
      wd.set_state(COMPLETE)
      return summary

    run.validate = validate
    run.resumable = resumable
    return run

  return wrap

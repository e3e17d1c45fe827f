"""Battles tables: loading, validation and the win-count sufficient statistics.

A battle is one pairwise comparison (model_a, model_b, winner) with winner ∈ {a, b, tie}, as in Chatbot
Arena's public data (Chiang et al. 2403.04132). On the host a table is a `Battles` tuple of integer arrays
plus the list of model names; the models in `prefjax.ranking.models` only need the `[N, N]` win and tie
counts (`BattleCounts`), so fitting costs O(N²) per iteration whatever the number of battles.

Outcome codes: `A_WINS = 0`, `B_WINS = 1`, `TIE = 2`.

Files (`load_battles`; `prefjax.ranking.load_ratings` uses the same readers) are UTF-8; a line that is not
valid UTF-8 is an error naming the file, the line, the byte and its column. A CSV file has a header row;
columns other than the required ones are allowed (and ignored), but every row must have exactly as many
cells as the header: an extra cell (e.g. an unquoted comma inside a model name) would shift or drop data, so
it is an error naming the file, the line and the header's columns.
"""

import csv
import functools
import json
import math
import os
import re
from typing import NamedTuple
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy.sparse import csgraph

from prefjax.errors import PrefjaxError

A_WINS = 0
B_WINS = 1
TIE = 2

# Accepted `winner` labels (compared lower-cased and stripped) → outcome code. Chatbot Arena writes
# "model_a", "model_b", "tie" and "tie (bothbad)".
OUTCOME_LABELS = {
    "model_a": A_WINS,
    "a": A_WINS,
    "model_b": B_WINS,
    "b": B_WINS,
    "tie": TIE,
    "tie (bothbad)": TIE,
    "tie_bothbad": TIE,
    "both_bad": TIE,
    "draw": TIE,
}

# A numeric `winner` is model_a's score: 1 (a wins), 0 (b wins) or ½ (tie).
NUMERIC_OUTCOMES = {1.0: A_WINS, 0.0: B_WINS, 0.5: TIE}

REQUIRED_FIELDS = ("model_a", "model_b", "winner")


class Battles(NamedTuple):
  """A battles table as integer arrays.

  Attributes:
    model_a: `[B]` int32 index of the first model of each battle.
    model_b: `[B]` int32 index of the second model.
    outcome: `[B]` int32 outcome code (`A_WINS`, `B_WINS` or `TIE`).
    model_names: the `N` model names; index i in the arrays is `model_names[i]`.
  """
  model_a: np.ndarray
  model_b: np.ndarray
  outcome: np.ndarray
  model_names: tuple


class BattleCounts(NamedTuple):
  """Sufficient statistics of a battles table for every pairwise model here.

  Attributes:
    wins: `[N, N]` wins[i, j] = number of battles in which i beat j (either seat).
    ties: `[N, N]` symmetric, ties[i, j] = ties[j, i] = number of ties between i and j; diagonal 0.
  """
  wins: jax.Array
  ties: jax.Array


def is_tracer(x):
  return isinstance(x, jax.core.Tracer)


def _parse_winner(value, name_a, name_b, where):
  """Maps one `winner` field to an outcome code; `where` names the file and line for errors."""
  if isinstance(value, bool):
    raise PrefjaxError(f"{where}: winner must be a label or a number in {{0, 0.5, 1}}, got {value!r}")
  if isinstance(value, (int, float)):
    number = float(value)
  else:
    label = str(value).strip()
    code = OUTCOME_LABELS.get(label.lower())
    if code is not None:
      return code
    if label == name_a:
      return A_WINS
    if label == name_b:
      return B_WINS
    try:
      number = float(label)
    except ValueError:
      raise PrefjaxError(
          f"{where}: unknown winner label {label!r}; accepted labels are "
          f"{sorted(OUTCOME_LABELS)}, the name of model_a or model_b, or model_a's score "
          "1, 0 or 0.5") from None
  if math.isnan(number):
    raise PrefjaxError(f"{where}: winner score is NaN")
  code = NUMERIC_OUTCOMES.get(number)
  if code is None:
    raise PrefjaxError(
        f"{where}: numeric winner must be model_a's score 1 (a wins), 0 (b wins) or 0.5 (tie), "
        f"got {number!r}")
  return code


def _parse_record(record, where):
  """Validates one record (a dict) and returns (name_a, name_b, outcome code)."""
  if not isinstance(record, dict):
    raise PrefjaxError(f"{where}: expected an object with keys {list(REQUIRED_FIELDS)}, got "
                       f"{type(record).__name__}")
  for field in REQUIRED_FIELDS:
    value = record.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
      raise PrefjaxError(f"{where}: missing field {field!r}")
  name_a = str(record["model_a"]).strip()
  name_b = str(record["model_b"]).strip()
  if name_a == name_b:
    raise PrefjaxError(f"{where}: model_a == model_b == {name_a!r} (a model cannot battle itself)")
  return name_a, name_b, _parse_winner(record["winner"], name_a, name_b, where)


def battles_from_records(records, *, model_names=None, source="records"):
  """Builds a `Battles` table from `(where, record)` pairs or plain dict records.

  Args:
    records: iterable of dicts with keys `model_a`, `model_b`, `winner`, or of `(where, dict)` pairs
      where `where` is the text used to name the row in errors (e.g. "file.csv line 7").
    model_names: optional list fixing the model order (and including models that may never play); by
      default the sorted set of names that appear.
    source: how to call the records in errors when they come without a `where`.

  Returns:
    A `Battles` table.

  Raises:
    PrefjaxError: naming the row of an unknown outcome label, a NaN score, a missing field, a self-battle,
      or a model that is not in `model_names`.
  """
  names_a, names_b, outcomes = [], [], []
  for i, item in enumerate(records):
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
      where, record = item
    else:
      where, record = f"{source} row {i}", item
    a, b, code = _parse_record(record, where)
    names_a.append(a)
    names_b.append(b)
    outcomes.append(code)
  if model_names is None:
    model_names = sorted(set(names_a) | set(names_b))
  model_names = tuple(str(n) for n in model_names)
  if len(set(model_names)) != len(model_names):
    raise PrefjaxError(f"model_names has duplicates: {model_names}")
  index = {n: i for i, n in enumerate(model_names)}
  unknown = sorted((set(names_a) | set(names_b)) - set(index))
  if unknown:
    raise PrefjaxError(f"{source}: models {unknown} are not in model_names")
  return Battles(
      model_a=np.asarray([index[n] for n in names_a], dtype=np.int32),
      model_b=np.asarray([index[n] for n in names_b], dtype=np.int32),
      outcome=np.asarray(outcomes, dtype=np.int32),
      model_names=model_names)


# Bytes that are not valid UTF-8 come out of a `surrogateescape` decode as lone surrogates U+DC80..U+DCFF
# (a valid decode never produces those), so the first one locates the bad byte.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def check_utf8(text, where):
  """Raises `PrefjaxError` naming `where` if `text` (read with errors="surrogateescape") had a bad byte.

  The column is 1-based, in characters of the line as decoded up to the bad byte.
  """
  bad = _UNDECODABLE.search(text)
  if bad is not None:
    line_start = text.rfind("\n", 0, bad.start()) + 1
    raise PrefjaxError(f"{where}: not valid UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02x} at column "
                       f"{bad.start() - line_start + 1})")


def _utf8_lines(f, path):
  """The lines of a text file opened with errors="surrogateescape", each checked by `check_utf8`."""
  for line_num, line in enumerate(f, start=1):
    check_utf8(line, f"{path} line {line_num}")
    yield line


def _csv_records(path, required=REQUIRED_FIELDS):
  with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
    reader = csv.DictReader(_utf8_lines(f, path))
    if reader.fieldnames is None:
      raise PrefjaxError(f"{path}: empty CSV file (expected a header with {list(required)})")
    missing = [c for c in required if c not in [h.strip() for h in reader.fieldnames]]
    if missing:
      raise PrefjaxError(f"{path} line 1: header lacks columns {missing} (has {reader.fieldnames})")
    columns = [h.strip() for h in reader.fieldnames]
    for row in reader:
      extra = row.get(None)
      if extra is not None:
        raise PrefjaxError(
            f"{path} line {reader.line_num}: {len(columns) + len(extra)} cells but the header has "
            f"{len(columns)} columns {columns} (extra {extra!r}; quote a cell that contains a comma)")
      row = {k.strip(): v for k, v in row.items() if k is not None}
      yield f"{path} line {reader.line_num}", row


def _jsonl_records(path, required=REQUIRED_FIELDS):
  del required  # Checked per record by the caller.
  with open(path, encoding="utf-8", errors="surrogateescape") as f:
    for line_num, line in enumerate(f, start=1):
      check_utf8(line, f"{path} line {line_num}")
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise PrefjaxError(f"{path} line {line_num}: malformed JSON ({e.msg})") from None
      yield f"{path} line {line_num}", record


def _json_records(path, required=REQUIRED_FIELDS):
  del required  # Checked per record by the caller.
  with open(path, encoding="utf-8", errors="surrogateescape") as f:
    text = f.read()
  bad = _UNDECODABLE.search(text)
  if bad is not None:
    check_utf8(text[text.rfind("\n", 0, bad.start()) + 1:],
               f"{path} line {text.count(chr(10), 0, bad.start()) + 1}")
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise PrefjaxError(f"{path} line {e.lineno}: malformed JSON ({e.msg})") from None
  if not isinstance(data, list):
    raise PrefjaxError(f"{path}: a .json file must hold a list of records")
  for i, record in enumerate(data):
    yield f"{path} record {i}", record


# File suffix → record reader `reader(path, required_fields)` yielding `(where, record)` pairs.
READERS = {".csv": _csv_records, ".jsonl": _jsonl_records, ".json": _json_records}


def load_battles(path, *, model_names=None):
  """Loads a battles table from a CSV, JSONL or JSON (list of records) file.

  Each row/record needs `model_a`, `model_b` and `winner`; other columns are ignored (a CSV row must still
  have one cell per header column: an extra cell is an error). `winner` is one of
  `OUTCOME_LABELS` (Chatbot Arena's "model_a", "model_b", "tie", "tie (bothbad)", …), the name of one of
  the two models, or model_a's numeric score 1, 0 or 0.5.

  Args:
    path: file path; the suffix (.csv, .jsonl, .json) picks the reader.
    model_names: optional model order (see `battles_from_records`).

  Returns:
    A `Battles` table.

  Raises:
    PrefjaxError: naming the file and line of any bad row (unknown label, NaN score, missing field,
      model_a == model_b, malformed JSON, bytes that are not UTF-8, a CSV row with more cells than the
      header), or an unknown suffix.
  """
  path = os.fspath(path)
  suffix = os.path.splitext(path)[1].lower()
  reader = READERS.get(suffix)
  if reader is None:
    raise PrefjaxError(f"load_battles: unknown file type {suffix!r} for {path}; known: {sorted(READERS)}")
  battles = battles_from_records(reader(path), model_names=model_names, source=path)
  if battles.outcome.size == 0:
    raise PrefjaxError(f"{path}: no battles")
  return battles


def battles_from_arrays(model_a, model_b, outcome, model_names):
  """Validates integer battle arrays and wraps them in a `Battles` table.

  Args:
    model_a: `[B]` ints in [0, N).
    model_b: `[B]` ints in [0, N), different from `model_a` row by row.
    outcome: `[B]` outcome codes in {A_WINS, B_WINS, TIE}.
    model_names: N names, or an int N (names become "0", …, "N−1").

  Returns:
    A `Battles` table (numpy int32 arrays).
  """
  if isinstance(model_names, (int, np.integer)):
    model_names = [str(i) for i in range(int(model_names))]
  model_names = tuple(str(n) for n in model_names)
  n = len(model_names)
  arrays = {}
  for name, x in (("model_a", model_a), ("model_b", model_b), ("outcome", outcome)):
    x = np.asarray(x)
    if x.ndim != 1:
      raise PrefjaxError(f"battles_from_arrays: {name} must have shape [B], got {x.shape}")
    if x.size and not np.issubdtype(x.dtype, np.integer):
      if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise PrefjaxError(f"battles_from_arrays: {name} row {bad} is {x[bad]} (not an integer)")
      if not np.all(x == np.round(x)):
        bad = int(np.flatnonzero(x != np.round(x))[0])
        raise PrefjaxError(f"battles_from_arrays: {name} row {bad} is {x[bad]} (not an integer)")
    arrays[name] = x.astype(np.int32)
  a, b, o = arrays["model_a"], arrays["model_b"], arrays["outcome"]
  if not a.shape == b.shape == o.shape:
    raise PrefjaxError(
        f"battles_from_arrays: model_a, model_b, outcome shapes differ: {a.shape}, {b.shape}, {o.shape}")
  for name, x in (("model_a", a), ("model_b", b)):
    bad = np.flatnonzero((x < 0) | (x >= n))
    if bad.size:
      raise PrefjaxError(
          f"battles_from_arrays: {name} row {int(bad[0])} = {int(x[bad[0]])} is not a model index in "
          f"[0, {n})")
  bad = np.flatnonzero(a == b)
  if bad.size:
    raise PrefjaxError(f"battles_from_arrays: row {int(bad[0])} has model_a == model_b == {int(a[bad[0]])}")
  bad = np.flatnonzero((o < 0) | (o > TIE))
  if bad.size:
    raise PrefjaxError(
        f"battles_from_arrays: outcome row {int(bad[0])} = {int(o[bad[0]])} is not an outcome code "
        f"(0 = a wins, 1 = b wins, 2 = tie)")
  return Battles(a, b, o, model_names)


@functools.partial(jax.jit, static_argnames=("num_models", "dtype"))
def _count_battles(model_a, model_b, outcome, num_models, dtype):
  n = num_models
  winner = jnp.where(outcome == B_WINS, model_b, model_a)
  loser = jnp.where(outcome == B_WINS, model_a, model_b)
  is_tie = (outcome == TIE).astype(dtype)
  wins = jnp.zeros(n * n, dtype).at[winner * n + loser].add(1.0 - is_tie)
  ties = (jnp.zeros(n * n, dtype).at[model_a * n + model_b].add(is_tie)
          .at[model_b * n + model_a].add(is_tie))
  return BattleCounts(wins.reshape(n, n), ties.reshape(n, n))


def count_battles(model_a, model_b, outcome, num_models, dtype=None):
  """Win and tie counts of a battles table (jit-compatible; `num_models` is static).

  Args:
    model_a: `[B]` int model indices.
    model_b: `[B]` int model indices.
    outcome: `[B]` outcome codes.
    num_models: N.
    dtype: count dtype; default float32 (float64 under x64). float32 counts are exact up to 2²⁴ per cell.

  Returns:
    `BattleCounts` with `[N, N]` wins and symmetric ties.
  """
  dtype = jnp.dtype(dtype) if dtype is not None else jax.dtypes.canonicalize_dtype(jnp.float64)
  return _count_battles(jnp.asarray(model_a, jnp.int32), jnp.asarray(model_b, jnp.int32),
                        jnp.asarray(outcome, jnp.int32), int(num_models), dtype)


def as_counts(data):
  """Returns `(BattleCounts, model_names or None)` for a `Battles` table or `BattleCounts`."""
  if isinstance(data, Battles):
    return count_battles(data.model_a, data.model_b, data.outcome, len(data.model_names)), data.model_names
  if isinstance(data, BattleCounts):
    wins = jnp.asarray(data.wins)
    ties = jnp.asarray(data.ties, wins.dtype)
    if wins.ndim < 2 or wins.shape[-1] != wins.shape[-2] or ties.shape != wins.shape:
      raise PrefjaxError(
          f"BattleCounts: wins and ties must both have shape [N, N], got {wins.shape} and {ties.shape}")
    return BattleCounts(wins, ties), None
  raise PrefjaxError(f"expected a Battles table or BattleCounts, got {type(data).__name__}")


def model_label(model_names, i):
  """How error messages name model i: its quoted name, or "index i" without names."""
  return repr(model_names[i]) if model_names is not None else f"index {i}"


def check_counts(counts, model_names=None, *, l2=0.0, what="Bradley–Terry", stacklevel=2):
  """Checks that a pairwise maximum-likelihood fit is defined; skipped under tracing.

  - Counts must be finite and non-negative and ties symmetric.
  - A model that never plays → error naming it (its score is undetermined).
  - A disconnected comparison graph → error (scores of different components are not comparable, so the
    MLE is undefined) unless `l2 > 0`.
  - A connected graph that is not strongly connected in the win direction (some group never loses to the
    rest; Zermelo/Ford's condition, see Hunter 2004) → warning: the MLE runs off to infinity. Ties count
    as a win for both sides here.

  Args:
    counts: `BattleCounts` with `[N, N]` arrays.
    model_names: optional names for messages.
    l2: the regularisation strength the fit will use.
    what: model name used in messages.
    stacklevel: `warnings.warn` stack level, counted from the caller of this function (2 = its caller).
  """
  if is_tracer(counts.wins) or is_tracer(counts.ties):
    return
  wins = np.asarray(counts.wins, np.float64)
  ties = np.asarray(counts.ties, np.float64)
  if wins.ndim != 2:
    return  # batched counts (e.g. bootstrap replicates) are checked by the caller on the originals.
  if not (np.all(np.isfinite(wins)) and np.all(np.isfinite(ties))):
    raise PrefjaxError("battle counts have non-finite entries")
  if wins.min() < 0 or ties.min() < 0:
    raise PrefjaxError("battle counts must be non-negative")
  if not np.allclose(ties, ties.T):
    raise PrefjaxError("ties must be symmetric: ties[i, j] = ties[j, i] = number of ties between i and j")
  played = wins + wins.T + ties
  np.fill_diagonal(played, 0.0)
  games = played.sum(1)
  idle = np.flatnonzero(games == 0)
  if idle.size:
    names = ", ".join(model_label(model_names, int(i)) for i in idle)
    noun, verb, its, it = (("model", "plays", "its", "it") if idle.size == 1
                           else ("models", "play", "their", "them"))
    raise PrefjaxError(
        f"{noun} {names} never {verb}: {its} {what} score is undetermined; drop {it} from model_names")
  if wins.shape[0] < 2:
    raise PrefjaxError(f"{what}: need at least 2 models, got {wins.shape[0]}")
  ncomp, labels = csgraph.connected_components(played > 0, directed=False)
  if ncomp > 1 and l2 <= 0:
    groups = []
    for c in range(min(ncomp, 3)):
      members = [model_names[i] if model_names is not None else i for i in np.flatnonzero(labels == c)]
      groups.append(str(members[:5]) + ("…" if len(members) > 5 else ""))
    raise PrefjaxError(
        f"the comparison graph is disconnected ({ncomp} components: {'; '.join(groups)}): the {what} "
        "MLE is undefined because scores in different components are not comparable; pass l2= "
        "(e.g. l2=1e-3) to regularise toward 0, or add battles that connect the components")
  if l2 <= 0:
    beats = (wins + ties) > 0
    nstrong, _ = csgraph.connected_components(beats, directed=True, connection="strong")
    if nstrong > 1:
      warnings.warn(
          f"{what}: the win graph is not strongly connected (some models never lose to the rest), so "
          "the MLE is infinite and the fitted scores grow until the iteration limit; pass l2= to "
          "regularise", RuntimeWarning, stacklevel=stacklevel + 1)


def check_finite_scores(x, name):
  """Raises `PrefjaxError` naming the first NaN/inf row of a concrete score array; no-op under tracing."""
  if is_tracer(x):
    return
  arr = np.asarray(x)
  bad = ~np.isfinite(arr)
  if bad.any():
    idx = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), arr.shape)
    where = idx[0] if len(idx) == 1 else tuple(int(i) for i in idx)
    raise PrefjaxError(f"{name} row {where} is {arr[idx]} (scores must be finite)")

"""Rating-based class likelihoods (RbRL: White et al., "Rating-based Reinforcement Learning", arXiv 2307.16348).

A rater puts each item (a trajectory segment, a model's answer) into one of n ordered classes 0 < 1 < … < n−1
("very bad" … "very good") instead of comparing two items. RbRL's prediction model: with the item's
normalised return R̃ ∈ [0, 1] and class boundaries 0 = R̄_0 < R̄_1 < … < R̄_n = 1,

  Q(i | R̃) = exp(−k (R̃ − R̄_i)(R̃ − R̄_{i+1})) / Σ_j exp(−k (R̃ − R̄_j)(R̃ − R̄_{j+1})),

the product being negative exactly when R̃ lies inside class i's interval, so that class is the most likely,
more sharply as k grows; the reward model is trained with the multi-class cross-entropy −Σ_i μ(i) log Q(i | R̃)
against the rater's one-hot class μ (2307.16348, Sec. "Rating-based reinforcement learning": the rating
prediction model and its loss; the equation numbers are not verified here). In the paper R̃ is the predicted
return min–max normalised over the training batch, and the boundaries follow the classes' proportions in the
ratings; `normalise_returns` and `quantile_boundaries` implement those two steps.

Maximum likelihood. The quadratic term −k R̃² is common to every class, so log Q(i | s) is affine in the score
s up to the log-normaliser: a multinomial logit with logits a_i s + b_i, a_i = k (R̄_i + R̄_{i+1}),
b_i = −k R̄_i R̄_{i+1}. The negative log-likelihood of the ratings is therefore convex in the scores and, with
the boundaries fixed, identifies the scores absolutely (no shift freedom, unlike Bradley–Terry): `fit_rbrl`
estimates each item's score on the R̃ scale by Newton's method on the `[N, n]` rating counts. The score's
MLE is infinite when all of an item's ratings are in the bottom or top class (the logit slopes a_i increase
with i); that is an error unless `l2 > 0` regularises it.

Ratings tables load from CSV/JSONL/JSON like battles (`load_ratings`, fields `item` and `rating`), with
errors naming the file and line of a bad class label.
"""

import math
import os
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.ranking import battles as battles_lib
from prefjax.ranking import models as models_lib

REQUIRED_FIELDS = ("item", "rating")


class Ratings(NamedTuple):
  """A ratings table: `item` `[M]` int item ids, `rating` `[M]` int classes in [0, n), and the names.

  Attributes:
    item: `[M]` int32 item index per rating.
    rating: `[M]` int32 class per rating (0 = lowest).
    item_names: tuple of N item names.
    class_names: tuple of n class names (lowest first).
  """
  item: np.ndarray
  rating: np.ndarray
  item_names: tuple
  class_names: tuple


def _check_boundaries(boundaries, k):
  """Validates concrete boundaries `[n + 1]` (finite, strictly increasing, n ≥ 2) and k > 0."""
  b = jnp.asarray(boundaries)
  if b.ndim != 1 or b.shape[0] < 3:
    raise PrefjaxError(f"boundaries must be a vector R̄_0 < … < R̄_n with n ≥ 2 classes, got shape {b.shape}")
  if not battles_lib.is_tracer(b):
    arr = np.asarray(b, np.float64)
    if not np.all(np.isfinite(arr)):
      raise PrefjaxError(f"boundaries must be finite, got {arr.tolist()}")
    if not np.all(np.diff(arr) > 0):
      raise PrefjaxError(f"boundaries must be strictly increasing, got {arr.tolist()}")
  if not battles_lib.is_tracer(k) and not float(k) > 0:
    raise PrefjaxError(f"k must be > 0, got {k}")


def class_logits(scores, boundaries, k):
  """RbRL's class logits −k (R̃ − R̄_i)(R̃ − R̄_{i+1}) (2307.16348), one per class.

  Args:
    scores: `[...]` normalised returns R̃ (any real value is accepted; the paper's lie in [0, 1]).
    boundaries: `[n + 1]` increasing class boundaries R̄_0 … R̄_n.
    k: scalar sharpness k > 0.

  Returns:
    `[..., n]` logits.
  """
  _check_boundaries(boundaries, k)
  b = jnp.asarray(boundaries)
  s = jnp.asarray(scores)[..., None]
  shape = (1,) * (s.ndim - 1) + (-1,)
  return -k * (s - b[:-1].reshape(shape)) * (s - b[1:].reshape(shape))


def class_log_probs(scores, boundaries, k):
  """log Q(i | R̃), the RbRL class probabilities (log-softmax of `class_logits`), `[..., n]`."""
  return jax.nn.log_softmax(class_logits(scores, boundaries, k), axis=-1)


def rbrl_loss(scores, labels, boundaries, k):
  """RbRL's multi-class cross-entropy −Σ_i μ(i) log Q(i | R̃) per rated item.

  Args:
    scores: `[B]` normalised returns R̃.
    labels: `[B]` int classes, or `[B, n]` class distributions μ (one-hot for hard ratings).
    boundaries: `[n + 1]` class boundaries.
    k: sharpness k > 0.

  Returns:
    `[B]` losses.
  """
  logq = class_log_probs(scores, boundaries, k)
  labels = jnp.asarray(labels)
  if labels.ndim == jnp.ndim(scores):
    labels = jax.nn.one_hot(labels, logq.shape[-1], dtype=logq.dtype)
  if labels.shape != logq.shape:
    raise PrefjaxError(f"labels must be [B] classes or [B, n] distributions, got {labels.shape} for "
                       f"log-probabilities {logq.shape}")
  return -jnp.sum(labels * logq, axis=-1)


def normalise_returns(returns, axis=-1):
  """The paper's R̃: returns min–max normalised to [0, 1] over `axis` (a batch of rated segments).

  A batch whose returns are all equal maps to 0 (the normalisation is undefined there).
  """
  returns = jnp.asarray(returns)
  lo = jnp.min(returns, axis=axis, keepdims=True)
  span = jnp.max(returns, axis=axis, keepdims=True) - lo
  return jnp.where(span > 0, (returns - lo) / jnp.where(span > 0, span, 1.0), 0.0)


def quantile_boundaries(normalised_returns, class_counts):
  """Boundaries that put as many items of the batch in each class as the rater did.

  RbRL sets the boundaries from the ratings' class proportions (2307.16348); here R̄_i for 0 < i < n is the
  midpoint between the c_i-th and (c_i + 1)-th smallest normalised returns, c_i = number of ratings below
  class i, so that the sorted batch splits into classes of the rated sizes; R̄_0 = 0 and R̄_n = 1.

  Args:
    normalised_returns: `[B]` R̃ values in [0, 1].
    class_counts: `[n]` number of ratings per class (summing to B).

  Returns:
    `[n + 1]` boundaries.
  """
  r = jnp.sort(jnp.asarray(normalised_returns))
  counts = jnp.asarray(class_counts)
  c = jnp.cumsum(counts)[:-1].astype(jnp.int32)
  lo = r[jnp.clip(c - 1, 0, r.shape[0] - 1)]
  hi = r[jnp.clip(c, 0, r.shape[0] - 1)]
  inner = jnp.where(c <= 0, 0.0, jnp.where(c >= r.shape[0], 1.0, 0.5 * (lo + hi)))
  return jnp.concatenate([jnp.zeros((1,), r.dtype), inner.astype(r.dtype), jnp.ones((1,), r.dtype)])


def sample_ratings(key, scores, boundaries, k, num_per_item):
  """Draws `num_per_item` ratings per item from Q(· | s): `[N, num_per_item]` int classes."""
  logits = class_logits(scores, boundaries, k)
  return jax.random.categorical(key, logits[:, None, :], axis=-1,
                                shape=(logits.shape[0], int(num_per_item)))


def rating_counts(items, ratings, num_items, num_classes, dtype=jnp.float32):
  """`[N, n]` counts: C[j, i] = number of ratings of item j in class i (a scatter-add; jit-friendly)."""
  items = jnp.asarray(items, jnp.int32)
  ratings = jnp.asarray(ratings, jnp.int32)
  flat = items * num_classes + ratings
  return jnp.zeros((num_items * num_classes,), dtype).at[flat].add(1.0).reshape(num_items, num_classes)


@jax.jit
def rbrl_nll(scores, counts, boundaries, k, l2=0.0):
  """Mean negative log-likelihood of rating counts `[N, n]` under RbRL's class model, plus ½ l2 ‖s‖² / M.

  Args:
    scores: `[N]` item scores on the R̃ scale.
    counts: `[N, n]` rating counts.
    boundaries: `[n + 1]` class boundaries.
    k: sharpness.
    l2: Gaussian prior strength on the summed NLL (0: the MLE).

  Returns:
    Scalar mean NLL per rating.
  """
  total = jnp.maximum(jnp.sum(counts), 1.0)
  logq = jax.nn.log_softmax(
      -k * (scores[:, None] - boundaries[None, :-1]) * (scores[:, None] - boundaries[None, 1:]), axis=-1)
  return -jnp.sum(counts * logq) / total + 0.5 * l2 * jnp.sum(scores**2) / total


@jax.jit
def _fit_rbrl_counts(counts, boundaries, k, l2, tol, max_iters):
  # Start every item at the centre of its mean rated class's interval (inside [R̄_0, R̄_n]).
  centres = 0.5 * (boundaries[:-1] + boundaries[1:])
  x0 = (counts @ centres) / jnp.maximum(jnp.sum(counts, axis=1), 1.0)
  x, f, it, ok = models_lib._newton(rbrl_nll, x0, (counts, boundaries, k, l2), max_iters, tol)  # pylint: disable=protected-access
  return models_lib.Fit(x, {}, f, it, ok)


def fit_rbrl(data, *, boundaries, k, num_items=None, l2=0.0, max_iters=100, tol=1e-12):
  """Maximum-likelihood item scores under RbRL's rating model (2307.16348), by Newton's method.

  Args:
    data: a `Ratings` table, or `[N, n]` rating counts.
    boundaries: `[n + 1]` class boundaries R̄_0 < … < R̄_n (the scores live on their scale).
    k: sharpness k > 0 of the class model.
    num_items: N when `data` is a `Ratings` table whose last items were never rated (default: its names).
    l2: Gaussian prior ½ l2 ‖s‖² on the summed NLL (makes all-top / all-bottom items finite).
    max_iters: Newton iteration cap.
    tol: Newton-decrement tolerance.

  Returns:
    A `Fit` with `[N]` scores (not centred: the class model fixes their location).

  Raises:
    PrefjaxError: bad boundaries or k, counts with the wrong number of classes, an item never rated, or
      (with l2 = 0) an item rated only in the bottom or top class, whose MLE is infinite (named).
  """
  _check_boundaries(boundaries, k)
  boundaries = jnp.asarray(boundaries)
  num_classes = boundaries.shape[0] - 1
  names = None
  if isinstance(data, Ratings):
    names = data.item_names
    n_items = int(num_items) if num_items is not None else len(names)
    if len(data.class_names) != num_classes:
      raise PrefjaxError(f"the ratings have {len(data.class_names)} classes {list(data.class_names)} but "
                         f"boundaries define {num_classes}")
    counts = rating_counts(data.item, data.rating, n_items, num_classes, jnp.float64
                           if jax.config.jax_enable_x64 else jnp.float32)
  else:
    counts = jnp.asarray(data)
    if counts.ndim != 2 or counts.shape[1] != num_classes:
      raise PrefjaxError(f"rating counts must be [N, {num_classes}] (boundaries define {num_classes} "
                         f"classes), got {counts.shape}")
  models_lib._check_fit_args(l2, max_iters, tol)  # pylint: disable=protected-access
  if not battles_lib.is_tracer(counts):
    c = np.asarray(counts, np.float64)
    if not np.all(np.isfinite(c)) or c.min() < 0:
      raise PrefjaxError("rating counts must be finite and non-negative")
    total = c.sum(1)
    idle = np.flatnonzero(total == 0)
    if idle.size:
      raise PrefjaxError(f"item {battles_lib.model_label(names, int(idle[0]))} is never rated: its score is "
                         "undetermined; drop it")
    if models_lib._concrete_l2(l2) <= 0:  # pylint: disable=protected-access
      for cls, side in ((0, "bottom"), (num_classes - 1, "top")):
        edge = np.flatnonzero(c[:, cls] == total)
        if edge.size:
          raise PrefjaxError(
              f"item {battles_lib.model_label(names, int(edge[0]))} has all its ratings in the {side} class, "
              "so its RbRL score MLE is infinite; pass l2= (e.g. l2=1e-3) to regularise it")
  dtype = counts.dtype
  return _fit_rbrl_counts(counts, boundaries.astype(dtype), jnp.asarray(k, dtype), jnp.asarray(l2, dtype),
                          jnp.asarray(tol, dtype), jnp.int32(max_iters))


def fisher_information(scores, boundaries, k):
  """Per-rating Fisher information Var_Q(a) of each score, a_i = k (R̄_i + R̄_{i+1}) the logit slopes, `[N]`.

  The MLE of an item rated m times has asymptotic standard error 1/√(m Var_Q(a)).
  """
  b = jnp.asarray(boundaries)
  slopes = k * (b[:-1] + b[1:])
  q = jnp.exp(class_log_probs(scores, b, k))
  mean = q @ slopes
  return q @ slopes**2 - mean**2


# ----------------------------------------------------------------------------------------------------
# Ratings tables.


def _parse_rating(value, class_index, where):
  """One `rating` field → class index: a class name, or an integer id in [0, n)."""
  n = len(class_index)
  if isinstance(value, bool):
    raise PrefjaxError(f"{where}: rating must be a class name or an integer in [0, {n}), got {value!r}")
  if isinstance(value, str):
    label = value.strip()
    if label in class_index:
      return class_index[label]
    try:
      number = float(label)
    except ValueError:
      raise PrefjaxError(f"{where}: unknown rating class {label!r}; classes are {list(class_index)} "
                         f"(or their ids 0..{n - 1})") from None
  elif isinstance(value, (int, float)):
    number = float(value)
  else:
    raise PrefjaxError(f"{where}: rating must be a class name or an integer in [0, {n}), got {value!r}")
  if math.isnan(number):
    raise PrefjaxError(f"{where}: rating is NaN")
  if number != int(number) or not 0 <= number < n:
    raise PrefjaxError(f"{where}: rating {value!r} is not a class id in [0, {n}) nor one of "
                       f"{list(class_index)}")
  return int(number)


def ratings_from_records(records, *, class_names: Sequence[str], item_names: Optional[Sequence[str]] = None,
                         source="records"):
  """Builds a `Ratings` table from `(where, record)` pairs or plain dicts with fields `item`, `rating`.

  Args:
    records: iterable of dicts, or of `(where, dict)` pairs (`where` names the row in errors).
    class_names: the n class names, lowest first (a rating is a name or its index).
    item_names: optional item order; by default the sorted set of items that appear.
    source: how rows are named in errors when they come without a `where`.

  Returns:
    A `Ratings` table.

  Raises:
    PrefjaxError: naming the row of an unknown class label, a NaN or out-of-range class id, a missing field,
      or an item not in `item_names`.
  """
  class_names = tuple(str(c) for c in class_names)
  if len(class_names) < 2 or len(set(class_names)) != len(class_names):
    raise PrefjaxError(f"class_names must be at least 2 distinct names, got {class_names}")
  class_index = {c: i for i, c in enumerate(class_names)}
  items, ratings = [], []
  for i, entry in enumerate(records):
    if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str):
      where, record = entry
    else:
      where, record = f"{source} row {i}", entry
    if not isinstance(record, dict):
      raise PrefjaxError(f"{where}: expected an object with keys {list(REQUIRED_FIELDS)}, got "
                         f"{type(record).__name__}")
    for field in REQUIRED_FIELDS:
      value = record.get(field)
      if value is None or (isinstance(value, str) and not value.strip()):
        raise PrefjaxError(f"{where}: missing field {field!r}")
    items.append(str(record["item"]).strip())
    ratings.append(_parse_rating(record["rating"], class_index, where))
  if item_names is None:
    item_names = sorted(set(items))
  item_names = tuple(str(n) for n in item_names)
  index = {n: i for i, n in enumerate(item_names)}
  unknown = sorted(set(items) - set(index))
  if unknown:
    raise PrefjaxError(f"{source}: items {unknown} are not in item_names")
  return Ratings(np.asarray([index[n] for n in items], np.int32), np.asarray(ratings, np.int32), item_names,
                 class_names)


def load_ratings(path, *, class_names, item_names=None):
  """Loads a ratings table (fields `item`, `rating`) from CSV, JSONL or JSON, naming bad rows by line.

  Args:
    path: file path; the suffix picks the reader (as `prefjax.ranking.load_battles`).
    class_names: the n class names, lowest first.
    item_names: optional item order.

  Returns:
    A `Ratings` table.

  Raises:
    PrefjaxError: naming the file and line of a bad row (unknown class, missing field, malformed JSON,
      bytes that are not UTF-8, a CSV row with more cells than the header; the readers are
      `prefjax.ranking.battles.READERS`), or an unknown suffix.
  """
  path = os.fspath(path)
  suffix = os.path.splitext(path)[1].lower()
  reader = battles_lib.READERS.get(suffix)
  if reader is None:
    raise PrefjaxError(f"load_ratings: unknown file type {suffix!r} for {path}; known: "
                       f"{sorted(battles_lib.READERS)}")
  out = ratings_from_records(reader(path, REQUIRED_FIELDS), class_names=class_names, item_names=item_names,
                             source=path)
  if out.item.size == 0:
    raise PrefjaxError(f"{path}: no ratings")
  return out

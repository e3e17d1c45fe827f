"""Tests of RbRL's rating-based class likelihood (prefjax.ranking.ratings; arXiv 2307.16348).

Independent answers: a numpy float64 implementation of the class probabilities, a scalar root-finder for each
item's likelihood equation, the Fisher information's standard errors for the sampled ratings, and finite
differences.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import optimize

from prefjax.errors import PrefjaxError
from prefjax.ranking import ratings

BOUNDS = np.array([0.0, 0.15, 0.4, 0.6, 0.85, 1.0])  # n = 5 classes of unequal widths.
K = 12.0
CLASSES = ("very bad", "bad", "okay", "good", "very good")


def _np_log_q(s, b, k):
  """log Q(i | s) = log softmax_i(−k (s − R̄_i)(s − R̄_{i+1})) in float64."""
  z = -k * (s[:, None] - b[None, :-1]) * (s[:, None] - b[None, 1:])
  z = z - z.max(1, keepdims=True)
  return z - np.log(np.exp(z).sum(1, keepdims=True))


def test_class_probabilities_match_numpy_float64(x64):
  s = np.array([-0.2, 0.0, 0.07, 0.3, 0.5, 0.61, 0.99, 1.3])
  got = np.asarray(ratings.class_log_probs(jnp.asarray(s), jnp.asarray(BOUNDS), K))
  np.testing.assert_allclose(got, _np_log_q(s, BOUNDS, K), rtol=1e-12, atol=1e-12)
  # The loss is the cross-entropy at the rated class.
  y = np.array([0, 1, 0, 2, 3, 3, 4, 4])
  loss = np.asarray(ratings.rbrl_loss(jnp.asarray(s), jnp.asarray(y), jnp.asarray(BOUNDS), K))
  np.testing.assert_allclose(loss, -_np_log_q(s, BOUNDS, K)[np.arange(len(s)), y], rtol=1e-12)
  check_grads(lambda v: ratings.rbrl_loss(v, jnp.asarray(y), jnp.asarray(BOUNDS), K).sum(), (jnp.asarray(s),),
              order=2, modes=["rev"])


def test_most_likely_class_is_the_interval_holding_the_score():
  # (R̃ − R̄_i)(R̃ − R̄_{i+1}) < 0 only for the class whose interval holds R̃: it is the argmax for every k.
  s = np.linspace(0.01, 0.99, 41)
  s = s[np.all(np.abs(s[:, None] - BOUNDS[None, :]) > 1e-3, axis=1)]
  expected = np.searchsorted(BOUNDS, s) - 1
  for k in (0.5, 3.0, 40.0):
    got = np.argmax(np.asarray(ratings.class_logits(jnp.asarray(s), jnp.asarray(BOUNDS), k)), axis=1)
    np.testing.assert_array_equal(got, expected)


def test_fit_recovers_generating_scores_within_monte_carlo_error(x64):
  true = np.array([0.05, 0.2, 0.35, 0.5, 0.62, 0.75, 0.9, 0.97])
  m = 3000
  y = ratings.sample_ratings(jax.random.key(0), jnp.asarray(true), jnp.asarray(BOUNDS), K, m)
  items = np.repeat(np.arange(len(true)), m)
  table = ratings.Ratings(items.astype(np.int32), np.asarray(y).reshape(-1).astype(np.int32),
                          tuple(f"item{i}" for i in range(len(true))), CLASSES)
  fit = ratings.fit_rbrl(table, boundaries=BOUNDS, k=K)
  assert bool(fit.converged)
  est = np.asarray(fit.scores)
  # Independent MLE: each item's likelihood equation Σ_i C_i (a_i − E_Q[a]) = 0 solved by a scalar root-finder
  # (a_i = k (R̄_i + R̄_{i+1}) are the logit slopes; the model is a multinomial logit affine in s).
  counts = np.stack([np.bincount(np.asarray(y)[j], minlength=5) for j in range(len(true))])
  slopes = K * (BOUNDS[:-1] + BOUNDS[1:])
  for j in range(len(true)):
    def score_eq(v, c=counts[j]):
      q = np.exp(_np_log_q(np.array([v]), BOUNDS, K)[0])
      return c @ slopes - c.sum() * (q @ slopes)
    root = optimize.brentq(score_eq, -1.0, 2.0, xtol=1e-13)
    np.testing.assert_allclose(est[j], root, atol=1e-8)
  # Monte-Carlo error: standard error 1/√(m I(s)) from the Fisher information Var_Q(a) at the truth.
  q = np.exp(_np_log_q(true, BOUNDS, K))
  info = q @ slopes**2 - (q @ slopes) ** 2
  np.testing.assert_allclose(np.asarray(ratings.fisher_information(jnp.asarray(true), jnp.asarray(BOUNDS), K)),
                             info, rtol=1e-10)
  z = (est - true) / (1.0 / np.sqrt(m * info))
  assert np.all(np.abs(z) < 4.5), z


def test_quantile_boundaries_reproduce_the_rated_class_sizes():
  r = np.asarray(ratings.normalise_returns(jax.random.normal(jax.random.key(1), (40,)) * 3.0 + 2.0))
  assert r.min() == 0.0 and r.max() == 1.0
  sizes = np.array([3, 10, 0, 20, 7])
  b = np.asarray(ratings.quantile_boundaries(jnp.asarray(r), jnp.asarray(sizes)))
  assert b[0] == 0.0 and b[-1] == 1.0 and np.all(np.diff(b) >= 0)
  # Counting the batch's returns per interval gives back the rated sizes (interior boundaries are midpoints
  # between consecutive distinct returns, so no return sits on one).
  got = np.histogram(r, bins=b)[0]
  np.testing.assert_array_equal(got, sizes)


def test_ratings_tables_and_bad_rows(tmp_path):
  rows = [{"item": "a", "rating": "good"}, {"item": "b", "rating": 0}, {"item": "a", "rating": "4"}]
  table = ratings.ratings_from_records(rows, class_names=CLASSES)
  assert table.item_names == ("a", "b")
  np.testing.assert_array_equal(table.item, [0, 1, 0])
  np.testing.assert_array_equal(table.rating, [3, 0, 4])
  (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
  loaded = ratings.load_ratings(tmp_path / "r.jsonl", class_names=CLASSES)
  np.testing.assert_array_equal(loaded.rating, table.rating)
  (tmp_path / "bad.csv").write_text("item,rating\na,good\nb,excellent\n")
  with pytest.raises(PrefjaxError, match=r"bad\.csv line 3: unknown rating class 'excellent'"):
    ratings.load_ratings(tmp_path / "bad.csv", class_names=CLASSES)
  for bad, match in ((7, "row 1: rating 7 is not a class id in \\[0, 5\\)"), (1.5, "row 1: rating 1.5"),
                     (float("nan"), "row 1: rating is NaN"), (True, "row 1: rating must be")):
    with pytest.raises(PrefjaxError, match=match):
      ratings.ratings_from_records([rows[0], {"item": "b", "rating": bad}], class_names=CLASSES)
  with pytest.raises(PrefjaxError, match="row 0: missing field 'rating'"):
    ratings.ratings_from_records([{"item": "a"}], class_names=CLASSES)


def test_fit_errors_name_the_item():
  names = ("x", "y", "z")
  # y is never rated; z only ever gets the top class (its MLE is +∞ without a prior).
  never = ratings.Ratings(np.array([0, 0, 2], np.int32), np.array([1, 2, 4], np.int32), names, CLASSES)
  with pytest.raises(PrefjaxError, match="item 'y' is never rated"):
    ratings.fit_rbrl(never, boundaries=BOUNDS, k=K)
  top = ratings.Ratings(np.array([0, 0, 1, 1, 2, 2], np.int32), np.array([1, 2, 0, 3, 4, 4], np.int32), names,
                        CLASSES)
  with pytest.raises(PrefjaxError, match="item 'z' has all its ratings in the top class.*l2="):
    ratings.fit_rbrl(top, boundaries=BOUNDS, k=K)
  with pytest.raises(PrefjaxError, match="strictly increasing"):
    ratings.fit_rbrl(top, boundaries=[0.0, 0.5, 0.5, 0.7, 0.9, 1.0], k=K)
  with pytest.raises(PrefjaxError, match="k must be > 0"):
    ratings.class_logits(jnp.zeros(2), jnp.asarray(BOUNDS), 0.0)
  with pytest.raises(PrefjaxError, match="boundaries define 3"):
    ratings.fit_rbrl(top, boundaries=[0.0, 0.3, 0.6, 1.0], k=K)

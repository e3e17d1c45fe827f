"""Tests for prefjax.ranking: battles loading, BT/Thurstone/PL/ties/outside-option MLE, Elo, Borda, triads.

Oracles are independent of the library: numpy simulations from exact model probabilities, a float64
numpy MM (Zermelo/Hunter 2004) Bradley–Terry solver, numpy re-implementations of the likelihoods and of
Elo, brute-force triad and reachability counts. Statistical tolerances are stated next to each check in
units of the standard error (SE) they come from.
"""

import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize
from scipy import stats

from prefjax import ranking
from prefjax.games import preferences
from prefjax.errors import PrefjaxError

# ----------------------------------------------------------------------------------------------------
# Independent helpers (numpy only).


def _simulate(rng, P, num_battles, tie_prob=None):
  """Battles with uniform random pairs, winner ~ Bernoulli(P[a, b]); optional [N, N] tie probabilities.

  With tie_prob, outcomes are drawn from (p_win, p_tie, p_lose) = (P[a,b], tie[a,b], 1 − P[a,b] − tie).
  """
  P = np.asarray(P, np.float64)
  n = P.shape[0]
  a = rng.integers(0, n, num_battles)
  b = (a + rng.integers(1, n, num_battles)) % n
  u = rng.random(num_battles)
  p_win = P[a, b]
  p_tie = np.zeros(num_battles) if tie_prob is None else np.asarray(tie_prob)[a, b]
  outcome = np.where(u < p_win, ranking.A_WINS, np.where(u < p_win + p_tie, ranking.TIE, ranking.B_WINS))
  return ranking.battles_from_arrays(a, b, outcome, n)


def _numpy_counts(bt, n):
  wins = np.zeros((n, n))
  ties = np.zeros((n, n))
  for a, b, o in zip(bt.model_a, bt.model_b, bt.outcome):
    if o == ranking.A_WINS:
      wins[a, b] += 1
    elif o == ranking.B_WINS:
      wins[b, a] += 1
    else:
      ties[a, b] += 1
      ties[b, a] += 1
  return wins, ties


def _mm_bradley_terry(wins, ties, iters=5000):
  """Zermelo/Hunter (2004) MM iteration in float64: π_i ← W_i / Σ_j n_ij/(π_i + π_j), ties as halves."""
  w = wins + 0.5 * ties
  n_ij = w + w.T
  pi = np.ones(w.shape[0])
  for _ in range(iters):
    denom = (n_ij / (pi[:, None] + pi[None, :])).sum(1)
    pi = w.sum(1) / denom
    pi = pi / np.exp(np.mean(np.log(pi)))
  s = np.log(pi)
  return s - s.mean()


def _bt_se(s, wins, ties):
  """Standard errors of centred BT scores from the float64 Fisher information (pseudo-inverse)."""
  w = wins + 0.5 * ties
  n_ij = w + w.T
  p = 1 / (1 + np.exp(-(s[:, None] - s[None, :])))
  lap = -n_ij * p * (1 - p)
  np.fill_diagonal(lap, 0)
  np.fill_diagonal(lap, -lap.sum(1))
  return np.sqrt(np.diag(np.linalg.pinv(lap)))


def _random_tournament(rng, n, shape=()):
  """Random preference matrices: strictly-lower entries U(0, 1), upper = 1 − lowerᵀ, ½ diagonal."""
  u = np.tril(rng.random((*shape, n, n)), -1)
  return u + np.triu(1 - np.swapaxes(u, -1, -2), 1) + 0.5 * np.eye(n)


def _centre(x):
  x = np.asarray(x, np.float64)
  return x - x.mean()


def _fd_hessian(f, x, h=1e-4):
  """Central finite-difference Hessian of a float64 numpy function."""
  x = np.asarray(x, np.float64)
  n = x.size
  hess = np.zeros((n, n))
  eye = np.eye(n) * h
  for i in range(n):
    for j in range(n):
      hess[i, j] = (f(x + eye[i] + eye[j]) - f(x + eye[i] - eye[j]) - f(x - eye[i] + eye[j])
                    + f(x - eye[i] - eye[j])) / (4 * h * h)
  return hess


def _davidson_ll(s, nu, wins, ties):
  """Davidson log-likelihood in its π form (summed over battles)."""
  pi = np.exp(s)
  den = pi[:, None] + pi[None, :] + nu * np.sqrt(pi[:, None] * pi[None, :])
  return (wins * np.log(pi[:, None] / den)).sum() + 0.5 * (
      ties * np.log(nu * np.sqrt(pi[:, None] * pi[None, :]) / den)).sum()


def _rao_kupper_ll(s, theta, wins, ties):
  """Rao–Kupper log-likelihood: p(i ≻ j) = π_i/(π_i + θπ_j), p(tie) = (θ² − 1)π_iπ_j/(…)(…)."""
  pi = np.exp(s)
  n = len(s)
  pw = pi[:, None] / (pi[:, None] + theta * pi[None, :])
  pt = (theta**2 - 1) * pi[:, None] * pi[None, :] / (
      (pi[:, None] + theta * pi[None, :]) * (theta * pi[:, None] + pi[None, :]))
  mask = ~np.eye(n, dtype=bool)
  return (wins * np.log(pw))[mask].sum() + 0.5 * (ties * np.log(pt))[mask].sum()


def _plackett_luce_ll(s, rankings):
  """Plackett–Luce log-likelihood, stage by stage: Σ_k s_{r_k} − log Σ_{l≥k} e^{s_{r_l}}."""
  sr = s[rankings]
  k = rankings.shape[1]
  return sum((sr[:, pos] - np.log(np.exp(sr[:, pos:]).sum(1))).sum() for pos in range(k - 1))


# ----------------------------------------------------------------------------------------------------
# Loading and validation.

_RECORDS = [
    {"model_a": "gpt", "model_b": "llama", "winner": "model_a"},
    {"model_a": "llama", "model_b": "claude", "winner": "model_b"},
    {"model_a": "claude", "model_b": "gpt", "winner": "tie"},
    {"model_a": "gpt", "model_b": "claude", "winner": "tie (bothbad)"},
    {"model_a": "llama", "model_b": "gpt", "winner": "llama"},
    {"model_a": "claude", "model_b": "llama", "winner": 0.5},
    {"model_a": "gpt", "model_b": "llama", "winner": 0},
]
# Expected (winner, loser or None-for-tie) per record, written out by hand from the labels above.
_EXPECTED = [("gpt", "llama"), ("claude", "llama"), None, None, ("llama", "gpt"), None,
             ("llama", "gpt")]


def _write_csv(path, records, header="model_a,model_b,winner"):
  lines = [header] + [f"{r['model_a']},{r['model_b']},{r['winner']}" for r in records]
  path.write_text("\n".join(lines) + "\n")


def _check_loaded(bt):
  assert bt.model_names == ("claude", "gpt", "llama")
  names = bt.model_names
  for row, expected in enumerate(_EXPECTED):
    a, b, o = names[bt.model_a[row]], names[bt.model_b[row]], bt.outcome[row]
    assert (a, b) == (_RECORDS[row]["model_a"], _RECORDS[row]["model_b"])
    if expected is None:
      assert o == ranking.TIE
    else:
      assert (a, b)[int(o)] == expected[0] and o in (ranking.A_WINS, ranking.B_WINS)


def test_load_csv_jsonl_json(tmp_path):
  _write_csv(tmp_path / "b.csv", _RECORDS)
  (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in _RECORDS) + "\n\n")
  (tmp_path / "b.json").write_text(json.dumps(_RECORDS))
  for suffix in ("csv", "jsonl", "json"):
    _check_loaded(ranking.load_battles(tmp_path / f"b.{suffix}"))
  # A fixed model order, with an extra model that never plays, is kept; fitting then names it.
  bt = ranking.load_battles(tmp_path / "b.csv", model_names=["llama", "gpt", "claude", "mistral"])
  assert bt.model_names[bt.model_a[0]] == "gpt"
  with pytest.raises(PrefjaxError, match="'mistral' never plays"):
    ranking.fit_bradley_terry(bt)
  with pytest.raises(PrefjaxError, match=r"models \['llama'\] are not in model_names"):
    ranking.load_battles(tmp_path / "b.jsonl", model_names=["gpt", "claude"])


@pytest.mark.parametrize("bad, match", [
    ({"model_a": "x", "model_b": "y", "winner": "model_c"}, "line 3: unknown winner label 'model_c'"),
    ({"model_a": "x", "model_b": "y", "winner": "nan"}, "line 3: winner score is NaN"),
    ({"model_a": "x", "model_b": "y", "winner": ""}, "line 3: missing field 'winner'"),
    ({"model_a": "x", "model_b": "x", "winner": "tie"}, "line 3: model_a == model_b"),
    ({"model_a": "x", "model_b": "y", "winner": 0.7}, "line 3: numeric winner"),
])
def test_bad_rows_are_named(tmp_path, bad, match):
  good = {"model_a": "x", "model_b": "y", "winner": "model_a"}
  _write_csv(tmp_path / "bad.csv", [good, bad])
  with pytest.raises(PrefjaxError, match="bad.csv " + match):
    ranking.load_battles(tmp_path / "bad.csv")
  # JSONL: a NaN score is a real float NaN (json writes NaN), and a missing key is absent.
  rec = dict(bad)
  if rec["winner"] == "nan":
    rec["winner"] = float("nan")
  if rec["winner"] == "":
    del rec["winner"]
  (tmp_path / "bad.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(rec) + "\n")
  with pytest.raises(PrefjaxError, match="bad.jsonl " + match.replace("line 3", "line 2")):
    ranking.load_battles(tmp_path / "bad.jsonl")


def test_malformed_files(tmp_path):
  (tmp_path / "m.jsonl").write_text('{"model_a": "x", "model_b": "y", "winner": "tie"}\n{oops\n')
  with pytest.raises(PrefjaxError, match="m.jsonl line 2: malformed JSON"):
    ranking.load_battles(tmp_path / "m.jsonl")
  (tmp_path / "h.csv").write_text("model_a,model_b,result\nx,y,tie\n")
  with pytest.raises(PrefjaxError, match=r"h.csv line 1: header lacks columns \['winner'\]"):
    ranking.load_battles(tmp_path / "h.csv")
  (tmp_path / "t.txt").write_text("")
  with pytest.raises(PrefjaxError, match="unknown file type"):
    ranking.load_battles(tmp_path / "t.txt")


def test_battles_from_arrays_errors():
  with pytest.raises(PrefjaxError, match="row 1 has model_a == model_b"):
    ranking.battles_from_arrays([0, 2], [1, 2], [0, 0], 3)
  with pytest.raises(PrefjaxError, match="outcome row 0 = 5"):
    ranking.battles_from_arrays([0], [1], [5], 3)
  with pytest.raises(PrefjaxError, match=r"model_b row 0 = 3 is not a model index in \[0, 3\)"):
    ranking.battles_from_arrays([0], [3], [0], 3)
  with pytest.raises(PrefjaxError, match="model_a row 1 is nan"):
    ranking.battles_from_arrays(np.array([0.0, np.nan]), [1, 2], [0, 0], 3)


def test_graph_checks_name_the_problem():
  # Two components {0, 1} and {2, 3}: the MLE is undefined; l2 makes the MAP estimate defined.
  bt = ranking.battles_from_arrays([0, 1, 2, 3], [1, 0, 3, 2], [0, 0, 0, 0], ["a", "b", "c", "d"])
  with pytest.raises(PrefjaxError, match=r"disconnected \(2 components.*pass l2="):
    ranking.fit_bradley_terry(bt)
  fit = ranking.fit_bradley_terry(bt, l2=1e-2)
  assert np.all(np.isfinite(fit.scores)) and bool(fit.converged)
  # By symmetry (each component is one win each way) every MAP score is 0.
  np.testing.assert_allclose(fit.scores, 0.0, atol=1e-5)
  # Connected but one model never loses: the MLE is infinite → a warning.
  bt = ranking.battles_from_arrays([0, 0, 0, 1, 2, 3], [1, 2, 3, 2, 3, 1], [0] * 6, 4)
  with pytest.warns(RuntimeWarning, match="not strongly connected"):
    ranking.fit_bradley_terry(bt, max_iters=5)
  with pytest.raises(PrefjaxError, match="ties must be one of"):
    ranking.fit_bradley_terry(bt, ties="glicko")
  with pytest.raises(PrefjaxError, match="l2 must be >= 0"):
    ranking.fit_bradley_terry(bt, l2=-1.0)
  with pytest.raises(PrefjaxError, match="needs both ties and decisive battles"):
    ranking.fit_bradley_terry(bt, ties="davidson")


# ----------------------------------------------------------------------------------------------------
# Counts and likelihoods.


def test_counts_match_loop_and_jit():
  rng = np.random.default_rng(0)
  n = 5
  bt = _simulate(rng, preferences.bradley_terry(np.linspace(-1, 1, n)), 400,
                 tie_prob=np.full((n, n), 0.1))
  wins, ties = _numpy_counts(bt, n)
  counts = ranking.count_battles(bt.model_a, bt.model_b, bt.outcome, n)
  np.testing.assert_array_equal(counts.wins, wins)
  np.testing.assert_array_equal(counts.ties, ties)
  jitted = jax.jit(ranking.count_battles, static_argnums=3)(bt.model_a, bt.model_b, bt.outcome, n)
  np.testing.assert_array_equal(jitted.wins, wins)


def test_likelihoods_match_numpy_and_grads(x64):
  del x64
  rng = np.random.default_rng(1)
  n = 4
  wins = rng.integers(0, 6, (n, n)).astype(np.float64)
  np.fill_diagonal(wins, 0)
  t = np.triu(rng.integers(0, 3, (n, n)), 1).astype(np.float64)
  ties = t + t.T
  counts = ranking.BattleCounts(jnp.asarray(wins), jnp.asarray(ties))
  s = rng.normal(size=n)
  total = wins.sum() + ties.sum() / 2
  w_half = wins + 0.5 * ties
  shift = 0.5 * s.mean()**2
  nu, theta = 0.7, 1.8
  # Each NLL (mean over battles, plus the ½ mean(s)² gauge term) against a float64 numpy version.
  cases = [
      (ranking.bradley_terry_nll, s,
       lambda v: -(w_half * np.log(1 / (1 + np.exp(-(v[:, None] - v[None, :]))))).sum() / total),
      (ranking.thurstone_nll, s,
       lambda v: -(w_half * stats.norm.logcdf((v[:, None] - v[None, :]) / np.sqrt(2))).sum() / total),
      (ranking.davidson_nll, np.append(s, np.log(nu)),
       lambda v: -_davidson_ll(v[:-1], np.exp(v[-1]), wins, ties) / total),
      (ranking.rao_kupper_nll, np.append(s, np.log(theta)),
       lambda v: -_rao_kupper_ll(v[:-1], np.exp(v[-1]), wins, ties) / total),
  ]
  for nll, x, oracle in cases:
    value, grad = jax.jit(jax.value_and_grad(nll))(jnp.asarray(x), counts)
    np.testing.assert_allclose(value, oracle(x) + shift, rtol=1e-12)
    # Autodiff gradient (Newton's input) against central differences of the numpy oracle (whose last
    # coordinate is log ν or τ = log θ, as the library's).
    h = 1e-6
    fd = np.array([(oracle(x + h * e) - oracle(x - h * e)) / (2 * h) for e in np.eye(len(x))])
    fd[:n] += s.mean() / n  # gradient of the gauge term ½ mean(s)²
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------------------------------
# Bradley–Terry and Thurstone MLE.

_N = 10
_TRUE = np.linspace(-1.0, 1.0, _N)


@pytest.fixture(scope="module")
def bt_battles():
  return _simulate(np.random.default_rng(2), preferences.bradley_terry(_TRUE), 100_000)


def test_bt_mle_recovers_scores(bt_battles):
  fit = ranking.fit_bradley_terry(bt_battles)
  assert bool(fit.converged)
  wins, ties = _numpy_counts(bt_battles, _N)
  se = _bt_se(_centre(_TRUE), wins, ties)
  err = np.abs(_centre(fit.scores) - _centre(_TRUE))
  # Brief's criterion: within 0.05 after centring. With 10 models and 10⁵ battles the SE is ≈ 0.015, so
  # 0.05 is > 3 SE per model (a failure would need a > 3-sigma draw); also bound it in SE units.
  assert se.max() < 0.02
  assert err.max() < 0.05
  assert (err / se).max() < 4.5
  # Exactly the MLE: float64 MM oracle, agreement to float32 precision.
  np.testing.assert_allclose(_centre(fit.scores), _mm_bradley_terry(wins, ties), atol=2e-4)


def test_bt_vmap_equals_loop_and_l2_shrinks():
  rng = np.random.default_rng(3)
  data = [_simulate(rng, preferences.bradley_terry(_TRUE[:4]), 300) for _ in range(3)]
  counts = [ranking.count_battles(b.model_a, b.model_b, b.outcome, 4) for b in data]
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *counts)
  batched = jax.vmap(lambda c: ranking.fit_bradley_terry(c).scores)(stacked)
  for i, c in enumerate(counts):
    np.testing.assert_allclose(batched[i], ranking.fit_bradley_terry(c).scores, atol=1e-5)
    wins, ties = np.asarray(c.wins, np.float64), np.asarray(c.ties, np.float64)
    np.testing.assert_allclose(batched[i], _mm_bradley_terry(wins, ties), atol=2e-4)
  # A Gaussian prior shrinks the scores towards 0.
  shrunk = ranking.fit_bradley_terry(counts[0], l2=50.0).scores
  assert np.abs(shrunk).sum() < np.abs(batched[0]).sum()


def test_thurstone_recovers_means():
  bt = _simulate(np.random.default_rng(4), preferences.thurstone(_TRUE), 100_000)
  fit = ranking.fit_thurstone(bt)
  assert bool(fit.converged)
  # Probit information per battle is comparable to the logit one (SE ≈ 0.015 here): 0.05 is > 3 SE.
  np.testing.assert_allclose(_centre(fit.scores), _centre(_TRUE), atol=0.05)
  # Exactly the probit MLE: scipy BFGS on a float64 numpy likelihood (first score pinned to 0).
  wins, ties = _numpy_counts(bt, _N)
  w = wins + 0.5 * ties

  def nll(free):
    s = np.concatenate([[0.0], free])
    return -(w * stats.norm.logcdf((s[:, None] - s[None, :]) / np.sqrt(2))).sum() / w.sum()

  res = optimize.minimize(nll, np.zeros(_N - 1), method="BFGS", options={"gtol": 1e-10})
  np.testing.assert_allclose(_centre(fit.scores), _centre(np.concatenate([[0.0], res.x])), atol=2e-4)


@pytest.mark.parametrize("tie_model, param, value", [("davidson", "nu", 0.8), ("rao_kupper", "theta", 1.6)])
def test_tie_models_recover_tie_parameter(tie_model, param, value):
  n = 5
  s = np.linspace(-0.8, 0.8, n)
  pi = np.exp(s)
  if tie_model == "davidson":
    den = pi[:, None] + pi[None, :] + value * np.sqrt(pi[:, None] * pi[None, :])
    p_win = pi[:, None] / den
    p_tie = value * np.sqrt(pi[:, None] * pi[None, :]) / den
  else:
    p_win = pi[:, None] / (pi[:, None] + value * pi[None, :])
    p_tie = 1 - p_win - p_win.T
  bt = _simulate(np.random.default_rng(5), p_win, 50_000, tie_prob=p_tie)
  fit = ranking.fit_bradley_terry(bt, ties=tie_model)
  assert bool(fit.converged)
  # Standard errors from the finite-difference Hessian of the numpy log-likelihood at the fit, with the
  # first score pinned (the likelihood is flat along a common shift), parameterised by (s_1.., log ν/θ).
  wins, ties = _numpy_counts(bt, n)
  ll = {"davidson": _davidson_ll, "rao_kupper": _rao_kupper_ll}[tie_model]
  fitted = np.asarray(fit.scores, np.float64)
  free = np.append(fitted[1:] - fitted[0], math.log(float(fit.params[param])))
  cov = np.linalg.inv(-_fd_hessian(
      lambda v: ll(np.concatenate([[0.0], v[:-1]]), math.exp(v[-1]), wins, ties), free))
  se_log = math.sqrt(cov[-1, -1])
  z = abs(math.log(float(fit.params[param])) - math.log(value)) / se_log
  assert z < 4.5, (fit.params, se_log)
  assert se_log < 0.05  # the test has power: the parameter is pinned to within a few percent.
  # Score differences to the first model, in SE units.
  se_s = np.sqrt(np.diag(cov)[:-1])
  assert (np.abs(free[:-1] - (s[1:] - s[0])) / se_s).max() < 4.5


# ----------------------------------------------------------------------------------------------------
# Plackett–Luce.


def test_plackett_luce_k2_equals_bradley_terry():
  rng = np.random.default_rng(6)
  bt = _simulate(rng, preferences.bradley_terry(_TRUE[:4]), 3000)
  winner = np.where(bt.outcome == ranking.A_WINS, bt.model_a, bt.model_b)
  loser = np.where(bt.outcome == ranking.A_WINS, bt.model_b, bt.model_a)
  pl = ranking.fit_plackett_luce(np.stack([winner, loser], 1), 4)
  np.testing.assert_allclose(pl.scores, ranking.fit_bradley_terry(bt).scores, atol=2e-5)


def test_plackett_luce_likelihood_and_recovery():
  rng = np.random.default_rng(7)
  n, k, m = 5, 3, 20_000
  s = np.linspace(-1, 1, n)
  # PL sampling by the Gumbel trick: sorting s + Gumbel noise gives a PL ranking (Yellott 1977).
  items = np.argsort(rng.random((m, n)), axis=1)[:, :k]
  noisy = s[items] + rng.gumbel(size=items.shape)
  rankings = np.take_along_axis(items, np.argsort(-noisy, axis=1), axis=1)
  x = rng.normal(size=n)
  got = ranking.plackett_luce_nll(jnp.asarray(x, jnp.float32), jnp.asarray(rankings))
  want = -_plackett_luce_ll(x, rankings) / m + 0.5 * x.mean()**2
  np.testing.assert_allclose(got, want, rtol=1e-5)
  fit = ranking.fit_plackett_luce(rankings, n)
  assert bool(fit.converged)
  # SE of score differences to model 0 from the finite-difference Hessian of the numpy likelihood.
  fitted = np.asarray(fit.scores, np.float64)
  free = fitted[1:] - fitted[0]
  cov = np.linalg.inv(-_fd_hessian(lambda v: _plackett_luce_ll(np.concatenate([[0.0], v]), rankings),
                                   free))
  se = np.sqrt(np.diag(cov))
  assert se.max() < 0.05
  assert (np.abs(free - (s[1:] - s[0])) / se).max() < 4.5
  with pytest.raises(PrefjaxError, match="row 1 repeats a model"):
    ranking.fit_plackett_luce(np.array([[0, 1], [2, 2]]), 3)
  with pytest.raises(PrefjaxError, match="model index 3 never plays"):
    ranking.fit_plackett_luce(np.array([[0, 1, 2], [2, 1, 0]]), 4)


# ----------------------------------------------------------------------------------------------------
# Outside option.


def _outside_probs(s, offered):
  e = np.where(offered, np.exp(s)[None, :], 0.0)
  return np.concatenate([e, np.ones((offered.shape[0], 1))], 1) / (1 + e.sum(1, keepdims=True))


def test_outside_option_recovers_scores():
  rng = np.random.default_rng(8)
  s = np.array([-0.6, 0.2, 0.9, -1.2, 0.4])
  n, m = len(s), 20_000
  offered = rng.random((m, n)) < 0.5
  offered[~offered.any(1), 0] = True
  probs = _outside_probs(s, offered)
  np.testing.assert_allclose(
      np.exp(ranking.outside_option_log_probs(jnp.asarray(s, jnp.float32), offered)), probs, atol=1e-6)
  pick = (probs.cumsum(1) < rng.random((m, 1))).sum(1)
  choices = np.where(pick == n, -1, pick)
  fit = ranking.fit_outside_option(offered, choices)
  assert bool(fit.converged)
  rows = np.arange(m)
  cov = np.linalg.inv(-_fd_hessian(lambda v: np.log(_outside_probs(v, offered)[rows, pick]).sum(),
                                   np.asarray(fit.scores, np.float64)))
  se = np.sqrt(np.diag(cov))
  # Not centred: the outside option pins the absolute level.
  assert se.max() < 0.05
  assert (np.abs(np.asarray(fit.scores) - s) / se).max() < 4.5
  with pytest.raises(PrefjaxError, match="choices row 2 picks item 1, which was not offered"):
    ranking.fit_outside_option(np.array([[1, 1], [1, 0], [1, 0]], bool), np.array([0, -1, 1]))
  with pytest.raises(PrefjaxError, match="model index 1 is never offered"):
    ranking.fit_outside_option(np.array([[1, 0], [1, 0]], bool), np.array([0, -1]))


# ----------------------------------------------------------------------------------------------------
# Elo.


def _numpy_elo(a, b, outcome, n, k, scale=400.0, base=10.0, init=1000.0):
  r = np.full(n, init)
  for i, j, o in zip(a, b, outcome):
    ea = 1 / (1 + base**((r[j] - r[i]) / scale))
    eb = 1 / (1 + base**((r[i] - r[j]) / scale))
    sa = {ranking.A_WINS: 1.0, ranking.B_WINS: 0.0, ranking.TIE: 0.5}[int(o)]
    r[i] += k * (sa - ea)
    r[j] += k * (1 - sa - eb)
  return r


def test_elo_matches_numpy_loop():
  rng = np.random.default_rng(9)
  bt = _simulate(rng, preferences.bradley_terry(_TRUE[:5]), 200, tie_prob=np.full((5, 5), 0.1))
  got, hist = ranking.online_elo(bt.model_a, bt.model_b, bt.outcome, 5, k_factor=32.0,
                                 return_history=True)
  want = _numpy_elo(bt.model_a, bt.model_b, bt.outcome, 5, 32.0)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(hist[-1], got)
  np.testing.assert_allclose(np.asarray(got).sum(), 5000.0, rtol=1e-6)  # zero-sum updates


def test_elo_small_k_approaches_bt(bt_battles):
  elo = ranking.elo_from_battles(bt_battles, k_factor=1.0)
  bt_elo = ranking.elo_scale(ranking.fit_bradley_terry(bt_battles).scores)
  tau = stats.kendalltau(np.asarray(elo), np.asarray(bt_elo)).statistic
  # Scores are 0.22 logits (≈ 39 Elo points) apart; with K = 1 the Elo noise is a few points, so the
  # orders agree exactly and the ratings are close on the BT scale.
  assert tau > 1 - 1e-9
  assert np.abs(np.asarray(elo) - np.asarray(bt_elo)).max() < 15.0
  np.testing.assert_allclose(ranking.elo_to_scores(bt_elo),
                             _centre(ranking.fit_bradley_terry(bt_battles).scores), atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# Bootstrap.


def test_bootstrap_coverage_and_wrapper():
  # 200 simulated data sets × 4 models × 800 battles, 200 bootstrap rounds each, in one vmap.
  n, num_battles, sims, rounds = 4, 800, 200, 200
  true = np.array([-0.6, -0.1, 0.2, 0.5])
  rng = np.random.default_rng(10)
  P = np.asarray(preferences.bradley_terry(true), np.float64)
  data = [_simulate(rng, P, num_battles) for _ in range(sims)]
  a, b, o = (np.stack([getattr(d, f) for d in data]) for f in ("model_a", "model_b", "outcome"))
  keys = jax.random.split(jax.random.PRNGKey(11), sims)
  boot = jax.vmap(lambda k, a, b, o: ranking.bootstrap_scores(k, a, b, o, n, rounds))(keys, a, b, o)
  covered = (np.asarray(boot.lower) <= _centre(true)) & (_centre(true) <= np.asarray(boot.upper))
  # Nominal 95 %. 800 indicators (correlated within a simulation): MC SE ≈ √(.95·.05/800) ≈ 0.008,
  # ≈ 0.012 allowing for the correlation, so [0.90, 0.99] is ≥ 3 SE either side.
  assert 0.90 <= covered.mean() <= 0.99, covered.mean()

  # The checked wrapper on one data set: vmap == loop with the same key and battles.
  single = ranking.bootstrap_bradley_terry(keys[0], data[0], rounds)
  np.testing.assert_allclose(single.scores, boot.scores[0], atol=1e-5)
  # Interval widths ≈ 2 · 1.96 Fisher SEs (MC error of 200 rounds and B = 800: ±15 % on the mean ratio).
  wins, ties = _numpy_counts(data[0], n)
  fit = ranking.fit_bradley_terry(data[0])
  se = _bt_se(np.asarray(fit.scores, np.float64), wins, ties)
  ratio = (np.asarray(single.upper) - np.asarray(single.lower)) / (2 * 1.96 * se)
  assert 0.85 < ratio.mean() < 1.15, ratio
  np.testing.assert_allclose(np.asarray(single.scores).mean(0), fit.scores,
                             atol=4 * se.max() / math.sqrt(rounds))
  # From counts the battles are relisted in another order, so only the distribution matches.
  from_counts = ranking.bootstrap_bradley_terry(keys[1], ranking.count_battles(a[0], b[0], o[0], n), rounds)
  width = np.asarray(from_counts.upper - from_counts.lower) / np.asarray(single.upper - single.lower)
  assert 0.8 < width.mean() < 1.2, width


# ----------------------------------------------------------------------------------------------------
# Aggregation: Borda, EBC, calibration, triads.


def test_borda_from_preferences_matches_rankings():
  rng = np.random.default_rng(12)
  n, k = 5, 5
  rankings = np.stack([rng.permutation(n) for _ in range(30)])
  points = np.zeros(n)
  for r in rankings:
    for pos, item in enumerate(r):
      points[item] += k - 1 - pos
  np.testing.assert_allclose(ranking.borda_from_rankings(rankings, n), points)
  # Full rankings: the pairwise "i above j" fractions give the same Borda totals (÷ M).
  counts = ranking.rankings_to_counts(rankings, n)
  P = ranking.empirical_preferences(counts)
  np.testing.assert_allclose(ranking.borda_count(P) * len(rankings), points, rtol=1e-5)
  preferences.validate(P)


def _reachability(adj):
  n = adj.shape[0]
  out = np.zeros_like(adj)
  for i in range(n):
    frontier, seen = [i], set()
    while frontier:
      u = frontier.pop()
      for v in np.flatnonzero(adj[u]):
        if v not in seen:
          seen.add(v)
          frontier.append(v)
    out[i, list(seen)] = True
  return out


def test_enhanced_borda_count():
  # Transitive BT preferences: EBC ranks by the scores; quantiles are 1, …, 0.
  s = np.array([0.3, -1.0, 2.0, 0.9])
  ebc = ranking.enhanced_borda_count(preferences.bradley_terry(s))
  np.testing.assert_array_equal(ebc.rank, stats.rankdata(-s).astype(int))
  np.testing.assert_allclose(ebc.quantile, 1 - (stats.rankdata(-s) - 1) / 3, atol=1e-6)
  # A cycle 0 ≻ 1 ≻ 2 ≻ 0 above 3, with uneven margins: the closure makes 0, 1, 2 beat everyone, and the
  # soft re-ranking orders them by Σ_j P[i, j] within the tie group.
  P = np.full((4, 4), 0.5)
  for i, j, p in [(0, 1, 0.9), (1, 2, 0.6), (2, 0, 0.55), (0, 3, 0.8), (1, 3, 0.7), (2, 3, 0.9)]:
    P[i, j], P[j, i] = p, 1 - p
  ebc = ranking.enhanced_borda_count(P)
  adj = (P > 0.5) & ~np.eye(4, dtype=bool)
  np.testing.assert_array_equal(ebc.closure, _reachability(adj))
  np.testing.assert_array_equal(ebc.borda, [3, 3, 3, 0])
  soft = np.array([P[0, 1] + P[0, 2], P[1, 0] + P[1, 2], P[2, 0] + P[2, 1]])
  np.testing.assert_array_equal(ebc.rank[:3], stats.rankdata(-soft).astype(int))
  assert ebc.rank[3] == 4
  # Random tournaments: closure against brute-force reachability.
  R = _random_tournament(np.random.default_rng(13), 7)
  adj = (R > 0.5) & ~np.eye(7, dtype=bool)
  np.testing.assert_array_equal(ranking.transitive_closure(adj), _reachability(adj))
  with pytest.raises(PrefjaxError, match=r"P row \(1, 2\) is nan"):
    ranking.enhanced_borda_count(np.where(np.arange(16).reshape(4, 4) == 6, np.nan, P))


def test_order_calibration():
  rng = np.random.default_rng(14)
  n = 6
  r = rng.normal(size=n)
  bias = 0.8  # the judge favours whichever response is shown first
  J = np.asarray(jax.nn.sigmoid(r[:, None] - r[None, :] + bias))
  for method in ranking.CALIBRATIONS:
    P = np.asarray(ranking.calibrate_judge_matrix(J, method))
    preferences.validate(P, atol=1e-6)
    # Position bias removed: the calibrated order matches the rewards; log-odds averaging is exact here.
    assert np.all(np.sign(P - 0.5)[~np.eye(n, dtype=bool)] ==
                  np.sign(r[:, None] - r[None, :])[~np.eye(n, dtype=bool)])
  np.testing.assert_allclose(ranking.calibrate_judge_matrix(J, "log_odds"),
                             preferences.bradley_terry(r), atol=1e-6)
  np.testing.assert_allclose(ranking.calibrate_order(0.9, 0.7), 0.5 * (0.9 + 0.3))
  # The biased judge is order-inconsistent on close pairs; calibration is consistent by construction.
  iu = np.triu_indices(n, 1)
  np.testing.assert_allclose(ranking.order_consistency(J[iu], J.T[iu]),
                             np.mean((J[iu] > 0.5) != (J.T[iu] > 0.5)), rtol=1e-6)
  with pytest.raises(PrefjaxError, match="p_ba row 1 is nan"):
    ranking.calibrate_order([0.2, 0.4], [0.3, np.nan])
  with pytest.raises(PrefjaxError, match="p_ab row 0 is 1.5"):
    ranking.calibrate_order([1.5], [0.3])


def test_cyclic_triads():
  # Transitive preferences have no cycles; the balanced 5-tournament has C(5,3) − Σ_i C(2, 2) = 5.
  batch = np.stack([np.asarray(m, np.float32) for m in (
      preferences.total_order(5), preferences.bradley_terry(np.linspace(0, 1, 5)),
      preferences.thurstone(np.array([0.3, -1, 2, 0.9, 0.0])), preferences.cyclic(5, p=0.8))])
  np.testing.assert_array_equal(ranking.count_cyclic_triads(batch), [0, 0, 0, 5])
  # Rock–paper–scissors: one cycle out of one triad.
  assert int(ranking.count_cyclic_triads(preferences.cyclic(3, p=0.8))) == 1
  np.testing.assert_allclose(ranking.transitivity_violation_rate(preferences.cyclic(3)), 1.0)
  # Random tournaments: brute force over triples and Kendall–Babington Smith's C(n,3) − Σ C(s_i, 2).
  Ps = _random_tournament(np.random.default_rng(15), 8, shape=(4,))
  got = np.asarray(ranking.count_cyclic_triads(Ps))
  for P, g in zip(Ps, got):
    brute = sum(1 for i, j, k in itertools.combinations(range(8), 3)
                if (P[i, j] > .5 and P[j, k] > .5 and P[k, i] > .5)
                or (P[j, i] > .5 and P[k, j] > .5 and P[i, k] > .5))
    out = (P > 0.5).sum(1)
    assert g == brute == math.comb(8, 3) - sum(math.comb(int(o), 2) for o in out)

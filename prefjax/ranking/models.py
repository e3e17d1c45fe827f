"""Maximum-likelihood preference models: Bradley–Terry, ties, Thurstone, Plackett–Luce, outside option.

Every model is a convex negative log-likelihood over sufficient statistics (win/tie counts for pairwise
data), minimised by a damped Newton method with an autodiff Hessian inside `lax.while_loop`, so each fit
is one jit-compiled function that also `vmap`s (bootstrap replicates, repeated simulations).

Scores are natural-log strengths: p(i ≻ j) = σ(s_i − s_j) for Bradley–Terry. Pairwise models are
invariant to a common shift of the scores; fits return centred scores (mean 0). Chatbot Arena
(Chiang et al. 2403.04132) reports 400/ln 10 · s + 1000 — see `prefjax.ranking.elo.elo_scale`.

Losses are averaged over comparisons (so float32 Armijo tests stay well resolved); `l2` is a Gaussian
prior ½ l2 ‖s‖² on the *summed* negative log-likelihood (a MAP estimate; l2 = 0 is the MLE).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.ranking import battles as battles_lib


class Fit(NamedTuple):
  """Result of a maximum-likelihood fit.

  Attributes:
    scores: `[N]` fitted scores (centred for shift-invariant models).
    params: dict of extra fitted parameters (`{"nu": ν}` for Davidson, `{"theta": θ}` for Rao–Kupper,
      empty otherwise).
    nll: mean negative log-likelihood per comparison at the optimum (prior term included).
    num_iters: Newton iterations used.
    converged: whether the Newton decrement fell below the tolerance.
  """
  scores: jax.Array
  params: dict
  nll: jax.Array
  num_iters: jax.Array
  converged: jax.Array


class Bootstrap(NamedTuple):
  """Bootstrap distribution of fitted scores with percentile intervals.

  Attributes:
    scores: `[R, N]` centred scores of each bootstrap replicate.
    lower: `[N]` lower percentile bound (level (1 − ci)/2).
    upper: `[N]` upper percentile bound (level (1 + ci)/2).
    median: `[N]` bootstrap median.
  """
  scores: jax.Array
  lower: jax.Array
  upper: jax.Array
  median: jax.Array


# ----------------------------------------------------------------------------------------------------
# Newton's method.


def _newton(loss_fn, x0, args, max_iters, tol):
  """Minimises a convex `loss_fn(x, *args)` by damped Newton with Armijo backtracking.

  Stops when the Newton decrement λ² = gᵀH⁻¹g falls below `tol`, when it stops decreasing below 1e-8
  (float precision floor), or after `max_iters`. Returns (x, loss, iterations, converged).
  """
  grad_fn = jax.grad(loss_fn)
  hess_fn = jax.hessian(loss_fn)
  eps = jnp.finfo(x0.dtype).eps
  floor = jnp.asarray(1e-8, x0.dtype)

  def cond(carry):
    _, _, it, dec, prev_dec = carry
    stalled = (dec < floor) & (dec >= 0.5 * prev_dec)
    return (it < max_iters) & (dec >= tol) & ~stalled

  def body(carry):
    x, f, it, dec, _ = carry
    g = grad_fn(x, *args)
    h = hess_fn(x, *args)
    # A relative jitter keeps the solve finite if a resampled comparison graph is disconnected.
    h = h + (eps * jnp.trace(h) / x.shape[0]) * jnp.eye(x.shape[0], dtype=x.dtype)
    delta = -jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(h), g)
    new_dec = jnp.maximum(-jnp.dot(g, delta), 0.0)
    slack = 8.0 * eps * jnp.abs(f)

    def ls_cond(c):
      t, f_t = c
      ok = f_t <= f - 0.25 * t * new_dec + slack
      return ~ok & (t > 1e-10)

    def ls_body(c):
      t, _ = c
      t = 0.5 * t
      return t, loss_fn(x + t * delta, *args)

    t, f_t = jax.lax.while_loop(ls_cond, ls_body, (jnp.ones((), x.dtype), loss_fn(x + delta, *args)))
    accept = jnp.isfinite(f_t) & (f_t <= f + slack)
    x_new = jnp.where(accept, x + t * delta, x)
    f_new = jnp.where(accept, f_t, f)
    return x_new, f_new, it + 1, new_dec, dec

  inf = jnp.asarray(jnp.inf, x0.dtype)
  init = (x0, loss_fn(x0, *args), jnp.zeros((), jnp.int32), inf, inf)
  x, f, it, dec, _ = jax.lax.while_loop(cond, body, init)
  return x, f, it, dec < jnp.maximum(tol, floor)


# ----------------------------------------------------------------------------------------------------
# Pairwise negative log-likelihoods on counts. Each takes the flat parameter vector x (scores first,
# then any tie parameter), the counts and the prior strength, and returns the mean NLL per battle.


def _pair_diffs(s):
  return s[:, None] - s[None, :]


def _total(counts):
  return jnp.maximum(jnp.sum(counts.wins) + 0.5 * jnp.sum(counts.ties), 1.0)


def _prior(s, l2, total):
  # ½ l2 ‖s‖² on the summed NLL, plus ½ mean(s)² which fixes the shift (the likelihood is flat along 1).
  return 0.5 * l2 * jnp.sum(s**2) / total + 0.5 * jnp.mean(s)**2


@jax.jit
def bradley_terry_nll(x, counts, l2=0.0):
  """Bradley–Terry NLL with ties as half a win each: −Σ_ij (W_ij + ½T_ij) log σ(s_i − s_j) / #battles.

  Bradley & Terry (1952); the logistic form p(i ≻ j) = σ(s_i − s_j) is Chatbot Arena's (2403.04132 §5).

  Args:
    x: `[N]` scores.
    counts: `BattleCounts` with `[N, N]` wins and symmetric ties.
    l2: prior strength.

  Returns:
    Scalar mean NLL (plus prior).
  """
  s = x
  total = _total(counts)
  w = counts.wins + 0.5 * counts.ties
  return -jnp.sum(w * jax.nn.log_sigmoid(_pair_diffs(s))) / total + _prior(s, l2, total)


@jax.jit
def thurstone_nll(x, counts, l2=0.0):
  """Thurstone case V NLL, p(i ≻ j) = Φ((s_i − s_j)/√2), ties as half a win each.

  Utilities s_i + N(0, 1) noise, as `prefjax.envs.preferences.thurstone(means, scale=1)`.

  Args:
    x: `[N]` scores.
    counts: `BattleCounts`.
    l2: prior strength.

  Returns:
    Scalar mean NLL (plus prior).
  """
  s = x
  total = _total(counts)
  w = counts.wins + 0.5 * counts.ties
  return -jnp.sum(w * jsp.log_ndtr(_pair_diffs(s) / jnp.sqrt(2.0))) / total + _prior(s, l2, total)


@jax.jit
def davidson_nll(x, counts, l2=0.0):
  """Davidson (1970) ties: p(i ≻ j) = π_i / D, p(tie) = ν√(π_iπ_j) / D, D = π_i + π_j + ν√(π_iπ_j).

  With π = e^s and λ = log ν (the last entry of x), −log p is a log-sum-exp of affine functions of
  (s, λ), so the NLL is jointly convex.

  Args:
    x: `[N + 1]` scores then log ν.
    counts: `BattleCounts`.
    l2: prior strength (on the scores only).

  Returns:
    Scalar mean NLL (plus prior).
  """
  s, log_nu = x[:-1], x[-1]
  total = _total(counts)
  si = jnp.broadcast_to(s[:, None], counts.wins.shape)
  sj = jnp.broadcast_to(s[None, :], counts.wins.shape)
  tie_logit = log_nu + 0.5 * (si + sj)
  log_d = jax.nn.logsumexp(jnp.stack([si, sj, tie_logit]), axis=0)
  ll = jnp.sum(counts.wins * (si - log_d)) + 0.5 * jnp.sum(counts.ties * (tie_logit - log_d))
  return -ll / total + _prior(s, l2, total)


@jax.jit
def rao_kupper_nll(x, counts, l2=0.0):
  """Rao–Kupper (1967) ties: p(i ≻ j) = σ(s_i − s_j − τ), p(tie) = σ(d + τ) − σ(d − τ), θ = e^τ > 1.

  Equivalently p(i ≻ j) = π_i/(π_i + θπ_j). log p(tie) = log σ(d + τ) + log σ(τ − d) + log(1 − e^{−2τ})
  is stable; τ (the last entry of x) must be positive, and the loss is +∞ otherwise so the line search
  stays inside. Jointly convex in (s, τ) (the logistic interval probability is log-concave).

  Args:
    x: `[N + 1]` scores then τ = log θ.
    counts: `BattleCounts`.
    l2: prior strength (on the scores only).

  Returns:
    Scalar mean NLL (plus prior).
  """
  s, tau = x[:-1], x[-1]
  total = _total(counts)
  d = _pair_diffs(s)
  safe_tau = jnp.where(tau > 0, tau, 1.0)
  log_win = jax.nn.log_sigmoid(d - safe_tau)
  log_tie = (jax.nn.log_sigmoid(d + safe_tau) + jax.nn.log_sigmoid(safe_tau - d)
             + jnp.log(-jnp.expm1(-2.0 * safe_tau)))
  ll = jnp.sum(counts.wins * log_win) + 0.5 * jnp.sum(counts.ties * log_tie)
  nll = -ll / total + _prior(s, l2, total)
  return jnp.where(tau > 0, nll, jnp.inf)


def _tie_fraction(counts):
  return 0.5 * jnp.sum(counts.ties) / _total(counts)


def _init_none(counts):
  return jnp.zeros(counts.wins.shape[0], counts.wins.dtype)


def _init_davidson(counts):
  # At equal strengths p(tie) = ν/(2 + ν): start from the observed tie fraction t, ν = 2t/(1 − t).
  t = jnp.clip(_tie_fraction(counts), 1e-3, 0.99)
  return jnp.append(_init_none(counts), jnp.log(2.0 * t / (1.0 - t)))


def _init_rao_kupper(counts):
  # At equal strengths p(tie) = tanh(τ/2): τ = 2 artanh(t).
  t = jnp.clip(_tie_fraction(counts), 1e-3, 0.99)
  return jnp.append(_init_none(counts), 2.0 * jnp.arctanh(t))


def _no_params(x):
  return x, {}


def _davidson_params(x):
  return x[:-1], {"nu": jnp.exp(x[-1])}


def _rao_kupper_params(x):
  return x[:-1], {"theta": jnp.exp(x[-1])}


class _PairwiseModel(NamedTuple):
  nll: object
  init: object
  unpack: object
  needs_ties: bool


# Tie handling for `fit_bradley_terry`: name → (NLL, initial point, unpacking of extra parameters).
TIE_MODELS = {
    "half": _PairwiseModel(bradley_terry_nll, _init_none, _no_params, False),
    "davidson": _PairwiseModel(davidson_nll, _init_davidson, _davidson_params, True),
    "rao_kupper": _PairwiseModel(rao_kupper_nll, _init_rao_kupper, _rao_kupper_params, True),
}


@functools.partial(jax.jit, static_argnames=("nll_name",))
def _fit_counts(counts, l2, tol, nll_name, max_iters):
  model = _REGISTRY[nll_name]
  x0 = model.init(counts)
  x, f, it, ok = _newton(model.nll, x0, (counts, l2), max_iters, tol)
  s, params = model.unpack(x)
  return Fit(s - jnp.mean(s), params, f, it, ok)


# Every pairwise model `_fit_counts` can fit: the tie models plus Thurstone.
_REGISTRY = {**TIE_MODELS, "thurstone": _PairwiseModel(thurstone_nll, _init_none, _no_params, False)}


def _check_fit_args(l2, max_iters, tol):
  if not jnp.ndim(l2) == 0:
    raise PrefjaxError(f"l2 must be a scalar, got shape {jnp.shape(l2)}")
  if not battles_lib.is_tracer(l2) and not float(l2) >= 0:
    raise PrefjaxError(f"l2 must be >= 0, got {l2}")
  if not isinstance(max_iters, (int, np.integer)) or max_iters < 1:
    raise PrefjaxError(f"max_iters must be >= 1, got {max_iters}")
  if not battles_lib.is_tracer(tol) and not float(tol) > 0:
    raise PrefjaxError(f"tol must be > 0, got {tol}")


def _concrete_l2(l2):
  # A traced l2 (swept under vmap) is taken as positive: the graph checks then only reject idle models.
  return 1.0 if battles_lib.is_tracer(l2) else float(l2)


def _fit_pairwise(data, name, *, l2, model_names, max_iters, tol, what):
  counts, names = battles_lib.as_counts(data)
  names = model_names if model_names is not None else names
  _check_fit_args(l2, max_iters, tol)
  if _REGISTRY[name].needs_ties and not battles_lib.is_tracer(counts.ties):
    n_ties = float(np.sum(np.asarray(counts.ties))) / 2
    n_all = float(np.sum(np.asarray(counts.wins))) + n_ties
    if n_ties == 0 or n_ties == n_all:
      raise PrefjaxError(
          f"ties={name!r} needs both ties and decisive battles to estimate its tie parameter; found "
          f"{n_ties:g} ties out of {n_all:g} battles (use ties='half')")
  # Frames to the user: check_counts ← _fit_pairwise ← fit_bradley_terry / fit_thurstone ← user.
  battles_lib.check_counts(counts, names, l2=_concrete_l2(l2), what=what, stacklevel=3)
  dtype = counts.wins.dtype
  return _fit_counts(counts, jnp.asarray(l2, dtype), jnp.asarray(tol, dtype), name, jnp.int32(max_iters))


def fit_bradley_terry(data, *, ties="half", l2=0.0, model_names=None, max_iters=100, tol=1e-12):
  """Bradley–Terry maximum likelihood, p(i ≻ j) = σ(s_i − s_j), by Newton's method on win counts.

  Chatbot Arena's BT ratings (Chiang et al. 2403.04132 §5) are this MLE on the logistic scale (they
  report 400/ln 10 · s + 1000). Ties:
    - "half" (default): a tie counts as half a win for each side (Chatbot Arena's convention).
    - "davidson": Davidson (1970), p(tie) = ν√(π_iπ_j)/(π_i + π_j + ν√(π_iπ_j)); returns params["nu"].
    - "rao_kupper": Rao & Kupper (1967), p(i ≻ j) = π_i/(π_i + θπ_j); returns params["theta"].

  The fit only sees `[N, N]` counts, so its cost does not grow with the number of battles.

  Args:
    data: a `Battles` table or `BattleCounts`.
    ties: one of `TIE_MODELS`.
    l2: Gaussian prior strength ½ l2 ‖s‖² on the summed NLL (needed for disconnected graphs).
    model_names: names for error messages (taken from a `Battles` table by default).
    max_iters: Newton iteration cap.
    tol: stop when the Newton decrement (mean-NLL units) is below this.

  Returns:
    A `Fit` with centred `[N]` scores.

  Raises:
    PrefjaxError: unknown `ties`, a model that never plays, a disconnected comparison graph with l2 = 0,
      or a tie model without ties in the data.
  """
  if ties not in TIE_MODELS:
    raise PrefjaxError(f"ties must be one of {sorted(TIE_MODELS)}, got {ties!r}")
  return _fit_pairwise(data, ties, l2=l2, model_names=model_names, max_iters=max_iters, tol=tol,
                       what="Bradley–Terry")


def fit_thurstone(data, *, l2=0.0, model_names=None, max_iters=100, tol=1e-12):
  """Thurstone (probit) maximum likelihood, p(i ≻ j) = Φ((s_i − s_j)/√2); ties as half wins.

  The √2 makes s the mean utility of a unit-variance Gaussian, matching
  `prefjax.envs.preferences.thurstone(s, scale=1)`.

  Args:
    data: a `Battles` table or `BattleCounts`.
    l2: Gaussian prior strength.
    model_names: names for error messages.
    max_iters: Newton iteration cap.
    tol: Newton-decrement tolerance.

  Returns:
    A `Fit` with centred `[N]` scores.
  """
  return _fit_pairwise(data, "thurstone", l2=l2, model_names=model_names, max_iters=max_iters, tol=tol,
                       what="Thurstone")


# ----------------------------------------------------------------------------------------------------
# Bootstrap.


def _battles_from_counts(counts):
  """Host-side battle arrays with the given counts (one row per battle; ties listed once, i < j)."""
  n = counts.wins.shape[0]
  wins = np.asarray(counts.wins, np.float64)
  ties = np.triu(np.asarray(counts.ties, np.float64), k=1)
  cells = np.concatenate([wins.ravel(), ties.ravel()])
  if not np.all(cells == np.round(cells)):
    raise PrefjaxError("bootstrap needs integer battle counts (resampling draws whole battles)")
  cell = np.repeat(np.arange(2 * n * n), cells.astype(np.int64))
  pair = cell % (n * n)
  outcome = np.where(cell < n * n, battles_lib.A_WINS, battles_lib.TIE)
  return (pair // n).astype(np.int32), (pair % n).astype(np.int32), outcome.astype(np.int32)


# Bootstrap replicates are drawn in batches of at most this many resampled battles (bounds memory).
_BOOTSTRAP_BATCH_BATTLES = 1 << 24


def _batch_size(num_rounds, num_battles):
  """Largest divisor of R whose batch holds at most `_BOOTSTRAP_BATCH_BATTLES` battles.

  A divisor means `lax.map` needs no remainder pass, which would compile the fit a second time.
  """
  cap = max(1, _BOOTSTRAP_BATCH_BATTLES // max(num_battles, 1))
  return max(d for d in range(1, num_rounds + 1) if num_rounds % d == 0 and d <= cap)


@functools.partial(jax.jit, static_argnames=("num_models", "num_rounds", "ties"))
def _bootstrap(key, model_a, model_b, outcome, num_models, num_rounds, l2, tol, ci, ties, max_iters):
  num_battles = model_a.shape[0]

  def one_round(k):
    # Resample the battles with replacement, as Chatbot Arena does (2403.04132 §5), then count them.
    # Indices are 32 random bits mod B: the modulo bias is below B / 2³² (2e-4 at a million battles),
    # far under the bootstrap's own Monte-Carlo error, and it compiles twice as fast as randint.
    idx = (jax.random.bits(k, (num_battles,), jnp.uint32) % num_battles).astype(jnp.int32)
    counts = battles_lib.count_battles(model_a[idx], model_b[idx], outcome[idx], num_models, l2.dtype)
    return _fit_counts(counts, l2, tol, ties, max_iters).scores

  keys = jax.random.split(key, num_rounds)
  scores = jax.lax.map(one_round, keys, batch_size=_batch_size(num_rounds, num_battles))
  lo, med, hi = jnp.quantile(scores, jnp.stack([(1 - ci) / 2, 0.5, (1 + ci) / 2]), axis=0)
  return Bootstrap(scores, lo, hi, med)


def bootstrap_scores(key, model_a, model_b, outcome, num_models, num_rounds=100, *, ci=0.95,
                     ties="half", l2=0.0, max_iters=100, tol=1e-12):
  """Percentile-bootstrap Bradley–Terry scores from battle arrays (pure; `jit`/`vmap` over data sets).

  Each of the R rounds resamples the B battles with replacement, counts them and refits (Chatbot Arena,
  Chiang et al. 2403.04132 §5); the interval is the ((1 − ci)/2, (1 + ci)/2) quantiles of the centred
  replicate scores. No data checks run here (see `bootstrap_bradley_terry`).

  Args:
    key: PRNG key.
    model_a: `[B]` int model indices.
    model_b: `[B]` int model indices.
    outcome: `[B]` outcome codes.
    num_models: N (static).
    num_rounds: R (static).
    ci: coverage level in (0, 1).
    ties: one of `TIE_MODELS`.
    l2: Gaussian prior strength.
    max_iters: Newton iteration cap per replicate.
    tol: Newton-decrement tolerance.

  Returns:
    A `Bootstrap` with `[R, N]` scores and `[N]` lower/upper/median.
  """
  if ties not in TIE_MODELS:
    raise PrefjaxError(f"ties must be one of {sorted(TIE_MODELS)}, got {ties!r}")
  if not (isinstance(num_rounds, (int, np.integer)) and num_rounds >= 1):
    raise PrefjaxError(f"num_rounds must be a positive int, got {num_rounds!r}")
  if not battles_lib.is_tracer(ci) and not 0 < float(ci) < 1:
    raise PrefjaxError(f"ci must lie in (0, 1), got {ci}")
  _check_fit_args(l2, max_iters, tol)
  model_a = jnp.asarray(model_a, jnp.int32)
  model_b = jnp.asarray(model_b, jnp.int32)
  outcome = jnp.asarray(outcome, jnp.int32)
  if not model_a.shape == model_b.shape == outcome.shape or model_a.ndim != 1:
    raise PrefjaxError(
        f"bootstrap_scores: model_a, model_b, outcome must share a [B] shape, got {model_a.shape}, "
        f"{model_b.shape}, {outcome.shape}")
  dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
  return _bootstrap(key, model_a, model_b, outcome, int(num_models), int(num_rounds),
                    jnp.asarray(l2, dtype), jnp.asarray(tol, dtype), jnp.asarray(ci, dtype), ties,
                    jnp.int32(max_iters))


def bootstrap_bradley_terry(key, data, num_rounds=100, *, ci=0.95, ties="half", l2=0.0,
                            model_names=None, max_iters=100, tol=1e-12):
  """Checked percentile-bootstrap intervals for Bradley–Terry scores (see `bootstrap_scores`).

  Args:
    key: PRNG key.
    data: a `Battles` table or integer `BattleCounts` (expanded to one row per battle on the host).
    num_rounds: R, the number of bootstrap replicates.
    ci: interval coverage level in (0, 1).
    ties: one of `TIE_MODELS`.
    l2: Gaussian prior strength.
    model_names: names for error messages.
    max_iters: Newton iteration cap per replicate.
    tol: Newton-decrement tolerance.

  Returns:
    A `Bootstrap` with `[R, N]` centred scores and `[N]` lower/upper/median.
  """
  counts, names = battles_lib.as_counts(data)
  names = model_names if model_names is not None else names
  if battles_lib.is_tracer(counts.wins):
    raise PrefjaxError("bootstrap_bradley_terry needs concrete data; under jit/vmap use bootstrap_scores")
  battles_lib.check_counts(counts, names, l2=_concrete_l2(l2), what="Bradley–Terry")
  if isinstance(data, battles_lib.Battles):
    arrays = (data.model_a, data.model_b, data.outcome)
  else:
    arrays = _battles_from_counts(counts)
  return bootstrap_scores(key, *arrays, counts.wins.shape[0], num_rounds, ci=ci, ties=ties, l2=l2,
                          max_iters=max_iters, tol=tol)


# ----------------------------------------------------------------------------------------------------
# Plackett–Luce.


@jax.jit
def plackett_luce_nll(x, rankings, l2=0.0):
  """Plackett–Luce NLL of full rankings: −Σ_m Σ_{k<K−1} [s_{r_mk} − log Σ_{l≥k} e^{s_{r_ml}}] / M.

  Plackett (1975), Luce (1959); the K-wise arena model of K-Sort Arena. For K = 2 this is Bradley–Terry.

  Args:
    x: `[N]` scores.
    rankings: `[M, K]` int model ids, best first.
    l2: prior strength on the summed NLL.

  Returns:
    Scalar mean NLL per ranking (plus prior).
  """
  s = x
  m = rankings.shape[0]
  sr = s[rankings]
  tail = jax.lax.cumlogsumexp(sr, axis=1, reverse=True)
  ll = jnp.sum((sr - tail)[:, :-1])
  return -ll / m + 0.5 * l2 * jnp.sum(s**2) / m + 0.5 * jnp.mean(s)**2


@functools.partial(jax.jit, static_argnames=("num_models",))
def _fit_pl(rankings, num_models, l2, tol, max_iters):
  rankings = rankings.astype(jnp.int32)
  x0 = jnp.zeros(num_models, l2.dtype)
  x, f, it, ok = _newton(plackett_luce_nll, x0, (rankings, l2), max_iters, tol)
  return Fit(x - jnp.mean(x), {}, f, it, ok)


def rankings_to_counts(rankings, num_models, dtype=jnp.float32):
  """Pairwise wins implied by rankings: wins[i, j] = #rankings placing i above j (jit-compatible).

  Args:
    rankings: `[M, K]` int ids, best first.
    num_models: N.
    dtype: count dtype.

  Returns:
    `BattleCounts` with zero ties.
  """
  rankings = jnp.asarray(rankings, jnp.int32)
  if rankings.ndim != 2:
    raise PrefjaxError(f"rankings must have shape [M, K], got {rankings.shape}")
  return _rankings_to_counts(rankings, int(num_models), jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnames=("num_models", "dtype"))
def _rankings_to_counts(rankings, num_models, dtype):
  k = rankings.shape[1]
  hi, lo = np.triu_indices(k, 1)
  idx = rankings[:, hi] * num_models + rankings[:, lo]
  wins = jnp.zeros(num_models * num_models, dtype).at[idx.ravel()].add(1.0).reshape(num_models, num_models)
  return battles_lib.BattleCounts(wins, jnp.zeros_like(wins))


def _check_rankings(rankings, num_models, name="rankings"):
  if rankings.ndim != 2 or rankings.shape[1] < 2:
    raise PrefjaxError(f"{name} must have shape [M, K] with K >= 2 (ids best first), got {rankings.shape}")
  if battles_lib.is_tracer(rankings):
    return
  r = np.asarray(rankings)
  if not np.issubdtype(r.dtype, np.integer):
    raise PrefjaxError(f"{name} must hold integer model ids, got dtype {r.dtype}")
  bad = np.argwhere((r < 0) | (r >= num_models))
  if bad.size:
    i, j = bad[0]
    raise PrefjaxError(f"{name} row {i} position {j} = {r[i, j]} is not a model id in [0, {num_models})")
  srt = np.sort(r, axis=1)
  dup = np.flatnonzero(np.any(srt[:, 1:] == srt[:, :-1], axis=1))
  if dup.size:
    raise PrefjaxError(f"{name} row {dup[0]} repeats a model: {r[dup[0]].tolist()}")


def fit_plackett_luce(rankings, num_models, *, l2=0.0, model_names=None, max_iters=100, tol=1e-12):
  """Plackett–Luce maximum likelihood for K-wise rankings (K-Sort Arena's model).

  p(r_1 ≻ … ≻ r_K) = Π_{k<K} e^{s_{r_k}} / Σ_{l≥k} e^{s_{r_l}}. Existence needs the implied pairwise
  comparison graph to be connected (checked) and strongly connected (warned), as for Bradley–Terry
  (Hunter 2004).

  Args:
    rankings: `[M, K]` int model ids, best first.
    num_models: N.
    l2: Gaussian prior strength on the summed NLL.
    model_names: names for error messages.
    max_iters: Newton iteration cap.
    tol: Newton-decrement tolerance.

  Returns:
    A `Fit` with centred `[N]` scores.
  """
  rankings = jnp.asarray(rankings)
  _check_rankings(rankings, num_models)
  _check_fit_args(l2, max_iters, tol)
  if not battles_lib.is_tracer(rankings):
    battles_lib.check_counts(rankings_to_counts(rankings, num_models), model_names,
                             l2=_concrete_l2(l2), what="Plackett–Luce")
  dtype = jax.dtypes.canonicalize_dtype(jnp.float64)  # float32 unless x64 is enabled
  return _fit_pl(rankings, int(num_models), jnp.asarray(l2, dtype),
                 jnp.asarray(tol, dtype), jnp.int32(max_iters))


# ----------------------------------------------------------------------------------------------------
# Outside option.


def outside_option_log_probs(scores, offered):
  """Choice log-probabilities with an outside ("none good enough") option of utility s_0 = 0.

  p(i | S) = e^{s_i} / (e^{s_0} + Σ_{j∈S} e^{s_j}) for i ∈ S, p(none | S) = e^{s_0} / (same): the
  multinomial logit with a null alternative (McFadden 1974). Fixing s_0 = 0 removes the shift freedom, so
  the scores are identified absolutely: s_i > 0 means "i beats doing nothing".

  Args:
    scores: `[N]` scores.
    offered: `[M, N]` bool mask of the offered set S of each query.

  Returns:
    `[M, N + 1]` log-probabilities: columns 0..N−1 the items (−inf where not offered), column N "none".
  """
  scores = jnp.asarray(scores)
  offered = jnp.asarray(offered)
  if scores.ndim != 1 or offered.ndim != 2 or offered.shape[1] != scores.shape[0]:
    raise PrefjaxError(
        f"outside_option_log_probs: scores must be [N] and offered [M, N], got {scores.shape} and "
        f"{offered.shape}")
  return _outside_log_probs(scores, offered)


@jax.jit
def _outside_log_probs(scores, offered):
  offered = offered.astype(bool)
  logits = jnp.where(offered, scores[None, :], -jnp.inf)
  logits = jnp.concatenate([logits, jnp.zeros((offered.shape[0], 1), scores.dtype)], axis=1)
  return jax.nn.log_softmax(logits, axis=1)


@jax.jit
def outside_option_nll(x, offered, choice_onehot, l2=0.0):
  """Mean NLL of the outside-option choice model (see `outside_option_log_probs`).

  Args:
    x: `[N]` scores.
    offered: `[M, N]` bool offered sets.
    choice_onehot: `[M, N + 1]` one-hot choices, column N = "none".
    l2: prior strength on the summed NLL.

  Returns:
    Scalar mean NLL per query (plus prior).
  """
  m = offered.shape[0]
  logp = _outside_log_probs(x, offered)
  ll = jnp.sum(jnp.where(choice_onehot > 0, logp, 0.0))
  return -ll / m + 0.5 * l2 * jnp.sum(x**2) / m


@jax.jit
def _fit_outside(offered, choices, l2, tol, max_iters):
  n = offered.shape[1]
  offered = offered.astype(bool)
  choices = choices.astype(jnp.int32)
  onehot = jax.nn.one_hot(jnp.where(choices < 0, n, choices), n + 1, dtype=l2.dtype)
  x0 = jnp.zeros(offered.shape[1], l2.dtype)
  x, f, it, ok = _newton(outside_option_nll, x0, (offered, onehot, l2), max_iters, tol)
  return Fit(x, {}, f, it, ok)


def fit_outside_option(offered, choices, *, l2=0.0, model_names=None, max_iters=100, tol=1e-12):
  """Maximum likelihood for the outside-option choice model (scores relative to s_0 = 0, not centred).

  Args:
    offered: `[M, N]` bool mask of the set offered in each query.
    choices: `[M]` int: the chosen item (must be offered), or −1 for the outside option "none".
    l2: Gaussian prior strength on the summed NLL.
    model_names: names for error messages.
    max_iters: Newton iteration cap.
    tol: Newton-decrement tolerance.

  Returns:
    A `Fit` with `[N]` scores on the scale where the outside option has utility 0.

  Raises:
    PrefjaxError: bad shapes, a choice not in its offered set (row named), an item never offered.
  """
  offered = jnp.asarray(offered)
  choices = jnp.asarray(choices)
  if offered.ndim != 2 or choices.shape != offered.shape[:1]:
    raise PrefjaxError(
        f"fit_outside_option: offered must be [M, N] and choices [M], got {offered.shape} and "
        f"{choices.shape}")
  n = offered.shape[1]
  _check_fit_args(l2, max_iters, tol)
  if not (battles_lib.is_tracer(offered) or battles_lib.is_tracer(choices)):
    off = np.asarray(offered).astype(bool)
    ch = np.asarray(choices)
    if not np.issubdtype(ch.dtype, np.integer):
      raise PrefjaxError(f"choices must be integers (−1 = none), got dtype {ch.dtype}")
    bad = np.flatnonzero((ch < -1) | (ch >= n))
    if bad.size:
      raise PrefjaxError(f"choices row {bad[0]} = {ch[bad[0]]} is not −1 (none) or an item id in [0, {n})")
    picked = ch >= 0
    rows = np.flatnonzero(picked & ~off[np.arange(len(ch)), np.where(picked, ch, 0)])
    if rows.size:
      raise PrefjaxError(f"choices row {rows[0]} picks item {ch[rows[0]]}, which was not offered")
    never = np.flatnonzero(~off.any(0))
    if never.size:
      names = ", ".join(battles_lib.model_label(model_names, int(i)) for i in never)
      raise PrefjaxError(f"model {names} is never offered: its outside-option score is undetermined")
  dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
  return _fit_outside(offered, choices, jnp.asarray(l2, dtype), jnp.asarray(tol, dtype),
                      jnp.int32(max_iters))

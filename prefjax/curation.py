r"""Curated self-consuming loops (Ferbach et al. 2407.09499): retraining on K-wise curated samples.

A generation of the loop draws K samples x_1..x_K from the current model p_t, a user keeps one with the
K-wise Bradley–Terry (Luce) probability e^{r(x_i)} / Σ_j e^{r(x_j)}, and the next model is refit by maximum
likelihood on the kept samples, optionally mixed with real data (docs/theory.md §8). On a finite support with a
tabular model and infinitely many samples the refit is exact, and the law of a kept sample is

  p_{t+1}(x) = p_t(x) · K · E_{x_2..x_K ∼ p_t}[ e^{r(x)} / (e^{r(x)} + Σ_{j≥2} e^{r(x_j)}) ]   (2407.09499 §2)

(the factor K counts the position of x among the K draws). As K → ∞ the sum is ≈ (K−1) E_{p_t}[e^r], so
p_{t+1} ∝ p_t e^r and p_t ∝ p_0 e^{t r}: the loop is an implicit RLHF/reward-tilting step per generation.
With a fraction λ of real data from p_data the refit gives λ p_data + (1 − λ) p_{t+1}.

Convention: `real_fraction` = λ is the *fraction of real samples* in the refit data set (the λ of the curation papers).
Ferbach et al. (following Bertrand et al. 2310.00429) parametrise the mixture by a ratio of synthetic to real
data instead; a ratio ρ is λ = 1/(1 + ρ).

How the expectation is computed (`curation_map(method=...)`, the registry `MAP_METHODS`):

- "quadrature" (default; any K, any support): with w = e^{r − c} (c the mid-range reward) and S = Σ_{j≥2} w(x_j),
  1/(w + S) = ∫_0^∞ e^{−(w+S)u} du, and the K − 1 draws are independent, so

      E[w_x / (w_x + S)] = ∫_0^∞ w_x e^{−w_x u} M(u)^{K−1} du,   M(u) = E_{y∼p_t}[e^{−w_y u}],

  a one-dimensional integral (the Laplace transform of the law of S). It is evaluated by the
  double-exponential (exp-sinh) trapezoid rule u = exp(π/2 · sinh τ) (Takahasi & Mori 1974), which
  converges geometrically for this analytic integrand and resolves every scale u ∈ [e^{−70}, e^{70}], so
  the same fixed nodes serve K = 2 and K = 10⁶. Everything is in log space; log M uses
  log1p(Σ p (e^{−wu} − 1)) where M is near 1 so that (K − 1) log M stays accurate for large K. The identity
  Σ_x p(x) K E_x = M(0)^K − M(∞)^K = 1 is a built-in check of the quadrature (`curation_map_residual`).
- "enumerate" (exact, small supports and K): sums over every multiset of the K − 1 other draws with its
  multinomial probability, in float64 NumPy; C(n + K − 2, K − 1) terms for n items in the support.
- `curation_map_monte_carlo`: an unbiased Monte-Carlo estimate of the same expectation, for when the law
  of the other draws can only be sampled.

`sampled_loop` runs the actual loop: it draws K candidates per kept sample, picks one ∝ e^r, and refits the
tabular model by maximum likelihood (the empirical frequencies) on `num_samples` samples per generation.
"""

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError

# Exp-sinh nodes: τ ∈ [−H, H] with step h; u = exp(π/2 sinh τ) spans e^{±70.7} for H = 4.5.
_DE_HALF_WIDTH = 4.5
_DE_STEP = 1.0 / 64.0
# Largest number of multisets `method="enumerate"` will sum over.
MAX_ENUMERATED_MULTISETS = 500_000


def _is_tracer(x):
  return isinstance(x, jax.core.Tracer)


def _check_distribution(p, name):
  """Checks a concrete `[N]` probability vector (finite, ≥ 0, sums to 1); no-op under tracing."""
  if _is_tracer(p):
    return
  arr = np.asarray(p, np.float64)
  bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
  if bad.size:
    raise PrefjaxError(f"{name}[{bad[0]}] = {arr[bad[0]]}: probabilities must be finite and >= 0")
  total = arr.sum()
  tol = 1e-4 if np.asarray(p).dtype == np.float32 else 1e-8
  if abs(total - 1.0) > tol:
    raise PrefjaxError(f"{name} must sum to 1, got {total:.6g}")


def _check_inputs(p, rewards, num_candidates, real_fraction, p_data):
  p = jnp.asarray(p)
  rewards = jnp.asarray(rewards)
  if p.ndim != 1 or rewards.shape != p.shape:
    raise PrefjaxError(f"p and rewards must both have shape [N], got {p.shape} and {rewards.shape}")
  _check_distribution(p, "p")
  if not _is_tracer(rewards):
    bad = np.flatnonzero(~np.isfinite(np.asarray(rewards)))
    if bad.size:
      raise PrefjaxError(f"rewards[{bad[0]}] = {np.asarray(rewards)[bad[0]]} is not finite")
  if jnp.ndim(num_candidates) != 0:
    raise PrefjaxError(f"num_candidates must be a scalar, got shape {jnp.shape(num_candidates)}")
  if not _is_tracer(num_candidates):
    k = float(num_candidates)
    if not (k >= 1 and k == math.floor(k)):
      raise PrefjaxError(f"num_candidates (K) must be an integer >= 1, got {num_candidates}")
  if not _is_tracer(real_fraction) and not 0.0 <= float(real_fraction) <= 1.0:
    raise PrefjaxError(f"real_fraction (λ) must lie in [0, 1], got {real_fraction}")
  if p_data is not None:
    p_data = jnp.asarray(p_data)
    if p_data.shape != p.shape:
      raise PrefjaxError(f"p_data must have shape {p.shape} like p, got {p_data.shape}")
    _check_distribution(p_data, "p_data")
  return p, rewards, p_data


# ----------------------------------------------------------------------------------------------------
# The exact map.


def _de_nodes(dtype):
  tau = np.arange(-_DE_HALF_WIDTH, _DE_HALF_WIDTH + 0.5 * _DE_STEP, _DE_STEP)
  log_u = 0.5 * np.pi * np.sinh(tau)
  log_weight = np.log(_DE_STEP * 0.5 * np.pi * np.cosh(tau)) + log_u  # du = (π/2) cosh τ · u dτ.
  return jnp.asarray(log_u, dtype), jnp.asarray(log_weight, dtype)


def _log_w(p, rewards):
  """log w = r − (max + min)/2 over the support; −inf off the support.

  Centring balances the scales 1/w the quadrature must resolve: its nodes span u ∈ e^{±70}, and the
  residual stays at float64 round-off for reward ranges up to ~50 nats (~1e-8 at 80 nats).
  """
  support = p > 0
  r_max = jnp.max(jnp.where(support, rewards, -jnp.inf))
  r_min = jnp.min(jnp.where(support, rewards, jnp.inf))
  return jnp.where(support, rewards - 0.5 * (r_max + r_min), -jnp.inf)


def _selection_expectation(p, rewards, num_candidates):
  """`[N]` E[w_x / (w_x + S)] by exp-sinh quadrature of the Laplace integral (see the module docstring)."""
  dtype = p.dtype
  log_u, log_weight = _de_nodes(dtype)
  log_w = _log_w(p, rewards)
  log_wu = log_w[:, None] + log_u[None, :]  # [N, Q] log(w_y u).
  wu = jnp.exp(log_wu)
  # log M(u) two ways: log1p(Σ p (e^{−wu} − 1)) is accurate near M = 1, logsumexp once M is small.
  deficit = jnp.sum(jnp.where(p[:, None] > 0, p[:, None] * jnp.expm1(-wu), 0.0), axis=0)  # [Q]
  log_m_small_u = jnp.log1p(jnp.maximum(deficit, -1.0 + jnp.finfo(dtype).eps))
  log_p = jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)), -jnp.inf)
  log_m_large_u = jax.nn.logsumexp(log_p[:, None] - wu, axis=0)
  log_m = jnp.where(deficit > -0.5, log_m_small_u, log_m_large_u)
  km1 = jnp.asarray(num_candidates, dtype) - 1.0
  # log(w e^{−wu} M^{K−1} du); log_weight holds log(h · du/dτ).
  log_integrand = log_w[:, None] - wu + (km1 * log_m)[None, :] + log_weight[None, :]
  return jnp.sum(jnp.exp(log_integrand), axis=1)


@jax.jit
def _quadrature_unnormalised(p, rewards, num_candidates):
  e = _selection_expectation(p, rewards, num_candidates)
  return jnp.where(p > 0, p * jnp.asarray(num_candidates, p.dtype) * e, 0.0)


def _enumerate_unnormalised(p, rewards, num_candidates):
  """Exact float64 map by enumerating the multisets of the K − 1 other draws (NumPy)."""
  p = np.asarray(p, np.float64)
  r = np.asarray(rewards, np.float64)
  k = int(num_candidates)
  support = np.flatnonzero(p > 0)
  ps = p[support]
  w = np.exp(r[support] - r[support].max())
  n_terms = math.comb(len(support) + k - 2, k - 1)
  if n_terms > MAX_ENUMERATED_MULTISETS:
    raise PrefjaxError(
        f"method='enumerate' would sum over {n_terms} multisets (> {MAX_ENUMERATED_MULTISETS}); use "
        f"method='quadrature'")
  e = np.zeros(len(support))
  log_fact = math.lgamma(k)  # log (K − 1)!
  log_ps = np.log(ps)
  for combo in itertools.combinations_with_replacement(range(len(support)), k - 1):
    counts = np.bincount(np.asarray(combo, np.int64), minlength=len(support))
    log_prob = log_fact - sum(math.lgamma(c + 1) for c in counts) + float(counts @ log_ps)
    e += math.exp(log_prob) * w / (w + float(counts @ w))
  out = np.zeros_like(p)
  out[support] = ps * k * e
  return out


# How `curation_map` computes the expectation: name → unnormalised map (p, rewards, K) -> [N].
MAP_METHODS = {"quadrature": _quadrature_unnormalised, "enumerate": _enumerate_unnormalised}


def curation_map_residual(p, rewards, num_candidates):
  """Σ_x of the unnormalised quadrature map minus 1 (exactly 0 in exact arithmetic): a quadrature check.

  Args:
    p: `[N]` current distribution.
    rewards: `[N]` rewards.
    num_candidates: K.

  Returns:
    Scalar residual.
  """
  p, rewards, _ = _check_inputs(p, rewards, num_candidates, 0.0, None)
  return jnp.sum(_quadrature_unnormalised(p, rewards, num_candidates)) - 1.0


def curation_map(p, rewards, num_candidates, *, real_fraction=0.0, p_data=None, method="quadrature"):
  """One generation of the exact curated retraining map (Ferbach et al. 2407.09499).

  p_{t+1} = λ p_data + (1 − λ) G_K(p_t), G_K(p)(x) = p(x) K E_{x_2..K ∼ p}[e^{r(x)} / Σ_{j=1}^K e^{r(x_j)}]
  with x_1 = x. K = 1 is no curation (G = identity); K → ∞ gives p e^r / E_p[e^r] (`tilted`). See the
  module docstring for the methods. The result is renormalised (the quadrature residual is below 1e-12 in
  float64, about 1e-6 in float32).

  Args:
    p: `[N]` current distribution p_t.
    rewards: `[N]` rewards r (only differences matter).
    num_candidates: K ≥ 1, the number of samples the user chooses from (a traced array is fine for
      "quadrature", so K can be vmapped).
    real_fraction: λ ∈ [0, 1], the fraction of real data in the refit.
    p_data: `[N]` real-data distribution (default: p itself, which makes λ a damping).
    method: one of `MAP_METHODS`.

  Returns:
    `[N]` p_{t+1}.
  """
  if method not in MAP_METHODS:
    raise PrefjaxError(f"method must be one of {sorted(MAP_METHODS)}, got {method!r}")
  p, rewards, p_data = _check_inputs(p, rewards, num_candidates, real_fraction, p_data)
  if method == "enumerate":
    if any(_is_tracer(x) for x in (p, rewards, num_candidates)):
      raise PrefjaxError("method='enumerate' needs concrete inputs (it runs on the host)")
    g = MAP_METHODS[method](p, rewards, num_candidates)
    g = g / g.sum()
    pd = np.asarray(p if p_data is None else p_data, np.float64)
    return real_fraction * pd + (1.0 - real_fraction) * g
  g = _quadrature_unnormalised(p, rewards, num_candidates)
  g = g / jnp.sum(g)
  lam = jnp.asarray(real_fraction, p.dtype)
  return lam * (p if p_data is None else p_data) + (1.0 - lam) * g


def tilted(p0, rewards, t):
  """The K → ∞ limit after t generations: p_t ∝ p_0 e^{t r} (2407.09499 §2).

  Args:
    p0: `[N]` initial distribution.
    rewards: `[N]` rewards.
    t: `[...]` generation(s) (non-negative; broadcast as a leading shape).

  Returns:
    `[..., N]` tilted distributions.
  """
  p0 = jnp.asarray(p0)
  rewards = jnp.asarray(rewards, p0.dtype)
  t = jnp.asarray(t, p0.dtype)[..., None]
  lead = (1,) * (t.ndim - 1)
  log_p = jnp.where(p0 > 0, jnp.log(jnp.where(p0 > 0, p0, 1.0)), -jnp.inf).reshape(lead + p0.shape)
  return jax.nn.softmax(log_p + t * rewards.reshape(lead + p0.shape), axis=-1)


@functools.partial(jax.jit, static_argnames=("num_generations",))
def _trajectory(p0, rewards, num_candidates, real_fraction, p_data, num_generations):
  lam = jnp.asarray(real_fraction, p0.dtype)

  def step(p, _):
    g = _quadrature_unnormalised(p, rewards, num_candidates)
    p_next = lam * p_data + (1.0 - lam) * g / jnp.sum(g)
    return p_next, p_next

  _, ps = jax.lax.scan(step, p0, None, length=num_generations)
  return jnp.concatenate([p0[None], ps], axis=0)


def exact_trajectory(p0, rewards, num_candidates, num_generations, *, real_fraction=0.0, p_data=None):
  """Iterates `curation_map` (quadrature) from p_0: `[T + 1, N]` with row 0 = p_0.

  Pure and jit-compiled; K and λ may be traced, so `jax.vmap` over a grid of (K, λ) compiles once.

  Args:
    p0: `[N]` initial distribution.
    rewards: `[N]` rewards.
    num_candidates: K ≥ 1.
    num_generations: T.
    real_fraction: λ ∈ [0, 1].
    p_data: `[N]` real-data distribution (default p_0: the model is first fit to the real data).

  Returns:
    `[T + 1, N]` distributions p_0..p_T.
  """
  p0, rewards, p_data = _check_inputs(p0, rewards, num_candidates, real_fraction, p_data)
  if not isinstance(num_generations, (int, np.integer)) or num_generations < 0:
    raise PrefjaxError(f"num_generations must be an int >= 0, got {num_generations!r}")
  p_data = p0 if p_data is None else p_data.astype(p0.dtype)
  return _trajectory(p0, rewards.astype(p0.dtype), num_candidates, real_fraction, p_data,
                     int(num_generations))


# ----------------------------------------------------------------------------------------------------
# Sampling.


def _sample_items(key, p, shape):
  """Inverse-CDF draws from `[N]` p (cheaper than Gumbel-max over N for many draws); never an item with
  p = 0."""
  cdf = jnp.cumsum(p)
  u = jax.random.uniform(key, shape, p.dtype) * cdf[-1]
  idx = jnp.searchsorted(cdf, u, side="right")
  last = jnp.max(jnp.where(p > 0, jnp.arange(p.shape[0]), 0))
  return jnp.minimum(idx, last).astype(jnp.int32)


def _curate(key, p, rewards, num_candidates, num_samples, max_candidates):
  """`[num_samples]` curated items: K candidates from p, one kept with probability ∝ e^r."""
  k_draw, k_pick = jax.random.split(key)
  cand = _sample_items(k_draw, p, (num_samples, max_candidates))
  active = jnp.arange(max_candidates)[None, :] < num_candidates
  logits = jnp.where(active, rewards[cand], -jnp.inf)
  pick = jax.random.categorical(k_pick, logits, axis=1)
  return jnp.take_along_axis(cand, pick[:, None], axis=1)[:, 0]


@functools.partial(jax.jit, static_argnames=("num_samples", "max_candidates"))
def _mc_map(key, p, rewards, num_candidates, num_samples, max_candidates):
  log_w = _log_w(p, rewards)
  others = _sample_items(key, p, (num_samples, max_candidates - 1))
  active = jnp.arange(max_candidates - 1)[None, :] < num_candidates - 1
  s = jnp.sum(jnp.where(active, jnp.exp(log_w[others]), 0.0), axis=1)  # [M]
  w = jnp.exp(log_w)
  ratio = w[None, :] / (w[None, :] + s[:, None])  # [M, N]
  k = jnp.asarray(num_candidates, p.dtype)
  g = jnp.where(p > 0, p * k * jnp.mean(ratio, axis=0), 0.0)
  se = jnp.where(p > 0, p * k * jnp.std(ratio, axis=0) / jnp.sqrt(num_samples), 0.0)
  return g, se


def curation_map_monte_carlo(key, p, rewards, num_candidates, num_samples, *, max_candidates=None):
  """Unbiased Monte-Carlo estimate of the unnormalised G_K(p) and its standard error.

  Draws `num_samples` sets of K − 1 "other" samples from p and averages e^{r(x)} / (e^{r(x)} + S) for every
  x at once; for supports or K too large for `method="enumerate"` when the quadrature is not wanted.

  Args:
    key: PRNG key.
    p: `[N]` distribution.
    rewards: `[N]` rewards.
    num_candidates: K ≥ 2 (may be traced if `max_candidates` is given).
    num_samples: M, Monte-Carlo sets.
    max_candidates: static upper bound on K (default K).

  Returns:
    `(g, se)`: `[N]` estimate of p(x) K E[·] (sums to 1 in expectation) and its `[N]` standard errors.
  """
  p, rewards, _ = _check_inputs(p, rewards, num_candidates, 0.0, None)
  if max_candidates is None:
    if _is_tracer(num_candidates):
      raise PrefjaxError("pass max_candidates when num_candidates is traced")
    max_candidates = int(num_candidates)
  if max_candidates < 2:
    raise PrefjaxError(f"curation_map_monte_carlo needs K >= 2, got max_candidates = {max_candidates}")
  return _mc_map(key, p, rewards.astype(p.dtype), num_candidates, int(num_samples), int(max_candidates))


@functools.partial(jax.jit, static_argnames=("num_generations", "num_samples", "max_candidates"))
def _sampled_loop(key, p0, rewards, num_candidates, real_fraction, p_data, num_generations, num_samples,
                  max_candidates):
  n = p0.shape[0]
  num_real = jnp.round(real_fraction * num_samples)
  is_real = jnp.arange(num_samples) < num_real

  def step(p, t):
    k_cur, k_real = jax.random.split(jax.random.fold_in(key, t))
    curated = _curate(k_cur, p, rewards, num_candidates, num_samples, max_candidates)
    real = _sample_items(k_real, p_data, (num_samples,))
    items = jnp.where(is_real, real, curated)
    counts = jnp.zeros(n, p.dtype).at[items].add(1.0)
    p_next = counts / num_samples  # The tabular maximum-likelihood refit.
    return p_next, p_next

  _, ps = jax.lax.scan(step, p0, jnp.arange(num_generations))
  return jnp.concatenate([p0[None], ps], axis=0)


def sampled_loop(key, p0, rewards, num_candidates, num_generations, num_samples, *, real_fraction=0.0,
                 p_data=None, max_candidates=None):
  """The curated self-consuming loop with finite samples and a tabular maximum-likelihood refit.

  Each generation: round(λ n) real samples from p_data and n − round(λ n) curated samples (K candidates
  from p_t, one kept with probability e^{r} / Σ e^{r}); p_{t+1} = the empirical frequencies (the MLE of a
  tabular model). Given p_t, n p_{t+1} is a sum of two independent multinomials with cell probabilities
  p_data and G_K(p_t), which is what the tests check against `curation_map`. An item whose frequency hits 0
  never returns (model collapse of the support).

  Args:
    key: PRNG key.
    p0: `[N]` initial model.
    rewards: `[N]` rewards.
    num_candidates: K ≥ 1 (may be traced, e.g. vmapped, when `max_candidates` is given).
    num_generations: T (static).
    num_samples: n samples per refit (static).
    real_fraction: λ ∈ [0, 1] (may be traced).
    p_data: `[N]` real data distribution (default p_0).
    max_candidates: static bound on K: candidates beyond K are masked, so one compiled program serves
      every K ≤ max_candidates (default K).

  Returns:
    `[T + 1, N]` models p̂_0 = p_0, p̂_1, ..., p̂_T.
  """
  p0, rewards, p_data = _check_inputs(p0, rewards, num_candidates, real_fraction, p_data)
  if max_candidates is None:
    if _is_tracer(num_candidates):
      raise PrefjaxError("pass max_candidates when num_candidates is traced")
    max_candidates = int(num_candidates)
  if not _is_tracer(num_candidates) and float(num_candidates) > max_candidates:
    raise PrefjaxError(f"num_candidates = {num_candidates} exceeds max_candidates = {max_candidates}")
  for name, v in (("num_generations", num_generations), ("num_samples", num_samples)):
    if not isinstance(v, (int, np.integer)) or v < (0 if name == "num_generations" else 1):
      raise PrefjaxError(f"{name} must be a positive int, got {v!r}")
  p_data = p0 if p_data is None else p_data.astype(p0.dtype)
  return _sampled_loop(key, p0, rewards.astype(p0.dtype), num_candidates,
                       jnp.asarray(real_fraction, p0.dtype), p_data, int(num_generations),
                       int(num_samples), int(max_candidates))


class OneStepCheck(NamedTuple):
  """Standardised one-step residuals of a sampled loop against the exact map (`one_step_check`).

  Attributes:
    cell_z: `[..., T, N]` per-cell z-scores; NaN for cells whose expected count (or its complement) is
      below `min_expected_count`, where the normal approximation of the binomial fails.
    reward_z: `[..., T]` z-scores of the refit model's expected reward E_{p̂_{t+1}}[r] (a mean of n
      bounded terms, so close to N(0, 1) even with sparse cells).
  """
  cell_z: np.ndarray
  reward_z: np.ndarray


@jax.jit
def _one_step_moments(ps, rewards, num_candidates, real_fraction, p_data, num_samples):
  g = jax.vmap(lambda p: _quadrature_unnormalised(p, rewards, num_candidates))(ps)
  g = g / jnp.sum(g, axis=-1, keepdims=True)
  lam = jnp.round(real_fraction * num_samples) / num_samples  # The realised real fraction n_r / n.
  mean = lam * p_data[None] + (1 - lam) * g
  cell_var = (lam * p_data[None] * (1 - p_data[None]) + (1 - lam) * g * (1 - g)) / num_samples

  def var_r(q):  # [M, N] -> [M] variances of r.
    m = q @ rewards
    return jnp.sum(q * (rewards[None, :] - m[:, None])**2, axis=-1)

  reward_var = (lam * var_r(p_data[None]) + (1 - lam) * var_r(g)) / num_samples
  return mean, cell_var, reward_var


def one_step_check(ps, rewards, num_candidates, num_samples, *, real_fraction=0.0, p_data=None,
                   min_expected_count=10.0):
  """Checks a sampled loop against the exact map one generation at a time, given the previous model.

  Given p̂_t, n p̂_{t+1} = Multinomial(n_r, p_data) + Multinomial(n − n_r, G_K(p̂_t)) with n_r = round(λ n),
  exactly. So each cell has mean E = (n_r p_data + (n − n_r) G)/n and variance
  (n_r q_d(1 − q_d) + (n − n_r) G(1 − G))/n², and the expected reward E_{p̂_{t+1}}[r] has mean E·r and variance
  (n_r Var_{p_data}(r) + (n − n_r) Var_G(r))/n². The z-scores are ≈ N(0, 1) when the loop matches the map.

  Args:
    ps: `[..., T + 1, N]` outputs of `sampled_loop` (leading axes, e.g. seeds, are kept).
    rewards: `[N]` rewards.
    num_candidates: K.
    num_samples: n.
    real_fraction: λ.
    p_data: `[N]` real-data distribution (default `ps[..., 0, :]`, which must then be the same p_0).
    min_expected_count: cells with n E or n (1 − E) below this get NaN.

  Returns:
    A `OneStepCheck`.
  """
  ps = jnp.asarray(ps)
  if ps.ndim < 2:
    raise PrefjaxError(f"ps must have shape [..., T + 1, N], got {ps.shape}")
  flat = ps.reshape((-1,) + ps.shape[-2:])
  p_data = flat[0, 0] if p_data is None else jnp.asarray(p_data, ps.dtype)
  prev = flat[:, :-1].reshape((-1, ps.shape[-1]))
  mean, cell_var, reward_var = _one_step_moments(prev, jnp.asarray(rewards, ps.dtype), float(num_candidates),
                                                 float(real_fraction), p_data, float(num_samples))
  nxt = np.asarray(flat[:, 1:].reshape((-1, ps.shape[-1])), np.float64)
  mean = np.asarray(mean, np.float64)
  cell_sd = np.sqrt(np.asarray(cell_var, np.float64))
  ok = (num_samples * mean >= min_expected_count) & (num_samples * (1 - mean) >= min_expected_count)
  cell_z = np.where(ok, (nxt - mean) / np.where(ok, cell_sd, 1.0), np.nan)
  r = np.asarray(rewards, np.float64)
  reward_z = (nxt @ r - mean @ r) / np.sqrt(np.asarray(reward_var, np.float64))
  lead = ps.shape[:-2] + (ps.shape[-2] - 1,)
  return OneStepCheck(cell_z.reshape(lead + (ps.shape[-1],)), reward_z.reshape(lead))


# ----------------------------------------------------------------------------------------------------
# The experiment.
#
# `run_curation_loop` (experiment `curation_loop`) lives in `prefjax.runs.curation` and its figure in
# `prefjax.plotting.curation`; their names resolve here too, imported on first use (the runner imports this
# module).

_RUNNER_NAMES = ("_kl", "_tv", "make_instance", "run_curation_loop", "validate_curation_loop")


def __getattr__(name):
  if name in _RUNNER_NAMES:
    from prefjax.runs import curation as runner  # pylint: disable=g-import-not-at-top
    return getattr(runner, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

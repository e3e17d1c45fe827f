r"""Parametric (loss-based) Nash-learning and self-play objectives, each with an exact and a sampled twin.

docs/theory.md §4. The losses follow the released simulation code of EGPO (Zhou et al. arXiv:2503.08942,
zhourunlong/EGPO `simulations/loss_funcs.py`), online IPO (Calandriello et al. arXiv:2403.08635),
Nash-MD (Munos et al. arXiv:2312.00886), SPPO (Wu et al. arXiv:2405.00675) and (α-)SPIN (Chen et al.
arXiv:2401.01335; Alami et al. arXiv:2404.04291).

Conventions:
- Every loss is a pure function of one game: `logits` `[N]` are the policy's (differentiable) logits
  π_θ = softmax(logits), `ref_logits` `[N]` those of π_ref, P `[N, N]` the preference matrix, β > 0 the
  regularisation (τ for IPO). Log-ratios ℓ(y) = log π_θ(y) − log π_ref(y); margins h(y, y') = ℓ(y) − ℓ(y').
  Batches of games / seeds: `jax.vmap`. Targets are always built from detached (`stop_gradient`) policies.
- Exact twins sum over all actions (all ordered pairs); sampled twins take a PRNG key and `num_samples`
  (S) draws, and return the mean over the S samples. Every sampled gradient is an unbiased estimate of
  its exact twin's gradient. The sampled loss is unbiased for the exact loss except where the target
  itself is a sample (online IPO 1, Nash-MD, SPPO's soft win rates): there E[sampled loss] = exact loss +
  a θ-independent constant, the target's variance (`*_target_variance` gives it exactly).
- `labels="bernoulli"` in a sampled twin replaces the preference probability P[y, y''] of each query by
  a Bernoulli(P[y, y'']) label (a human/annotator comparison); targets are linear in the label, so the
  gradient stays unbiased.

The objectives (registry `NASH_OBJECTIVES`, each an `(exact, sampled)` pair):

- "online_ipo_1" (OMD): L = (1/N²) Σ_{y,y'} (h(y,y') − ((Pπ')_y − (Pπ')_{y'})/β)², π' = sg(π_θ).
  For tabular logits one plain-SGD step with learning rate lr is exactly one online-mirror-descent step
  with ηβ = 4·lr/N (derivation in `online_ipo_1_loss`). Sampled: y, y' uniform, y'' ∼ π'.
- "online_ipo_2": L = Σ_{y,y'} π(y)π(y') (h(y,y') − (P_{yy'} − ½)/β)², π = sg(π_θ). Sampled: y, y' ∼ π.
- "nash_md": online IPO 1 with π' the geometric mixture π^μ ∝ π^{1−η̃β} π_ref^{η̃β} of the detached
  policy; the mixture step η̃ (`mix_eta`) is an explicit argument (see `nash_md_mixture_eta`: the
  OMD-equivalent η̃ = 4·lr/(βN) makes an SGD step an exact Nash-MD step; EGPO's released code uses
  η̃ = 2·lr/(βN)). Sampled: y, y' uniform, y'' ∼ π^μ.
- "nash_md_pg": −Σ_y π(y) [(P π^μ)_y − β ℓ(y)]_sg log π_θ(y) (REINFORCE form). Sampled: y ∼ π, y' ∼ π^μ,
  −(1/S) Σ (P_{y y'} − β ℓ(y))_sg log π_θ(y).
- "egpo": EGPO's extragradient step (`egpo_step`): the online-IPO-1 loss evaluated at θ_t with target
  π_t for the half step, then again at θ_t with target π_{t+½} for the full step; the sampled twin draws
  fresh samples for the second half step.
- "sppo": ½ E_{y∼π_t}[(ℓ_t(y) − (P̂(y) − ½)/β)²] with ℓ_t = log π_θ − log π_t and P̂(y) the soft win rate of
  y among K draws from π_t (self included), whose mean is (1/K)(½ + (K−1)(Pπ_t)_y). See `sppo_loss`.
- "spin", "alpha_spin": E_{y∼p_data, y'∼q}[−log σ(λ(ℓ_m(y) − ℓ_m(y')))] with ℓ_m = log π_θ − log m,
  m = π_t (SPIN) or ∝ π_ref^α π_t^{1−α} (α-SPIN). See `spin_loss`.

Non-finite inputs: P is always checked on concrete inputs (`preferences.validate`), the logits are not:
a NaN / ±inf logit gives a NaN loss. Every loss above takes `check_finite=False`; `True` checks its
logits (and P): eagerly a `PrefjaxError` naming the argument and the first bad index, under `jit` / `vmap`
a `jax.experimental.checkify` check reported by `checkify.checkify(...)` (docs/objectives_checks.md).
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prefjax.errors import PrefjaxError
from prefjax.games import preferences
from prefjax.objectives import _checks
from prefjax.objectives import spec
from prefjax.objectives.registry import Registry

sg = jax.lax.stop_gradient


# ----------------------------------------------------------------------------------------------------
# Input checks (shapes always; values on concrete inputs only).


def _concrete(*xs):
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def check_inputs(fn, logits, ref_logits, P, beta):
  """Validates one game's arguments for objective `fn`; returns N. Raises `PrefjaxError` naming the problem.

  Shapes (always): `logits` and `ref_logits` `[N]`, P `[N, N]`. Values (concrete inputs only): P is a
  preference matrix (entries in [0, 1], P + Pᵀ = 1), β is finite and > 0.
  """
  n = jnp.shape(logits)[-1] if jnp.ndim(logits) == 1 else None
  if n is None:
    raise PrefjaxError(f"{fn}: logits must have shape [N] (vmap for batches), got {jnp.shape(logits)}")
  if jnp.shape(ref_logits) != (n,):
    raise PrefjaxError(f"{fn}: ref_logits must have shape [{n}] to match logits, got {jnp.shape(ref_logits)}")
  if jnp.shape(P) != (n, n):
    raise PrefjaxError(f"{fn}: P must have shape [{n}, {n}] to match logits, got {jnp.shape(P)}")
  if _concrete(P):
    preferences.validate(P, name=f"{fn}: P")
  if jnp.ndim(beta) != 0:
    raise PrefjaxError(f"{fn}: beta must be a scalar, got shape {jnp.shape(beta)}")
  if _concrete(beta):
    b = float(np.asarray(beta))
    if not np.isfinite(b) or b <= 0:
      raise PrefjaxError(f"{fn}: beta must be finite and > 0, got {b}")
  return n


def _check_samples(fn, num_samples):
  if int(num_samples) < 1:
    raise PrefjaxError(f"{fn}: num_samples must be >= 1, got {num_samples}")
  return int(num_samples)


LABELS = ("probabilities", "bernoulli")


def _check_labels(fn, labels):
  if labels not in LABELS:
    raise PrefjaxError(f"{fn}: labels must be one of {LABELS}, got {labels!r}")


def _query(key, P, y, y2, labels):
  """Preference of y over y2 per sample: the probability P[y, y2], or a Bernoulli(P[y, y2]) label."""
  p = P[y, y2]
  if labels == "probabilities":
    return p
  return jax.random.bernoulli(key, p).astype(p.dtype)


# ----------------------------------------------------------------------------------------------------
# Helpers.


def log_ratio(logits, ref_logits):
  """ℓ(y) = log π_θ(y) − log π_ref(y), `[N]`."""
  return jax.nn.log_softmax(logits) - jax.nn.log_softmax(ref_logits)


def mixture_logits(logits, ref_logits, beta, mix_eta):
  """Normalised log of Nash-MD's geometric mixture π^μ ∝ π^{1−η̃β} π_ref^{η̃β} (arXiv:2312.00886), detached."""
  return jax.nn.log_softmax((1.0 - mix_eta * beta) * jax.nn.log_softmax(sg(logits))
                            + mix_eta * beta * jax.nn.log_softmax(ref_logits))


NASH_MD_CONVENTIONS = ("omd", "egpo_code")


def nash_md_mixture_eta(lr, beta, n, convention="omd"):
  """The mixture step η̃ that the loss-form Nash-MD uses for plain SGD with learning rate `lr`.

  One plain-SGD step on the online-IPO-1-type loss moves tabular logits by the policy-space step η with
  ηβ = 4·lr/N (see `online_ipo_1_loss`). Conventions:
  - "omd" (default): η̃ = 4·lr/(βN), the same η — one SGD step on `nash_md_loss` is then exactly one
    policy-space Nash-MD step π' ∝ π^μ exp(η P π^μ), π^μ ∝ π^{1−ηβ} π_ref^{ηβ} (tested).
  - "egpo_code": η̃ = 2·lr/(βN), half of it: what EGPO's released simulations use (`true_lr` in
    zhourunlong/EGPO `simulations/run.py`), so their Nash-MD curves mix less towards π_ref than the
    OMD-equivalent step would (docs/theory.md §4). Use it to reproduce their figures.

  Args:
    lr: learning rate (scalar or array).
    beta: β > 0.
    n: number of actions N.
    convention: "omd" or "egpo_code".

  Returns:
    η̃, broadcast like lr and β.
  """
  factors = {"omd": 4.0, "egpo_code": 2.0}
  if convention not in factors:
    raise PrefjaxError(f"nash_md_mixture_eta: convention must be one of {NASH_MD_CONVENTIONS}, "
                       f"got {convention!r}")
  return factors[convention] * lr / (beta * n)


def omd_eta(lr, n, beta):
  """The policy-space step η of one plain-SGD step on online IPO 1 over tabular logits: η = 4·lr/(βN)."""
  return 4.0 * lr / (beta * n)


def _pair_loss(ell, target):
  """(1/N²) Σ_{y,y'} ((ℓ_y − ℓ_y') − (t_y − t_y'))², computed as (2/N) Σ_y (r_y − r̄)², r = ℓ − t.

  The identity Σ_{y,y'} (r_y − r_y')² = 2N Σ_y (r_y − r̄)² makes it O(N) instead of O(N²) (same value and
  gradient; the all-pairs sum is checked against it in the tests).
  """
  r = ell - target
  c = r - jnp.mean(r)
  return 2.0 * jnp.mean(c * c)


def _matvec(P, pi):
  """(P π)_y as a matrix–vector product: under vmap it becomes one batched `dot`, which XLA CPU (jax 0.10)
  runs about 3× faster than an elementwise product and row sum for N = 10 (`benchmarks/game_throughput.py`)."""
  return P @ pi


# ----------------------------------------------------------------------------------------------------
# Online IPO 1 (OMD) and Nash-MD (mixture target).


def online_ipo_1_loss(logits, ref_logits, P, beta, target_logits=None, *, check_finite=False):
  r"""Online IPO 1 / OMD loss of EGPO's simulations (arXiv:2503.08942; docs/theory.md §4), exact over all pairs.

    L(θ; π') = (1/N²) Σ_{y,y'} (h_θ(y, y') − ((Pπ')_y − (Pπ')_{y'})/β)²,   π' = sg(softmax(target_logits)).

  With r = ℓ − Pπ'/β, L = (2/N) Σ_y (r_y − r̄)², so ∂L/∂θ_y = (4/N)(r_y − r̄) for tabular logits θ
  (softmax's Jacobian is absorbed: ℓ depends on θ only up to a shared constant). One SGD step
  θ' = θ − lr ∇L therefore gives, up to normalisation,

    log π' = (1 − 4lr/N) log π + (4lr/N) log π_ref + (4lr/(Nβ)) P π',

  i.e. the online mirror descent step with ηβ = 4·lr/N when π' = π_θ (tested).

  Args:
    logits: `[N]` policy logits θ (or a network's output).
    ref_logits: `[N]` logits of π_ref.
    P: `[N, N]` preference matrix.
    beta: β > 0 (τ).
    target_logits: `[N]` logits of π' (default: `logits`, detached). EGPO's second half-step passes π_{t+½}.
    check_finite: opt-in NaN / ±inf check of the logits and P (see the module docstring).

  Returns:
    `[]` loss.
  """
  check_inputs("online_ipo_1_loss", logits, ref_logits, P, beta)
  _checks.check_finite("online_ipo_1_loss", check_finite, {
      "logits": logits, "ref_logits": ref_logits, "P": P, "target_logits": target_logits})
  target_logits = logits if target_logits is None else target_logits
  g = _matvec(P, jax.nn.softmax(sg(target_logits)))
  return _pair_loss(log_ratio(logits, ref_logits), g / beta)


def online_ipo_1_loss_sampled(logits, ref_logits, P, beta, key, num_samples=100, target_logits=None,
                              labels="probabilities", *, check_finite=False):
  """Sampled twin of `online_ipo_1_loss`: y, y' ∼ uniform, y'' ∼ π' (EGPO's `online_ipo_1_sample`).

    L̂ = (1/S) Σ_s (h_θ(y_s, y'_s) − (P[y_s, y''_s] − P[y'_s, y''_s])/β)².

  E[∇L̂] = ∇L; E[L̂] = L + `online_ipo_1_target_variance` (a θ-independent constant).

  Args:
    logits: `[N]` policy logits.
    ref_logits: `[N]` reference logits.
    P: `[N, N]` preference matrix.
    beta: β > 0.
    key: PRNG key.
    num_samples: S (static).
    target_logits: `[N]` logits of π' (default `logits`, detached).
    labels: "probabilities" (query P) or "bernoulli" (a sampled 0/1 label per query).
    check_finite: opt-in NaN / ±inf check of the logits and P (see the module docstring).

  Returns:
    `[]` loss.
  """
  fn = "online_ipo_1_loss_sampled"
  n = check_inputs(fn, logits, ref_logits, P, beta)
  _checks.check_finite("online_ipo_1_loss_sampled", check_finite, {
      "logits": logits, "ref_logits": ref_logits, "P": P, "target_logits": target_logits})
  _check_labels(fn, labels)
  target_logits = logits if target_logits is None else target_logits
  return _ipo1_sampled(logits, ref_logits, P, beta, key, _check_samples(fn, num_samples), n,
                       sg(jax.nn.log_softmax(target_logits)), labels)


def _ipo1_sampled(logits, ref_logits, P, beta, key, s, n, log_target, labels):
  k_y, k_yp, k_ypp, k_l1, k_l2 = jax.random.split(key, 5)
  y = jax.random.randint(k_y, (s,), 0, n)
  yp = jax.random.randint(k_yp, (s,), 0, n)
  ypp = jax.random.categorical(k_ypp, log_target, shape=(s,))
  ell = log_ratio(logits, ref_logits)
  target = (_query(k_l1, P, y, ypp, labels) - _query(k_l2, P, yp, ypp, labels)) / beta
  return jnp.mean((ell[y] - ell[yp] - target) ** 2)


def online_ipo_1_target_variance(target_logits, P, beta):
  """E_{y,y' uniform} Var_{y''∼π'}[(P[y,y''] − P[y',y''])/β]: E[sampled loss] − exact loss (probabilities)."""
  pi = jax.nn.softmax(target_logits)
  d = (P[:, None, :] - P[None, :, :]) / beta  # [y, y', y'']
  mean = d @ pi
  return jnp.mean(d * d @ pi - mean * mean)


def nash_md_loss(logits, ref_logits, P, beta, mix_eta, *, check_finite=False):
  """Nash-MD in loss form (EGPO's `nash_md`; Munos et al. arXiv:2312.00886): online IPO 1 against π^μ.

    L(θ) = (1/N²) Σ_{y,y'} (h_θ(y,y') − ((Pπ^μ)_y − (Pπ^μ)_{y'})/β)²,  π^μ ∝ sg(π_θ)^{1−η̃β} π_ref^{η̃β}.

  With η̃ = 4·lr/(βN) (`nash_md_mixture_eta(..., "omd")`) one SGD step on tabular logits is exactly the
  policy-space Nash-MD step with η = η̃ (tested); EGPO's released code uses η̃ = 2·lr/(βN) ("egpo_code").

  Args:
    logits: `[N]` policy logits.
    ref_logits: `[N]` reference logits.
    P: `[N, N]` preference matrix.
    beta: β > 0.
    mix_eta: the mixture step η̃ (explicit: see `nash_md_mixture_eta`).
    check_finite: opt-in NaN / ±inf check of the logits and P (see the module docstring).

  Returns:
    `[]` loss.
  """
  check_inputs("nash_md_loss", logits, ref_logits, P, beta)
  _checks.check_finite("nash_md_loss", check_finite, {"logits": logits, "ref_logits": ref_logits, "P": P})
  g = _matvec(P, jnp.exp(mixture_logits(logits, ref_logits, beta, mix_eta)))
  return _pair_loss(log_ratio(logits, ref_logits), g / beta)


def nash_md_loss_sampled(logits, ref_logits, P, beta, mix_eta, key, num_samples=100, labels="probabilities",
                         *, check_finite=False):
  """Sampled twin of `nash_md_loss`: y, y' uniform, y'' ∼ π^μ (EGPO's `nash_md_sample`).

  E[∇L̂] = ∇L; E[L̂] = L + `online_ipo_1_target_variance(mixture_logits(...), P, β)`.

  Args:
    logits, ref_logits, P, beta, mix_eta: as in `nash_md_loss`.
    key: PRNG key.
    num_samples: S (static).
    labels: "probabilities" or "bernoulli".
    check_finite: opt-in NaN / ±inf check of the logits and P (see the module docstring).

  Returns:
    `[]` loss.
  """
  fn = "nash_md_loss_sampled"
  n = check_inputs(fn, logits, ref_logits, P, beta)
  _checks.check_finite("nash_md_loss_sampled", check_finite, {
      "logits": logits, "ref_logits": ref_logits, "P": P})
  _check_labels(fn, labels)
  return _ipo1_sampled(logits, ref_logits, P, beta, key, _check_samples(fn, num_samples), n,
                       mixture_logits(logits, ref_logits, beta, mix_eta), labels)


# ----------------------------------------------------------------------------------------------------
# Online IPO 2 and Nash-MD-PG.


def online_ipo_2_loss(logits, ref_logits, P, beta, *, check_finite=False):
  """Online IPO (Calandriello et al. arXiv:2403.08635) as in EGPO's `online_ipo_2`, exact.

    L(θ) = Σ_{y,y'} π(y) π(y') (h_θ(y, y') − (P_{yy'} − ½)/β)²,   π = sg(π_θ).

  ∂L/∂θ_y = 4 π(y) (ℓ(y) − E_π ℓ − ((Pπ)_y − ½)/β) for tabular logits: stationary exactly at the
  regularised NE ℓ = Pπ/β + c.

  Args:
    logits, ref_logits, P, beta: as in `online_ipo_1_loss`.
    check_finite: opt-in NaN / ±inf check of the logits and P (see the module docstring).

  Returns:
    `[]` loss.
  """
  check_inputs("online_ipo_2_loss", logits, ref_logits, P, beta)
  _checks.check_finite("online_ipo_2_loss", check_finite, {
      "logits": logits, "ref_logits": ref_logits, "P": P})
  pi = jax.nn.softmax(sg(logits))
  ell = log_ratio(logits, ref_logits)
  d = ell[:, None] - ell[None, :] - (P - 0.5) / beta
  return pi @ (d * d) @ pi


def online_ipo_2_loss_sampled(logits, ref_logits, P, beta, key, num_samples=100, labels="probabilities",
                              *, check_finite=False):
  """Sampled twin of `online_ipo_2_loss`: y, y' ∼ π (EGPO's `online_ipo_2_sample`); unbiased loss and gradient
  for `labels="probabilities"` (a Bernoulli label keeps the gradient unbiased, the loss gains a constant).

  Args:
    logits, ref_logits, P, beta: as in `online_ipo_2_loss`.
    key: PRNG key.
    num_samples: S (static).
    labels: "probabilities" or "bernoulli".
    check_finite: opt-in NaN / ±inf check of the logits and P (see the module docstring).

  Returns:
    `[]` loss.
  """
  fn = "online_ipo_2_loss_sampled"
  n = check_inputs(fn, logits, ref_logits, P, beta)
  _checks.check_finite("online_ipo_2_loss_sampled", check_finite, {
      "logits": logits, "ref_logits": ref_logits, "P": P})
  _check_labels(fn, labels)
  s = _check_samples(fn, num_samples)
  del n
  k_y, k_yp, k_l = jax.random.split(key, 3)
  log_pi = sg(jax.nn.log_softmax(logits))
  y = jax.random.categorical(k_y, log_pi, shape=(s,))
  yp = jax.random.categorical(k_yp, log_pi, shape=(s,))
  ell = log_ratio(logits, ref_logits)
  return jnp.mean((ell[y] - ell[yp] - (_query(k_l, P, y, yp, labels) - 0.5) / beta) ** 2)


def nash_md_pg_loss(logits, ref_logits, P, beta, mix_eta, *, check_finite=False):
  """Nash-MD-PG (Munos et al. arXiv:2312.00886; EGPO's `nash_md_pg`), exact policy-gradient surrogate.

    L(θ) = −Σ_y π(y) [(P π^μ)_y − β ℓ(y)]_sg log π_θ(y),   π = sg(π_θ),  π^μ as in `nash_md_loss`.

  Its gradient is −(the policy gradient of E_{y∼π}[(Pπ^μ)_y] − β KL(π ‖ π_ref) with the KL's baseline
  term dropped): −π ⊙ (A − E_π A), A = (Pπ^μ) − βℓ, for tabular logits.

  Args:
    logits, ref_logits, P, beta, mix_eta: as in `nash_md_loss`.
    check_finite: opt-in NaN / ±inf check of the logits and P (see the module docstring).

  Returns:
    `[]` loss.
  """
  check_inputs("nash_md_pg_loss", logits, ref_logits, P, beta)
  _checks.check_finite("nash_md_pg_loss", check_finite, {"logits": logits, "ref_logits": ref_logits, "P": P})
  pi = jax.nn.softmax(sg(logits))
  adv = sg(P @ jnp.exp(mixture_logits(logits, ref_logits, beta, mix_eta)) - beta * log_ratio(logits, ref_logits))
  return -jnp.sum(pi * adv * jax.nn.log_softmax(logits))


def nash_md_pg_loss_sampled(logits, ref_logits, P, beta, mix_eta, key, num_samples=100, labels="probabilities",
                            *, check_finite=False):
  """Sampled twin of `nash_md_pg_loss`: y ∼ π, y' ∼ π^μ, L̂ = −(1/S) Σ (P[y,y'] − βℓ(y))_sg log π_θ(y).

  Unbiased for the exact loss and its gradient.

  Args:
    logits, ref_logits, P, beta, mix_eta: as in `nash_md_loss`.
    key: PRNG key.
    num_samples: S (static).
    labels: "probabilities" or "bernoulli".
    check_finite: opt-in NaN / ±inf check of the logits and P (see the module docstring).

  Returns:
    `[]` loss.
  """
  fn = "nash_md_pg_loss_sampled"
  check_inputs(fn, logits, ref_logits, P, beta)
  _checks.check_finite("nash_md_pg_loss_sampled", check_finite, {
      "logits": logits, "ref_logits": ref_logits, "P": P})
  _check_labels(fn, labels)
  s = _check_samples(fn, num_samples)
  k_y, k_yp, k_l = jax.random.split(key, 3)
  y = jax.random.categorical(k_y, sg(jax.nn.log_softmax(logits)), shape=(s,))
  yp = jax.random.categorical(k_yp, mixture_logits(logits, ref_logits, beta, mix_eta), shape=(s,))
  adv = sg(_query(k_l, P, y, yp, labels) - beta * log_ratio(logits, ref_logits)[y])
  return -jnp.mean(adv * jax.nn.log_softmax(logits)[y])


# ----------------------------------------------------------------------------------------------------
# EGPO: the two-gradient extragradient step, optax-compatible.


def egpo_step(loss_fn, optimizer, params, opt_state, key=None):
  r"""One EGPO step (Zhou et al. arXiv:2503.08942, Alg. 1; `extragradient` in their simulation code).

  `loss_fn(params, target_params, key) -> []` is an online-IPO-1-type loss of `params` whose target is
  built from `target_params` (detached), e.g. for a policy network f:
  `lambda p, q, k: online_ipo_1_loss(f(p), ref_logits, P, β, target_logits=f(q))`. Then

    θ_{t+½} = θ_t − lr ∇_θ L(θ_t; π_{θ_t})            (half step; key k₁)
    θ_{t+1} = θ_t − lr ∇_θ L(θ_t; π_{θ_{t+½}})        (full step from θ_t; fresh key k₂)

  with "θ − lr g" replaced by the given optax optimizer. Both updates start from the same `opt_state`
  (the half step is an extrapolation, not a step of the optimizer's history); the returned state is the
  one after the full step. With `optax.sgd(lr)` this is exactly EGPO's released update (which undoes the
  half step by restoring the negated first gradient). For tabular logits and the exact online-IPO-1 loss it
  is exactly the policy-space extragradient step (`prefjax.games.dynamics.extragradient_step`) with
  η = 4·lr/(βN): by `online_ipo_1_loss`'s derivation, log π_{t+½} = (1−ηβ) log π_t + ηβ log π_ref + η Pπ_t and
  log π_{t+1} = (1−ηβ) log π_t + ηβ log π_ref + η Pπ_{t+½} up to normalisation (tested). For other
  parametrisations (the MLP policy) it is extragradient in parameter space on the same losses.

  Args:
    loss_fn: `(params, target_params, key) -> []` loss (the key may be ignored by exact losses).
    optimizer: an `optax.GradientTransformation`.
    params: parameters θ_t (a pytree).
    opt_state: the optimizer's state.
    key: PRNG key for sampled losses (split into the two half steps' keys); None for exact losses.

  Returns:
    `(params θ_{t+1}, opt_state, loss at θ_t against π_{t+½})`.
  """
  k1, k2 = (None, None) if key is None else jax.random.split(key)
  g1 = jax.grad(loss_fn)(params, params, k1)
  updates, _ = optimizer.update(g1, opt_state, params)
  half = optax.apply_updates(params, updates)
  loss, g2 = jax.value_and_grad(loss_fn)(params, half, k2)
  updates, opt_state = optimizer.update(g2, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


# ----------------------------------------------------------------------------------------------------
# Self-play: SPPO (soft and hard win rates) and (α-)SPIN.


def sppo_loss(logits, prev_logits, P, beta, num_samples_k=None, *, check_finite=False):
  """SPPO's population objective (Wu et al. arXiv:2405.00675, eq. (4.5)), exact.

    L(θ) = ½ E_{y∼π_t}[(ℓ_t(y) − (P̄(y) − ½)/β)²],   ℓ_t = log π_θ − log π_t,

  with π_t = softmax(prev_logits) (detached) and P̄(y) the expected soft win rate. With K samples per
  prompt, self included (official code uclaml/SPPO), P̂(y_i) = (1/K) Σ_j P[y_i, y_j] has mean
  P̄(y) = (½ + (K − 1)(Pπ_t)_y)/K; K = None gives the population target P̄ = Pπ_t. The factor ½ follows
  the official loss (½ over its chosen and rejected terms).

  Args:
    logits: `[N]` policy logits θ.
    prev_logits: `[N]` logits of the previous iterate π_t.
    P: `[N, N]` preference matrix.
    beta: β > 0 (SPPO's η = 1/β).
    num_samples_k: K (the soft win rate's sample count, self included) or None.
    check_finite: opt-in NaN / ±inf check of the logits and P (see the module docstring).

  Returns:
    `[]` loss.
  """
  check_inputs("sppo_loss", logits, prev_logits, P, beta)
  _checks.check_finite("sppo_loss", check_finite, {"logits": logits, "prev_logits": prev_logits, "P": P})
  pi_t = jax.nn.softmax(sg(prev_logits))
  win = P @ pi_t
  if num_samples_k is not None:
    k = int(num_samples_k)
    win = (0.5 + (k - 1) * win) / k
  ell = log_ratio(logits, sg(prev_logits))
  return 0.5 * jnp.sum(pi_t * (ell - (win - 0.5) / beta) ** 2)


SPPO_SELECTIONS = ("all", "best_worst", "hard")


def sppo_loss_sampled(logits, prev_logits, P, beta, key, num_samples_k, num_prompts=1, selection="all",
                      *, check_finite=False):
  """SPPO with soft win rates estimated from K samples of π_t (Wu et al. arXiv:2405.00675; uclaml/SPPO).

  Per prompt (repeated `num_prompts` times, i.e. independent groups): draw y_1..y_K ∼ π_t, estimate
  P̂_i = (1/K) Σ_j P[y_i, y_j] (self included), then
  - "all": ½ (1/K) Σ_i (ℓ_t(y_i) − (P̂_i − ½)/β)² — the unbiased-gradient twin of `sppo_loss(...,
    num_samples_k=K)` (its E[loss] exceeds the exact loss by the soft win rates' variance term);
  - "best_worst": the official recipe, ½[(ℓ_w − (P̂_w − ½)/β)² + (ℓ_l − (P̂_l − ½)/β)²] with w, l the
    samples of highest and lowest P̂ (a selection, so no exact twin);
  - "hard" (`sppo_hard`): as "best_worst" with P̂_w = 1, P̂_l = 0.

  Args:
    logits: `[N]` policy logits.
    prev_logits: `[N]` logits of π_t.
    P: `[N, N]` preference matrix.
    beta: β > 0.
    key: PRNG key.
    num_samples_k: K ≥ 2 samples per prompt (static).
    num_prompts: independent groups averaged (static).
    selection: "all", "best_worst" or "hard".
    check_finite: opt-in NaN / ±inf check of the logits and P (see the module docstring).

  Returns:
    `[]` loss.
  """
  fn = "sppo_loss_sampled"
  check_inputs(fn, logits, prev_logits, P, beta)
  _checks.check_finite("sppo_loss_sampled", check_finite, {
      "logits": logits, "prev_logits": prev_logits, "P": P})
  k = int(num_samples_k)
  if k < 2:
    raise PrefjaxError(f"{fn}: num_samples_k must be >= 2, got {num_samples_k}")
  if selection not in SPPO_SELECTIONS:
    raise PrefjaxError(f"{fn}: selection must be one of {SPPO_SELECTIONS}, got {selection!r}")
  m = _check_samples(fn, num_prompts)
  ys = jax.random.categorical(key, sg(jax.nn.log_softmax(prev_logits)), shape=(m, k))
  win = jnp.mean(P[ys[:, :, None], ys[:, None, :]], axis=-1)  # [m, K]
  ell = log_ratio(logits, sg(prev_logits))[ys]  # [m, K]
  if selection == "all":
    return 0.5 * jnp.mean((ell - (win - 0.5) / beta) ** 2)
  w = jnp.argmax(win, axis=-1)
  l = jnp.argmin(win, axis=-1)
  take = lambda a, i: jnp.take_along_axis(a, i[:, None], axis=-1)[:, 0]
  win_w, win_l = take(win, w), take(win, l)
  if selection == "hard":
    win_w, win_l = jnp.ones_like(win_w), jnp.zeros_like(win_l)
  loss = (take(ell, w) - (win_w - 0.5) / beta) ** 2 + (take(ell, l) - (win_l - 0.5) / beta) ** 2
  return 0.5 * jnp.mean(loss)


def spin_anchor_logits(prev_logits, ref_logits, alpha):
  """log m: π_t for SPIN (α = 0), the geometric mixture ∝ π_ref^α π_t^{1−α} for α-SPIN (arXiv:2404.04291)."""
  return jax.nn.log_softmax((1.0 - alpha) * jax.nn.log_softmax(sg(prev_logits))
                            + alpha * jax.nn.log_softmax(ref_logits))


def spin_loss(logits, prev_logits, ref_logits, data_logits, opponent_logits, lam, alpha=0.0,
              *, check_finite=False):
  """SPIN / α-SPIN loss, exact (Chen et al. arXiv:2401.01335; Alami et al. arXiv:2404.04291).

    L(θ) = Σ_{y,y'} p_data(y) q(y') [−log σ(λ(ℓ_m(y) − ℓ_m(y')))],   ℓ_m = log π_θ − log m,

  m = `spin_anchor_logits(prev_logits, ref_logits, α)` (α = 0: SPIN, m = π_t), q = softmax(opponent_logits)
  the generator of the rejected responses (π_t, or a fictitious-play mixture of past iterates). The tabular
  minimiser is `prefjax.games.dynamics.spin_step` with η = 1/λ.

  Args:
    logits: `[N]` policy logits θ.
    prev_logits: `[N]` logits of π_t.
    ref_logits: `[N]` logits of π_ref.
    data_logits: `[N]` logits of p_data.
    opponent_logits: `[N]` logits of q.
    lam: λ > 0.
    alpha: α ∈ [0, 1].
    check_finite: opt-in NaN / ±inf check of the logits (see the module docstring).

  Returns:
    `[]` loss.
  """
  _checks.check_finite("spin_loss", check_finite, {
      "logits": logits, "prev_logits": prev_logits, "ref_logits": ref_logits, "data_logits": data_logits,
      "opponent_logits": opponent_logits})
  ell = jax.nn.log_softmax(logits) - spin_anchor_logits(prev_logits, ref_logits, alpha)
  p = jax.nn.softmax(data_logits)
  q = jax.nn.softmax(sg(opponent_logits))
  return p @ (-jax.nn.log_sigmoid(lam * (ell[:, None] - ell[None, :]))) @ q


def spin_loss_sampled(logits, prev_logits, ref_logits, data_logits, opponent_logits, lam, key, num_samples=100,
                      alpha=0.0, *, check_finite=False):
  """Sampled twin of `spin_loss`: y ∼ p_data, y' ∼ q; unbiased loss and gradient.

  Args:
    logits, prev_logits, ref_logits, data_logits, opponent_logits, lam, alpha: as in `spin_loss`.
    key: PRNG key.
    num_samples: S (static).
    check_finite: opt-in NaN / ±inf check of the logits (see the module docstring).

  Returns:
    `[]` loss.
  """
  _checks.check_finite("spin_loss_sampled", check_finite, {
      "logits": logits, "prev_logits": prev_logits, "ref_logits": ref_logits, "data_logits": data_logits,
      "opponent_logits": opponent_logits})
  s = _check_samples("spin_loss_sampled", num_samples)
  k_y, k_yp = jax.random.split(key)
  y = jax.random.categorical(k_y, jax.nn.log_softmax(data_logits), shape=(s,))
  yp = jax.random.categorical(k_yp, sg(jax.nn.log_softmax(opponent_logits)), shape=(s,))
  ell = jax.nn.log_softmax(logits) - spin_anchor_logits(prev_logits, ref_logits, alpha)
  return jnp.mean(-jax.nn.log_sigmoid(lam * (ell[y] - ell[yp])))


# ----------------------------------------------------------------------------------------------------
# Registry of the game objectives used by the online trainer.


class GameObjective(NamedTuple):
  """A registered game objective: `loss(logits, target_logits, ref_logits, P, beta, mix_eta, key)`.

  Attributes:
    exact: the exact (all pairs) loss with that uniform signature (the key is ignored).
    sampled: `functools.partial`-able sampled loss with the same signature plus `num_samples`, `labels`.
    extragradient: whether the trainer applies it with `egpo_step` (two gradients per update).
  """
  exact: Callable
  sampled: Callable
  extragradient: bool


def _ipo1_exact(logits, target, ref, P, beta, mix_eta, key):
  del mix_eta, key
  return online_ipo_1_loss(logits, ref, P, beta, target_logits=target)


def _ipo1_samp(logits, target, ref, P, beta, mix_eta, key, num_samples, labels):
  del mix_eta
  return online_ipo_1_loss_sampled(logits, ref, P, beta, key, num_samples, target_logits=target, labels=labels)


def _ipo2_exact(logits, target, ref, P, beta, mix_eta, key):
  del target, mix_eta, key
  return online_ipo_2_loss(logits, ref, P, beta)


def _ipo2_samp(logits, target, ref, P, beta, mix_eta, key, num_samples, labels):
  del target, mix_eta
  return online_ipo_2_loss_sampled(logits, ref, P, beta, key, num_samples, labels=labels)


def _nmd_exact(logits, target, ref, P, beta, mix_eta, key):
  del target, key
  return nash_md_loss(logits, ref, P, beta, mix_eta)


def _nmd_samp(logits, target, ref, P, beta, mix_eta, key, num_samples, labels):
  del target
  return nash_md_loss_sampled(logits, ref, P, beta, mix_eta, key, num_samples, labels=labels)


def _pg_exact(logits, target, ref, P, beta, mix_eta, key):
  del target, key
  return nash_md_pg_loss(logits, ref, P, beta, mix_eta)


def _pg_samp(logits, target, ref, P, beta, mix_eta, key, num_samples, labels):
  del target
  return nash_md_pg_loss_sampled(logits, ref, P, beta, mix_eta, key, num_samples, labels=labels)


NASH_OBJECTIVES = Registry("game objective")
NASH_OBJECTIVES.register("online_ipo_1", GameObjective(_ipo1_exact, _ipo1_samp, False))
NASH_OBJECTIVES.alias("omd", "online_ipo_1")
NASH_OBJECTIVES.register("online_ipo_2", GameObjective(_ipo2_exact, _ipo2_samp, False))
NASH_OBJECTIVES.register("nash_md", GameObjective(_nmd_exact, _nmd_samp, False))
NASH_OBJECTIVES.register("nash_md_pg", GameObjective(_pg_exact, _pg_samp, False))
NASH_OBJECTIVES.register("egpo", GameObjective(_ipo1_exact, _ipo1_samp, True))
NASH_OBJECTIVES.alias("extragradient", "egpo")


def get_game_objective(name):
  """The `GameObjective` registered under `name` (unknown names list the known ones)."""
  return NASH_OBJECTIVES.get(name)


def list_game_objectives():
  """Registered game-objective names (aliases included)."""
  return sorted(NASH_OBJECTIVES.view)


# The objective index (`prefjax.objectives.spec`): game objectives are trained by the tabular game trainers
# (`prefjax.games.online`) and the online LM trainer's algorithms, which call this module's functions.
for _name, _aliases, _display, _arxiv, _formula in (
    ("online_ipo_1", ("omd",), "Online IPO 1 (OMD)", "2403.08635",
     "(h(y, y') − (P(y ≻ π_t) − ½)/β)² over pairs from π_t"),
    ("online_ipo_2", (), "Online IPO 2", "2403.08635", "IPO on pairs sampled from the current policy"),
    ("nash_md", (), "Nash-MD", "2312.00886", "regression on P against the geometric mixture π_t^{1−η} π_ref^η"),
    ("nash_md_pg", (), "Nash-MD-PG", "2312.00886", "policy gradient of P(π ≻ mixture) − β KL(π ‖ π_ref)"),
    ("egpo", ("extragradient",), "EGPO", "2503.08942", "online IPO 1 with an extragradient step")):
  spec.declare(spec.Objective(
      _name, "nash", "game", aliases=_aliases, display_name=_display, arxiv=_arxiv, formula=_formula,
      verified="tests/test_nash_objectives.py: the exact loss's gradient and the sampled twin's unbiasedness; "
               "tests/test_online_games.py: convergence to the regularised Nash equilibrium"))
del _name, _aliases, _display, _arxiv, _formula


# ----------------------------------------------------------------------------------------------------
# Online DPO on a game (the baseline of the `online_dpo_vs_ipo` experiment; not a registered game objective).


def online_dpo_loss(logits, ref_logits, P, beta):
  """Exact online DPO loss: E_{y,y'∼sg(π)}[P_{yy'} (−log σ(β h(y,y')))] (Calandriello et al. arXiv:2403.08635).

  Pairs are drawn from the current policy and labelled by the preference model; its stationary point is
  not the Nash equilibrium of a non-Bradley–Terry game (their App. F).
  """
  pi = jax.nn.softmax(jax.lax.stop_gradient(logits))
  ell = log_ratio(logits, ref_logits)
  h = ell[:, None] - ell[None, :]
  return pi @ (P * -jax.nn.log_sigmoid(beta * h)) @ pi

"""Exact policy-space dynamics for the regularised preference game (docs/theory.md §4).

Every dynamic is a pure step function on normalised log-policies (`log_pi` `[N]`, with π = exp(log_pi));
`run_dynamics` runs one of them under `lax.scan` and records the last and average iterates and their
duality gaps every `record_every` steps. Step sizes η, β (and α for α-SPIN) are array arguments, so runs
`jax.vmap` over games, step sizes and regularisation strengths without recompiling.

Notation: P `[N, N]` preference matrix, log π_ref = log_softmax(ref_logits), β > 0 the regularisation
strength, η > 0 the step size, g = P π the payoff vector ((Pπ)_y = p(y ≻ π)). Every update is written up
to normalisation (the "+ c" of docs/theory.md §4; a final log_softmax). Registry `DYNAMICS`:

- "mirror_descent" (alias "online_ipo"): online mirror descent on the regularised game,
  log π_{t+1} = (1 − ηβ) log π_t + ηβ log π_ref + η P π_t  (Munos et al. arXiv:2312.00886,
  "online mirror descent"; the stationary point of online IPO, Calandriello et al. arXiv:2403.08635).
- "nash_md": Nash-MD with constant η (arXiv:2312.00886): π^μ_t ∝ π_t^{1−ηβ} π_ref^{ηβ},
  π_{t+1} ∝ π^μ_t exp(η P π^μ_t).
- "nash_md_decay": Nash-MD with η_t = 2 / (β (t + 2)) (t = 0, 1, …; the `eta` argument is ignored), for
  which Munos et al. (Thm. 1) prove KL(π*_β ‖ π_T) ≤ 8 / (β² (T + 1)).
- "extragradient" (alias "egpo"): EGPO's policy-space update (Zhou et al. arXiv:2503.08942; the
  "predictive update" of Cen et al. arXiv:2105.15186): π_{t+½} ∝ π_t^{1−ηβ} π_ref^{ηβ} e^{η P π_t},
  π_{t+1} ∝ π_t^{1−ηβ} π_ref^{ηβ} e^{η P π_{t+½}}. Linear last-iterate convergence for η ≤ 1/(β + ½).
- "optimistic": optimistic mirror descent (OMWU of Cen et al. arXiv:2105.15186): the extrapolation
  reuses the previous midpoint's payoff instead of a fresh one (one new P-product per step):
  π̄_{t+1} ∝ π_t^{1−ηβ} π_ref^{ηβ} e^{η P π̄_t},  π_{t+1} ∝ π_t^{1−ηβ} π_ref^{ηβ} e^{η P π̄_{t+1}},
  π̄_0 = π_0. Linear convergence for η ≤ min(1/(2β + 1), 1/2) (Cen et al., with ‖P − ½‖_∞ ≤ ½).
- "mwu" (alias "sppo"): multiplicative weights, exact SPPO (Wu et al. arXiv:2405.00675) with no reference
  term: π_{t+1} ∝ π_t exp(η P π_t) (β only enters the recorded gaps). Its average iterate approaches the
  unregularised NE (regret ≤ log(1/π_0(y))/η + ηT/8); its last iterate cycles away from it.
- "fictitious_play": smooth fictitious play (Brown 1951; Hofbauer & Sandholm 2002), the iterate being the
  running average of regularised best responses: π_{t+1} = π_t + (BR_β(π_t) − π_t)/(t + 2),
  BR_β(π) = softmax(log π_ref + P π/β); converges to π*_β in this zero-sum game. η is ignored.
- "spin", "alpha_spin": tabular self-play fine-tuning, SPIN (Chen et al. arXiv:2401.01335) and α-SPIN with
  a fictitious-play history (Alami et al. arXiv:2404.04291); see `spin_step` for the exact update and the
  decisions it embodies. These dynamics fit a data distribution (`data_logits`), not the game P; the
  recorded gaps are still those of the preference game.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.games import nash
from prefjax.games import tabular


def _payoff(P, log_pi):
  return tabular.preference_against(P, jnp.exp(log_pi))


def _normalise(logits):
  return jax.nn.log_softmax(logits, axis=-1)


# ----------------------------------------------------------------------------------------------------
# Pure step functions on log-policies.


def mirror_descent_step(log_pi, P, ref_logits, beta, eta):
  """Online mirror descent / online IPO: log π' = (1 − ηβ) log π + ηβ log π_ref + η P π + c.

  The exact policy-space step of online IPO (its population minimiser, arXiv:2403.08635) and Munos et
  al.'s online mirror descent (arXiv:2312.00886); stationary exactly at the regularised NE.

  Args:
    log_pi: `[N]` normalised log-policy π_t.
    P: `[N, N]` preference matrix.
    ref_logits: `[N]` logits of π_ref.
    beta: β.
    eta: step size η.

  Returns:
    `[N]` normalised log-policy π_{t+1}.
  """
  log_ref = _normalise(ref_logits)
  return _normalise((1.0 - eta * beta) * log_pi + eta * beta * log_ref + eta * _payoff(P, log_pi))


def nash_md_step(log_pi, P, ref_logits, beta, eta):
  """Nash-MD (arXiv:2312.00886): π^μ ∝ π^{1−ηβ} π_ref^{ηβ}, then π' ∝ π^μ exp(η P π^μ).

  Args:
    log_pi: `[N]` normalised log-policy π_t.
    P: `[N, N]` preference matrix.
    ref_logits: `[N]` logits of π_ref.
    beta: β.
    eta: step size η (η_t for the decaying schedule).

  Returns:
    `[N]` normalised log-policy π_{t+1}.
  """
  log_mix = _normalise((1.0 - eta * beta) * log_pi + eta * beta * _normalise(ref_logits))
  return _normalise(log_mix + eta * _payoff(P, log_mix))


def extragradient_step(log_pi, P, ref_logits, beta, eta):
  """EGPO's policy-space extragradient step (arXiv:2503.08942; Cen et al. arXiv:2105.15186).

    π_{t+½} ∝ π_t^{1−ηβ} π_ref^{ηβ} e^{η P π_t},   π_{t+1} ∝ π_t^{1−ηβ} π_ref^{ηβ} e^{η P π_{t+½}}.

  Args:
    log_pi: `[N]` normalised log-policy π_t.
    P: `[N, N]` preference matrix.
    ref_logits: `[N]` logits of π_ref.
    beta: β.
    eta: step size η.

  Returns:
    `[N]` normalised log-policy π_{t+1}.
  """
  anchor = (1.0 - eta * beta) * log_pi + eta * beta * _normalise(ref_logits)
  log_half = _normalise(anchor + eta * _payoff(P, log_pi))
  return _normalise(anchor + eta * _payoff(P, log_half))


def optimistic_step(log_pi, log_pi_bar, P, ref_logits, beta, eta):
  """Optimistic mirror descent (OMWU, Cen et al. arXiv:2105.15186) in the symmetric game.

    π̄_{t+1} ∝ π_t^{1−ηβ} π_ref^{ηβ} e^{η P π̄_t},   π_{t+1} ∝ π_t^{1−ηβ} π_ref^{ηβ} e^{η P π̄_{t+1}}.

  Args:
    log_pi: `[N]` normalised log-policy π_t.
    log_pi_bar: `[N]` normalised log of the previous midpoint π̄_t (π̄_0 = π_0).
    P: `[N, N]` preference matrix.
    ref_logits: `[N]` logits of π_ref.
    beta: β.
    eta: step size η.

  Returns:
    `(log π_{t+1}, log π̄_{t+1})`, each `[N]`.
  """
  anchor = (1.0 - eta * beta) * log_pi + eta * beta * _normalise(ref_logits)
  new_bar = _normalise(anchor + eta * _payoff(P, log_pi_bar))
  return _normalise(anchor + eta * _payoff(P, new_bar)), new_bar


def mwu_step(log_pi, P, eta):
  """Multiplicative weights / exact SPPO (arXiv:2405.00675): π' ∝ π exp(η P π), no reference term.

  Args:
    log_pi: `[N]` normalised log-policy π_t.
    P: `[N, N]` preference matrix.
    eta: step size η (SPPO's 1/β).

  Returns:
    `[N]` normalised log-policy π_{t+1}.
  """
  return _normalise(log_pi + eta * _payoff(P, log_pi))


def fictitious_play_step(log_pi, P, ref_logits, beta, t):
  """Smooth fictitious play: π_{t+1} = (1 − w_t) π_t + w_t BR_β(π_t), w_t = 1/(t + 2).

  π_t is the running average of π_0 and the best responses BR_β(π_0), …, BR_β(π_{t−1}) to the previous
  averages, with BR_β(π) = softmax(log π_ref + P π / β) (`nash.best_response`).

  Args:
    log_pi: `[N]` normalised log of the average policy π_t.
    P: `[N, N]` preference matrix.
    ref_logits: `[N]` logits of π_ref.
    beta: β (the smoothing of the best response).
    t: step index t = 0, 1, ….

  Returns:
    `[N]` normalised log-policy π_{t+1}.
  """
  log_br = _normalise(_normalise(ref_logits) + _payoff(P, log_pi) / beta)
  w = 1.0 / (jnp.asarray(t, log_pi.dtype) + 2.0)
  return jnp.logaddexp(jnp.log1p(-w) + log_pi, jnp.log(w) + log_br)


def spin_step(log_pi, log_opponent, ref_logits, data_logits, eta, alpha):
  """Exact tabular (α-)SPIN step: the population minimiser of the SPIN loss.

  SPIN (Chen et al. arXiv:2401.01335) trains π_{t+1} by minimising
  E_{y∼p_data, y'∼q_t}[−log σ(λ(ℓ(y) − ℓ(y')))] with ℓ = log π − log m_t. Here:
  - q_t, the opponent that generates the rejected y', is the arithmetic mixture of the last h iterates,
    (1/h) Σ_{k<h} π_{t−k} (fictitious play over a history of length h, Alami et al. arXiv:2404.04291;
    h = 1 is SPIN). Decision: uniform weights 1/h, the distribution of a sample drawn from an iterate picked
    uniformly among the last h; iterates before π_0 are taken equal to π_0. What could be checked
    (searched 2026-11-27; only the paper's abstract and summary were reachable, not its equations): the
    abstract says SPIN's instability "can be mitigated by playing against a mixture of the two previous
    iterates" and proposes fictitious play, which plays against the average of past iterates, with a
    history length h blending the past iterates, and the geometric mixture as the reference of α-SPIN — all
    consistent with uniform weights, but the paper's equation for the weights was not seen.
  - m_t, the policy inside the log-ratio, is π_t for SPIN and the geometric mixture
    m_t ∝ π_ref^α π_t^{1−α} for α-SPIN (Alami et al.: the KL-regularised SPIN objective reduces to this
    replacement inside the loss). α = 0 is SPIN.
  Over tabular policies the logistic loss of every pair {y, y'} is minimised at
  λ(ℓ(y) − ℓ(y')) = log(p_data(y) q_t(y') / (p_data(y') q_t(y))), which one ℓ satisfies for all pairs:

    log π_{t+1} = log m_t + η (log p_data − log q_t) + c,    η = 1/λ.

  For h = 1 and α = 0 this is Chen et al.'s closed form π_{t+1} ∝ π_t (p_data/π_t)^{1/λ}, with
  fixed point p_data; with α > 0 the fixed point is π ∝ π_ref^{α/(α+η)} p_data^{η/(α+η)}.

  Args:
    log_pi: `[N]` normalised log-policy π_t.
    log_opponent: `[N]` normalised log of the opponent q_t.
    ref_logits: `[N]` logits of π_ref.
    data_logits: `[N]` logits of the data distribution p_data.
    eta: η = 1/λ, SPIN's inverse temperature.
    alpha: α ∈ [0, 1], the weight of π_ref in the geometric mixture.

  Returns:
    `[N]` normalised log-policy π_{t+1}.
  """
  log_anchor = _normalise((1.0 - alpha) * log_pi + alpha * _normalise(ref_logits))
  return _normalise(log_anchor + eta * (_normalise(data_logits) - log_opponent))


# ----------------------------------------------------------------------------------------------------
# Registry: a dynamic is (init, step) on a DynamicsState.


class Game(NamedTuple):
  """The game a dynamic runs on.

  Attributes:
    P: `[N, N]` preference matrix.
    ref_logits: `[N]` logits of π_ref.
    beta: `[]` regularisation strength β.
  """
  P: jax.Array
  ref_logits: jax.Array
  beta: jax.Array


class StepParams(NamedTuple):
  """Step parameters of a dynamic (arrays, so they vmap).

  Attributes:
    eta: `[]` step size η (1/λ for SPIN).
    alpha: `[]` α of α-SPIN's geometric mixture (ignored elsewhere).
    data_logits: `[N]` logits of SPIN's data distribution (ignored elsewhere).
  """
  eta: jax.Array
  alpha: jax.Array
  data_logits: jax.Array


class DynamicsState(NamedTuple):
  """State of a dynamic.

  Attributes:
    log_pi: `[N]` normalised log of the current iterate π_t.
    aux: dynamic-specific extra state (optimistic: log π̄_t; SPIN: `[h, N]` history of log-iterates, most
      recent first; others: an empty tuple).
    t: `[]` int32 step index.
  """
  log_pi: jax.Array
  aux: Any
  t: jax.Array


class Dynamic(NamedTuple):
  """A registered dynamic: `init(log_pi0, history) -> aux`, `step(state, game, params) -> state`."""
  init: Callable[[jax.Array, int], Any]
  step: Callable[[DynamicsState, Game, StepParams], DynamicsState]


def _no_aux(log_pi0, history):
  del log_pi0, history
  return ()


def _simple(update):
  """Registers `update(log_pi, game, params, t) -> log_pi` as a dynamic without extra state."""

  def step(state, game, params):
    log_pi = update(state.log_pi, game, params, state.t)
    return DynamicsState(log_pi=log_pi, aux=state.aux, t=state.t + 1)

  return Dynamic(init=_no_aux, step=step)


def _nash_md_decay(log_pi, game, params, t):
  del params
  eta_t = 2.0 / (game.beta * (jnp.asarray(t, log_pi.dtype) + 2.0))
  return nash_md_step(log_pi, game.P, game.ref_logits, game.beta, eta_t)


def _optimistic_step(state, game, params):
  log_pi, log_bar = optimistic_step(state.log_pi, state.aux, game.P, game.ref_logits, game.beta, params.eta)
  return DynamicsState(log_pi=log_pi, aux=log_bar, t=state.t + 1)


def _history_init(log_pi0, history):
  return jnp.broadcast_to(log_pi0, (history, log_pi0.shape[-1]))


def _make_spin_step(use_alpha):

  def step(state, game, params):
    history = state.aux
    log_opponent = jax.nn.logsumexp(history, axis=0) - jnp.log(jnp.asarray(history.shape[0], history.dtype))
    alpha = params.alpha if use_alpha else jnp.zeros_like(params.alpha)
    log_pi = spin_step(state.log_pi, log_opponent, game.ref_logits, params.data_logits, params.eta, alpha)
    history = jnp.concatenate([log_pi[None, :], history[:-1]], axis=0)
    return DynamicsState(log_pi=log_pi, aux=history, t=state.t + 1)

  return Dynamic(init=_history_init, step=step)


_MIRROR_DESCENT = _simple(lambda lp, g, p, t: mirror_descent_step(lp, g.P, g.ref_logits, g.beta, p.eta))
_EXTRAGRADIENT = _simple(lambda lp, g, p, t: extragradient_step(lp, g.P, g.ref_logits, g.beta, p.eta))
_MWU = _simple(lambda lp, g, p, t: mwu_step(lp, g.P, p.eta))

DYNAMICS = {
    "mirror_descent": _MIRROR_DESCENT,
    "online_ipo": _MIRROR_DESCENT,
    "nash_md": _simple(lambda lp, g, p, t: nash_md_step(lp, g.P, g.ref_logits, g.beta, p.eta)),
    "nash_md_decay": _simple(_nash_md_decay),
    "extragradient": _EXTRAGRADIENT,
    "egpo": _EXTRAGRADIENT,
    "optimistic": Dynamic(init=lambda log_pi0, history: log_pi0, step=_optimistic_step),
    "mwu": _MWU,
    "sppo": _MWU,
    "fictitious_play": _simple(lambda lp, g, p, t: fictitious_play_step(lp, g.P, g.ref_logits, g.beta, t)),
    "spin": _make_spin_step(use_alpha=False),
    "alpha_spin": _make_spin_step(use_alpha=True),
}

SPIN_DYNAMICS = ("spin", "alpha_spin")
ETA_FREE_DYNAMICS = ("nash_md_decay", "fictitious_play")


# ----------------------------------------------------------------------------------------------------
# Runner.


class DynamicsResult(NamedTuple):
  """Output of `run_dynamics` (R = T // record_every records).

  Attributes:
    policy: `[N]` last iterate π_T.
    avg_policy: `[N]` average iterate (1/T) Σ_{t=0}^{T−1} π_t (the policies played at steps 0..T−1).
    steps: `[R]` step index t of each record (record_every, 2·record_every, …, T).
    policies: `[R, N]` last iterates π_t at the recorded steps.
    avg_policies: `[R, N]` average iterates (1/t) Σ_{s<t} π_s at the recorded steps.
    gap: `[R]` duality gaps of π_t (`nash.duality_gap`).
    avg_gap: `[R]` duality gaps of the average iterates.
  """
  policy: jax.Array
  avg_policy: jax.Array
  steps: jax.Array
  policies: jax.Array
  avg_policies: jax.Array
  gap: jax.Array
  avg_gap: jax.Array


def _run(game, params, log_pi0, *, name, num_steps, record_every, history):
  dyn = DYNAMICS[name]
  state = DynamicsState(log_pi=log_pi0, aux=dyn.init(log_pi0, history), t=jnp.asarray(0, jnp.int32))

  def one_step(carry, _):
    state, sum_pi = carry
    sum_pi = sum_pi + jnp.exp(state.log_pi)
    return (dyn.step(state, game, params), sum_pi), None

  def one_record(carry, _):
    carry, _ = jax.lax.scan(one_step, carry, None, length=record_every)
    state, sum_pi = carry
    pi = jnp.exp(state.log_pi)
    avg = sum_pi / state.t.astype(sum_pi.dtype)
    # One gap evaluation on the stacked pair (fewer kernels to compile than two calls).
    gaps = nash.duality_gap(jnp.stack([pi, avg]), game.P, game.ref_logits, game.beta)
    return carry, (state.t, pi, avg, gaps[0], gaps[1])

  carry = (state, jnp.zeros_like(log_pi0))
  (state, sum_pi), (steps, pis, avgs, gaps, avg_gaps) = jax.lax.scan(
      one_record, carry, None, length=num_steps // record_every)
  return DynamicsResult(policy=jnp.exp(state.log_pi), avg_policy=sum_pi / num_steps, steps=steps,
                        policies=pis, avg_policies=avgs, gap=gaps, avg_gap=avg_gaps)


_run_jit = jax.jit(_run, static_argnames=("name", "num_steps", "record_every", "history"))


def run_dynamics(name, P, ref_logits, beta, eta, T, record_every=None, *, alpha=0.0, history=1,
                 data_logits=None, init_logits=None):
  """Runs an exact policy-space dynamic for T steps under `lax.scan` (docs/theory.md §4).

  The policy starts at π_0 = softmax(init_logits) (default π_ref, as in EGPO's experiments). Every
  `record_every` steps the last iterate π_t, the average iterate (1/t) Σ_{s<t} π_s and both duality gaps
  are recorded, so memory stays O(T / record_every). Vmappable over games (P, ref_logits), β, η, α,
  data_logits and init_logits, e.g.
  `jax.vmap(lambda P, r, eta: run_dynamics("extragradient", P, r, 0.1, eta, T=1000))(P_G, ref_G, eta_G)`.

  Args:
    name: a key of `DYNAMICS` (static).
    P: `[N, N]` preference matrix (one game; `jax.vmap` for batches).
    ref_logits: `[N]` logits of π_ref.
    beta: β > 0 (used by every dynamic's recorded gap; "mwu" and the SPIN dynamics do not use it otherwise).
    eta: step size η > 0 (ignored by "nash_md_decay" and "fictitious_play"; 1/λ for SPIN).
    T: number of steps (static int ≥ 1).
    record_every: steps between records (static; must divide T; default T, one record).
    alpha: α ∈ [0, 1] for "alpha_spin".
    history: SPIN's opponent history length h ≥ 1 (static).
    data_logits: `[N]` logits of the data distribution; required by "spin" and "alpha_spin".
    init_logits: `[N]` logits of π_0 (default `ref_logits`).

  Returns:
    A `DynamicsResult`.
  """
  fn = "run_dynamics"
  if name not in DYNAMICS:
    raise PrefjaxError(f"{fn}: unknown dynamic {name!r}; known: {sorted(DYNAMICS)}")
  T = int(T)
  record_every = T if record_every is None else int(record_every)
  history = int(history)
  if T < 1:
    raise PrefjaxError(f"{fn}: T must be >= 1, got {T}")
  if record_every < 1 or T % record_every:
    raise PrefjaxError(f"{fn}: record_every must be a positive divisor of T={T}, got {record_every}")
  if history < 1:
    raise PrefjaxError(f"{fn}: history must be >= 1, got {history}")
  if jnp.ndim(P) != 2 or jnp.shape(P)[0] != jnp.shape(P)[-1]:
    raise PrefjaxError(f"{fn}: P must be a single game [N, N] (use jax.vmap for batches), got {jnp.shape(P)}")
  n = jnp.shape(P)[0]
  if data_logits is None:
    if name in SPIN_DYNAMICS:
      raise PrefjaxError(f"{fn}: {name!r} needs data_logits, the logits of the data distribution p_data")
    data_logits = jnp.zeros(n, jnp.result_type(ref_logits))
  init_logits = ref_logits if init_logits is None else init_logits
  for value, arg in ((ref_logits, "ref_logits"), (data_logits, "data_logits"), (init_logits, "init_logits")):
    if jnp.shape(value) != (n,):
      raise PrefjaxError(f"{fn}: {arg} must have shape [{n}], got {jnp.shape(value)}")
  for value, arg in ((beta, "beta"), (eta, "eta"), (alpha, "alpha")):
    if jnp.ndim(value) != 0:
      raise PrefjaxError(f"{fn}: {arg} must be a scalar (use jax.vmap to sweep it), got {jnp.shape(value)}")
  nash.check_game(fn, P, ref_logits, beta, data_logits=data_logits, init_logits=init_logits)
  if name not in ETA_FREE_DYNAMICS:
    nash.check_positive(eta, "eta", fn)
  if nash.is_concrete(alpha) and not 0.0 <= float(np.asarray(alpha)) <= 1.0:
    raise PrefjaxError(f"{fn}: alpha must lie in [0, 1], got {float(np.asarray(alpha))}")

  dtype = jnp.result_type(P, ref_logits, beta, eta, jnp.float32)
  game = Game(P=jnp.asarray(P, dtype), ref_logits=jnp.asarray(ref_logits, dtype),
              beta=jnp.asarray(beta, dtype))
  params = StepParams(eta=jnp.asarray(eta, dtype), alpha=jnp.asarray(alpha, dtype),
                      data_logits=jnp.asarray(data_logits, dtype))
  log_pi0 = jax.nn.log_softmax(jnp.asarray(init_logits, dtype))
  return _run_jit(game, params, log_pi0, name=name, num_steps=T, record_every=record_every, history=history)

"""Soft and adaptive margins for pairwise objectives: MMPO, β-DPO, γ-PO (docs/theory.md §2, second list).

All take the usual per-example sequence log-probs `[B]` (policy and reference, chosen and rejected) and
return per-example losses `[B]` whose mean is the batch loss. h = ρ_w − ρ_l is the implicit-reward
margin, ρ = log π − log π_ref.

- MMPO (Kim et al. 2410.03145): soft Bradley–Terry targets p̂ = σ(γ m) from quality margins m; the
  cross-entropy's optimum is βh* = γm.
- β-DPO (Wu et al. 2407.08639, official code junkangwu/beta-DPO `trainers.py`): a per-batch β from
  running statistics of the detached margins, with Gaussian-weighted filtering of the batch. Batch-coupled
  and stateful: `BetaDPOState` in, new state out.
- γ-PO (Sun et al. 2506.03690, official code sunjie279/gammaPO `scripts/xpo_trainer.py`): instance
  margins γ_i from a KL-regularised inner problem over the (batch ∪ history) reward gaps, solved by
  mirror descent. Batch-coupled.
- Robust DPO (rDPO, 2403.00409) is `pairwise_loss("robust", ...)`; nothing different is needed here.

Non-finite inputs: NaN / ±inf log-probs are not checked by default (the losses are then NaN or infinite).
`check_finite=True` on `mmpo_loss`, `beta_dpo_loss` and `gamma_po_loss` checks the log-probs and the other
array inputs (quality margins, state, history): eagerly a `PrefjaxError` naming the argument and the first
bad index, under `jit` a `jax.experimental.checkify` check (docs/objectives_checks.md).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.objectives import _checks
from prefjax.objectives import spec


_concrete = _checks.concrete
_batch = _checks.batch_arrays


_LOGPS = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


def _scalar(x, name, low=None, low_open=True, high=None, high_open=False):
  if jnp.ndim(x) != 0:
    raise PrefjaxError(f"{name} must be a scalar, got shape {jnp.shape(x)}")
  v = _concrete(x)
  if v is None:
    return
  ok = np.isfinite(v)
  if low is not None:
    ok = ok and (v > low if low_open else v >= low)
  if high is not None:
    ok = ok and (v < high if high_open else v <= high)
  if not ok:
    lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
    bounds = "".join(f" and {b}" for b in (lo, hi) if b)
    raise PrefjaxError(f"{name} must be finite{bounds}, got {v}")


def _margins(logps, fn=None, check_finite=False, **others):
  """h = ρ_w − ρ_l of the four `[B]` log-prob arrays; with `check_finite`, checks them and `others`."""
  pw, pl, rw, rl = _batch(logps, _LOGPS)
  if check_finite:
    _checks.check_finite(fn, True, {**dict(zip(_LOGPS, (pw, pl, rw, rl))), **others})
  return (pw - rw) - (pl - rl)


# ----------------------------------------------------------------------------------------------------
# MMPO.
# ----------------------------------------------------------------------------------------------------


def mmpo_targets(quality_margins, gamma):
  """MMPO's soft targets p̂ = σ(γ m) (2410.03145, Bradley–Terry probability of the quality margin m)."""
  return jax.nn.sigmoid(gamma * quality_margins)


def mmpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
              quality_margins, *, beta, gamma, check_finite=False):
  """Margin-matching preference optimisation (Kim et al. arXiv:2410.03145): DPO with soft BT targets.

  Verified against the official code (kykim0/margin-matching-pref-opt: `scripts/run_dpo.py` sets
  p_chosen = 1/(1 + exp(−bt_beta · (score_chosen − score_rejected))), i.e. p̂ = σ(γ m) with γ = `bt_beta`, and
  `src/alignment/trainer/dpo_trainer.py` uses −p̂ log σ(βh) − (1 − p̂) log σ(−βh)); the paper's equation numbers
  were not reachable (only its abstract is in the searchable pages), so none is cited.

  loss = −[p̂ log σ(βh) + (1 − p̂) log σ(−βh)],  p̂ = σ(γ m),  h = ρ_w − ρ_l,

  a cross-entropy between Bernoulli(p̂) and Bernoulli(σ(βh)), minimised exactly where σ(βh) = p̂, i.e. at
  the finite margin h* = γm/β (`mmpo_optimal_margin`) instead of DPO's h → ∞. m = 0 gives p̂ = ½ (a tie);
  γ → ∞ recovers DPO's hard labels for m > 0. The scaling of m by γ is the official code's (`bt_beta`); the paper's abstract
  states the BT-based soft target and the cross-entropy objective.

  Args:
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps: `[B]` each.
    quality_margins: `[B]` m = quality(y_w) − quality(y_l) (any sign).
    beta: scalar β > 0.
    gamma: scalar γ ≥ 0, the scale of the quality margins.
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `[B]` losses.
  """
  h = _margins((policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps),
               "mmpo_loss", check_finite, quality_margins=quality_margins)
  (m,) = _batch([quality_margins], ["quality_margins"])
  if m.shape != h.shape:
    raise PrefjaxError(f"quality_margins has shape {m.shape} but the log-probs have shape {h.shape}")
  _scalar(beta, "beta", low=0)
  _scalar(gamma, "gamma", low=0, low_open=False)
  target = mmpo_targets(m.astype(h.dtype), gamma)
  z = beta * h
  return target * jax.nn.softplus(-z) + (1.0 - target) * jax.nn.softplus(z)


def mmpo_optimal_margin(quality_margins, *, beta, gamma):
  """The minimiser h* = γm/β of `mmpo_loss` in the margin h (σ(βh*) = σ(γm))."""
  return gamma * jnp.asarray(quality_margins) / beta


# ----------------------------------------------------------------------------------------------------
# β-DPO.
# ----------------------------------------------------------------------------------------------------


class BetaDPOState(NamedTuple):
  """β-DPO's running statistics of the margins (the official code starts both at 0).

  Attributes:
    gap_mean: scalar EMA of the batch means of h = ρ_w − ρ_l.
    gap_std: scalar EMA of the batch standard deviations of h (unbiased, as torch's `std()`).
  """
  gap_mean: jax.Array
  gap_std: jax.Array


class BetaDPOOutput(NamedTuple):
  """What `beta_dpo_loss` returns.

  Attributes:
    losses: `[B]` per-example losses already weighted so that `losses.mean()` is the official batch loss
      Σ_i mask_i ℓ_i / max(Σ_i mask_i, 1) (filtered-out examples contribute 0).
    unweighted: `[B]` −log σ(β_used h_i) for every example.
    mask: `[B]` 1.0 for the examples kept by the filter.
    beta_used: scalar batch β (gradients stopped).
    state: the updated `BetaDPOState`.
  """
  losses: jax.Array
  unweighted: jax.Array
  mask: jax.Array
  beta_used: jax.Array
  state: BetaDPOState


def beta_dpo_init(dtype=jnp.float32):
  """The initial state (0, 0), as in the official code."""
  return BetaDPOState(jnp.zeros((), dtype), jnp.zeros((), dtype))


BETA_DPO_MIN_BETA = 1e-3  # the official clamp of the batch β
BETA_DPO_STD_EPS = 1e-10  # added to the running std so the Gaussian weights stay finite when it is 0


def beta_dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, state,
                  key, *, beta, alpha, filter_fraction=0.2, momentum=0.9, check_finite=False):
  """β-DPO (Wu et al. 2407.08639): batch-adaptive β with β-guided filtering, as in the official code.

  With h_i = ρ_w − ρ_l detached over the global batch of size B (the official trainer all-gathers it):

  1. running statistics (updated first, then used):
     M ← γ M + (1 − γ) mean(h), S ← γ S + (1 − γ) std(h) (unbiased std), γ = `momentum` = 0.9;
  2. filter: weights w_i = exp(−½ ((h_i − M)/S)²); draw n = ⌊B (1 − ρ)⌋ examples without replacement with
     probabilities ∝ w (torch.multinomial; here the Gumbel-top-n trick, the same distribution), mask them;
  3. β_used = max(β (1 + α (mean_{selected} h − M)), 10⁻³), gradients stopped;
  4. loss_i = −log σ(β_used h_i); batch loss = Σ mask_i loss_i / max(Σ mask_i, 1).

  The paper's rule for β, β₀ + α(M_batch − M₀)β₀, is the same (its equation number was not reachable: only
  the abstract is in the searchable pages; the official code is the reference here, with the README's example
  filtering ratio 0.2 and a = 0.6). Deviation: S + 1e-10 in the weights
  (the official code divides by S alone, which is NaN when every margin of the first batch is equal).
  Batch-coupled and stateful: pass the returned state to the next step; under data parallelism call it on
  the global batch (e.g. inside `jit` with sharded inputs).

  Args:
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps: `[B]` each, B ≥ 2.
    state: `BetaDPOState`.
    key: PRNG key for the filter's sampling.
    beta: scalar β₀ > 0.
    alpha: scalar α (the official `a`), the sensitivity of β to the batch's margin.
    filter_fraction: ρ ∈ [0, 1), the fraction of the batch filtered out (official `mode_weight`, 0.2).
    momentum: γ ∈ [0, 1) of the running statistics (official 0.9).
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `BetaDPOOutput`.
  """
  h = _margins((policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps),
               "beta_dpo_loss", check_finite, **{"state.gap_mean": state.gap_mean,
                                                 "state.gap_std": state.gap_std})
  b = h.shape[0]
  if b < 2:
    raise PrefjaxError("beta_dpo_loss needs a batch of B >= 2 (it uses the batch's standard deviation)")
  _scalar(beta, "beta", low=0)
  _scalar(alpha, "alpha")
  if not isinstance(filter_fraction, (float, int)) or not 0.0 <= filter_fraction < 1.0:
    raise PrefjaxError(f"filter_fraction must be a Python float in [0, 1), got {filter_fraction!r}")
  _scalar(momentum, "momentum", low=0, low_open=False, high=1, high_open=True)
  num_kept = int(b * (1.0 - filter_fraction))
  if num_kept < 1:
    raise PrefjaxError(f"filter_fraction={filter_fraction} keeps no example of a batch of {b}")

  gap = jax.lax.stop_gradient(h)
  mean = momentum * state.gap_mean + (1.0 - momentum) * gap.mean()
  std = momentum * state.gap_std + (1.0 - momentum) * jnp.std(gap, ddof=1)
  log_w = -0.5 * ((gap - mean) / (std + BETA_DPO_STD_EPS)) ** 2
  gumbel = jax.random.gumbel(key, (b,), gap.dtype)
  _, kept = jax.lax.top_k(log_w + gumbel, num_kept)
  mask = jnp.zeros((b,), gap.dtype).at[kept].set(1.0)
  beta_used = jnp.maximum(beta * (1.0 + alpha * (gap[kept].mean() - mean)), BETA_DPO_MIN_BETA)
  beta_used = jax.lax.stop_gradient(beta_used)
  unweighted = jax.nn.softplus(-beta_used * h)
  losses = unweighted * mask * (b / jnp.maximum(mask.sum(), 1.0))
  return BetaDPOOutput(losses, unweighted, mask, beta_used, BetaDPOState(mean, std))


# ----------------------------------------------------------------------------------------------------
# γ-PO.
# ----------------------------------------------------------------------------------------------------


def gamma_po_margins(reward_gaps, *, gamma0, tau, num_steps=20, history=None):
  """γ-PO's instance margins (Sun et al. arXiv:2506.03690, Algorithm 2 as in the official code).

  The paper's equation numbers were not reachable (only the official repository's README and code were found),
  so the official code is the reference and no equation number is cited.

  Over the N = H + B reward gaps g (a history of H earlier gaps, then the batch's B), with p on the simplex
  and γ_i = γ₀ N p_i (so the mean margin is γ₀), minimise the convex

    J(p) = (1/N) Σ_i −log σ(g_i − γ_i) + τ KL(p ‖ uniform)

  by exponentiated-gradient (mirror) descent from the uniform p with step size min(½/τ, 1), as the
  official code does: its loop runs `num_steps` = 20 iterations and returns the γ computed at the start of
  the last one, i.e. after `num_steps` − 1 updates of p. High-confidence pairs (large g_i) get larger margins,
  ambiguous ones smaller; τ → ∞ gives γ_i = γ₀ for all.

  Args:
    reward_gaps: `[B]` g_i = β h_i (detached by this function).
    gamma0: scalar γ₀ ≥ 0, the mean target margin (official `gamma_beta_ratio · β`).
    tau: scalar τ > 0, the KL regularisation.
    num_steps: iterations of the official loop (static, ≥ 1); p is updated `num_steps` − 1 times.
    history: optional `[H]` earlier reward gaps (the official FIFO queue of recent gaps, sampled).

  Returns:
    `[B]` γ_i − γ₀ for the batch (zero-mean over batch ∪ history), gradients stopped.
  """
  (g,) = _batch([reward_gaps], ["reward_gaps"])
  _scalar(gamma0, "gamma0", low=0, low_open=False)
  _scalar(tau, "tau", low=0)
  if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
    raise PrefjaxError(f"num_steps must be a positive integer, got {num_steps!r}")
  b = g.shape[0]
  if history is not None:
    (hist,) = _batch([history], ["history"])
    g = jnp.concatenate([hist.astype(g.dtype), g])
  g = jax.lax.stop_gradient(g)
  n = g.shape[0]
  step = jnp.minimum(0.5 / tau, 1.0)

  def body(p, _):
    gamma = gamma0 * n * p
    grad = tau * (1.0 + jnp.log(n * p)) + gamma0 * jax.nn.sigmoid(gamma - g)
    p = p * jnp.exp(-step * (grad - grad.max()))  # the shift cancels in the normalisation
    return p / p.sum(), None

  p, _ = jax.lax.scan(body, jnp.full((n,), 1.0 / n, g.dtype), None, length=num_steps - 1)
  return jax.lax.stop_gradient(gamma0 * n * p[n - b:] - gamma0)


def gamma_po_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, *,
                  beta, gamma0, tau, num_steps=20, history=None, label_smoothing=0.0, check_finite=False):
  """γ-DPO (2506.03690): DPO with dynamic target margins, −(1−ε) log σ(βh − δ_i) − ε log σ(−(βh − δ_i)).

  δ_i = γ_i − γ₀ from `gamma_po_margins` on the detached reward gaps βh (the official `gm-dpo` loss).
  Batch-coupled: the margins depend on the whole batch (and history).

  Args:
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps: `[B]` each.
    beta: scalar β > 0.
    gamma0, tau, num_steps, history: see `gamma_po_margins`.
    label_smoothing: ε ∈ [0, ½].
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `[B]` losses.
  """
  h = _margins((policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps),
               "gamma_po_loss", check_finite, history=history)
  _scalar(beta, "beta", low=0)
  _scalar(label_smoothing, "label_smoothing", low=0, low_open=False, high=0.5)
  delta = gamma_po_margins(beta * h, gamma0=gamma0, tau=tau, num_steps=num_steps, history=history)
  z = beta * h - delta
  return (1.0 - label_smoothing) * jax.nn.softplus(-z) + label_smoothing * jax.nn.softplus(z)


# ----------------------------------------------------------------------------------------------------
# Declarations in the objective index (`prefjax.objectives.spec`).
# ----------------------------------------------------------------------------------------------------

# β-DPO: the official README's example (filtering ratio 0.2, a = 0.6) and the official EMA momentum 0.9.
BETA_DPO_DEFAULTS = {"alpha": 0.6, "filter_fraction": 0.2, "momentum": 0.9}
# γ-PO: γ₀ = 4 and τ = 10 in reward units, as in the official Llama-3-8B training config (gm = 0.4 times SimPO's
# β = 10, τ = 10; the official configs span γ₀ ∈ [0.375, 5], τ ∈ [3, 20]), and 20 mirror-descent iterations as
# in the official code. The official γ₀ is gamma_beta_ratio · β with SimPO's β (2.5–10 on length-averaged
# log-probs); a ratio applied to a DPO β of 0.5 would make γ₀ = 0.2 ≪ τ and the margins negligible (γ-PO = DPO
# to three decimals in a first bandit run), so γ₀ is set in reward units instead.
GAMMA_PO_DEFAULTS = {"gamma0": 4.0, "tau": 10.0, "num_steps": 20}


def _pair_args(b):
  return b.policy_chosen_logps, b.policy_rejected_logps, b.ref_chosen_logps, b.ref_rejected_logps


def _mmpo_build(options):
  gamma = float(options["gamma"])

  def fn(batch, hp, state, key):
    del key
    return mmpo_loss(*_pair_args(batch), batch.chosen_scores - batch.rejected_scores, beta=hp.beta,
                     gamma=gamma), state

  return spec.Loss(fn)


def _beta_dpo_build(options):
  alpha, fraction, momentum = (float(options[k]) for k in ("alpha", "filter_fraction", "momentum"))

  def fn(batch, hp, state, key):
    out = beta_dpo_loss(*_pair_args(batch), state, key, beta=hp.beta, alpha=alpha, filter_fraction=fraction,
                        momentum=momentum)
    return out.losses, out.state

  return spec.Loss(fn, init_state=lambda key: beta_dpo_init(jnp.float32))


def _gamma_po_build(options):
  gamma0, tau, num_steps = float(options["gamma0"]), float(options["tau"]), int(options["num_steps"])

  def fn(batch, hp, state, key):
    del key
    return gamma_po_loss(*_pair_args(batch), beta=hp.beta, gamma0=gamma0, tau=tau, num_steps=num_steps,
                         label_smoothing=hp.label_smoothing), state

  return spec.Loss(fn)


spec.declare(spec.Objective(
    "mmpo", "margins", "scored_pair", _mmpo_build, options=(("gamma", 1.0),), display_name="MMPO",
    arxiv="2410.03145", formula="−p̂ log σ(βΔ) − (1 − p̂) log σ(−βΔ), p̂ = σ(γ (score_w − score_l))",
    verified="tests/test_margins.py: numpy, the optimum margin γ m / β, the official code's target"))
spec.declare(spec.Objective(
    "beta_dpo", "margins", "pair", _beta_dpo_build, options=tuple(BETA_DPO_DEFAULTS.items()), stateful=True,
    batch_coupled=True, display_name="β-DPO", arxiv="2407.08639",
    formula="DPO with β_batch = β (1 + a (M_batch − M)/S) on a β-guided filtered subset",
    verified="tests/test_margins.py: the official rule without filtering, the filter's law"))
spec.declare(spec.Objective(
    "gamma_po", "margins", "pair", _gamma_po_build, options=tuple(GAMMA_PO_DEFAULTS.items()),
    uses_label_smoothing=True, batch_coupled=True, display_name="γ-PO", arxiv="2506.03690",
    formula="−(1−ε) log σ(βh − δ_i) − ε log σ(−(βh − δ_i)), δ_i from the batch's reward gaps",
    verified="tests/test_margins.py: the official mirror-descent loop and its optimality conditions"))

"""Single-response, binary-feedback, cross-prompt and unlikelihood objectives (docs/theory.md §2, second list).

- DRO (Richemond et al. 2405.19107): single-trajectory data (x, y, r), a policy and a value function,
  ½ (r − V(x) − τ ℓ_π(y|x))², with optimum π* ∝ π_ref e^{r̄/τ}, V* = τ log E_{π_ref} e^{r̄/τ}.
- BCO (Jung et al. 2404.04656) for binary (thumbs-up / thumbs-down) feedback on single responses, with the
  running reward shift δ as state (in / out).
- JPO (Bansal et al. 2404.00530): the DPO margin across different prompts (x_w, y_w) ≻ (x_l, y_l).
- Pairwise Cringe (Xu et al. 2312.16682): NLL of the chosen response plus a margin-gated token-level Cringe
  loss (Adolphs et al. 2211.05826) on the rejected one.
- SimpleMix (2505.02363): mixing on-policy and off-policy preference pairs, a data-construction helper.

Per-example losses `[B]` (the caller takes the mean) unless stated otherwise.

Non-finite inputs: NaN / ±inf log-probs (or logits, values, rewards) are not checked by default and give NaN
or infinite losses. Every loss here takes `check_finite=False`; `True` checks its array inputs: eagerly a
`PrefjaxError` naming the argument and the first bad index, under `jit` a `jax.experimental.checkify` check
reported by `checkify.checkify(jax.jit(f))` (docs/objectives_checks.md).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.objectives import _checks
from prefjax.objectives import spec


_concrete = _checks.concrete
_batch = _checks.batch_arrays


def _positive(x, name):
  if jnp.ndim(x) != 0:
    raise PrefjaxError(f"{name} must be a scalar, got shape {jnp.shape(x)}")
  v = _concrete(x)
  if v is not None and not (np.isfinite(v) and v > 0):
    raise PrefjaxError(f"{name} must be finite and > 0, got {v}")


# ----------------------------------------------------------------------------------------------------
# DRO.
# ----------------------------------------------------------------------------------------------------


class DROLosses(NamedTuple):
  """DRO's per-example losses.

  Attributes:
    policy: `[B]` ½ (r − sg(V) − τ ℓ)², trains the policy (value held fixed).
    value: `[B]` ½ (r − V − sg(τ ℓ))², trains the value function (policy held fixed).
    residual: `[B]` r − V − τ ℓ (gradients stopped), zero in expectation at the optimum.
  """
  policy: jax.Array
  value: jax.Array
  residual: jax.Array


def dro_losses(policy_logps, ref_logps, values, rewards, *, tau, check_finite=False):
  """Direct reward optimisation, DRO-V (Richemond et al. arXiv:2405.19107): policy and value losses.

  Equation numbers: the paper's text was not reachable (searched the pages corpus for
  arxiv.org/abs|html/2405.19107 and the code index for an official implementation: none found), so none is
  cited; the optimum below is derived here and tested in closed form (tests/test_single.py). The population
  objective is L(π, V) = ½ E_{x, y∼μ, r}[(r − V(x) − τ log(π(y|x)/π_ref(y|x)))²]. For a data policy μ with
  full support its minimiser is π*(y|x) ∝ π_ref(y|x) e^{r̄(x,y)/τ} and
  V*(x) = τ log E_{π_ref}[e^{r̄(x,y)/τ}] (r̄ = E[r | x, y]), whatever μ is. The two losses returned split the
  gradient of L into its policy and value parts (their sum has the gradient of the joint loss); the paper
  trains both networks on them, a positive rescaling of the policy loss (e.g. by 1/τ in the paper's
  policy gradient) is a learning-rate choice that leaves the optimum unchanged.

  Args:
    policy_logps: `[B]` log π(y|x).
    ref_logps: `[B]` log π_ref(y|x).
    values: `[B]` V(x) of each example's prompt.
    rewards: `[B]` observed scalar rewards r (single response, no comparison).
    tau: scalar τ > 0, the KL regularisation.
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `DROLosses`.
  """
  logp, ref, v, r = _batch((policy_logps, ref_logps, values, rewards),
                           ("policy_logps", "ref_logps", "values", "rewards"))
  _checks.check_finite("dro_losses", check_finite, {"policy_logps": logp, "ref_logps": ref, "values": v,
                                                    "rewards": r})
  _positive(tau, "tau")
  reg = tau * (logp - ref)
  sg = jax.lax.stop_gradient
  return DROLosses(policy=0.5 * (r - sg(v) - reg) ** 2, value=0.5 * (r - v - sg(reg)) ** 2,
                   residual=sg(r - v - reg))


def dro_optimum(ref_probs, mean_rewards, *, tau):
  """DRO's closed-form optimum: (π* ∝ π_ref e^{r̄/τ}, V* = τ log Σ_y π_ref(y) e^{r̄(y)/τ}) over the last axis.

  Args:
    ref_probs: `[..., N]` π_ref(·|x).
    mean_rewards: `[..., N]` r̄(x, ·).
    tau: scalar τ > 0.

  Returns:
    `(pi_star [..., N], v_star [...])`.
  """
  logits = jnp.log(ref_probs) + mean_rewards / tau
  v_star = tau * jax.nn.logsumexp(logits, axis=-1)
  return jax.nn.softmax(logits, axis=-1), v_star


# ----------------------------------------------------------------------------------------------------
# BCO with binary feedback.
# ----------------------------------------------------------------------------------------------------


class BCOState(NamedTuple):
  """BCO's running mean δ of the implicit rewards βρ (TRL's RunningMoments mean) and its sample count."""
  mean: jax.Array
  count: jax.Array


def bco_init(dtype=jnp.float32):
  """Initial state: δ = 0 with no samples seen."""
  return BCOState(jnp.zeros((), dtype), jnp.zeros((), dtype))


def bco_loss(policy_logps, ref_logps, desirable, state, *, beta, check_finite=False):
  """Binary classifier optimisation (Jung et al. arXiv:2404.04656) without the density-ratio weights.

  Checked against TRL's BCO trainer and its `bco_pair` loss (the paper's equation numbers were not reachable:
  only the abstract is in the searchable pages); no equation number is cited.

  With implicit rewards r_θ = β ρ = β (log π(y|x) − log π_ref(y|x)) and the reward shift δ:

    loss = −log σ(r_θ − δ) for desirable (thumbs-up) responses,
    loss = −log σ(−(r_θ − δ)) for undesirable ones.

  δ is the running mean of all implicit rewards seen so far, this batch included (updated first, then
  used), as in TRL's BCO trainer; it is state, in and out. (TRL feeds its `RunningMoments` the batch mean of the
  rewards, one sample per step: the same δ as here whenever every batch has the same size.) The paper's
  underlying-distribution-matching importance weights (a classifier between prompt distributions) are not
  included: pass per-example weights yourself if you need them.

  Args:
    policy_logps: `[B]` log π(y|x).
    ref_logps: `[B]` log π_ref(y|x).
    desirable: `[B]` booleans (True = thumbs-up).
    state: `BCOState`.
    beta: scalar β > 0.
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `(losses [B], new_state)`.
  """
  logp, ref = _batch((policy_logps, ref_logps), ("policy_logps", "ref_logps"))
  _checks.check_finite("bco_loss", check_finite, {"policy_logps": logp, "ref_logps": ref,
                                                  "state.mean": state.mean, "state.count": state.count})
  desirable = jnp.asarray(desirable)
  if desirable.shape != logp.shape or desirable.dtype != jnp.bool_:
    raise PrefjaxError(
        f"desirable must be a boolean array of shape {logp.shape}, got {desirable.dtype} {desirable.shape}")
  _positive(beta, "beta")
  rewards = beta * (logp - ref)
  batch = jax.lax.stop_gradient(rewards)
  count = state.count + batch.shape[0]
  mean = state.mean + (batch.sum() - batch.shape[0] * state.mean) / count
  z = rewards - mean
  losses = jnp.where(desirable, jax.nn.softplus(-z), jax.nn.softplus(z))
  return losses, BCOState(mean, count)


# ----------------------------------------------------------------------------------------------------
# JPO.
# ----------------------------------------------------------------------------------------------------


def jpo_loss(policy_chosen_logps, ref_chosen_logps, policy_rejected_logps, ref_rejected_logps, *, beta,
             check_finite=False):
  """Joint preference optimisation (Bansal et al. arXiv:2404.00530): DPO across prompts.

  Verified against the official code (Hritikbansal/dove, `dove/custom_dove_trainer.py`: TRL's `sigmoid` DPO
  loss on the chosen and rejected instruction–response pairs, with conditional log-probs log π(y|x) unless
  its `joint_distribution` flag also scores the prompt tokens); the paper's equation numbers were not
  reachable (only its abstract and introduction are in the searchable pages), so none is cited.

  loss = −log σ(β (ℓ(y_w|x_w) − ℓ(y_l|x_l))), ℓ(y|x) = log π(y|x) − log π_ref(y|x), for a preferred
  instruction–response pair (x_w, y_w) over (x_l, y_l) with possibly different prompts; with x_w = x_l it
  is DPO. The prompt-normaliser argument of the paper makes the cross-prompt comparison of the joint
  probabilities π(x, y) = π(y|x) p(x) reduce to these conditional log-ratios.

  Args:
    policy_chosen_logps: `[B]` log π(y_w|x_w).
    ref_chosen_logps: `[B]` log π_ref(y_w|x_w).
    policy_rejected_logps: `[B]` log π(y_l|x_l).
    ref_rejected_logps: `[B]` log π_ref(y_l|x_l).
    beta: scalar β > 0.
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `[B]` losses.
  """
  pw, rw, pl, rl = _batch(
      (policy_chosen_logps, ref_chosen_logps, policy_rejected_logps, ref_rejected_logps),
      ("policy_chosen_logps", "ref_chosen_logps", "policy_rejected_logps", "ref_rejected_logps"))
  _checks.check_finite("jpo_loss", check_finite, {"policy_chosen_logps": pw, "ref_chosen_logps": rw,
                                                  "policy_rejected_logps": pl, "ref_rejected_logps": rl})
  _positive(beta, "beta")
  return jax.nn.softplus(-beta * ((pw - rw) - (pl - rl)))


# ----------------------------------------------------------------------------------------------------
# Pairwise Cringe.
# ----------------------------------------------------------------------------------------------------


def cringe_token_losses(logits, tokens, mask, key, *, top_k=5, check_finite=False):
  """The Cringe loss of negative sequences (Adolphs et al. arXiv:2211.05826), mean over tokens.

  Verified against the official code (facebookresearch/ParlAI, `projects/cringe/cringe_loss.py`,
  `ContrastiveCrossEntropyLoss`): the positive is sampled from the top-k predictions with the negative token
  masked out, ∝ softmax of their logits, and the contrastive term is the cross-entropy of [z_{y_t}, z_s] with
  the sampled token as the target; both logits receive gradients (the official default
  `detach_positives_during_ct=False`). Differences: the official default k is 1 (`--ct-num-pos-predictions`;
  the paper's experiments use larger k) and it averages over all tokens of the batch rather than per
  sequence. The paper's equation numbers were not reachable, so none is cited.

  For each token y_t of a negative sequence, sample a positive token s from the model's top-k predictions
  at position t with y_t excluded (sampling ∝ softmax of those logits) and contrast the two:
  −log(e^{z_s} / (e^{z_s} + e^{z_{y_t}})) = softplus(z_{y_t} − z_s). The sampled token is not a target of
  gradient (it is drawn from stopped logits); the logits of both tokens receive gradients.

  Args:
    logits: `[B, L, V]` the model's next-token logits aligned with `tokens` (logits[:, t] predicts
      tokens[:, t]).
    tokens: `[B, L]` the negative sequence's tokens.
    mask: `[B, L]` 1 for response tokens, 0 for prompt and padding.
    key: PRNG key for the top-k sampling.
    top_k: k ≥ 1 (static), k < V.
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `[B]` the token-mean Cringe loss of each sequence.
  """
  logits = jnp.asarray(logits)
  tokens = jnp.asarray(tokens)
  mask = jnp.asarray(mask)
  if logits.ndim != 3 or tokens.shape != logits.shape[:2] or mask.shape != tokens.shape:
    raise PrefjaxError(
        f"cringe needs logits [B, L, V], tokens [B, L], mask [B, L]; got {logits.shape}, {tokens.shape}, "
        f"{mask.shape}")
  if not isinstance(top_k, int) or not 1 <= top_k < logits.shape[-1]:
    raise PrefjaxError(f"top_k must be an integer in [1, V) = [1, {logits.shape[-1]}), got {top_k!r}")
  _checks.check_finite("cringe_token_losses", check_finite, {"logits": logits})
  negative = jnp.take_along_axis(logits, tokens[..., None], axis=-1)[..., 0]
  vocab = jnp.arange(logits.shape[-1])
  excluded = jnp.where(vocab[None, None, :] == tokens[..., None], -jnp.inf, jax.lax.stop_gradient(logits))
  top_values, top_index = jax.lax.top_k(excluded, top_k)
  pick = jax.random.categorical(key, top_values, axis=-1)
  positive_token = jnp.take_along_axis(top_index, pick[..., None], axis=-1)
  positive = jnp.take_along_axis(logits, positive_token, axis=-1)[..., 0]
  per_token = jax.nn.softplus(negative - positive)
  mask = mask.astype(per_token.dtype)
  return (per_token * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1.0)


def pairwise_cringe_loss(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_cringe, *,
                         alpha=1.0, margin=-10.0, temperature=1.0, check_finite=False):
  """Pairwise Cringe (Xu et al. arXiv:2312.16682): NLL(y_w) + α g · Cringe(y_l).

  Not verified against an equation: the paper's method section was not reachable (searched the pages corpus for
  arxiv.org/abs|html/2312.16682 and ar5iv: only the abstract and introduction are stored) and no official code
  is public; the abstract confirms "a simple soft margin extension" of the Cringe loss gated by the sequence
  log-likelihood gap. This is the form documented in docs/theory.md §2.2: g = σ((b − (log π(y_w) − log π(y_l))) / T) gates the Cringe
  term: it is ≈ 1 while the chosen response is not ahead of the rejected one by the margin b, and ≈ 0 once it
  is. The gate is a constant of the loss (gradients stopped; our decision), NLL(y_w) = −log π(y_w)/n_w is the
  token-mean likelihood loss and Cringe(y_l) comes from `cringe_token_losses` on the rejected sequence.

  Args:
    policy_chosen_logps: `[B]` summed log π(y_w).
    policy_rejected_logps: `[B]` summed log π(y_l).
    chosen_lengths: `[B]` n_w > 0.
    rejected_cringe: `[B]` Cringe(y_l).
    alpha: α ≥ 0.
    margin: b (the paper tunes it; −10 here is an example default).
    temperature: T > 0.
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `[B]` losses.
  """
  pw, pl, n, cringe = _batch((policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_cringe),
                             ("policy_chosen_logps", "policy_rejected_logps", "chosen_lengths",
                              "rejected_cringe"))
  _checks.check_finite("pairwise_cringe_loss", check_finite, {
      "policy_chosen_logps": pw, "policy_rejected_logps": pl, "chosen_lengths": n, "rejected_cringe": cringe})
  _positive(temperature, "temperature")
  value = _concrete(n)
  if value is not None and not np.all(value > 0):
    raise PrefjaxError("chosen_lengths must be > 0")
  gate = jax.lax.stop_gradient(jax.nn.sigmoid((margin - (pw - pl)) / temperature))
  return -pw / n + alpha * gate * cringe


# ----------------------------------------------------------------------------------------------------
# SimpleMix.
# ----------------------------------------------------------------------------------------------------


class MixedPairs(NamedTuple):
  """A SimpleMix dataset: the mixed pytree of pairs and where each row came from.

  Attributes:
    pairs: the pytree of `[N, ...]` arrays (on- and off-policy rows shuffled together).
    on_policy: `[N]` bool, True for rows taken from the on-policy pairs.
    source_index: `[N]` int, the row's index in its source dataset.
  """
  pairs: Any
  on_policy: jax.Array
  source_index: jax.Array


def _leading(tree, name):
  leaves = jax.tree_util.tree_leaves(tree)
  if not leaves:
    raise PrefjaxError(f"{name} has no arrays")
  sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
  if len(sizes) != 1 or None in sizes:
    raise PrefjaxError(f"{name}: every array needs the same leading dimension, got {sorted(map(str, sizes))}")
  return sizes.pop()


def simplemix(key, on_policy_pairs, off_policy_pairs, *, num_pairs, on_policy_fraction=0.5):
  """SimpleMix (2505.02363): a preference dataset mixing on-policy and off-policy pairs.

  Draws round(f · N) pairs from the on-policy source and N − round(f · N) from the off-policy source,
  each without replacement, and shuffles them together; f = ½ is the paper's equal mixture. Train any
  pairwise objective on the result.

  Args:
    key: PRNG key.
    on_policy_pairs: pytree of `[N_on, ...]` arrays (pairs sampled from the current policy).
    off_policy_pairs: pytree with the same structure, `[N_off, ...]` (e.g. an offline dataset).
    num_pairs: N, the size of the mixed dataset (static).
    on_policy_fraction: f ∈ [0, 1].

  Returns:
    `MixedPairs`.
  """
  n_on_src = _leading(on_policy_pairs, "on_policy_pairs")
  n_off_src = _leading(off_policy_pairs, "off_policy_pairs")
  if jax.tree_util.tree_structure(on_policy_pairs) != jax.tree_util.tree_structure(off_policy_pairs):
    raise PrefjaxError("on_policy_pairs and off_policy_pairs must have the same pytree structure")
  if not 0.0 <= on_policy_fraction <= 1.0:
    raise PrefjaxError(f"on_policy_fraction must lie in [0, 1], got {on_policy_fraction}")
  n_on = int(round(on_policy_fraction * num_pairs))
  n_off = num_pairs - n_on
  if n_on > n_on_src or n_off > n_off_src:
    raise PrefjaxError(
        f"simplemix needs {n_on} on-policy and {n_off} off-policy pairs, the sources have {n_on_src} and "
        f"{n_off_src}")
  k_on, k_off, k_mix = jax.random.split(key, 3)
  on_idx = jax.random.permutation(k_on, n_on_src)[:n_on]
  off_idx = jax.random.permutation(k_off, n_off_src)[:n_off]
  order = jax.random.permutation(k_mix, num_pairs)
  mixed = jax.tree_util.tree_map(
      lambda a, b: jnp.concatenate([jnp.asarray(a)[on_idx], jnp.asarray(b)[off_idx]])[order],
      on_policy_pairs, off_policy_pairs)
  on_flag = jnp.concatenate([jnp.ones(n_on, bool), jnp.zeros(n_off, bool)])[order]
  source = jnp.concatenate([on_idx, off_idx])[order]
  return MixedPairs(mixed, on_flag, source)


# ----------------------------------------------------------------------------------------------------
# Declarations in the objective index (`prefjax.objectives.spec`).
# ----------------------------------------------------------------------------------------------------


def _dro_build(options):
  del options

  def fn(batch, hp, state, key):
    del key
    out = dro_losses(batch.policy_logps, batch.ref_logps, batch.values, batch.rewards, tau=hp.beta)
    return out.policy + out.value, state  # the joint loss: its gradient is the policy's and the value's

  return spec.Loss(fn, needs_value=True)


def _bco_build(options):
  del options

  def fn(batch, hp, state, key):
    del key
    return bco_loss(batch.policy_logps, batch.ref_logps, batch.desirable, state, beta=hp.beta)

  return spec.Loss(fn, init_state=lambda key: bco_init(jnp.float32), needs_labels=True)


def _jpo_build(options):
  del options

  def fn(batch, hp, state, key):
    del key
    pair = lambda b: jpo_loss(b.policy_chosen_logps, b.ref_chosen_logps, b.policy_rejected_logps,
                              b.ref_rejected_logps, beta=hp.beta)
    return 0.5 * (pair(batch.conditional) + pair(batch.joint)), state

  return spec.Loss(fn)


# Pairwise Cringe's defaults, set for a bandit's log-probability scale (one "token" = the response): the
# sequence-level gate's margin b and temperature T (the paper tunes them for LM sequences); top-k = 5 candidate
# positives as in the Cringe loss's experiments.
CRINGE_DEFAULTS = {"alpha": 1.0, "margin": 2.0, "temperature": 1.0, "top_k": 5}


def _cringe_build(options):

  def fn(batch, hp, state, key):
    del hp
    p = batch.pair
    top_k = min(int(options["top_k"]), batch.rejected_logits.shape[-1] - 1)
    cringe = cringe_token_losses(batch.rejected_logits, batch.rejected_tokens, batch.rejected_mask, key,
                                 top_k=top_k)
    lengths = p.chosen_lengths if p.chosen_lengths is not None else jnp.ones_like(p.policy_chosen_logps)
    return pairwise_cringe_loss(p.policy_chosen_logps, p.policy_rejected_logps, lengths, cringe,
                                alpha=float(options["alpha"]), margin=float(options["margin"]),
                                temperature=float(options["temperature"])), state

  return spec.Loss(fn)


spec.declare(spec.Objective(
    "dro", "single", "single", _dro_build, display_name="DRO-V", arxiv="2405.19107", optimum="rlhf",
    formula="½ (r − V(x) − τ log(π(y|x)/π_ref(y|x)))², τ = β, V learned with the policy",
    verified="tests/test_single.py: the trained policy and value equal the closed-form optimum"))
spec.declare(spec.Objective(
    "bco", "single", "single", _bco_build, stateful=True, batch_coupled=True, display_name="BCO",
    arxiv="2404.04656",
    formula="−log σ(βρ − δ) (desirable), −log σ(−(βρ − δ)) (undesirable); δ a running mean of βρ",
    verified="tests/test_single.py: numpy with the running shift (TRL's BCO trainer's rule)"))
spec.declare(spec.Objective(
    "jpo", "cross_prompt", "cross_prompt", _jpo_build, display_name="JPO", arxiv="2404.00530",
    formula="½ [DPO(x, y_w ≻ x, y_l) + DPO((x_w, y_w) ≻ (x_l, y_l))], across prompts",
    verified="tests/test_single.py: equals the DPO loss on cross-prompt pairs"))
spec.declare(spec.Objective(
    "cringe", "unlikelihood", "token", _cringe_build, options=tuple(CRINGE_DEFAULTS.items()),
    display_name="Pairwise Cringe", arxiv="2312.16682",
    formula="−log π(y_w)/n_w + α σ((b − (log π(y_w) − log π(y_l)))/T) · Cringe(y_l)",
    verified="tests/test_single.py: token-level Cringe vs the official rule (ParlAI), gate and NLL terms"))

"""Multi-response (listwise) preference objectives over K responses per prompt (docs/theory.md §3).

Every objective maps the policy's and the reference's sequence log-probs of K responses per prompt,
`[B, K]` each, plus labels — scalar scores `rewards [B, K]` (higher is better) or `ranks [B, K]`
(0 = best, integer positions) — to per-prompt losses `[B]` (the caller takes the mean). The implicit
reward of response k is s_k = β ρ_k with ρ_k = log π(y_k) − log π_ref(y_k).

| name | per-prompt loss | labels |
|---|---|---|
| infonca (2402.05369) | −Σ_k q_k log softmax(s)_k, q = softmax(r/α) | rewards |
| nca (2402.05369) | −Σ_k q_k log σ(s_k) − (1/K) Σ_k log σ(−s_k) | rewards |
| plackett_luce (DPO's PL form, 2305.18290 App. A.3) | −Σ_{k<K} log(e^{s_(k)} / Σ_{i≥k} e^{s_(i)}) | ranks (no ties) or rewards |
| pro (2306.17492) | PL over length-normalised log π with reward-gap temperatures + λ(K−1)² SFT NLL | rewards |
| lipo_lambda (2402.01878) | −Σ_{ψ_i>ψ_j} Δ_ij log σ(s_i − s_j) | rewards (ψ) |
| mpo (2412.04628) | −log(Σ_{Y+} w e^{s} / Σ_{all} w e^{s}), Y+ = above-mean rewards | rewards |

Reductions at K = 2, tested against `pairwise_loss`: InfoNCA with hard labels (α → 0) and Plackett–Luce
are DPO (`sigmoid`); NCA with hard labels is `nca_pair`; LiPO-λ is a constant multiple of DPO; MPO with
two distinct rewards is DPO.

Data construction: `curriculum_pairs` (Curry-DPO, 2403.07230) builds the pairs of K rated responses and
orders them easy → hard; `ampo_select` (AMPO-style active subset selection) picks a small subset covering the
reward extremes and distinct embedding clusters, to be trained with `mpo`'s group contrast.

Bad input raises `PrefjaxError`: K that differ between arrays, ties in ranks for an objective that cannot
take them, missing (None or NaN) scores, β ≤ 0. NaN / ±inf log-probs are not checked by default (the loss is
then NaN or infinite); `listwise_loss(..., check_finite=True)` checks `policy_logps`, `ref_logps`, `rewards`
and `lengths`: eagerly a `PrefjaxError` naming the argument and the first bad [prompt, response] index,
under `jit` a `jax.experimental.checkify` check (docs/objectives_checks.md).
"""

import dataclasses
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.objectives import _checks
from prefjax.objectives import spec
from prefjax.objectives.registry import Registry


# ----------------------------------------------------------------------------------------------------
# The objectives as pure functions of validated arrays.
# ----------------------------------------------------------------------------------------------------


def infonca_loss(scores, rewards, temperature=1.0):
  """InfoNCA (Chen et al. arXiv:2402.05369): cross-entropy to soft targets.

  Checked against the official code (thu-ml/Noise-Contrastive-Alignment, `preference_trainer.py`: at K = 2
  with hard labels InfoNCA is the DPO loss, as here); the K-response trainer lives in a git submodule the code
  index does not hold and the paper's equation numbers were not reachable, so none is cited.

  loss = −Σ_k q_k log softmax(s)_k, q = softmax(r/α). With K = 2 and hard labels (α → 0) it is DPO.

  Args:
    scores: `[B, K]` s_k = β ρ_k.
    rewards: `[B, K]` r_k.
    temperature: scalar α > 0 of the target distribution.

  Returns:
    `[B]` losses.
  """
  targets = jax.nn.softmax(rewards / temperature, axis=-1)
  return -(targets * jax.nn.log_softmax(scores, axis=-1)).sum(-1)


def nca_loss(scores, rewards, temperature=1.0):
  """NCA (Chen et al. arXiv:2402.05369): absolute rather than relative likelihoods.

  Checked against the official code's pairwise NCA (thu-ml/Noise-Contrastive-Alignment,
  `preference_trainer.py`: −log σ(s_w) − ½ log σ(−s_w) − ½ log σ(−s_l), this loss at K = 2 with hard labels,
  tested); equation numbers not reachable, none cited.

  loss = −Σ_k q_k log σ(s_k) − (1/K) Σ_k log σ(−s_k), q = softmax(r/α). At K = 2 with hard labels it is
  TRL's `nca_pair`: −log σ(s_w) − ½ log σ(−s_w) − ½ log σ(−s_l).

  Args:
    scores: `[B, K]` s_k = β ρ_k.
    rewards: `[B, K]` r_k.
    temperature: scalar α > 0.

  Returns:
    `[B]` losses.
  """
  targets = jax.nn.softmax(rewards / temperature, axis=-1)
  k = scores.shape[-1]
  return (targets * jax.nn.softplus(-scores)).sum(-1) + jax.nn.softplus(scores).sum(-1) / k


def _sorted_by_rank(x, ranks):
  order = jnp.argsort(ranks, axis=-1, stable=True)
  return jnp.take_along_axis(x, order, axis=-1)


def plackett_luce_loss(scores, ranks, top_k=None):
  """Plackett–Luce DPO (2305.18290, App. A.3): negative log-likelihood of the ranking under PL(softmax s).

  loss = −Σ_{k < K'} [s_(k) − log Σ_{i ≥ k} e^{s_(i)}], with s_(k) the score of the response ranked k-th
  and K' = min(top_k, K − 1) (only the top positions of the ranking are scored when `top_k` is given).
  At K = 2 it is DPO: −log σ(s_w − s_l).

  Args:
    scores: `[B, K]` s_k = β ρ_k.
    ranks: `[B, K]` integer ranks, 0 = best; a permutation of 0..K−1 in each row (no ties).
    top_k: None (the full ranking) or the number of leading positions to score.

  Returns:
    `[B]` losses.
  """
  ordered = _sorted_by_rank(scores, ranks)
  tail_lse = jax.lax.cumlogsumexp(ordered, axis=1, reverse=True)
  terms = tail_lse - ordered  # the last term is 0
  k = scores.shape[-1]
  used = k - 1 if top_k is None else min(top_k, k - 1)
  return terms[:, :used].sum(-1)


def pro_loss(policy_logps, lengths, rewards, sft_weight=0.0, use_temperatures=True):
  """PRO, preference ranking optimisation (Song et al. arXiv:2306.17492), as in the official code.

  Verified against the official implementation (AlibabaResearch/DAMO-ConvAI, `PRO/train/utils/
  process_manager.py`, `compute_loss`); the paper's equation numbers could not be read (only its abstract and
  third-party summaries were reachable), so none is cited. Scores are the length-normalised policy log-probs
  r_π(y) = log π(y)/|y| (no reference model); the responses are ranked by the rewards r_φ (descending). With
  the reward-gap temperatures 1/T^i_k = r_φ(y^k) − r_φ(y^i) for i > k and 1/T^k_k = max_{i>k} 1/T^i_k
  (T^k_k = min_{i>k} T^i_k):

    L_PRO = −Σ_{k<K} log( e^{r_π(y^k)/T^k_k} / Σ_{i≥k} e^{r_π(y^i)/T^i_k} ),
    L = L_PRO + λ (K − 1)² L_SFT,   L_SFT = −log π(y^1)  (summed over tokens, not normalised),

  the SFT term on the best response with the official code's (K − 1)² scaling of λ = `sft_weight`. Without
  temperatures (`use_temperatures=False`) every 1/T is 1 and L_PRO is Plackett–Luce over r_π. The gaps 1/T
  are constants (rewards); ties between the rewards of y^k and a later y^i give a zero temperature weight, as
  in the official code (which adds 1e-10 inside the logarithm; omitted here, the sum includes e^{·} of the
  positive term so it is never 0).

  Args:
    policy_logps: `[B, K]` summed log π(y_k).
    lengths: `[B, K]` token counts |y_k| > 0 (ones in a bandit).
    rewards: `[B, K]` reward-model scores r_φ.
    sft_weight: λ ≥ 0.
    use_temperatures: apply the reward-gap temperatures.

  Returns:
    `[B]` losses.
  """
  order = jnp.argsort(-rewards, axis=-1, stable=True)
  sorted_logps = jnp.take_along_axis(policy_logps, order, axis=-1)
  r_pi = sorted_logps / jnp.take_along_axis(lengths, order, axis=-1)
  r_phi = jnp.take_along_axis(rewards, order, axis=-1)
  k = rewards.shape[-1]
  later = jnp.arange(k)[None, :] > jnp.arange(k)[:, None]  # [k, i]: i > k
  if use_temperatures:
    gaps = r_phi[:, :, None] - r_phi[:, None, :]  # [B, k, i] = r_φ(y^k) − r_φ(y^i)
    inv_t = jnp.where(later[None], gaps, 0.0)
    inv_t_self = inv_t.max(-1)  # 1/T^k_k = max_{i>k} gap
    inv_t = inv_t + jnp.eye(k, dtype=rewards.dtype)[None] * inv_t_self[:, :, None]
  else:
    inv_t = jnp.ones((1, k, k), rewards.dtype)
  logits = inv_t * r_pi[:, None, :]  # [B, k, i]
  valid = (later | jnp.eye(k, dtype=bool))[None]
  lse = jax.nn.logsumexp(jnp.where(valid, logits, -jnp.inf), axis=-1)
  own = jnp.diagonal(logits, axis1=-2, axis2=-1)
  pro = (lse - own)[:, :k - 1].sum(-1)
  return pro - sft_weight * (k - 1) ** 2 * sorted_logps[:, 0]


def lipo_lambda_weights(scores, labels):
  """LiPO-λ's Lambda weights Δ_ij = |G_i − G_j| · |1/D(τ_i) − 1/D(τ_j)| (2402.01878, LambdaLoss weights).

  G = 2^ψ − 1 (gains of the labels ψ), D(τ) = log(1 + τ) with τ_i the 1-based rank of response i under
  the current scores s (descending). The weights are constants of the loss (gradients stopped). The
  logarithm's base (LambdaLoss often uses log₂) only rescales every Δ by the same constant.

  Args:
    scores: `[B, K]` s.
    labels: `[B, K]` ψ.

  Returns:
    `[B, K, K]` Δ.
  """
  scores = jax.lax.stop_gradient(scores)
  order = jnp.argsort(-scores, axis=-1, stable=True)
  positions = jnp.argsort(order, axis=-1) + 1  # τ_i, 1-based
  discount = 1.0 / jnp.log1p(positions.astype(scores.dtype))
  gains = jnp.exp2(labels) - 1.0
  return jnp.abs(gains[:, :, None] - gains[:, None, :]) * jnp.abs(
      discount[:, :, None] - discount[:, None, :])


def lipo_lambda_loss(scores, labels):
  """LiPO-λ (Liu et al. arXiv:2402.01878, the LiPO-λ objective): −Σ_{ψ_i > ψ_j} Δ_ij log σ(s_i − s_j).

  Checked against the paper's LiPO-λ loss as restated on emergentmind.com/topics/lipo (per-list loss
  −Σ_{i,j: ψ_i>ψ_j} Δ_ij log σ(s_i − s_j), s_i = β log(π/π_ref), Lambda weights Δ_ij = |G_i − G_j| |1/D(τ_i) −
  1/D(τ_j)| with gain G = 2^ψ − 1, discount D(τ) = log(1 + τ) and τ_i the rank of i under the model's scores):
  the same as here. The arXiv text beyond the abstract (and its equation numbers) was not reachable in the
  searchable pages and no official code is public, so no equation number is cited.

  Args:
    scores: `[B, K]` s_k = β ρ_k.
    labels: `[B, K]` graded labels ψ (e.g. rewards); pairs with equal labels do not contribute.

  Returns:
    `[B]` losses.
  """
  weights = jax.lax.stop_gradient(lipo_lambda_weights(scores, labels))
  better = labels[:, :, None] > labels[:, None, :]
  pair_losses = jax.nn.softplus(-(scores[:, :, None] - scores[:, None, :]))
  return jnp.where(better, weights * pair_losses, 0.0).sum((-2, -1))


def mpo_loss(scores, rewards, deviation_weight=0.0):
  """MPO's set-level contrast (Gupta et al. 2412.04628): positives (above-mean reward) against all.

  loss = −log( Σ_{k∈Y+} w_k e^{s_k} / Σ_k w_k e^{s_k} ), Y+ = {k : r_k > mean_k r},
  w_k = exp(α |r_k − mean r|) (α = `deviation_weight`; α = 0 is the unweighted contrast). Responses further
  from the mean reward weigh more on both sides. At K = 2 with distinct rewards and α = 0 it is DPO.
  The deviation weights follow the paper's abstract ("deviation-based weighting, which emphasizes outlier
  responses that deviate most from the mean reward"); the exact weighting function of the paper could not be
  checked: searched the pages corpus for arxiv.org/abs|html/2412.04628 (and its earlier title SWEPO,
  OpenReview) and the code index for an official implementation — only abstracts were found. α = 0 (the
  default) is the unweighted set-level contrast, which the abstract's "extending the Bradley–Terry model to
  groupwise comparisons between chosen and rejected sets" does fix.

  Args:
    scores: `[B, K]` s_k = β ρ_k.
    rewards: `[B, K]` r_k; each row needs at least one reward above its mean (not all equal).
    deviation_weight: α ≥ 0.

  Returns:
    `[B]` losses.
  """
  deviation = rewards - rewards.mean(-1, keepdims=True)
  log_w = deviation_weight * jnp.abs(deviation)
  logits = scores + log_w
  positive = deviation > 0
  return jax.nn.logsumexp(logits, axis=-1) - jax.nn.logsumexp(
      jnp.where(positive, logits, -jnp.inf), axis=-1)


# ----------------------------------------------------------------------------------------------------
# Registry.
# ----------------------------------------------------------------------------------------------------


class ListwiseInputs(NamedTuple):
  """What a registered listwise objective receives (validated, same dtype).

  Attributes:
    scores: `[B, K]` β (log π − log π_ref).
    policy_logps: `[B, K]` summed log π(y_k).
    lengths: `[B, K]` token counts (ones when not given).
    rewards: `[B, K]` scores, or None.
    ranks: `[B, K]` integer ranks (0 = best), or None.
  """
  scores: jax.Array
  policy_logps: jax.Array
  lengths: jax.Array
  rewards: Optional[jax.Array]
  ranks: Optional[jax.Array]


@dataclasses.dataclass(frozen=True)
class ListwiseObjective:
  """A registered listwise objective.

  Attributes:
    fn: `fn(inputs: ListwiseInputs, **options) -> [B]`.
    labels: "rewards" (needs scores), "ranks" (needs ranks without ties, or rewards without ties, which
      are converted to ranks).
    options: the keyword options `fn` accepts, with defaults.
    doc: the formula in one line.
  """
  fn: Callable[..., jax.Array]
  labels: str
  options: tuple = ()
  doc: str = ""


LISTWISE_REGISTRY: Registry[ListwiseObjective] = Registry("listwise objective")
LISTWISE_LOSSES = LISTWISE_REGISTRY.view


_VERIFIED = "tests/test_listwise.py: float64 numpy formulas, K = 2 reductions to pairwise objectives, input errors"


def _ranking_build(name):
  """`spec.Objective.build` of listwise objective `name`: `listwise_loss` over a `spec.RankingBatch`."""

  def build(options):
    entry = LISTWISE_REGISTRY.get(name)

    def fn(batch, hp, state, key):
      del key
      if entry.labels == "rewards":
        labels = {"rewards": batch.rewards}
      else:  # Rank-labelled: the ranks, or tie-free rewards ranked by `listwise_loss`.
        labels = {"ranks": batch.ranks} if batch.ranks is not None else {"rewards": batch.rewards}
      return listwise_loss(name, batch.policy_logps, batch.ref_logps, beta=hp.beta, lengths=batch.lengths,
                           **labels, **options), state

    z = jnp.zeros((1, 3), jnp.float32)  # Bad options fail here, not inside a trainer's trace.
    jax.eval_shape(lambda x: listwise_loss(name, x, x, beta=1.0, rewards=x, ranks=jnp.asarray([[0, 1, 2]]),
                                           **options), z)
    return spec.Loss(fn)

  return build


def _declare(name, entry, *, aliases=(), overwrite=False, **meta):
  spec.declare(spec.Objective(name, "listwise", "ranking", _ranking_build(name), aliases=aliases,
                              options=entry.options, formula=entry.doc, **meta), overwrite=overwrite)


def _entry(name, fn, labels, options=(), doc="", *, aliases=(), **meta):
  entry = LISTWISE_REGISTRY.register(name, ListwiseObjective(fn, labels, tuple(options), doc))
  for alias in aliases:
    LISTWISE_REGISTRY.alias(alias, name)
  _declare(name, entry, aliases=aliases, verified=_VERIFIED, **meta)


_entry("infonca", lambda x, temperature: infonca_loss(x.scores, x.rewards, temperature), "rewards",
       (("temperature", 1.0),), "−Σ softmax(r/α)_k log softmax(s)_k", display_name="InfoNCA", arxiv="2402.05369")
_entry("nca", lambda x, temperature: nca_loss(x.scores, x.rewards, temperature), "rewards",
       (("temperature", 1.0),), "−Σ q_k log σ(s_k) − (1/K) Σ log σ(−s_k)", display_name="NCA", arxiv="2402.05369")
_entry("plackett_luce", lambda x, top_k: plackett_luce_loss(x.scores, x.ranks, top_k), "ranks",
       (("top_k", None),), "−Σ_{k<K} log softmax(s_(k:))_0", aliases=("pl",), display_name="Plackett–Luce",
       arxiv="2305.18290")
_entry("pro", lambda x, sft_weight, use_temperatures: pro_loss(
    x.policy_logps, x.lengths, x.rewards, sft_weight, use_temperatures), "rewards",
       (("sft_weight", 0.0), ("use_temperatures", True)), "PL over log π/|y| with reward-gap temperatures",
       display_name="PRO", arxiv="2306.17492")
_entry("lipo_lambda", lambda x: lipo_lambda_loss(x.scores, x.rewards), "rewards", (),
       "−Σ_{ψ_i>ψ_j} Δ_ij log σ(s_i − s_j)", aliases=("lipo",), display_name="LiPO-λ", arxiv="2402.01878")
_entry("mpo", lambda x, deviation_weight: mpo_loss(x.scores, x.rewards, deviation_weight), "rewards",
       (("deviation_weight", 0.0),), "−log(Σ_{Y+} w e^s / Σ w e^s)", display_name="MPO", arxiv="2412.04628")


def list_listwise_objectives():
  """Sorted names of the registered listwise objectives (aliases included)."""
  return LISTWISE_REGISTRY.names()


def register_listwise(name, fn, *, labels="rewards", options=(), doc="", overwrite=False):
  """Registers `fn(inputs: ListwiseInputs, **options) -> [B]` under `name` (see `ListwiseObjective`)."""
  if labels not in ("rewards", "ranks"):
    raise PrefjaxError(f"labels must be 'rewards' or 'ranks', got {labels!r}")
  entry = LISTWISE_REGISTRY.register(name, ListwiseObjective(fn, labels, tuple(options), doc), overwrite=overwrite)
  _declare(name, entry, overwrite=overwrite, verified="registered at run time (register_listwise)")
  return entry


# ----------------------------------------------------------------------------------------------------
# Validation and the entry point.
# ----------------------------------------------------------------------------------------------------


def _concrete(x):
  return None if isinstance(x, jax.core.Tracer) else np.asarray(x)


def _matrix(x, arg, shape=None):
  x = jnp.asarray(x)
  if x.ndim != 2:
    raise PrefjaxError(f"{arg} must be a 2-D array [B, K] (K responses per prompt), got shape {x.shape}")
  if shape is not None and x.shape != shape:
    if x.shape[0] != shape[0]:
      raise PrefjaxError(f"{arg} has B = {x.shape[0]} prompts but policy_logps has B = {shape[0]}")
    raise PrefjaxError(
        f"K mismatch: {arg} has K = {x.shape[1]} responses per prompt but policy_logps has K = {shape[1]}")
  return x


def ranks_from_rewards(rewards, arg="rewards"):
  """Integer ranks (0 = best) of `rewards [B, K]` per row; raises `PrefjaxError` on ties (concrete input)."""
  rewards = _matrix(rewards, arg)
  value = _concrete(rewards)
  if value is not None:
    ordered = np.sort(value, axis=-1)
    if np.any(ordered[:, 1:] == ordered[:, :-1]):
      row = int(np.nonzero(np.any(ordered[:, 1:] == ordered[:, :-1], axis=-1))[0][0])
      raise PrefjaxError(
          f"{arg} has ties in row {row} ({value[row].tolist()}): this objective needs a strict ranking")
  order = jnp.argsort(-rewards, axis=-1, stable=True)
  return jnp.argsort(order, axis=-1)


def _check_ranks(ranks, shape):
  ranks = _matrix(ranks, "ranks", shape)
  if not jnp.issubdtype(ranks.dtype, jnp.integer):
    value = _concrete(ranks)
    if value is not None and not np.all(value == np.round(value)):
      raise PrefjaxError("ranks must be integers (0 = best)")
    ranks = ranks.astype(jnp.int32)
  value = _concrete(ranks)
  if value is not None:
    k = shape[1]
    for row, r in enumerate(value):
      if sorted(r.tolist()) != list(range(k)):
        if len(set(r.tolist())) < k:
          raise PrefjaxError(
              f"ranks has ties in row {row} ({r.tolist()}): this objective needs a strict ranking "
              f"(a permutation of 0..{k - 1})")
        raise PrefjaxError(f"ranks row {row} ({r.tolist()}) is not a permutation of 0..{k - 1}")
  return ranks


def listwise_loss(name, policy_logps, ref_logps, *, beta, rewards=None, ranks=None, lengths=None,
                  check_finite=False, **options):
  """Per-prompt losses `[B]` of a registered listwise objective.

  Args:
    name: a registered name (see `list_listwise_objectives()`).
    policy_logps: `[B, K]` summed log π(y_k) for K responses per prompt.
    ref_logps: `[B, K]` summed log π_ref(y_k).
    beta: scalar β > 0 (scores s = β(log π − log π_ref)).
    rewards: `[B, K]` scores (higher is better); required by reward-labelled objectives. NaN = missing,
      an error.
    ranks: `[B, K]` integer ranks, 0 = best, a permutation per row; for rank-labelled objectives (which
      also accept tie-free `rewards` and rank them).
    lengths: `[B, K]` token counts > 0 (PRO's length normalisation); ones when None.
    check_finite: opt-in check that `policy_logps`, `ref_logps`, `rewards` and `lengths` hold no NaN /
      ±inf (default off: nothing is added to the computation); eager `PrefjaxError` naming the argument and
      the first bad index, a `checkify` check under `jit` (docs/objectives_checks.md).
    **options: objective options (see the registry entry: temperature, top_k, sft_weight,
      use_temperatures, deviation_weight).

  Returns:
    `[B]` losses.

  Raises:
    PrefjaxError: unknown names or options, K mismatches, missing or NaN scores, ties in ranks where the
      objective needs a strict ranking, rows where MPO has no above-mean response, β ≤ 0.
  """
  objective = LISTWISE_REGISTRY.get(name)
  policy_logps = _matrix(policy_logps, "policy_logps")
  shape = policy_logps.shape
  if shape[1] < 2:
    raise PrefjaxError(
        f"policy_logps has K = {shape[1]} responses per prompt; listwise objectives need K >= 2")
  if shape[0] == 0:
    raise PrefjaxError("empty batch: policy_logps has B = 0 prompts")
  ref_logps = _matrix(ref_logps, "ref_logps", shape)
  if check_finite:
    _checks.check_finite(f"listwise objective {name!r}", True, {
        "policy_logps": policy_logps, "ref_logps": ref_logps,
        "rewards": None if rewards is None else _matrix(rewards, "rewards", shape),
        "lengths": None if lengths is None else _matrix(lengths, "lengths", shape)})
  dtype = jnp.result_type(policy_logps, ref_logps, float)
  if jnp.ndim(beta) != 0:
    raise PrefjaxError(f"beta must be a scalar, got shape {jnp.shape(beta)}")
  beta_value = _concrete(beta)
  if beta_value is not None and not (np.isfinite(beta_value) and beta_value > 0):
    raise PrefjaxError(f"beta must be finite and > 0, got {beta_value}")

  known = dict(objective.options)
  unknown = sorted(set(options) - set(known))
  if unknown:
    raise PrefjaxError(f"{name!r} does not take option(s) {unknown}; it takes {sorted(known) or 'none'}")
  known.update(options)
  for key in ("temperature",):
    if key in known:
      value = _concrete(known[key])
      if value is not None and not (np.ndim(value) == 0 and np.isfinite(value) and value > 0):
        raise PrefjaxError(f"{key} must be a finite scalar > 0, got {known[key]!r}")
  for key in ("sft_weight", "deviation_weight"):
    if key in known:
      value = _concrete(known[key])
      if value is not None and not (np.ndim(value) == 0 and np.isfinite(value) and value >= 0):
        raise PrefjaxError(f"{key} must be a finite scalar >= 0, got {known[key]!r}")

  if rewards is not None:
    rewards = _matrix(rewards, "rewards", shape).astype(dtype)
    value = _concrete(rewards)
    if value is not None and not np.all(np.isfinite(value)):
      bad = np.argwhere(~np.isfinite(value))[0].tolist()
      raise PrefjaxError(f"rewards has a missing (non-finite) score at [prompt, response] = {bad}")
  if objective.labels == "rewards":
    if rewards is None:
      raise PrefjaxError(f"{name!r} needs rewards [B, K] (scores of the responses); got rewards=None")
  else:
    if ranks is not None:
      ranks = _check_ranks(ranks, shape)
    elif rewards is not None:
      ranks = ranks_from_rewards(rewards)
    else:
      raise PrefjaxError(f"{name!r} needs ranks [B, K] (0 = best) or tie-free rewards; got neither")
  if LISTWISE_REGISTRY.canonical(name) == "mpo" and rewards is not None:
    value = _concrete(rewards)
    if value is not None:
      flat = np.all(value == value[:, :1], axis=-1)
      if np.any(flat):
        raise PrefjaxError(
            f"mpo: rewards row {int(np.nonzero(flat)[0][0])} has all scores equal: no positive set")
  if lengths is None:
    lengths = jnp.ones(shape, dtype)
  else:
    lengths = _matrix(lengths, "lengths", shape).astype(dtype)
    value = _concrete(lengths)
    if value is not None and not np.all(value > 0):
      raise PrefjaxError("lengths must be > 0 (token counts of non-empty responses)")
  policy_logps, ref_logps = policy_logps.astype(dtype), ref_logps.astype(dtype)
  inputs = ListwiseInputs(beta * (policy_logps - ref_logps), policy_logps, lengths, rewards, ranks)
  return objective.fn(inputs, **known).astype(dtype)


# ----------------------------------------------------------------------------------------------------
# Data construction: Curry-DPO curricula and AMPO-style subset selection (numpy, outside jit).
# ----------------------------------------------------------------------------------------------------


class CurriculumPairs(NamedTuple):
  """Preference pairs in curriculum order (easy → hard), as index arrays `[P]`.

  Attributes:
    prompt: prompt index b of each pair.
    chosen: response index of y_w.
    rejected: response index of y_l.
    gap: reward gap r_w − r_l > 0.
    stage: curriculum stage (0 = easiest).
  """
  prompt: np.ndarray
  chosen: np.ndarray
  rejected: np.ndarray
  gap: np.ndarray
  stage: np.ndarray


def curriculum_pairs(rewards, *, scheme="best_vs_rest", num_stages=None):
  """Curry-DPO (Pattnaik et al. 2403.07230): pairs from K rated responses, ordered easy → hard.

  Pairs (w, l) with r_w > r_l are formed per prompt — `best_vs_rest` pairs the top-rated response with
  each other one (the paper's main setting: K − 1 pairs per prompt), `all` takes every strictly ordered
  pair. A pair's difficulty is its rating gap: a large gap is easy. Pairs are sorted by decreasing gap
  (stable, so prompts keep their order within equal gaps), and `stage` splits them into `num_stages`
  curriculum stages (by default one stage per pair rank within a prompt for `best_vs_rest`, i.e. the
  paper's iterations: (best, worst) first, then (best, second worst), ...). Ties give no pair.

  Args:
    rewards: `[B, K]` ratings (numpy or jax; must be concrete and finite).
    scheme: "best_vs_rest" or "all".
    num_stages: number of equal-size stages over the sorted pairs, or None (see above; "all": 1).

  Returns:
    `CurriculumPairs` of `[P]` numpy arrays.
  """
  rewards = np.asarray(rewards, dtype=np.float64)
  if rewards.ndim != 2:
    raise PrefjaxError(f"rewards must be a 2-D array [B, K], got shape {rewards.shape}")
  if not np.all(np.isfinite(rewards)):
    raise PrefjaxError("rewards has missing (non-finite) scores")
  if scheme not in ("best_vs_rest", "all"):
    raise PrefjaxError(f"scheme must be 'best_vs_rest' or 'all', got {scheme!r}")
  rows = []
  for b, r in enumerate(rewards):
    if scheme == "all":
      rows += [(b, w, l, r[w] - r[l], 0) for w in range(len(r)) for l in range(len(r)) if r[w] > r[l]]
    else:
      best = int(np.argmax(r))
      others = sorted((l for l in range(len(r)) if r[l] < r[best]), key=lambda l: r[l])
      rows += [(b, best, l, r[best] - r[l], j) for j, l in enumerate(others)]
  if not rows:
    raise PrefjaxError("no preference pairs: every prompt's ratings are all tied")
  prompt, chosen, rejected, gap, rank = (np.asarray(c) for c in zip(*rows))
  if num_stages is None and scheme == "best_vs_rest":
    order = np.lexsort((-gap, rank))  # stage (pair rank) first, larger gaps first inside a stage
    stage = rank[order]
  else:
    order = np.argsort(-gap, kind="stable")
    stages = 1 if num_stages is None else num_stages
    if not isinstance(stages, (int, np.integer)) or stages < 1:
      raise PrefjaxError(f"num_stages must be a positive integer, got {num_stages!r}")
    stage = (np.arange(len(order)) * stages) // len(order)
  return CurriculumPairs(prompt[order].astype(np.int64), chosen[order].astype(np.int64),
                         rejected[order].astype(np.int64), gap[order].astype(np.float64),
                         stage.astype(np.int64))


def ampo_select(rewards, embeddings, num_select):
  """AMPO-style active subset selection: reward extremes plus coverage of distinct embedding clusters.

  From K candidates of one prompt, picks the highest-reward response (the positive), the lowest-reward one,
  then greedily the candidate farthest (Euclidean) from everything chosen so far (k-center / farthest-point
  coverage), until `num_select` are chosen: with well-separated clusters every cluster gets a
  representative before any cluster gets two. The subset is meant for a group-contrastive loss (`mpo`
  with one positive against the selected negatives). This follows the idea of active multi-preference
  optimisation (reward extremes + diverse clusters); the paper's exact selection rules are not reproduced.

  Args:
    rewards: `[K]` rewards (concrete, finite).
    embeddings: `[K, D]` response embeddings.
    num_select: 2 ≤ n ≤ K.

  Returns:
    `[n]` int64 indices: [argmax reward, argmin reward, then farthest-point picks].
  """
  rewards = np.asarray(rewards, dtype=np.float64)
  embeddings = np.asarray(embeddings, dtype=np.float64)
  if rewards.ndim != 1 or embeddings.ndim != 2 or embeddings.shape[0] != rewards.shape[0]:
    raise PrefjaxError(
        f"ampo_select needs rewards [K] and embeddings [K, D]; got {rewards.shape} and {embeddings.shape}")
  k = rewards.shape[0]
  if not np.all(np.isfinite(rewards)):
    raise PrefjaxError("rewards has missing (non-finite) scores")
  if not isinstance(num_select, (int, np.integer)) or not 2 <= num_select <= k:
    raise PrefjaxError(f"num_select must be an integer in [2, K = {k}], got {num_select!r}")
  best, worst = int(np.argmax(rewards)), int(np.argmin(rewards))
  if best == worst:
    raise PrefjaxError("rewards are all equal: no reward extremes to select")
  chosen = [best, worst]
  distance = np.minimum(np.linalg.norm(embeddings - embeddings[best], axis=-1),
                        np.linalg.norm(embeddings - embeddings[worst], axis=-1))
  while len(chosen) < num_select:
    distance[chosen] = -np.inf
    nxt = int(np.argmax(distance))
    chosen.append(nxt)
    distance = np.minimum(distance, np.linalg.norm(embeddings - embeddings[nxt], axis=-1))
  return np.asarray(chosen, dtype=np.int64)

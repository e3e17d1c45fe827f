"""Pairwise offline preference objectives (DPO family) behind one registry with TRL-compatible names.

Every objective maps per-example sequence log-probs of the policy and the reference, for the chosen (y_w)
and rejected (y_l) responses, `[B]` each, to per-example losses `[B]`; the batch loss is their mean
(docs/theory.md §2). In a bandit a "sequence log-prob" is log π(y).

Notation: ρ = log π(y) − log π_ref(y) (the log-ratio, summed over tokens), n = token count, σ the
logistic function, β the regularisation strength (τ in the IPO paper), ε the label smoothing.
Two independent switches shape the margin Δ that most objectives use:

- `divergence`: the f-divergence score s = f'(π/π_ref) of f-DPO (2309.16240), see
  `prefjax.objectives.divergences`; reverse KL (the default) gives s = ρ.
- `length_normalize`: Δ = s_w/n_w − s_l/n_l instead of Δ = s_w − s_l (TRL's token-averaged log-probs).
  For objectives of the separate scores (nca_pair, bco_pair, sppo_hard, apo_*) it replaces ρ by ρ/n; for
  paired AOT it normalises the policy's and the reference's log-probs before taking margins.

Which objective reads which switch is recorded in its `PairwiseObjective` entry and stated in its docstring;
setting a switch that no requested objective reads (a non-zero ε for `hinge`, a non-default divergence for
`nca_pair`) raises `PrefjaxError` rather than being silently ignored.

Names accepted from TRL (`DPOConfig.loss_type`): sigmoid, hinge, ipo, robust, exo_pair, nca_pair, bco_pair,
sppo_hard, aot, aot_pair, apo_zero, apo_down, discopop, sigmoid_norm, sft. Aliases: dpo = cdpo = sigmoid,
slic = hinge, and TRL's `aot_pair` = our `aot_unpaired`: despite its name, TRL's `aot_pair` sorts the chosen
and the rejected log-ratios separately (the *unpaired* AOT of 2406.05882), while TRL's `aot` sorts the
policy's and the reference's margins (paired AOT), which is our `aot` too.

Non-finite inputs: a NaN or ±inf log-prob gives a NaN or infinite loss, silently by default (no check is
added to the computation). `check_finite=True` (on `pairwise_loss` and `pairwise_loss_and_metrics`) checks
the four log-prob arrays and the lengths: eagerly it raises `PrefjaxError` naming the argument and the
first bad index; under `jit` it is a `jax.experimental.checkify` check, reported by
`checkify.checkify(jax.jit(f))` (docs/objectives_checks.md).
"""

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.objectives import _checks
from prefjax.objectives import divergences
from prefjax.objectives import spec
from prefjax.objectives.registry import Registry

# TRL replaces ε = 0 by this value in exo_pair (log ε would be −∞); we follow it.
EXO_DEFAULT_LABEL_SMOOTHING = 1e-3


# ----------------------------------------------------------------------------------------------------
# The objectives as small pure functions of already-transformed inputs.
# ----------------------------------------------------------------------------------------------------


def _smoothed_logistic(z, label_smoothing):
  """−(1 − ε) log σ(z) − ε log σ(−z), written with softplus (log σ(z) = −softplus(−z))."""
  return (1.0 - label_smoothing) * jax.nn.softplus(-z) + label_smoothing * jax.nn.softplus(z)


def sigmoid_loss(margin, beta, label_smoothing=0.0):
  """DPO (2305.18290, Eq. 7) and conservative DPO (cDPO) with label smoothing ε ∈ [0, ½].

  loss = −(1 − ε) log σ(βΔ) − ε log σ(−βΔ); ε = 0 is DPO.

  Switches: divergence applies; length normalisation applies; ε ∈ [0, ½] (`sigmoid`, `dpo`, `cdpo`).
  `sigmoid_norm` is this loss with length normalisation always on (and ε = 0).

  Args:
    margin: `[B]` Δ = s_w − s_l (f-divergence scores, optionally length-normalised).
    beta: scalar β > 0.
    label_smoothing: scalar ε, the assumed probability that a label is flipped.

  Returns:
    `[B]` losses.
  """
  return _smoothed_logistic(beta * margin, label_smoothing)


def hinge_loss(margin, beta):
  """SLiC-HF's rank-calibration hinge (2305.10425) as in TRL: loss = max(0, 1 − βΔ) = β max(0, 1/β − Δ).

  Switches: divergence applies; length normalisation applies; ε is not used.

  Args:
    margin: `[B]` Δ = s_w − s_l.
    beta: scalar β > 0 (the hinge's margin is 1/β).

  Returns:
    `[B]` losses.
  """
  return jax.nn.relu(1.0 - beta * margin)


def ipo_loss(margin, beta):
  """IPO's empirical loss (2310.12036, Eq. 17): loss = (Δ − 1/(2τ))², with τ = β.

  The paper uses the summed log-ratio margin; TRL's `ipo` uses token-averaged log-probs, which is
  `length_normalize=True` here.

  Switches: divergence applies; length normalisation applies; ε is not used.

  Args:
    margin: `[B]` Δ = s_w − s_l (or s_w/n_w − s_l/n_l).
    beta: scalar τ > 0.

  Returns:
    `[B]` losses.
  """
  return (margin - 0.5 / beta) ** 2


def robust_loss(margin, beta, label_smoothing):
  """Robust DPO, rDPO (2403.00409): unbiased under label flips with known rate ε ∈ [0, ½).

  loss = [−(1 − ε) log σ(βΔ) + ε log σ(−βΔ)] / (1 − 2ε); ε = 0 is DPO. The loss can be negative.

  Switches: divergence applies; length normalisation applies; ε ∈ [0, ½).

  Args:
    margin: `[B]` Δ = s_w − s_l.
    beta: scalar β > 0.
    label_smoothing: scalar flip rate ε.

  Returns:
    `[B]` losses.
  """
  z = beta * margin
  return ((1.0 - label_smoothing) * jax.nn.softplus(-z)
          - label_smoothing * jax.nn.softplus(z)) / (1.0 - 2.0 * label_smoothing)


def exo_pair_loss(margin, beta, label_smoothing):
  """EXO for pairs (2402.00856, Eq. 16): KL from the model's pair distribution to the smoothed label.

  With q_w = σ(βΔ), q_l = σ(−βΔ): loss = q_w (log q_w − log(1 − ε)) + q_l (log q_l − log ε), ε ∈ (0, 1).
  Following TRL, ε = 0 is replaced by `EXO_DEFAULT_LABEL_SMOOTHING` = 1e-3 (also when ε is traced).

  Switches: divergence applies; length normalisation applies; ε ∈ [0, 1).

  Args:
    margin: `[B]` Δ = s_w − s_l.
    beta: scalar β > 0.
    label_smoothing: scalar ε in [0, 1).

  Returns:
    `[B]` losses (≥ 0, a KL divergence between two Bernoulli distributions).
  """
  eps = jnp.asarray(label_smoothing, dtype=jnp.result_type(margin, float))
  eps = jnp.where(eps == 0, EXO_DEFAULT_LABEL_SMOOTHING, eps)
  z = beta * margin
  log_q_w = jax.nn.log_sigmoid(z)
  log_q_l = jax.nn.log_sigmoid(-z)
  return (jnp.exp(log_q_w) * (log_q_w - jnp.log1p(-eps))
          + jnp.exp(log_q_l) * (log_q_l - jnp.log(eps)))


def nca_pair_loss(chosen, rejected, beta):
  """NCA for pairs (2402.05369, the K = 2 case; TRL's `nca_pair`).

  loss = −log σ(βρ_w) − ½ log σ(−βρ_w) − ½ log σ(−βρ_l).

  Switches: divergence does not apply (no Δ: reverse KL only); length normalisation replaces ρ by
  ρ/n; ε is not used.

  Args:
    chosen: `[B]` ρ_w (or ρ_w/n_w).
    rejected: `[B]` ρ_l (or ρ_l/n_l).
    beta: scalar β > 0.

  Returns:
    `[B]` losses.
  """
  return (jax.nn.softplus(-beta * chosen) + 0.5 * jax.nn.softplus(beta * chosen)
          + 0.5 * jax.nn.softplus(beta * rejected))


def bco_pair_loss(chosen, rejected, beta):
  """BCO on pairs (2404.04656): binary classification of chosen vs rejected implicit rewards.

  loss = −log σ(βρ_w) − log σ(−βρ_l). The paper (and TRL) subtract a running mean δ of the rewards from
  both logits; that is stateful, so this stateless version fixes δ = 0 (docs/theory.md §2).

  Switches: divergence does not apply (reverse KL only); length normalisation replaces ρ by ρ/n; ε is
  not used.

  Args:
    chosen: `[B]` ρ_w (or ρ_w/n_w).
    rejected: `[B]` ρ_l (or ρ_l/n_l).
    beta: scalar β > 0.

  Returns:
    `[B]` losses.
  """
  return jax.nn.softplus(-beta * chosen) + jax.nn.softplus(beta * rejected)


def sppo_hard_loss(chosen, rejected, beta):
  """SPPO with hard win probabilities (2405.00675, Eq. 4.7 with P̂_w = 1, P̂_l = 0; TRL's `sppo_hard`).

  loss = (ρ_w − 1/(2β))² + (ρ_l + 1/(2β))².

  Switches: divergence does not apply (reverse KL only); length normalisation replaces ρ by ρ/n; ε is
  not used.

  Args:
    chosen: `[B]` ρ_w (or ρ_w/n_w).
    rejected: `[B]` ρ_l (or ρ_l/n_l).
    beta: scalar β > 0.

  Returns:
    `[B]` losses.
  """
  half_inv_beta = 0.5 / beta
  return (chosen - half_inv_beta) ** 2 + (rejected + half_inv_beta) ** 2


def aot_loss(policy_margins, ref_margins, beta, label_smoothing=0.0):
  """Paired AOT (2406.05882): the policy's margin distribution should dominate the reference's.

  δ_(i) = sort_B(log π(y_w) − log π(y_l))_(i) − sort_B(log π_ref(y_w) − log π_ref(y_l))_(i), and
  loss_i = −(1 − ε) log σ(βδ_(i)) − ε log σ(−βδ_(i)), ε ∈ [0, ½]. The mean over the batch is the
  one-dimensional optimal-transport cost with the (convex) logistic cost, i.e. the minimum over all pairings
  of policy and reference margins (docs/theory.md §5).

  Batch-coupled: the i-th loss belongs to the i-th order statistics, not to example i, and the sort must see
  the whole (global) batch; under data-parallel sharding gather the margins first.

  Switches: divergence does not apply (the policy and reference margins are compared directly, there is
  no ρ); length normalisation divides each log-prob by its token count; ε ∈ [0, ½].

  Args:
    policy_margins: `[B]` log π(y_w) − log π(y_l) (each optionally divided by its token count).
    ref_margins: `[B]` log π_ref(y_w) − log π_ref(y_l) (same normalisation).
    beta: scalar β > 0.
    label_smoothing: scalar ε.

  Returns:
    `[B]` losses, in sorted order.
  """
  delta = jnp.sort(policy_margins) - jnp.sort(ref_margins)
  return _smoothed_logistic(beta * delta, label_smoothing)


def aot_unpaired_loss(chosen, rejected, beta, label_smoothing=0.0):
  """Unpaired AOT (2406.05882; TRL's `aot_pair`): chosen rewards should dominate rejected rewards.

  δ_(i) = sort_B(s_w)_(i) − sort_B(s_l)_(i); loss_i = −(1 − ε) log σ(βδ_(i)) − ε log σ(−βδ_(i)).
  Batch-coupled, like `aot_loss`: losses are in sorted order and the sort must see the global batch.

  Switches: divergence applies (sorting s = f'(e^ρ) instead of ρ; s is increasing in ρ); length
  normalisation applies; ε ∈ [0, ½].

  Args:
    chosen: `[B]` s_w (f-divergence score of ρ_w, optionally / n_w).
    rejected: `[B]` s_l.
    beta: scalar β > 0.
    label_smoothing: scalar ε ∈ [0, ½].

  Returns:
    `[B]` losses, in sorted order.
  """
  delta = jnp.sort(chosen) - jnp.sort(rejected)
  return _smoothed_logistic(beta * delta, label_smoothing)


def apo_zero_loss(chosen, rejected, beta):
  """Anchored preference optimisation, APO-zero (2408.06266, Eq. 7).

  loss = 1 − σ(βρ_w) + σ(βρ_l): raise the chosen likelihood, lower the rejected one.

  Switches: divergence does not apply (reverse KL only); length normalisation replaces ρ by ρ/n; ε is
  not used.

  Args:
    chosen: `[B]` ρ_w (or ρ_w/n_w).
    rejected: `[B]` ρ_l (or ρ_l/n_l).
    beta: scalar β > 0.

  Returns:
    `[B]` losses in [0, 2].
  """
  return 1.0 - jax.nn.sigmoid(beta * chosen) + jax.nn.sigmoid(beta * rejected)


def apo_down_loss(chosen, rejected, beta):
  """Anchored preference optimisation, APO-down (2408.06266, Eq. 8).

  loss = σ(βρ_w) + 1 − σ(β(ρ_w − ρ_l)): lower both likelihoods, the rejected one more.

  Switches: divergence does not apply (reverse KL only); length normalisation replaces ρ by ρ/n; ε is
  not used.

  Args:
    chosen: `[B]` ρ_w (or ρ_w/n_w).
    rejected: `[B]` ρ_l (or ρ_l/n_l).
    beta: scalar β > 0.

  Returns:
    `[B]` losses in [0, 2].
  """
  return jax.nn.sigmoid(beta * chosen) + 1.0 - jax.nn.sigmoid(beta * (chosen - rejected))


def discopop_loss(margin, beta, tau=0.05):
  """DiscoPOP, the log-ratio modulated loss (2406.08414, Eq. 5).

  With z = βΔ and m = σ(z/τ): loss = (1 − m)(−log σ(z)) + m e^{−z}. The product m e^{−z} is evaluated as
  exp(log σ(z/τ) − z), which stays finite where e^{−z} alone would overflow.

  Switches: divergence applies; length normalisation applies; ε is not used.

  Args:
    margin: `[B]` Δ = s_w − s_l.
    beta: scalar β > 0.
    tau: scalar modulation temperature τ > 0 (paper and TRL: 0.05).

  Returns:
    `[B]` losses.
  """
  z = beta * margin
  log_m = jax.nn.log_sigmoid(z / tau)
  one_minus_m = jax.nn.sigmoid(-z / tau)
  return one_minus_m * jax.nn.softplus(-z) + jnp.exp(log_m - z)


def sft_loss(policy_chosen_logps, chosen_lengths):
  """Supervised fine-tuning on the chosen response: token-mean NLL, −log π(y_w) / n_w.

  Switches: none (divergence, length normalisation and ε do not apply; β is validated but unused).

  Args:
    policy_chosen_logps: `[B]` summed log π(y_w).
    chosen_lengths: `[B]` token counts n_w > 0.

  Returns:
    `[B]` losses.
  """
  return -policy_chosen_logps / chosen_lengths


# ----------------------------------------------------------------------------------------------------
# Registry entries: which inputs and switches each objective reads.
# ----------------------------------------------------------------------------------------------------


class PairwiseInputs(NamedTuple):
  """What a registered objective receives: the raw batch, already transformed by the switches.

  Attributes:
    chosen: `[B]` s_w = f'-score of ρ_w (÷ n_w when length-normalised).
    rejected: `[B]` s_l, likewise.
    policy_margins: `[B]` log π(y_w) − log π(y_l) (each ÷ its n when length-normalised); paired AOT.
    ref_margins: `[B]` log π_ref(y_w) − log π_ref(y_l), likewise.
    policy_chosen_logps: `[B]` summed log π(y_w), untransformed (sft).
    chosen_lengths: `[B]` n_w, or None when not given.
  """
  chosen: jax.Array
  rejected: jax.Array
  policy_margins: jax.Array
  ref_margins: jax.Array
  policy_chosen_logps: jax.Array
  chosen_lengths: Optional[jax.Array]

  @property
  def margins(self):
    """`[B]` Δ = s_w − s_l."""
    return self.chosen - self.rejected


class PairwiseHParams(NamedTuple):
  """Scalar hyper-parameters passed to every registered objective (each may be a traced scalar)."""
  beta: jax.Array
  label_smoothing: jax.Array
  discopop_tau: jax.Array


class SmoothingRange(NamedTuple):
  """Allowed label smoothing ε: low ≤ ε ≤ high (ε < high when `high_open`)."""
  low: float
  high: float
  high_open: bool = False

  def contains(self, value):
    return self.low <= value and (value < self.high if self.high_open else value <= self.high)

  def __str__(self):
    return f"[{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


LENGTH_NORMALIZE_MODES = ("switch", "always", "never")


@dataclasses.dataclass(frozen=True)
class PairwiseObjective:
  """A registered pairwise objective: a function of `(PairwiseInputs, PairwiseHParams)` and what it reads.

  Attributes:
    fn: `fn(inputs, hparams) -> [B]` per-example losses.
    label_smoothing: allowed range of ε, or None when the objective does not use ε (then ε must be 0).
    divergence: whether the f-divergence switch applies (else only `reverse_kl` is accepted).
    length_normalize: "switch" (follows `length_normalize`), "always" (sigmoid_norm) or "never" (the
      objective does its own normalisation, e.g. sft, or none).
    requires_chosen_lengths: whether `chosen_lengths` must be given whatever the switches (sft).
    batch_coupled: whether an example's loss depends on the rest of the batch (AOT's sort). Per-example
      objectives let a trainer weight examples by counts instead of materialising a sampled batch.
    doc: a one-line description (the formula).
  """
  fn: Callable[[PairwiseInputs, PairwiseHParams], jax.Array]
  label_smoothing: Optional[SmoothingRange] = None
  divergence: bool = False
  length_normalize: str = "switch"
  requires_chosen_lengths: bool = False
  batch_coupled: bool = False
  doc: str = ""

  def __post_init__(self):
    if not callable(self.fn):
      raise PrefjaxError(f"pairwise objective fn must be callable, got {self.fn!r}")
    if self.length_normalize not in LENGTH_NORMALIZE_MODES:
      raise PrefjaxError(
          f"length_normalize mode must be one of {LENGTH_NORMALIZE_MODES}, got {self.length_normalize!r}")
    if self.label_smoothing is not None and not isinstance(self.label_smoothing, SmoothingRange):
      object.__setattr__(self, "label_smoothing", SmoothingRange(*self.label_smoothing))

  def __call__(self, inputs: PairwiseInputs, hparams: PairwiseHParams):
    return self.fn(inputs, hparams)


PAIRWISE_REGISTRY: Registry[PairwiseObjective] = Registry("pairwise objective")
# Read-only live mapping name → objective (aliases included); `register_pairwise` adds to it.
PAIRWISE_LOSSES = PAIRWISE_REGISTRY.view

_HALF = SmoothingRange(0.0, 0.5)


# Static options of every pairwise objective in the objective index (`spec.Objective.options`): the switches.
PAIR_OPTIONS = (("length_normalize", False), ("divergence", "reverse_kl"), ("alpha", 0.5), ("discopop_tau", 0.05))

_VERIFIED = ("tests/test_pairwise.py: float64 numpy formulas, float32 vs float64, gradients (check_grads), "
             "jit/vmap, aliases; LM step vs TRL 1.16 DPOTrainer (benchmarks/trl_dpo_step.py)")


def _pair_build(name):
  """`spec.Objective.build` of pairwise objective `name`: `pairwise_loss` over a `spec.PairBatch`."""

  def build(options):
    uses_eps = PAIRWISE_REGISTRY.get(name).label_smoothing is not None

    def fn(batch, hp, state, key):
      del key
      eps = hp.label_smoothing if uses_eps else 0.0
      return pairwise_loss(name, batch.policy_chosen_logps, batch.policy_rejected_logps, batch.ref_chosen_logps,
                           batch.ref_rejected_logps, beta=hp.beta, label_smoothing=eps,
                           chosen_lengths=batch.chosen_lengths, rejected_lengths=batch.rejected_lengths,
                           **options), state

    one = jnp.ones((2,), jnp.float32)  # Bad static options fail here, not inside a trainer's trace.
    jax.eval_shape(lambda x: pairwise_loss(name, x, x, x, x, beta=1.0, chosen_lengths=x, rejected_lengths=x,
                                           **options), one)
    return spec.Loss(fn)

  return build


def _declare(name, objective, *, aliases=(), overwrite=False, **meta):
  spec.declare(spec.Objective(
      name, "pairwise", "pair", _pair_build(name), aliases=aliases, options=PAIR_OPTIONS,
      uses_label_smoothing=objective.label_smoothing is not None, batch_coupled=objective.batch_coupled,
      formula=meta.pop("formula", objective.doc), **meta), overwrite=overwrite)


def _entry(name, fn, *, aliases=(), display_name="", arxiv="", optimum=None, alias_display_names=(),
           verified=_VERIFIED, **switches):
  objective = PAIRWISE_REGISTRY.register(name, PairwiseObjective(fn, **switches))
  for alias in aliases:
    PAIRWISE_REGISTRY.alias(alias, name)
  _declare(name, objective, aliases=aliases, display_name=display_name, arxiv=arxiv, optimum=optimum,
           alias_display_names=alias_display_names, verified=verified)


_entry("sigmoid", lambda x, h: sigmoid_loss(x.margins, h.beta, h.label_smoothing),
       label_smoothing=_HALF, divergence=True, doc="−(1−ε) log σ(βΔ) − ε log σ(−βΔ)",
       aliases=("dpo", "cdpo"), display_name="DPO", alias_display_names=(("cdpo", "cDPO"),), arxiv="2305.18290",
       optimum="rlhf")
_entry("hinge", lambda x, h: hinge_loss(x.margins, h.beta), divergence=True, doc="max(0, 1 − βΔ)",
       aliases=("slic",), display_name="SLiC", arxiv="2305.10425")
_entry("ipo", lambda x, h: ipo_loss(x.margins, h.beta), divergence=True, doc="(Δ − 1/(2β))²",
       display_name="IPO", arxiv="2310.12036", optimum="ipo")
_entry("robust", lambda x, h: robust_loss(x.margins, h.beta, h.label_smoothing),
       label_smoothing=SmoothingRange(0.0, 0.5, high_open=True), divergence=True,
       doc="[−(1−ε) log σ(βΔ) + ε log σ(−βΔ)]/(1 − 2ε)",
       display_name="rDPO", arxiv="2403.00409")
_entry("exo_pair", lambda x, h: exo_pair_loss(x.margins, h.beta, h.label_smoothing),
       label_smoothing=SmoothingRange(0.0, 1.0, high_open=True), divergence=True,
       doc="KL(σ(±βΔ) ‖ (1−ε, ε)); ε = 0 means 1e-3",
       display_name="EXO", arxiv="2402.00856")
_entry("nca_pair", lambda x, h: nca_pair_loss(x.chosen, x.rejected, h.beta),
       doc="−log σ(βρ_w) − ½ log σ(−βρ_w) − ½ log σ(−βρ_l)",
       display_name="NCA (pair)", arxiv="2402.05369")
_entry("bco_pair", lambda x, h: bco_pair_loss(x.chosen, x.rejected, h.beta),
       doc="−log σ(βρ_w) − log σ(−βρ_l)",
       display_name="BCO (pair)", arxiv="2404.04656")
_entry("sppo_hard", lambda x, h: sppo_hard_loss(x.chosen, x.rejected, h.beta),
       doc="(ρ_w − 1/(2β))² + (ρ_l + 1/(2β))²",
       display_name="SPPO (hard)", arxiv="2405.00675")
_entry("aot", lambda x, h: aot_loss(x.policy_margins, x.ref_margins, h.beta, h.label_smoothing),
       label_smoothing=_HALF, batch_coupled=True,
       doc="smoothed logistic of sort(policy margins) − sort(ref margins)",
       display_name="AOT (paired)", arxiv="2406.05882")
_entry("aot_unpaired", lambda x, h: aot_unpaired_loss(x.chosen, x.rejected, h.beta, h.label_smoothing),
       label_smoothing=_HALF, divergence=True, batch_coupled=True,
       doc="smoothed logistic of sort(s_w) − sort(s_l)",
       aliases=("aot_pair",), display_name="AOT (unpaired)", arxiv="2406.05882")
_entry("apo_zero", lambda x, h: apo_zero_loss(x.chosen, x.rejected, h.beta),
       doc="1 − σ(βρ_w) + σ(βρ_l)",
       display_name="APO-zero", arxiv="2408.06266")
_entry("apo_down", lambda x, h: apo_down_loss(x.chosen, x.rejected, h.beta),
       doc="σ(βρ_w) + 1 − σ(β(ρ_w − ρ_l))",
       display_name="APO-down", arxiv="2408.06266")
_entry("discopop", lambda x, h: discopop_loss(x.margins, h.beta, h.discopop_tau), divergence=True,
       doc="(1 − σ(βΔ/τ)) (−log σ(βΔ)) + σ(βΔ/τ) e^{−βΔ}",
       display_name="DiscoPOP", arxiv="2406.08414")
_entry("sigmoid_norm", lambda x, h: sigmoid_loss(x.margins, h.beta), divergence=True,
       length_normalize="always", doc="−log σ(β(s_w/n_w − s_l/n_l))",
       display_name="DPO (length-normalised)")
_entry("sft", lambda x, h: sft_loss(x.policy_chosen_logps, x.chosen_lengths),
       length_normalize="never", requires_chosen_lengths=True, doc="−log π(y_w) / n_w",
       display_name="SFT")

# "aot_pair" (an alias of aot_unpaired above) is TRL's name; see the module docstring.


def register_pairwise(name, fn, *, label_smoothing=None, divergence=False, length_normalize="switch",
                      requires_chosen_lengths=False, batch_coupled=False, overwrite=False):
  """Registers a user objective so that `pairwise_loss(name, ...)` (and combinations) can use it.

  Args:
    name: a new name (or an existing one with `overwrite=True`).
    fn: a `PairwiseObjective`, or a pure function `fn(inputs: PairwiseInputs, hparams: PairwiseHParams)`
      returning `[B]` per-example losses; it must work under jit and vmap.
    label_smoothing: `(low, high)` or `SmoothingRange` of accepted ε, or None if ε is not used.
    divergence: whether the f-divergence switch applies to `fn`'s inputs.
    length_normalize: "switch", "always" or "never" (see `PairwiseObjective`).
    requires_chosen_lengths: whether `chosen_lengths` is always required.
    batch_coupled: whether an example's loss depends on other examples of the batch (e.g. a sort).
    overwrite: replace an existing objective of that name.

  Returns:
    The registered `PairwiseObjective`; it is also declared in the objective index (`spec`, contract
    "pair"), so the bandit trainers, the objective benchmark and the LM trainers accept its name.
  """
  if not isinstance(fn, PairwiseObjective):
    fn = PairwiseObjective(fn, label_smoothing=label_smoothing, divergence=divergence,
                           length_normalize=length_normalize,
                           requires_chosen_lengths=requires_chosen_lengths, batch_coupled=batch_coupled)
  objective = PAIRWISE_REGISTRY.register(name, fn, overwrite=overwrite)
  # The objective index too, so the objective reaches every trainer of the "pair" contract by name.
  _declare(name, objective, overwrite=overwrite, verified="registered at run time (register_pairwise)")
  return objective


def unregister_pairwise(name):
  """Removes a pairwise objective (and its aliases) from the registry and the objective index."""
  objective = PAIRWISE_REGISTRY.unregister(name)
  spec.undeclare(f"pairwise:{name}")
  return objective


def is_batch_coupled(name):
  """Whether objective `name` (or any component of a combination) couples the examples of a batch.

  A name outside the pairwise family is answered from the objective index (`spec`).
  """
  if isinstance(name, str) and name not in PAIRWISE_REGISTRY:
    return spec.get(name).batch_coupled
  return any(objective.batch_coupled for _, objective, _ in _parse_name(name))


def list_objectives():
  """Sorted names of every registered pairwise objective, aliases included."""
  return PAIRWISE_REGISTRY.names()


# ----------------------------------------------------------------------------------------------------
# Validation (one place for every objective) and the public entry points.
# ----------------------------------------------------------------------------------------------------


class PairwiseMetrics(NamedTuple):
  """Logging extras in TRL's sense (docs/theory.md §9); gradients are stopped.

  Attributes:
    rewards_chosen: `[B]` β (log π(y_w) − log π_ref(y_w)), summed log-probs, whatever the switches.
    rewards_rejected: `[B]` β (log π(y_l) − log π_ref(y_l)).
    margins: `[B]` rewards_chosen − rewards_rejected.
    accuracies: `[B]` 1.0 where margins > 0, else 0.0.
  """
  rewards_chosen: jax.Array
  rewards_rejected: jax.Array
  margins: jax.Array
  accuracies: jax.Array


_LOGP_ARGS = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


def _is_traced(x):
  return isinstance(x, jax.core.Tracer)


def _concrete(x):
  """The value of `x` as a numpy array, or None when it is traced (value checks are then skipped)."""
  if _is_traced(x):
    return None
  return np.asarray(x)


def _parse_name(name):
  """`name` → list of (label, PairwiseObjective, weight): a registered name or a weighted combination."""
  if isinstance(name, str):
    return [(name, PAIRWISE_REGISTRY.get(name), None)]
  if isinstance(name, Mapping):
    pairs = list(name.items())
  elif isinstance(name, Sequence):
    pairs = list(name)
    for pair in pairs:
      if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise PrefjaxError(
            f"combination of objectives: each entry must be a (name, weight) pair, got {pair!r}")
  else:
    raise PrefjaxError(
        "name must be an objective name (str), a dict {name: weight} or a sequence of (name, weight) "
        f"pairs, got {type(name).__name__}")
  if not pairs:
    raise PrefjaxError("combination of objectives is empty: give at least one (name, weight)")
  components, seen = [], set()
  for sub_name, weight in pairs:
    if not isinstance(sub_name, str):
      raise PrefjaxError(f"combination of objectives: names must be strings, got {sub_name!r}")
    if sub_name in seen:
      raise PrefjaxError(f"combination of objectives: {sub_name!r} appears twice")
    seen.add(sub_name)
    objective = PAIRWISE_REGISTRY.get(sub_name)
    if isinstance(weight, (bool, np.bool_)) or not (
        isinstance(weight, numbers.Real) or (hasattr(weight, "shape") and jnp.shape(weight) == ())):
      raise PrefjaxError(
          f"combination of objectives: weight of {sub_name!r} must be a real scalar, got {weight!r}")
    value = _concrete(weight)
    if value is not None and not (np.isfinite(value) and value >= 0):
      raise PrefjaxError(
          f"combination of objectives: weight of {sub_name!r} must be finite and >= 0, got {weight!r}")
    components.append((sub_name, objective, weight))
  return components


def _as_batch(x, arg):
  x = jnp.asarray(x)
  if x.ndim != 1:
    raise PrefjaxError(f"{arg} must be a 1-D array [B], got shape {x.shape}")
  return x


def _check_scalar(x, arg):
  if jnp.ndim(x) != 0:
    raise PrefjaxError(f"{arg} must be a scalar, got shape {jnp.shape(x)}")
  return _concrete(x)


def _validate(components, logps, chosen_lengths, rejected_lengths, *, beta, label_smoothing,
              length_normalize, divergence, alpha, discopop_tau):
  """Checks shapes (always) and values (when concrete); returns (logps, chosen_lengths, rejected_lengths)."""
  arrays = [_as_batch(x, arg) for x, arg in zip(logps, _LOGP_ARGS)]
  batch_shape = arrays[0].shape
  for x, arg in zip(arrays[1:], _LOGP_ARGS[1:]):
    if x.shape != batch_shape:
      raise PrefjaxError(
          f"{arg} has shape {x.shape} but {_LOGP_ARGS[0]} has shape {batch_shape}: all must be [B]")
  if batch_shape[0] == 0:
    raise PrefjaxError("empty batch: the log-prob arrays have B = 0 examples")
  dtype = jnp.result_type(*arrays, float)
  arrays = [x.astype(dtype) for x in arrays]

  lengths = []
  for x, arg in ((chosen_lengths, "chosen_lengths"), (rejected_lengths, "rejected_lengths")):
    if x is not None:
      x = _as_batch(x, arg)
      if x.shape != batch_shape:
        raise PrefjaxError(
            f"{arg} has shape {x.shape} but {_LOGP_ARGS[0]} has shape {batch_shape}: all must be [B]")
      value = _concrete(x)
      if value is not None and not np.all(value > 0):
        raise PrefjaxError(f"{arg} must be > 0 (token counts of non-empty responses), got {value}")
      x = x.astype(dtype)
    lengths.append(x)

  if not isinstance(length_normalize, (bool, np.bool_)):
    raise PrefjaxError(f"length_normalize must be True or False, got {length_normalize!r}")
  divergences.DIVERGENCES.get(divergence)

  beta_value = _check_scalar(beta, "beta")
  if beta_value is not None and not (np.isfinite(beta_value) and beta_value > 0):
    raise PrefjaxError(f"beta must be finite and > 0, got {beta_value}")
  eps_value = _check_scalar(label_smoothing, "label_smoothing")
  alpha_value = _check_scalar(alpha, "alpha")
  if divergence == "alpha" and alpha_value is not None and not np.isfinite(alpha_value):
    raise PrefjaxError(f"alpha must be finite, got {alpha_value}")

  names = [label for label, _, _ in components]
  described = repr(names[0]) if len(names) == 1 else f"any of {names}"
  smoothing_users = [(label, obj) for label, obj, _ in components if obj.label_smoothing is not None]
  if eps_value is not None:
    if not smoothing_users and eps_value != 0:
      raise PrefjaxError(f"label_smoothing is not used by {described}; got {eps_value}, expected 0")
    for label, obj in smoothing_users:
      if not (np.isfinite(eps_value) and obj.label_smoothing.contains(eps_value)):
        raise PrefjaxError(
            f"label_smoothing must lie in {obj.label_smoothing} for {label!r}, got {eps_value}")
  if divergence != "reverse_kl" and not any(obj.divergence for _, obj, _ in components):
    raise PrefjaxError(f"divergence={divergence!r} is not used by {described}; use 'reverse_kl'")

  tau_value = _check_scalar(discopop_tau, "discopop_tau")
  if tau_value is not None and not (np.isfinite(tau_value) and tau_value > 0):
    raise PrefjaxError(f"discopop_tau must be finite and > 0, got {tau_value}")
  for label, obj, _ in components:
    normalizes = obj.length_normalize == "always" or (
        obj.length_normalize == "switch" and length_normalize)
    if normalizes and (lengths[0] is None or lengths[1] is None):
      why = "length_normalize=True" if obj.length_normalize == "switch" else "it always length-normalises"
      raise PrefjaxError(
          f"{label!r} needs chosen_lengths and rejected_lengths ({why}); got "
          f"chosen_lengths={'None' if lengths[0] is None else 'given'}, "
          f"rejected_lengths={'None' if lengths[1] is None else 'given'}")
    if obj.requires_chosen_lengths and lengths[0] is None:
      raise PrefjaxError(f"{label!r} needs chosen_lengths (token counts of the chosen responses)")
  return arrays, lengths[0], lengths[1]


def _inputs(objective, logps, chosen_lengths, rejected_lengths, *, length_normalize, divergence, alpha):
  """The transformed inputs one objective reads (its own switches: see `PairwiseObjective`)."""
  policy_w, policy_l, ref_w, ref_l = logps
  if not objective.divergence:
    divergence = "reverse_kl"
  normalize = objective.length_normalize == "always" or (
      objective.length_normalize == "switch" and length_normalize)
  chosen = divergences.divergence_score(divergence, policy_w - ref_w, alpha=alpha)
  rejected = divergences.divergence_score(divergence, policy_l - ref_l, alpha=alpha)
  if normalize:
    chosen = chosen / chosen_lengths
    rejected = rejected / rejected_lengths
    policy_margins = policy_w / chosen_lengths - policy_l / rejected_lengths
    ref_margins = ref_w / chosen_lengths - ref_l / rejected_lengths
  else:
    policy_margins = policy_w - policy_l
    ref_margins = ref_w - ref_l
  return PairwiseInputs(chosen, rejected, policy_margins, ref_margins, policy_w, chosen_lengths)


def pairwise_loss_and_metrics(name, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                              ref_rejected_logps, *, beta, label_smoothing=0.0, chosen_lengths=None,
                              rejected_lengths=None, length_normalize=False, divergence="reverse_kl",
                              alpha=0.5, discopop_tau=0.05, check_finite=False):
  """Per-example pairwise losses and TRL-style reward metrics; see `pairwise_loss` for the arguments.

  Returns:
    `(losses [B], PairwiseMetrics)`.
  """
  components = _parse_name(name)
  logps, chosen_lengths, rejected_lengths = _validate(
      components, (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps),
      chosen_lengths, rejected_lengths, beta=beta, label_smoothing=label_smoothing,
      length_normalize=length_normalize, divergence=divergence, alpha=alpha, discopop_tau=discopop_tau)
  if check_finite:
    _checks.check_finite(f"pairwise objective {name!r}" if isinstance(name, str) else "pairwise objective",
                         True, {**dict(zip(_LOGP_ARGS, logps)), "chosen_lengths": chosen_lengths,
                                "rejected_lengths": rejected_lengths})
  dtype = logps[0].dtype
  hparams = PairwiseHParams(beta=jnp.asarray(beta, dtype),
                            label_smoothing=jnp.asarray(label_smoothing, dtype),
                            discopop_tau=jnp.asarray(discopop_tau, dtype))
  losses = None
  for _, objective, weight in components:
    term = objective(
        _inputs(objective, logps, chosen_lengths, rejected_lengths, length_normalize=length_normalize,
                divergence=divergence, alpha=jnp.asarray(alpha, dtype)),
        hparams)
    if weight is not None:
      term = weight * term
    losses = term if losses is None else losses + term
  losses = losses.astype(dtype)

  return losses, reward_metrics(*logps, hparams.beta)


def reward_metrics(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
  """TRL's reward metrics of a batch of pairs (`PairwiseMetrics`, gradients stopped), whatever the objective."""
  policy_w, policy_l, ref_w, ref_l = (jax.lax.stop_gradient(x) for x in (
      policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
  beta_sg = jax.lax.stop_gradient(jnp.asarray(beta, policy_w.dtype))
  rewards_chosen = beta_sg * (policy_w - ref_w)
  rewards_rejected = beta_sg * (policy_l - ref_l)
  margins = rewards_chosen - rewards_rejected
  return PairwiseMetrics(rewards_chosen, rewards_rejected, margins, (margins > 0).astype(policy_w.dtype))


def pairwise_loss(name, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                  *, beta, label_smoothing=0.0, chosen_lengths=None, rejected_lengths=None,
                  length_normalize=False, divergence="reverse_kl", alpha=0.5, discopop_tau=0.05,
                  check_finite=False):
  """Per-example losses of a registered pairwise objective (or a weighted combination of them).

  The batch loss is `losses.mean()`. Works under `jit` and `vmap` (β, ε, α may be traced scalars, so
  hyper-parameter sweeps vmap over them); shape checks are static and always run, value checks only when the
  values are concrete.

  Args:
    name: a registered name (see `list_objectives()`), or a combination: a dict `{name: weight}` or a
      sequence of `(name, weight)` pairs, giving Σ_k weight_k · loss_k per example. In a combination ε and
      the divergence must be read by at least one component; the others ignore them.
    policy_chosen_logps: `[B]` summed log π(y_w) (bandit: log π(y_w)).
    policy_rejected_logps: `[B]` summed log π(y_l).
    ref_chosen_logps: `[B]` summed log π_ref(y_w).
    ref_rejected_logps: `[B]` summed log π_ref(y_l).
    beta: scalar β > 0 (τ for IPO); Python float or jax scalar, may be traced.
    label_smoothing: scalar ε; accepted ranges: sigmoid/cdpo [0, ½], robust [0, ½), exo_pair [0, 1)
      (0 means 1e-3, as in TRL), aot/aot_unpaired [0, ½]; must be 0 for the other objectives.
    chosen_lengths: `[B]` token counts n_w > 0; needed by length normalisation, sigmoid_norm and sft.
    rejected_lengths: `[B]` token counts n_l > 0; needed by length normalisation and sigmoid_norm.
    length_normalize: use s_w/n_w − s_l/n_l in place of Δ (ρ/n for the separate-score objectives).
    divergence: f-divergence score transform: reverse_kl (default), forward_kl, js or alpha (2309.16240).
    alpha: α of the α-divergence, s = (1 − e^{−αρ})/α (α → 0 reverse KL, α = 1 forward KL).
    discopop_tau: DiscoPOP's modulation temperature τ > 0.
    check_finite: opt-in check that the log-probs and lengths hold no NaN / ±inf (default off: nothing is
      added to the computation). Eager: `PrefjaxError` naming the argument and the first bad index; under
      `jit`: a `checkify` check, reported when the function runs under `checkify.checkify` (see
      docs/objectives_checks.md).

  Returns:
    `[B]` per-example losses (for AOT, the per-order-statistic terms in sorted order).

  Raises:
    PrefjaxError: unknown names, malformed combinations, β ≤ 0, ε out of range (or set for an objective that
      does not use it), missing lengths, shapes that are not matching 1-D `[B]`, unknown divergence; with
      `check_finite=True`, a NaN / ±inf input.
  """
  losses, _ = pairwise_loss_and_metrics(
      name, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
      beta=beta, label_smoothing=label_smoothing, chosen_lengths=chosen_lengths,
      rejected_lengths=rejected_lengths, length_normalize=length_normalize, divergence=divergence,
      alpha=alpha, discopop_tau=discopop_tau, check_finite=check_finite)
  return losses

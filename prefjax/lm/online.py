r"""Online and self-play preference training of a transformer: online DPO/IPO, Nash-MD(-PG), EGPO, SPPO, SPIN.

The sequence-level twins of the tabular Nash/self-play objectives of `prefjax.objectives.nash` (docs/theory.md §4),
with sequences as actions: per prompt x the trainer samples responses from the policy (or the Nash-MD
mixture, the previous iterate, the SFT data), asks a preference oracle (`prefjax.lm.oracles`:
`prefer(prompts, a, b) -> P(a ≻ b | x)`) and takes one optimiser step on the loss below. Everything of one
update — sampling with the KV cache (`prefjax.lm.sampling.generate`), the oracle, the differentiable
forward passes, the loss and the optimiser — is one jitted function.

Notation (summed log-probs over the response tokens, `prefjax.lm.logprobs.policy_logps`):
ℓ(y) = log π_θ(y|x) − log π_ref(y|x), h(y, y') = ℓ(y) − ℓ(y'), p = P(y ≻ y' | x) from the oracle (or a
Bernoulli(p) label with `labels="bernoulli"`), sg = stop-gradient, π_t = the previous iterate.

| algorithm   | samples per prompt                      | per-prompt loss                                      | tabular twin |
|-------------|-----------------------------------------|------------------------------------------------------|--------------|
| online_dpo  | y, y' ∼ sg(π_θ)                          | p·σ-loss(y ≻ y') + (1 − p)·σ-loss(y' ≻ y)             | 2 × `games.experiments.online_dpo_loss` |
| online_ipo  | y, y' ∼ sg(π_θ)                          | (h(y, y') − (p − ½)/β)²                               | `nash.online_ipo_2_loss` |
| nash_md     | y, y' ∼ π^μ (token-level mixture)        | (h(y, y') − (p − ½)/β)²  (IPO-MD)                     | the same with π^μ weights |
| nash_md_pg  | y ∼ π_θ, y' ∼ π^μ                        | −[p − ½ − β ℓ(y)]_sg log π_θ(y)                       | `nash.nash_md_pg_loss` |
| egpo        | y, y' ∼ π_t, then fresh y, y' ∼ π_{t+½}  | online IPO's, both gradients at θ_t                   | `nash.egpo_step` |
| sppo        | y_1..y_K ∼ π_t                           | ½ (1/K) Σ_i (ℓ_t(y_i) − (P̂_i − ½)/β)²                 | `nash.sppo_loss(num_samples_k=K)` |
| spin        | y ∼ μ (data), y' ∼ q_t                   | −log σ(λ(ℓ_m(y) − ℓ_m(y'))), m = π_t                  | `nash.spin_loss` |
| alpha_spin  | y ∼ μ, y' ∼ q_t                          | the same with m ∝ π_ref^α π_t^{1−α}                   | `nash.spin_loss(alpha=α)` |

The twins hold exactly in expectation when the response is one token (the sequence is an action; tested),
with these conventions:
- Online DPO (Guo et al. arXiv:2402.04792; Calandriello et al. arXiv:2403.08635 App. F): the label picks
  chosen/rejected for `prefjax.objectives`' "sigmoid" loss; with probabilities the loss is the label's
  expectation, whose mean over y, y' ∼ π is twice the tabular `online_dpo_loss` (which counts each ordered
  pair once).
- Online IPO (Calandriello et al. arXiv:2403.08635, their online IPO; EGPO's "online IPO 2"): stationary
  exactly at the β-regularised Nash equilibrium.
- Nash-MD (Munos et al. arXiv:2312.00886) in its IPO-MD form (Calandriello et al. arXiv:2403.08635 §5):
  BOTH responses from the token-level geometric mixture log π^μ ∝ (1 − α) log π_θ + α log π_ref,
  α = `mixture_weight` (= ηβ). (The brief's "y ∼ π, y' ∼ π^μ" with the symmetric IPO regression has
  no Nash-related stationary point — its gradient mixes the targets Pπ and Pπ^μ with weights π and π^μ — so
  the paper's form is used; the REINFORCE form below is the one with y ∼ π, y' ∼ π^μ.) On sequences the
  token-level mixture is not the sequence-level geometric mixture (Nash-MD's own practical choice).
- Nash-MD-PG: REINFORCE on E_{y∼π, y'∼π^μ}[p(y ≻ y')] − β KL(π ‖ π_ref) with the baseline ½ (zero mean
  under y ∼ π, so the expected gradient is `nash_md_pg_loss`'s) and the KL's score-function term
  β ℓ(y) ∇ log π(y) (the `−β ℓ` inside docs/theory.md §4's bracket).
- EGPO (Zhou et al. arXiv:2503.08942, Alg. 1): θ_{t+½} = θ_t − lr ∇L(θ_t; samples of π_t),
  θ_{t+1} = θ_t − lr ∇L(θ_t; FRESH samples of π_{t+½}), L online IPO's loss on the samples (the practical
  LM form of their online-IPO target: the sampler is the target policy), "θ − lr g" the configured optax
  optimiser applied from the same optimiser state for both half steps (as `nash.egpo_step`).
- SPPO (Wu et al. arXiv:2405.00675, eq. (4.5); official code uclaml/SPPO): soft win rates P̂_i =
  (1/K)(½ + Σ_{j≠i} p(y_i ≻ y_j)) among the K samples (self included), ℓ_t relative to the previous
  iterate; the "all samples" loss (the unbiased twin), not the official best/worst selection.
  π_t ← π_θ every `iteration_steps` steps.
- SPIN (Chen et al. arXiv:2401.01335) and α-SPIN (Alami et al. arXiv:2404.04291): "sigmoid" with the anchor
  log m = (1 − α) log π_t + α log π_ref as the "reference" (the normaliser of m cancels in the margin);
  data responses come from `data_fn` (the synthetic task's SFT distribution μ exactly), π_t ← π_θ every
  `iteration_steps` steps. The opponent q_t that generates y' is π_t (`spin_history` = 1, SPIN), or with
  `spin_history` = h > 1 the fictitious-play mixture (1/h) Σ_{k<h} π_{t−k} of the last h iterates (Alami et
  al.; iterates before π_0 count as π_0): each rejected response comes from one iterate drawn uniformly
  (`sampling.generate_from_iterates`), the tabular twin being `games.dynamics`' "spin" with history h
  (whose docstring records why the weights are uniform). `prev_params` then stacks the h iterates on a
  leading axis, π_t first.

State and bookkeeping are those of the offline trainer (`prefjax.lm.train`, docs/design.md §3): the state pytree
`OnlineState{params, opt_state, step, key, prev_params}` (`prev_params` None for algorithms without a
previous iterate), AdamW with the same schedules (`loop.make_optimizer`), orbax checkpoints
(`prefjax.checkpoint.Checkpointer`) with auto-resume and a save on SIGTERM/SIGINT (`prefjax.preemption`), per-step keys
`fold_in(key, step)`, prompts sharded over the mesh's data × fsdp axes. Bad values stop training with a
clear error and the last good state checkpointed: an oracle probability outside [0, 1] or NaN
(`oracles.check_probabilities`), a response with zero real tokens (`SamplingConfig.min_new_tokens = 0` with
EOS), a non-finite loss or gradient (`train.NonFiniteError`).

Metrics (metrics.jsonl): loss, kl (sampled E[log π_θ − log π_ref] over the first response set: KL(π_θ ‖ π_ref)
when that set is drawn from π_θ), win_rate/opponent (mean oracle p(first ≻ second) of the sampled pairs:
π_θ against the mixture, data against π_t, …), response_length, grad_norm, learning_rate,
generated_tokens_per_second, train_tokens_per_second, step_seconds, and eval/* from `eval_fn`.
"""

import dataclasses
import math
import os
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from prefjax import jit_utils
from prefjax.objectives import sequence
from prefjax import sharding as shd
from prefjax.errors import PrefjaxError
from prefjax.lm import data
from prefjax.lm import logprobs
from prefjax.lm import loop
from prefjax.lm import model as lm_model
from prefjax.lm import sampling
from prefjax.lm import train as lm_train
from prefjax.workdir import Workdir

sg = jax.lax.stop_gradient
PROMPT_KEYS = data.PROMPT_KEYS
LABELS = ("probabilities", "bernoulli")
NonFiniteError = lm_train.NonFiniteError


# The per-prompt losses on sequence log-probs live with the objectives (`prefjax.objectives.sequence`).
online_dpo_losses = sequence.online_dpo_losses
online_ipo_losses = sequence.online_ipo_losses
nash_md_pg_losses = sequence.nash_md_pg_losses
soft_win_rates = sequence.soft_win_rates
sppo_losses = sequence.sppo_losses
spin_losses = sequence.spin_losses


# ------------------------------------------------------------------------------------------------
# Configuration.
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OnlineConfig(loop.OptimConfig):
  """Hyper-parameters of online / self-play training.

  Attributes:
    algorithm: one of `ALGORITHMS` (see the module docstring).
    beta: β > 0 (KL strength; SPPO's 1/η).
    mixture_weight: Nash-MD's token-level mixture weight α = ηβ ∈ [0, 1] (nash_md, nash_md_pg).
    pg_baseline: Nash-MD-PG's baseline (½).
    num_samples: K ≥ 2 responses per prompt for SPPO's soft win rates.
    spin_lambda: SPIN's λ > 0.
    spin_alpha: α-SPIN's α ∈ [0, 1] (anchor ∝ π_ref^α π_t^{1−α}).
    spin_history: h ≥ 1, SPIN / α-SPIN only: the rejected responses come from an iterate drawn uniformly
      among the last h (π_t, π_{t−1}, …; fictitious play, Alami et al. arXiv:2404.04291). 1 is SPIN's
      previous iterate. The state keeps h copies of the parameters and sampling costs h generations.
    iteration_steps: steps per SPPO/SPIN iteration (π_t ← π_θ after every this many steps).
    labels: "probabilities" (the oracle's P(a ≻ b)) or "bernoulli" (a sampled 0/1 label).
    max_new_tokens, temperature, top_k, top_p, eos_id, pad_id, min_new_tokens: `sampling.SamplingConfig`.
    batch_size: prompts per optimiser step.
    num_steps, learning_rate, schedule, warmup_steps, min_lr_ratio, grad_clip, weight_decay, b1, b2, eps,
      log_every, eval_every, checkpoint_every, keep_checkpoints, seed: `prefjax.lm.loop.OptimConfig`'s (the
      optimiser, shared with the offline trainer; the seed also orders the prompts), with one other default:
      schedule = "constant".
  """
  algorithm: str = "online_ipo"
  beta: float = 0.1
  mixture_weight: float = 0.1
  pg_baseline: float = 0.5
  num_samples: int = 4
  spin_lambda: float = 1.0
  spin_alpha: float = 0.5
  spin_history: int = 1
  iteration_steps: int = 50
  labels: str = "probabilities"
  max_new_tokens: int = 16
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  eos_id: Optional[int] = None
  pad_id: int = 0
  min_new_tokens: int = 1
  batch_size: int = 8
  schedule: str = "constant"

  def __post_init__(self):
    if self.algorithm not in ALGORITHMS:
      raise PrefjaxError(f"OnlineConfig.algorithm: unknown {self.algorithm!r}; known: {sorted(ALGORITHMS)}")
    for name in ("batch_size", "iteration_steps", "max_new_tokens", "spin_history"):
      v = getattr(self, name)
      if not isinstance(v, (int, np.integer)) or v < 1:
        raise PrefjaxError(f"OnlineConfig.{name} must be a positive integer, got {v!r}")
    if not isinstance(self.min_new_tokens, (int, np.integer)) or self.min_new_tokens < 0:
      raise PrefjaxError(f"OnlineConfig.min_new_tokens must be an integer >= 0, got {self.min_new_tokens!r}")
    super().__post_init__()
    if not isinstance(self.num_samples, (int, np.integer)) or self.num_samples < 2:
      raise PrefjaxError(f"OnlineConfig.num_samples must be an integer >= 2, got {self.num_samples!r}")
    for name in ("beta", "spin_lambda"):
      v = getattr(self, name)
      if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise PrefjaxError(f"OnlineConfig.{name} must be finite and > 0, got {v!r}")
    for name in ("mixture_weight", "spin_alpha"):
      v = getattr(self, name)
      if not 0.0 <= v <= 1.0:
        raise PrefjaxError(f"OnlineConfig.{name} must be in [0, 1], got {v!r}")
    if self.spin_history > 1 and self.algorithm not in ("spin", "alpha_spin"):
      raise PrefjaxError(f"OnlineConfig.spin_history={self.spin_history} applies to spin / alpha_spin only, "
                         f"not algorithm={self.algorithm!r}")
    if self.labels not in LABELS:
      raise PrefjaxError(f"OnlineConfig.labels must be one of {LABELS}, got {self.labels!r}")
    self.sampling_config()  # validates the sampling fields

  def sampling_config(self):
    """The `sampling.SamplingConfig` of the policy's generations."""
    return sampling.SamplingConfig(
        max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_k=self.top_k,
        top_p=self.top_p, eos_id=self.eos_id, pad_id=self.pad_id, min_new_tokens=self.min_new_tokens)

  @property
  def uses_prev(self):
    return ALGORITHMS[self.algorithm].uses_prev

  @property
  def stacks_prev(self):
    """`prev_params` holds the last `spin_history` iterates on a leading axis (SPIN with history > 1)."""
    return self.uses_prev and self.spin_history > 1


class OnlineState(NamedTuple):
  """The checkpointed training pytree (docs/design.md §3)."""
  params: Any
  opt_state: Any
  step: jax.Array  # int32 scalar: optimiser steps taken
  key: jax.Array  # typed PRNG key; step t uses fold_in(key, t)
  prev_params: Any  # π_t for SPPO / SPIN; [h, ...] iterates (π_t first) with spin_history h > 1; else None


# ------------------------------------------------------------------------------------------------
# The algorithms: `sample(ctx, params, prev, ref, prompts, key) -> Samples` and
# `loss(ctx, params, ref, samples) -> ([B] losses, metrics)`.
# ------------------------------------------------------------------------------------------------


class Samples(NamedTuple):
  """One update's sampled data (all detached): sequences for the forward passes, oracle outputs, checks."""
  seqs: dict  # name -> {"tokens_BxL", "attention_mask_BxL", "loss_mask_BxL"} (several responses stacked)
  pref: jax.Array  # what the loss regresses on (probabilities or labels), algorithm-specific shape
  p: jax.Array  # the oracle's raw probabilities (checked on the host), flat
  lengths: jax.Array  # every response's number of real tokens before EOS (`content_lengths`), flat
  win_rate: jax.Array  # [] mean p(first ≻ second)


@dataclasses.dataclass(frozen=True)
class _Ctx:
  model_config: Any
  cfg: OnlineConfig
  oracle: Any
  data_fn: Optional[Callable]
  loss_apply_fn: Optional[Callable] = None

  @property
  def apply_fn(self):
    return self.loss_apply_fn or lm_model.Transformer(self.model_config).apply

  def generate(self, params, prompts, key, n=1, ref_params=None, mixture_weight=0.0):
    """n responses per prompt from π (or the mixture): (Generation over [n·B], seqs), n-major."""
    tok, mask = (jnp.tile(prompts[k], (n, 1)) for k in PROMPT_KEYS)
    gen = sampling.generate(self.model_config, params, tok, mask, key, self.cfg.sampling_config(),
                            ref_params=ref_params, mixture_weight=mixture_weight)
    return gen, sampling.sequences(tok, mask, gen)

  def logps(self, params, seqs):
    """Summed log-probs `[rows]` of `params` on stacked sequences (one forward pass).

    Every sequence is a prompt then at most `max_new_tokens` response tokens (`sampling.sequences`), so
    with the transformer the output head runs only at the `max_new_tokens` positions that predict them
    (`policy_logps(window=)`: the same log-probs up to float32 rounding, without the prompt's share of
    the vocabulary-sized head). A custom `loss_apply_fn` gets the full sequence.
    """
    window = None if self.loss_apply_fn is not None else self.cfg.max_new_tokens
    return logprobs.policy_logps(self.apply_fn, params, seqs["tokens_BxL"], seqs["loss_mask_BxL"],
                                 seqs["attention_mask_BxL"], window=window).logps

  def prefer(self, prompts, tok_a, mask_a, tok_b, mask_b):
    return self.oracle.prefer(prompts["prompt_tokens_BxP"], prompts["prompt_mask_BxP"], tok_a, mask_a,
                              tok_b, mask_b)

  def lengths(self, tokens_BxT, mask_BxT):
    return content_lengths(tokens_BxT, mask_BxT, self.cfg.eos_id)

  def label(self, key, p):
    if self.cfg.labels == "probabilities":
      return p
    return jax.random.bernoulli(key, jnp.clip(p, 0.0, 1.0)).astype(p.dtype)


def content_lengths(tokens_BxT, mask_BxT, eos_id):
  """Real tokens of each response, EOS excluded (`[B]` int32): 0 means an empty response (EOS first)."""
  lengths = jnp.sum(mask_BxT, axis=1, dtype=jnp.int32)
  if eos_id is None:
    return lengths
  last = jnp.take_along_axis(tokens_BxT, jnp.maximum(lengths - 1, 0)[:, None], axis=1)[:, 0]
  return lengths - ((lengths > 0) & (last == eos_id)).astype(jnp.int32)


def _split_pair(gen, b):
  return (gen.tokens_BxT[:b], gen.mask_BxT[:b]), (gen.tokens_BxT[b:], gen.mask_BxT[b:])


def _pair_samples(ctx, prompts, key, gen, seqs):
  b = prompts["prompt_tokens_BxP"].shape[0]
  (ta, ma), (tb, mb) = _split_pair(gen, b)
  p = ctx.prefer(prompts, ta, ma, tb, mb)
  return Samples({"pair": seqs}, ctx.label(key, p), p, ctx.lengths(gen.tokens_BxT, gen.mask_BxT), jnp.mean(p))


def _sample_policy_pair(ctx, params, prev, ref, prompts, key):
  del prev, ref
  k_gen, k_label = jax.random.split(key)
  gen, seqs = ctx.generate(params, prompts, k_gen, n=2)
  return _pair_samples(ctx, prompts, k_label, gen, seqs)


def _sample_mixture_pair(ctx, params, prev, ref, prompts, key):
  del prev
  k_gen, k_label = jax.random.split(key)
  gen, seqs = ctx.generate(params, prompts, k_gen, n=2, ref_params=ref,
                           mixture_weight=ctx.cfg.mixture_weight)
  return _pair_samples(ctx, prompts, k_label, gen, seqs)


def _pair_logps(ctx, params, ref, samples):
  seqs = samples.seqs["pair"]
  b = samples.pref.shape[0]
  pol = ctx.logps(params, seqs)
  rf = sg(ctx.logps(ref, seqs))
  return pol[:b], pol[b:], rf[:b], rf[b:]


def _kl_metric(pol_B, ref_B):
  return jnp.mean(sg(pol_B - ref_B))


def _loss_dpo(ctx, params, ref, samples):
  pa, pb, ra, rb = _pair_logps(ctx, params, ref, samples)
  return online_dpo_losses(pa, pb, ra, rb, samples.pref, ctx.cfg.beta), {"kl": _kl_metric(pa, ra)}


def _loss_ipo(ctx, params, ref, samples):
  pa, pb, ra, rb = _pair_logps(ctx, params, ref, samples)
  return online_ipo_losses(pa, pb, ra, rb, samples.pref, ctx.cfg.beta), {"kl": _kl_metric(pa, ra)}


def _sample_pg(ctx, params, prev, ref, prompts, key):
  del prev
  k_a, k_b, k_label = jax.random.split(key, 3)
  gen_a, seqs_a = ctx.generate(params, prompts, k_a)
  gen_b, _ = ctx.generate(params, prompts, k_b, ref_params=ref, mixture_weight=ctx.cfg.mixture_weight)
  p = ctx.prefer(prompts, gen_a.tokens_BxT, gen_a.mask_BxT, gen_b.tokens_BxT, gen_b.mask_BxT)
  return Samples({"a": seqs_a}, ctx.label(k_label, p), p,
                 jnp.concatenate([ctx.lengths(gen_a.tokens_BxT, gen_a.mask_BxT),
                                  ctx.lengths(gen_b.tokens_BxT, gen_b.mask_BxT)]), jnp.mean(p))


def _loss_pg(ctx, params, ref, samples):
  pa = ctx.logps(params, samples.seqs["a"])
  ra = sg(ctx.logps(ref, samples.seqs["a"]))
  return nash_md_pg_losses(pa, ra, samples.pref, ctx.cfg.beta, ctx.cfg.pg_baseline), {"kl": _kl_metric(pa, ra)}


def _sample_sppo(ctx, params, prev, ref, prompts, key):
  del params, ref
  k = ctx.cfg.num_samples
  b = prompts["prompt_tokens_BxP"].shape[0]
  k_gen, k_label = jax.random.split(key)
  gen, seqs = ctx.generate(prev, prompts, k_gen, n=k)
  tok = gen.tokens_BxT.reshape((k, b) + gen.tokens_BxT.shape[1:])
  mask = gen.mask_BxT.reshape(tok.shape)
  ii, jj = np.triu_indices(k, 1)  # the K(K−1)/2 unordered pairs; p(j ≻ i) = 1 − p(i ≻ j)
  rep = lambda x: jnp.tile(x, (len(ii),) + (1,) * (x.ndim - 1))
  p = ctx.oracle.prefer(rep(prompts["prompt_tokens_BxP"]), rep(prompts["prompt_mask_BxP"]),
                        tok[ii].reshape((-1,) + tok.shape[2:]), mask[ii].reshape((-1,) + tok.shape[2:]),
                        tok[jj].reshape((-1,) + tok.shape[2:]), mask[jj].reshape((-1,) + tok.shape[2:]))
  lab = ctx.label(k_label, p).reshape(len(ii), b)
  pref = jnp.full((b, k, k), 0.5, p.dtype)
  pref = pref.at[:, ii, jj].set(lab.T).at[:, jj, ii].set(1.0 - lab.T)
  return Samples({"k": seqs}, pref, p, ctx.lengths(gen.tokens_BxT, gen.mask_BxT), jnp.mean(p))


def _loss_sppo(ctx, params, prev, samples):
  k = ctx.cfg.num_samples
  b = samples.pref.shape[0]
  pol = ctx.logps(params, samples.seqs["k"]).reshape(k, b).T
  pv = sg(ctx.logps(prev, samples.seqs["k"])).reshape(k, b).T
  return sppo_losses(pol, pv, samples.pref, ctx.cfg.beta), {"kl": _kl_metric(pol, pv)}


def _sample_spin(ctx, params, prev, ref, prompts, key):
  del params, ref
  if ctx.data_fn is None:
    raise PrefjaxError(f"algorithm {ctx.cfg.algorithm!r} needs data_fn (the SFT data's responses)")
  k_data, k_opp = jax.random.split(key)
  data_tok, data_mask = ctx.data_fn(k_data, prompts["prompt_tokens_BxP"], prompts["prompt_mask_BxP"])
  if ctx.cfg.stacks_prev:  # fictitious play: each row's opponent is one of the last h iterates, uniformly
    h = ctx.cfg.spin_history
    gen, _ = sampling.generate_from_iterates(
        ctx.model_config, prev, jnp.ones((h,), jnp.float32), prompts["prompt_tokens_BxP"],
        prompts["prompt_mask_BxP"], k_opp, ctx.cfg.sampling_config())
  else:
    gen, _ = ctx.generate(prev, prompts, k_opp)
  data_tok, data_mask = jnp.asarray(data_tok, jnp.int32), jnp.asarray(data_mask, jnp.int32)
  if data_tok.shape != gen.tokens_BxT.shape:
    raise PrefjaxError(f"data_fn returned responses of shape {data_tok.shape}; expected "
                       f"{gen.tokens_BxT.shape} (batch, max_new_tokens)")
  p = ctx.prefer(prompts, data_tok, data_mask, gen.tokens_BxT, gen.mask_BxT)
  data = sampling.Generation(data_tok, data_mask, jnp.sum(data_mask, 1, dtype=jnp.int32),
                             jnp.zeros(data_tok.shape, jnp.float32), jnp.zeros(data_tok.shape, jnp.float32),
                             None)
  tok = jnp.concatenate([prompts["prompt_tokens_BxP"]] * 2)
  msk = jnp.concatenate([prompts["prompt_mask_BxP"]] * 2)
  both = sampling.Generation(*(jnp.concatenate([x, y]) for x, y in zip(data[:5], gen[:5])), None)
  return Samples({"pair": sampling.sequences(tok, msk, both)}, p, p,
                 ctx.lengths(both.tokens_BxT, both.mask_BxT), jnp.mean(p))


def _loss_spin(ctx, params, ref, prev, samples):
  b = samples.pref.shape[0]
  seqs = samples.seqs["pair"]
  pol = ctx.logps(params, seqs)
  alpha = ctx.cfg.spin_alpha if ctx.cfg.algorithm == "alpha_spin" else 0.0
  if ctx.cfg.stacks_prev:
    prev = jax.tree.map(lambda x: x[0], prev)  # π_t, the newest iterate
  anchor = sg(ctx.logps(prev, seqs))
  if alpha:
    anchor = (1.0 - alpha) * anchor + alpha * sg(ctx.logps(ref, seqs))
  return (spin_losses(pol[:b], pol[b:], anchor[:b], anchor[b:], ctx.cfg.spin_lambda),
          {"kl": _kl_metric(pol[b:], anchor[b:])})


class Algorithm(NamedTuple):
  """A registered online algorithm.

  Attributes:
    sample: `(ctx, params, prev_params, ref_params, prompts, key) -> Samples`.
    loss: `(ctx, params, ref_params, prev_params, samples) -> ([B] losses, metrics)`.
    uses_prev: keeps a previous iterate π_t in the state (SPPO, SPIN).
    extragradient: EGPO's two half steps.
  """
  sample: Callable
  loss: Callable
  uses_prev: bool = False
  extragradient: bool = False


def _no_prev(fn):
  return lambda ctx, params, ref, prev, samples: fn(ctx, params, ref, samples)


ALGORITHMS = {
    "online_dpo": Algorithm(_sample_policy_pair, _no_prev(_loss_dpo)),
    "online_ipo": Algorithm(_sample_policy_pair, _no_prev(_loss_ipo)),
    "nash_md": Algorithm(_sample_mixture_pair, _no_prev(_loss_ipo)),
    "nash_md_pg": Algorithm(_sample_pg, _no_prev(_loss_pg)),
    "egpo": Algorithm(_sample_policy_pair, _no_prev(_loss_ipo), extragradient=True),
    "sppo": Algorithm(_sample_sppo, lambda ctx, params, ref, prev, s: _loss_sppo(ctx, params, prev, s),
                      uses_prev=True),
    "spin": Algorithm(_sample_spin, _loss_spin, uses_prev=True),
    "alpha_spin": Algorithm(_sample_spin, _loss_spin, uses_prev=True),
}


# ------------------------------------------------------------------------------------------------
# The jitted step.
# ------------------------------------------------------------------------------------------------


def make_loss_fn(model_config, cfg, oracle, data_fn=None, loss_apply_fn=None):
  """`(sample_fn, loss_fn)` of `cfg.algorithm` (not jitted; for tests and custom loops).

  `sample_fn(params, prev_params, ref_params, prompts, key) -> Samples`;
  `loss_fn(params, ref_params, prev_params, samples) -> (mean loss, (per-prompt losses [B], metrics))`.

  Args:
    model_config: the policy's `TransformerConfig` (generation).
    cfg: `OnlineConfig`.
    oracle: the preference oracle.
    data_fn: SPIN's data sampler (see `train_online`).
    loss_apply_fn: optional `(params, tokens_BxL, attention_mask_BxT=) -> logits_BxLxV` replacing the
      Transformer in the loss's forward passes (the tests plug in a tabular model to compare with the
      exact tabular losses).
  """
  ctx = _Ctx(model_config, cfg, oracle, data_fn, loss_apply_fn)
  algo = ALGORITHMS[cfg.algorithm]

  def sample_fn(params, prev, ref, prompts, key):
    return algo.sample(ctx, params, prev, ref, prompts, key)

  def loss_fn(params, ref, prev, samples):
    losses, metrics = algo.loss(ctx, params, ref, prev, samples)
    return jnp.mean(losses), (losses, metrics)

  return sample_fn, loss_fn


def make_online_step(model_config, cfg, data_fn=None):
  """The update `step(state, prompts, ref_params, oracle) -> (state, metrics)` (not jitted).

  The oracle is an argument (a pytree such as `oracles.SyntheticOracle` or a reward model is traced, so
  one compiled step serves any oracle of the same structure).

  Sampling (key `fold_in(state.key, state.step)`), oracle, loss and optimiser in one function. An update
  whose oracle output is NaN or outside [0, 1], whose responses include an empty one, or whose loss or
  gradient norm is not finite leaves the state unchanged (`metrics["ok"]` false; the host raises).
  `metrics` carries the oracle's raw probabilities (`oracle_p`) and the response lengths for those checks.
  """
  tx, schedule = loop.make_optimizer(cfg)
  algo = ALGORITHMS[cfg.algorithm]

  def step(state, prompts, ref_params, oracle):
    sample_fn, loss_fn = make_loss_fn(model_config, cfg, oracle, data_fn)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    key = jax.random.fold_in(state.key, state.step)
    k1, k2 = jax.random.split(key)
    params, prev = state.params, state.prev_params
    samples = sample_fn(params, prev, ref_params, prompts, k1)
    (loss, (_, metrics)), grads = grad_fn(params, ref_params, prev, samples)
    checked = [samples]
    if algo.extragradient:
      # EGPO: θ_{t+½} from this half step's update, then FRESH samples from π_{t+½} (key k2) and the full
      # step's gradient at θ_t, both updates from the same optimiser state (nash.egpo_step).
      updates, _ = tx.update(grads, state.opt_state, params)
      half = optax.apply_updates(params, updates)
      samples = sample_fn(half, prev, ref_params, prompts, k2)
      (loss, (_, metrics)), grads = grad_fn(params, ref_params, prev, samples)
      checked.append(samples)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, params)
    new_params = optax.apply_updates(params, updates)
    p = jnp.concatenate([s.p.reshape(-1) for s in checked])
    lengths = jnp.concatenate([s.lengths.reshape(-1) for s in checked])
    oracle_ok = jnp.all(jnp.isfinite(p) & (p >= 0) & (p <= 1))
    length_ok = jnp.all(lengths > 0)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    ok = oracle_ok & length_ok & finite
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
    new_step = state.step + ok.astype(jnp.int32)
    new_prev = prev
    if algo.uses_prev:
      refresh = ok & (new_step % cfg.iteration_steps == 0)
      pushed = new_params
      if cfg.stacks_prev:  # π_{t+1} in front, the oldest iterate dropped
        pushed = jax.tree.map(lambda n, o: jnp.concatenate([n[None].astype(o.dtype), o[:-1]]), new_params, prev)
      new_prev = jax.tree.map(lambda n, o: jnp.where(refresh, n, o), pushed, prev)
    new_state = OnlineState(keep(new_params, params), keep(opt_state, state.opt_state), new_step,
                            state.key, new_prev)
    metrics = {
        "loss": loss, **metrics, "win_rate/opponent": samples.win_rate,
        "response_length": jnp.mean(samples.lengths.astype(jnp.float32)),
        "grad_norm": grad_norm, "learning_rate": schedule(state.step),
        "ok": ok, "oracle_ok": oracle_ok, "length_ok": length_ok, "finite": finite,
        "oracle_p": p, "lengths": lengths,
        "generated_tokens": sum(jnp.sum(s.lengths) for s in checked),
        "train_tokens": sum(sum(x["loss_mask_BxL"].size for x in s.seqs.values()) for s in checked),
    }
    return new_state, metrics

  return step


# ------------------------------------------------------------------------------------------------
# Prompts: an in-memory array with the offline trainer's resumable iterator.
# ------------------------------------------------------------------------------------------------


# In-memory prompts live with the data (`prefjax.lm.data.PromptArrays`); re-exported here.
PromptArrays = data.PromptArrays


# ------------------------------------------------------------------------------------------------
# The loop.
# ------------------------------------------------------------------------------------------------


class OnlineResult(NamedTuple):
  state: OnlineState
  history: list  # the metrics records written this call
  preempted: bool  # always False: SIGTERM/SIGINT raise `prefjax.preemption.Preempted` after saving
  resumed_from: Optional[int]


def state_shardings(model_config, cfg, mesh):
  """`NamedSharding`s of an `OnlineState` (parameters and moments through the model's logical axes)."""
  base = lm_train.state_shardings(model_config, cfg, mesh)
  prev = None
  if cfg.stacks_prev:  # the iterate axis is replicated; each iterate is sharded as the parameters
    prev = jax.tree.map(lambda s: NamedSharding(s.mesh, PartitionSpec(None, *s.spec)), base.params)
  elif cfg.uses_prev:
    prev = base.params
  return OnlineState(base.params, base.opt_state, base.step, base.key, prev)


def init_state(model_config, cfg, params, key, mesh):
  """An `OnlineState` from (unboxed or boxed) `params` on `mesh`; π_t = the initial policy."""
  base = lm_train.init_state(model_config, cfg, params, key, mesh)
  prev = None
  if cfg.stacks_prev:  # iterates before π_0 count as π_0
    shardings = state_shardings(model_config, cfg, mesh).prev_params
    prev = jax.device_put(jax.tree.map(lambda x: jnp.broadcast_to(x, (cfg.spin_history,) + x.shape),
                                       base.params), shardings)
  elif cfg.uses_prev:
    prev = jax.tree.map(lambda x: jnp.array(x, copy=True), base.params)
  return OnlineState(base.params, base.opt_state, base.step, base.key, prev)


_COMPILED = {}


def _is_array_tree(tree):
  leaves = jax.tree.leaves(tree)
  return bool(leaves) and all(isinstance(x, (jax.Array, np.ndarray)) for x in leaves)


def compiled_step(model_config, cfg, oracle, mesh, data_fn=None, fast_compile=False):
  """The jitted (state-donating) online step `fn(state, prompts, ref_params)`, cached per static setup.

  An oracle that is a pytree of arrays is passed to the compiled step as an argument (one program for
  every oracle of that structure and shapes); any other oracle object is closed over.
  """
  fields = dataclasses.replace(cfg, log_every=1, eval_every=0, checkpoint_every=0, keep_checkpoints=1)
  traced = _is_array_tree(oracle)
  okey = ((jax.tree.structure(oracle), tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves(oracle)))
          if traced else id(oracle))
  key = (model_config, fields, okey, mesh, id(data_fn), fast_compile)
  if key not in _COMPILED:
    shardings = state_shardings(model_config, cfg, mesh)
    step = make_online_step(model_config, cfg, data_fn)
    if not traced:
      step = lambda st, pr, rp, _, fn=step, o=oracle: fn(st, pr, rp, o)
    jitted = jax.jit(step, out_shardings=(shardings, None), donate_argnums=(0,))
    if len(_COMPILED) > 16:
      _COMPILED.clear()
    _COMPILED[key] = (_compile_once(jitted) if fast_compile else jitted, oracle, data_fn)  # keeps ids alive
  fn = _COMPILED[key][0]
  arg = oracle if traced else None
  return lambda state, prompts, ref_params: fn(state, prompts, ref_params, arg)


def _compile_once(jitted):
  """`jit_utils.compile_fast`: compiled on the first call of each argument signature (the loop's are fixed)."""
  return jit_utils.compile_fast(jitted)


def _check_oracle(p, step):
  from prefjax.lm import oracles  # pylint: disable=g-import-not-at-top
  oracles.check_probabilities(np.asarray(p), f"the preference oracle at step {step}")
  raise PrefjaxError(f"the preference oracle at step {step} returned values outside [0, 1] or NaN")


def train_online(model_config, cfg, prompts, oracle, workdir, *, init_params, ref_params=None,
                 data_fn=None, eval_fn=None, mesh=None, on_step=None, verbose=True, extra_config=None,
                 fast_compile=False):
  """Trains (or resumes) a policy online against a preference oracle; writes everything to `workdir`.

  Args:
    model_config: the policy's `TransformerConfig` (the reference has the same architecture).
    cfg: `OnlineConfig`.
    prompts: `PromptArrays` (or any dataset with `iterator(batch_size, seed=, state=)` yielding
      `PROMPT_KEYS` int32 `[B, P]` left-padded arrays).
    oracle: a preference oracle (`prefjax.lm.oracles`): `prefer(prompt_tokens_BxP, prompt_mask_BxP,
      a_BxT, mask_a_BxT, b_BxT, mask_b_BxT) -> [B]`, jit-traceable.
    workdir: directory (str or `Workdir`): metrics.jsonl, checkpoints/.
    init_params: the policy's initial variables (usually the reference's).
    ref_params: π_ref's variables (default: `init_params`).
    data_fn: SPIN / α-SPIN only: `data_fn(key, prompt_tokens_BxP, prompt_mask_BxP) -> (tokens_BxT,
      mask_BxT)` responses of the SFT data for the prompts, jit-traceable.
    eval_fn: optional `eval_fn(params, step) -> dict of floats`, logged as eval/<name> at step 0, every
      `cfg.eval_every` steps and at the end.
    mesh: device mesh (default: every device on the data axis).
    on_step: optional `on_step(step, record)` hook after each step's bookkeeping (tests simulate crashes).
    verbose: print a progress line every `cfg.log_every` steps.
    extra_config: JSON dict stored in checkpoints.
    fast_compile: compile the step at XLA optimisation level 0 (short runs: tests, :quick).

  Returns:
    `OnlineResult`.

  Raises:
    PrefjaxError: oracle values outside [0, 1] or NaN; a response with zero real tokens; a checkpoint of
      another model shape. (The last good state is checkpointed first.)
    NonFiniteError: a non-finite loss or gradient (the last good state is checkpointed first).
    prefjax.preemption.Preempted: SIGTERM or SIGINT received (the state after the current step is
      checkpointed first; calling `train_online` again with the same workdir resumes from it).
  """
  workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
  mesh = shd.make_mesh() if mesh is None else mesh
  if cfg.batch_size % shd.batch_divisor(mesh):
    raise PrefjaxError(f"OnlineConfig.batch_size={cfg.batch_size} must be a multiple of the mesh's "
                       f"data×fsdp = {shd.batch_divisor(mesh)}")
  if cfg.algorithm in ("spin", "alpha_spin") and data_fn is None:
    raise PrefjaxError(f"OnlineConfig.algorithm={cfg.algorithm!r} needs data_fn (the SFT data's responses)")
  ref_params = init_params if ref_params is None else ref_params
  shardings = state_shardings(model_config, cfg, mesh)
  ref_params = jax.device_put(nn.unbox(ref_params), shardings.params)
  state = init_state(model_config, cfg, init_params, jax.random.key(cfg.seed), mesh)
  meta = {"model": dataclasses.asdict(model_config) | {"dtype": str(model_config.dtype),
                                                      "param_dtype": str(model_config.param_dtype)},
          "online": dataclasses.asdict(cfg), **(extra_config or {})}
  jstep = compiled_step(model_config, cfg, oracle, mesh, data_fn, fast_compile)
  directory = os.path.abspath(workdir.file(lm_train.CHECKPOINTS))

  def check(metrics, at, state):
    if bool(metrics["ok"]):
      return None
    if not bool(metrics["oracle_ok"]):
      try:
        _check_oracle(metrics["oracle_p"], at)
      except PrefjaxError as e:
        return e
    if not bool(metrics["length_ok"]):
      rows = np.flatnonzero(np.asarray(metrics["lengths"]) == 0)
      return PrefjaxError(
          f"step {at}: {rows.size} response(s) have zero real tokens (EOS first; responses "
          f"{rows[:8].tolist()} of this step's samples); set OnlineConfig.min_new_tokens >= 1 so EOS cannot "
          f"end a response before its first token")
    return loop.non_finite(metrics, at, state, directory)

  def record(metrics, batch, seconds):
    del batch
    gen_tokens, train_tokens = int(metrics["generated_tokens"]), int(metrics["train_tokens"])
    drop = ("ok", "oracle_ok", "length_ok", "finite", "oracle_p", "lengths", "generated_tokens", "train_tokens")
    return {**{k: float(v) for k, v in metrics.items() if k not in drop},
            "generated_tokens_per_second": gen_tokens / seconds,
            "train_tokens_per_second": train_tokens / seconds, "step_seconds": seconds}

  result = loop.run(
      cfg, workdir, state, prompts.iterator(cfg.batch_size, seed=cfg.seed),
      lambda state, batch: jstep(state, shd.shard_batch(batch, mesh), ref_params), meta=meta, check=check,
      record=record, evaluate=eval_fn, progress=lambda rec: _progress(rec, cfg), on_step=on_step,
      verbose=verbose)
  return OnlineResult(*result)


def _progress(record, cfg):
  width = 20
  done = int(width * record["step"] / cfg.num_steps)
  line = (f"[{'#' * done}{'.' * (width - done)}] {cfg.algorithm} step {record['step']}/{cfg.num_steps} "
          f"loss {record['loss']:.4f} kl {record['kl']:.3f} win {record['win_rate/opponent']:.3f} "
          f"gen tok/s {record['generated_tokens_per_second']:.0f}")
  evals = [f"{k[5:]} {v:.3g}" for k, v in record.items()
           if k.startswith("eval/") and isinstance(v, (int, float))]
  return line + ("  " + " ".join(evals) if evals else "")

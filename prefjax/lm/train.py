"""Offline preference training of a transformer policy with any objective of a contract it feeds.

Objectives come from the objective index (`prefjax.objectives.spec`) by name. The trainer feeds four data
contracts (`CONTRACTS`), each with its batch layout, its log-prob function and its loss function:
- preference pairs ("pair": every pairwise objective and combinations of them, through
  `pairwise_loss_and_metrics` with its switches, and other families' pair objectives such as γ-PO, β-DPO and
  AOT with other costs, through their declared loss);
- preference pairs with both responses' quality scores ("scored_pair": MMPO's soft margin; the pair layout plus
  `SCORE_KEYS`, from `prefjax.lm.data.PreferenceDataset` rows with chosen_score / rejected_score; unpacked);
- K responses per prompt with scores ("ranking": InfoNCA, NCA, Plackett–Luce, PRO, LiPO-λ, MPO;
  `RANKING_KEYS`, the layout of `prefjax.lm.data.MultiResponseDataset`, unpacked, live reference; metrics
  loss, rewards/mean, rewards/accuracies = the fraction of prompts whose best-scored response has the largest
  implicit reward, logps/mean);
- one response per example with a reward or a binary label ("single": DRO, BCO; `SINGLE_KEYS`, the layout of
  `prefjax.lm.data.SingleResponseDataset`, unpacked, live reference; metrics loss, rewards/mean (β ρ),
  logps/mean and, for an objective that learns a value V(x) with the policy, values/mean). DRO's V is a table
  over the data's distinct prompts carried in the training state (`ValueTrainState`).
A stateful objective (BCO's running reward shift, β-DPO's running margin statistics) carries its state in the
training state (`StatefulTrainState`), updated once per micro-batch and checkpointed. An objective of another
contract is a `PrefjaxError` naming the contracts this trainer feeds when the `TrainConfig` is made. What
follows describes the pair contract.

One jitted step (gradient accumulation as a `lax.scan` over micro-batches) inside a Python loop; the
training state is one pytree {params, opt_state, step, key} (docs/design.md §3), checkpointed with orbax
(`prefjax.checkpoint`) and resumed automatically from the workdir, sharded over a device mesh
(`prefjax.sharding`).

Per step the objective sees summed (or token-mean, `TrainConfig.reduction`) sequence log-probs of the
policy and of the reference for the chosen and rejected responses (`prefjax.lm.logprobs.policy_logps`,
the one place with the target shift and the masks) and returns per-example losses (`prefjax.objectives
.pairwise_loss_and_metrics`); the batch loss is their mean. Reference log-probs are either computed live
(a forward pass of the frozen reference in the step) or precomputed once and cached in the workdir
(`reference_logps.npz`, keyed by a hash of each pair's tokens and masks). At step 0 with policy = reference
the rewards are 0 and the sigmoid loss is log 2: exactly when the policy's and the reference's log-probs come
out of the same XLA computation (tests/test_lm_train.py checks this bit for bit); the cached reference comes
from a separately compiled program, whose float32 rounding can differ by a few ulps of the summed log-prob on
some models (measured: a reward of −9.5e-8 on a tiny exported Llama).

Metrics (metrics.jsonl, docs/theory.md §9, TRL's names): loss, rewards/chosen, rewards/rejected,
rewards/margins, rewards/accuracies (rewards = β (log π − log π_ref), summed log-probs), logps/chosen,
logps/rejected, grad_norm (before clipping), learning_rate, tokens_per_second (chosen + rejected tokens per
optimiser step, padding included, divided by the step's wall time), step_seconds, mfu (model FLOPs per
second / the device's peak; PaLM's convention, `flops_per_token`, plus a forward pass per token for a live
reference), and eval/* from the caller's evaluation function.

The output head (the vocabulary-sized matmul and log-softmax) runs only at the positions that predict
response tokens (`TrainConfig.logits_window = "response"`, the default: a static window of R positions per
row, one compiled step per distinct R; `logits_window_for`), the same log-probs as the full head up to
float32 rounding. Unpacked rows: R = the batch's widest response span rounded up to `WINDOW_MULTIPLE`
(`logprobs.policy_logps(window=)`); packed rows, whose responses are spread along the row: R = the largest
number of response tokens in a row, rounded up likewise (`logprobs.policy_segment_logps(window=)`).

Packed batches (`TrainConfig.pack_segments = S > 0`): the dataset's iterator is asked for rows holding up
to S pairs each (`prefjax.lm.data.PreferenceDataset.iterator(B, pack_segments=S)`, `PackedBatchIterator`;
`batch_size` then counts rows). The packed step runs one segment-aware forward over the concatenated
`[2B, L]` chosen and rejected rows (`prefjax.lm.logprobs.policy_segment_logps`: block-diagonal causal
attention, positions restarting in each segment), gets per-pair log-probs `[B, S]`, flattens them to `B·S`
pairs with the mask s < num_pairs_B[b], and averages the objective over the real pairs of the WHOLE optimiser
batch: loss = Σ_{real pairs} ℓ_i / N with N the number of real pairs summed over all grad-accumulation
micro-batches (not a mean of per-micro-batch means), so a packed batch gives the same loss, metrics and
gradient as the same pairs unpacked, up to float32 rounding (tests/test_lm_train_packed.py). Absent segments
contribute nothing (their token counts are replaced by 1 before the objective, so a length-normalised
objective stays finite). The cached reference is per pair, keyed by a hash of the pair's own chosen and
rejected segments (tokens and loss mask, cut out of the row), so a pair hits the same entry whichever row and
slot it is packed into. Batch-coupled objectives (AOT's sort) are refused with packing: absent slots would
enter the sort. Packed batches reach only the packed step and unpacked batches only the unpacked step; the
other way round is a PrefjaxError. tokens_per_second and mfu keep their definition (row tokens, padding
included, 2·B·L per step; attention FLOPs counted over the whole row, as the masked kernel computes them);
packed records add `pairs_per_step` (real pairs in the step).

Bad numbers: a step whose loss or gradient norm is not finite is not applied (the state stays the last good
one), that state is checkpointed, and training stops with `NonFiniteError`.
"""

import dataclasses
import hashlib
import inspect
import math
import os
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from prefjax import sharding as shd
from prefjax import objectives
from prefjax.objectives import spec
from prefjax.errors import PrefjaxError
from prefjax.lm import data
from prefjax.lm import logprobs
from prefjax.lm import loop
from prefjax.lm import model as lm_model
from prefjax.workdir import Workdir

SIDES = ("chosen", "rejected")
BATCH_KEYS = tuple(f"{side}_{kind}_BxL" for side in SIDES
                   for kind in ("tokens", "loss_mask", "attention_mask"))
PACKED_KEYS = tuple(f"{side}_{kind}_BxL" for side in SIDES
                    for kind in ("segment_ids", "positions")) + ("num_pairs_B",)
REFERENCE_CACHE = "reference_logps.npz"
CHECKPOINTS = loop.CHECKPOINTS

# Peak dense FLOP/s per device (bf16 for accelerators) for MFU; unknown devices report mfu = None unless
# `TrainConfig.peak_flops` is given.
PEAK_FLOPS = {
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


@dataclasses.dataclass(frozen=True)
class TrainConfig(loop.OptimConfig):
  """Hyper-parameters of offline preference training.

  Attributes:
    objective: the name of a declared objective whose data contract this trainer feeds (`CONTRACTS`: "pair",
      "scored_pair", "ranking", "single"; `prefjax.objectives.list_objectives(contract=...)`), or a
      combination {name: weight} of pairwise objectives. Another contract is a `PrefjaxError` naming the
      contracts this trainer feeds.
    beta: β > 0 (τ for IPO).
    label_smoothing: ε for objectives that take one.
    length_normalize: the objectives' length-normalisation switch (needs token counts; given).
    divergence: f-divergence score transform.
    reduction: "sum" (DPO/IPO papers) or "mean" sequence log-probs fed to the objective.
    batch_size: preference pairs per optimiser step (= grad_accum × micro-batch); with
      `pack_segments` > 0, rows per optimiser step (each holding 1..pack_segments pairs).
    grad_accum: micro-batches per optimiser step (gradients averaged; batch-coupled objectives such as
      AOT then sort within each micro-batch).
    reference: "precomputed" (cached in the workdir) or "live".
    num_steps, learning_rate, schedule, warmup_steps, min_lr_ratio, grad_clip, weight_decay, b1, b2, eps,
      log_every, eval_every, checkpoint_every, keep_checkpoints, seed: `prefjax.lm.loop.OptimConfig`'s (the
      optimiser, shared with the online trainer; the seed also orders the data).
    peak_flops: per-device peak FLOP/s for MFU (None: look the device up in `PEAK_FLOPS`).
    pack_segments: 0 (one pair per row), or S >= 1: train on packed rows of up to S pairs
      (`dataset.iterator(batch_size, seed=, pack_segments=S)`; see the module docstring). Not with
      batch-coupled objectives.
    logits_window: "response" (default): the output head and log-softmax run only at the positions that
      predict response tokens (R positions per row, rounded up to a multiple of `WINDOW_MULTIPLE`, one
      compiled step per distinct R; `logits_window_for`); "full": at every position. The same log-probs up
      to float32 rounding, packed or not.
    value_learning_rate: objectives that learn a value V(x) with the policy (DRO): the learning rate of the
      per-prompt value table (Adam, constant; see `ValueTrainState`).
  """
  objective: Any = "sigmoid"
  beta: float = 0.1
  label_smoothing: float = 0.0
  length_normalize: bool = False
  divergence: str = "reverse_kl"
  reduction: str = "sum"
  batch_size: int = 8
  grad_accum: int = 1
  reference: str = "precomputed"
  peak_flops: Optional[float] = None
  pack_segments: int = 0
  logits_window: str = "response"
  value_learning_rate: float = 0.1

  def __post_init__(self):
    for name in ("batch_size", "grad_accum"):
      v = getattr(self, name)
      if not isinstance(v, (int, np.integer)) or v < 1:
        raise PrefjaxError(f"TrainConfig.{name} must be a positive integer, got {v!r}")
    if not isinstance(self.pack_segments, (int, np.integer)) or self.pack_segments < 0:
      raise PrefjaxError(f"TrainConfig.pack_segments must be an integer >= 0, got {self.pack_segments!r}")
    super().__post_init__()
    if self.batch_size % self.grad_accum:
      raise PrefjaxError(f"TrainConfig.batch_size={self.batch_size} must be a multiple of "
                         f"grad_accum={self.grad_accum}")
    if self.reference not in ("precomputed", "live"):
      raise PrefjaxError(f"TrainConfig.reference must be 'precomputed' or 'live', got {self.reference!r}")
    if self.reduction not in logprobs.REDUCTIONS:
      raise PrefjaxError(f"TrainConfig.reduction: unknown {self.reduction!r}; known: "
                         f"{sorted(logprobs.REDUCTIONS)}")
    # Validates the objective name and its hyper-parameters now rather than inside jit.
    declared = _declared_objective(self.objective)
    if declared is None:
      objectives.pairwise_loss(self.objective, *(np.zeros(1, np.float32),) * 4, beta=self.beta,
                               label_smoothing=self.label_smoothing, chosen_lengths=np.ones(1),
                               rejected_lengths=np.ones(1), length_normalize=self.length_normalize,
                               divergence=self.divergence)
    else:
      if declared.contract == "scored_pair" and self.pack_segments:
        raise PrefjaxError(f"TrainConfig.pack_segments={self.pack_segments}: packed rows do not carry the "
                           f"responses' scores that {self.objective!r} (contract 'scored_pair') reads: use "
                           f"pack_segments=0")
      what = {"ranking": "K responses per prompt", "single": "one response per example"}.get(declared.contract)
      if what and self.reference != "live":
        raise PrefjaxError(f"TrainConfig.reference={self.reference!r}: the reference cache holds pairs; "
                           f"{self.objective!r} trains on {what} (contract {declared.contract!r}): use "
                           f"reference='live'")
      if what and self.pack_segments:
        raise PrefjaxError(f"TrainConfig.pack_segments={self.pack_segments}: packing is for pairs; "
                           f"{self.objective!r} (contract {declared.contract!r}) trains unpacked: use "
                           f"pack_segments=0")
      if self.length_normalize or self.divergence != "reverse_kl":
        raise PrefjaxError(f"TrainConfig.length_normalize / divergence are switches of the pairwise "
                           f"registry's objectives; {self.objective!r} is declared with its own loss (use "
                           f"reduction='mean' for token-mean log-probs)")
      if self.label_smoothing and not declared.uses_label_smoothing:
        raise PrefjaxError(f"TrainConfig.label_smoothing={self.label_smoothing}: {self.objective!r} does not "
                           f"use label smoothing")
      declared.loss()
    if not (isinstance(self.value_learning_rate, (int, float)) and math.isfinite(self.value_learning_rate)
            and self.value_learning_rate > 0):
      raise PrefjaxError(f"TrainConfig.value_learning_rate must be finite and > 0, got "
                         f"{self.value_learning_rate!r}")
    if self.logits_window not in ("response", "full"):
      raise PrefjaxError(f"TrainConfig.logits_window must be 'response' or 'full', got {self.logits_window!r}")
    coupled = declared.batch_coupled if declared is not None else objectives.is_batch_coupled(self.objective)
    if self.pack_segments and coupled:
      raise PrefjaxError(f"TrainConfig.pack_segments={self.pack_segments}: objective {self.objective!r} is "
                         f"batch-coupled (it sorts over the batch, and a packed batch's absent pair slots "
                         f"would enter the sort); use pack_segments=0")

  @property
  def micro_batch(self):
    return self.batch_size // self.grad_accum


class TrainState(NamedTuple):
  """The checkpointed training pytree (docs/design.md §3)."""
  params: Any
  opt_state: Any
  step: jax.Array  # int32 scalar: optimiser steps taken
  key: jax.Array  # typed PRNG key (stored as key data in checkpoints)


class ValueTrainState(NamedTuple):
  """The training pytree of an objective that learns a value V(x) with the policy (DRO): `TrainState`'s
  fields plus the value table and its optimiser state.

  V is a table over the training data's distinct prompts (`prompt_id_B` of the single-response contract,
  `num_prompts` entries, 0 at the start), trained on the objective's own value loss by Adam at
  `TrainConfig.value_learning_rate`. DRO's loss evaluates V only at the prompts of its data, where a table is
  the most flexible value function (the paper trains a value network; a table has no parameters shared across
  prompts and needs no second model). Replicated on the mesh.
  """
  params: Any
  opt_state: Any
  step: jax.Array
  key: jax.Array
  values: jax.Array  # [num_prompts] float32
  value_opt_state: Any


class StatefulTrainState(NamedTuple):
  """The training pytree of a stateful objective (BCO's running reward shift, β-DPO's running margin
  statistics): `TrainState`'s fields plus the objective's state (`spec.Loss.init_state`), replicated, updated by
  the objective once per micro-batch and checkpointed with the rest."""
  params: Any
  opt_state: Any
  step: jax.Array
  key: jax.Array
  objective_state: Any


# The optimiser and its schedules live with the shared loop (re-exported here for older callers).
SCHEDULES = loop.SCHEDULES
make_optimizer = loop.make_optimizer
NonFiniteError = loop.NonFiniteError


def _check_batch(batch, where="batch", pack_segments=0):
  """Raises a PrefjaxError unless `batch` has the keys (and, packed, the segment layout) the step needs.

  Packed batches (with `*_segment_ids_BxL` / `num_pairs_B`) are accepted only when `pack_segments` > 0,
  and then every batch must be packed with at most `pack_segments` pairs per row.
  """
  missing = [k for k in BATCH_KEYS if k not in batch]
  if missing:
    raise PrefjaxError(f"{where} is missing {missing}; a pairwise batch has {list(BATCH_KEYS)}")
  packed = sorted(k for k in batch if "segment_ids" in k or k == "num_pairs_B")
  if packed and not pack_segments:
    # The unpacked step would score each packed row as one pair, attending across its pairs.
    raise PrefjaxError(
        f"{where} is packed ({packed}) but TrainConfig.pack_segments=0: the unpacked step takes one pair "
        f"per row, without segment-aware attention or per-pair losses. Set TrainConfig.pack_segments to "
        f"the iterator's pack_segments (prefjax.lm.data iterator(pack_segments=S)) to train on packed rows")
  if not pack_segments:
    return
  if not packed:
    raise PrefjaxError(
        f"{where} is not packed (no {list(PACKED_KEYS)}) but TrainConfig.pack_segments={pack_segments}: "
        f"the dataset's iterator(pack_segments=) must return packed batches (prefjax.lm.data "
        f"PreferenceDataset does), or use pack_segments=0")
  missing = [k for k in PACKED_KEYS if k not in batch]
  if missing:
    raise PrefjaxError(f"{where} is missing {missing}; a packed batch has {list(BATCH_KEYS + PACKED_KEYS)}")
  rows = np.shape(batch["chosen_tokens_BxL"])[0]
  num_pairs = np.asarray(batch["num_pairs_B"])
  if num_pairs.shape != (rows,):
    raise PrefjaxError(f"{where}: num_pairs_B has shape {num_pairs.shape}, expected ({rows},)")
  seg_max = max(int(np.max(batch[f"{side}_segment_ids_BxL"], initial=0)) for side in SIDES)
  if num_pairs.min(initial=0) < 0 or max(int(num_pairs.max(initial=0)), seg_max) > pack_segments:
    raise PrefjaxError(f"{where} holds up to {max(int(num_pairs.max(initial=0)), seg_max)} pairs per row "
                       f"(num_pairs_B, segment ids) but TrainConfig.pack_segments={pack_segments}")


# Head windows are rounded up to a multiple of this many positions (fewer distinct compiled steps).
WINDOW_MULTIPLE = 64


def logits_window_for(batch, cfg):
  """The static head window R of a batch (`TrainConfig.logits_window`), or None for all positions.

  Unpacked: R = the widest span of scored tokens over the chosen and rejected rows
  (`logprobs.response_span`); packed (`cfg.pack_segments`): the largest number of scored tokens in a row
  (`logprobs.max_scored`). Rounded up to a multiple of `WINDOW_MULTIPLE`; None when that is not shorter
  than L − 1 (short sequences keep the full head) and for "full".
  """
  if cfg.logits_window == "full" or contract_of(cfg.objective) not in PAIR_CONTRACTS:
    return None
  length = np.shape(batch["chosen_tokens_BxL"])[-1]
  need = logprobs.max_scored if cfg.pack_segments else logprobs.response_span
  span = max(need(np.reshape(batch[f"{side}_loss_mask_BxL"], (-1, length))) for side in SIDES)
  window = -(-max(span, 1) // WINDOW_MULTIPLE) * WINDOW_MULTIPLE
  return window if window < length - 1 else None


def make_logps_fn(model_config, reduction="sum", window=None):
  """`fn(params, batch) -> (chosen_logps [B], rejected_logps [B], chosen_counts [B], rejected_counts [B])`.

  Chosen and rejected run as one forward pass over the concatenated `[2B, L]` batch (the same program for
  policy and reference, so identical parameters give identical log-probs). With `window=R` the head runs
  only at the R positions per row that predict its response tokens (`logprobs.policy_logps`); R must cover
  every row's response span (`logits_window_for`).
  """
  apply_fn = lm_model.Transformer(model_config).apply

  def fn(params, batch):
    tokens = jnp.concatenate([batch["chosen_tokens_BxL"], batch["rejected_tokens_BxL"]], axis=0)
    loss_mask = jnp.concatenate([batch["chosen_loss_mask_BxL"], batch["rejected_loss_mask_BxL"]], 0)
    attn = jnp.concatenate([batch["chosen_attention_mask_BxL"], batch["rejected_attention_mask_BxL"]], 0)
    out = logprobs.policy_logps(apply_fn, params, tokens, loss_mask, attn, reduction=reduction,
                                window=window)
    b = batch["chosen_tokens_BxL"].shape[0]
    return out.logps[:b], out.logps[b:], out.counts[:b], out.counts[b:]

  return fn


def make_packed_logps_fn(model_config, max_segments, reduction="sum", window=None):
  """`fn(params, batch) -> (chosen [B, S], rejected [B, S], chosen_counts [B, S], rejected_counts [B, S])`.

  Per-pair log-probs of a packed batch (`PACKED_KEYS`): one segment-aware forward over the concatenated
  `[2B, L]` chosen and rejected rows (`logprobs.policy_segment_logps`); absent pair slots give 0 and count 0.
  With `window=R` the head runs only at the R positions per row that predict its response tokens; R must
  be at least every row's number of response tokens (`logits_window_for`).
  """
  apply_fn = lm_model.Transformer(model_config).apply

  def fn(params, batch):
    cat = lambda kind: jnp.concatenate([batch[f"chosen_{kind}_BxL"], batch[f"rejected_{kind}_BxL"]], 0)
    out = logprobs.policy_segment_logps(
        apply_fn, params, cat("tokens"), cat("loss_mask"), cat("segment_ids"), cat("positions"),
        max_segments, cat("attention_mask"), reduction=reduction, window=window)
    b = batch["chosen_tokens_BxL"].shape[0]
    return out.logps[:b], out.logps[b:], out.counts[:b], out.counts[b:]

  return fn


def make_ranking_logps_fn(model_config, reduction="sum"):
  """`fn(params, batch) -> (logps [B, K], counts [B, K])` of the K responses per prompt (`RANKING_KEYS`).

  One forward pass over the `[B·K, L]` rows (the same program for policy and reference).
  """
  apply_fn = lm_model.Transformer(model_config).apply

  def fn(params, batch):
    b, k, length = batch["tokens_BxKxL"].shape
    flat = lambda x: jnp.reshape(x, (b * k, length))
    out = logprobs.policy_logps(apply_fn, params, flat(batch["tokens_BxKxL"]), flat(batch["loss_mask_BxKxL"]),
                                flat(batch["attention_mask_BxKxL"]), reduction=reduction)
    return out.logps.reshape(b, k), out.counts.reshape(b, k)

  return fn


def _ranking_loss_fn(params, micro, ref_params, ostate, key, *, logps_fn, cfg):
  """Per-prompt losses of a ranking-contract objective on K scored responses, and their batch means.

  Metrics: loss; rewards/mean (β ρ over every response), rewards/accuracies (the fraction of prompts whose
  best-scored response has the largest implicit reward β ρ), logps/mean.
  """
  pw, counts = logps_fn(params, micro)
  rw, _ = logps_fn(ref_params, micro)
  rw = jax.lax.stop_gradient(rw)
  scores = micro["scores_BxK"].astype(pw.dtype)
  losses, ostate = spec.get(cfg.objective).loss().fn(
      spec.RankingBatch(pw, rw, rewards=scores, lengths=jnp.maximum(counts, 1).astype(pw.dtype)),
      spec.HParams(jnp.asarray(cfg.beta, pw.dtype), jnp.asarray(cfg.label_smoothing, pw.dtype)), ostate, key)
  rewards = cfg.beta * jax.lax.stop_gradient(pw - rw)
  top = jnp.take_along_axis(rewards, jnp.argmax(scores, axis=1)[:, None], axis=1)[:, 0]
  loss = jnp.mean(losses)
  return loss, ({"loss": loss, "rewards/mean": jnp.mean(rewards),
                 "rewards/accuracies": jnp.mean((top >= jnp.max(rewards, axis=1)).astype(pw.dtype)),
                 "logps/mean": jnp.mean(jax.lax.stop_gradient(pw))}, ostate)


def make_single_logps_fn(model_config, reduction="sum"):
  """`fn(params, batch) -> (logps [B], counts [B])` of one response per row (`SINGLE_KEYS`)."""
  apply_fn = lm_model.Transformer(model_config).apply

  def fn(params, batch):
    out = logprobs.policy_logps(apply_fn, params, batch["tokens_BxL"], batch["loss_mask_BxL"],
                                batch["attention_mask_BxL"], reduction=reduction)
    return out.logps, out.counts

  return fn


def _single_loss_fn(trainable, micro, ref_params, ostate, key, *, logps_fn, cfg, needs_value):
  """Per-example losses of a single-response objective and their batch mean.

  `trainable` is the policy's parameters, or (parameters, value table) when the objective learns V(x); the
  objective's loss is differentiated with respect to both (DRO's joint loss: its policy part holds V fixed,
  its value part the policy). Metrics: loss, rewards/mean (β ρ), logps/mean, values/mean (with a value).
  """
  params, values = trainable if needs_value else (trainable, None)
  pw, counts = logps_fn(params, micro)
  rw, _ = logps_fn(ref_params, micro)
  rw = jax.lax.stop_gradient(rw)
  v = values[micro["prompt_id_B"]] if needs_value else None
  batch = spec.SingleBatch(pw, rw, desirable=micro["label_B"] == 1, rewards=micro["reward_B"].astype(pw.dtype),
                           values=v, lengths=jnp.maximum(counts, 1).astype(pw.dtype))
  losses, ostate = spec.get(cfg.objective).loss().fn(
      batch, spec.HParams(jnp.asarray(cfg.beta, pw.dtype), jnp.asarray(cfg.label_smoothing, pw.dtype)), ostate,
      key)
  loss = jnp.mean(losses)
  metrics = {"loss": loss, "rewards/mean": jnp.mean(cfg.beta * jax.lax.stop_gradient(pw - rw)),
             "logps/mean": jnp.mean(jax.lax.stop_gradient(pw))}
  if needs_value:
    metrics["values/mean"] = jnp.mean(jax.lax.stop_gradient(v))
  return loss, (metrics, ostate)


def _logps(params, micro, ref_params, logps_fn, ref_keys):
  """Policy log-probs and counts, and the reference's (live, or from the batch's `ref_keys`)."""
  pw, pl, nw, nl = logps_fn(params, micro)
  if ref_params is None:
    rw, rl = micro[ref_keys[0]], micro[ref_keys[1]]
  else:
    rw, rl, _, _ = logps_fn(jax.lax.stop_gradient(ref_params), micro)
  return pw, pl, nw, nl, jax.lax.stop_gradient(rw), jax.lax.stop_gradient(rl)


# The data contracts this trainer feeds (`prefjax.objectives.spec.CONTRACTS`): preference pairs (`BATCH_KEYS`,
# packed or not, live or cached reference; "scored_pair" adds both responses' scores `SCORE_KEYS`), K responses per prompt with scores (`RANKING_KEYS`, the
# multi-response JSONL of `prefjax.lm.data.MultiResponseDataset`, live reference) and one response per example
# with a reward or a binary label (`SINGLE_KEYS`, `prefjax.lm.data.SingleResponseDataset`, live reference).
CONTRACTS = ("pair", "scored_pair", "ranking", "single")
RANKING_KEYS = ("tokens_BxKxL", "loss_mask_BxKxL", "attention_mask_BxKxL", "scores_BxK")
SINGLE_KEYS = data.SINGLE_KEYS
SCORE_KEYS = data.SCORE_KEYS  # a scored pair's extra keys: both responses' quality scores
PAIR_CONTRACTS = ("pair", "scored_pair")  # the pair layout (packed or not, cached reference)


def is_stateful(cfg):
  """Whether `cfg.objective` carries state between steps (its training state is a `StatefulTrainState`)."""
  objective = getattr(cfg, "objective", None)
  return isinstance(objective, str) and spec.get(objective).stateful


def needs_value(cfg):
  """Whether `cfg.objective` learns a value V(x) with the policy (its state is a `ValueTrainState`); False for
  configs without an objective (the online trainer's, which builds on `state_shardings` / `init_state`)."""
  objective = getattr(cfg, "objective", None)
  return (objective is not None and contract_of(objective) == "single"
          and spec.get(objective).loss().needs_value)


def needs_labels(objective):
  """Whether a single-response objective reads binary labels (`label_B` 0/1; rows with −1 have none)."""
  return contract_of(objective) == "single" and spec.get(objective).loss().needs_labels


def contract_of(objective):
  """The data contract a `TrainConfig.objective` trains on ("pair" for combinations of pairwise objectives)."""
  return "pair" if not isinstance(objective, str) else spec.get(objective).contract


def _declared_objective(objective):
  """The index's declaration of `objective` when it is a pair-contract objective outside the pairwise
  registry (trained through its declared loss); None for the registry's names and combinations
  (`pairwise_loss`, with its switches). Another contract is a `PrefjaxError` naming the contracts this trainer
  feeds."""
  if not isinstance(objective, str):
    return None
  declared = spec.check_contract(objective, CONTRACTS, "the LM offline trainer")
  return None if objective in objectives.PAIRWISE_LOSSES else declared


def _objective(pw, pl, rw, rl, nw, nl, cfg, ostate=(), key=None, scores=(None, None)):
  """Per-pair losses, TRL's reward metrics and the objective's new state (its old one when stateless)."""
  declared = _declared_objective(cfg.objective)
  if declared is None:
    losses, m = objectives.pairwise_loss_and_metrics(
        cfg.objective, pw, pl, rw, rl, beta=cfg.beta, label_smoothing=cfg.label_smoothing,
        chosen_lengths=nw, rejected_lengths=nl, length_normalize=cfg.length_normalize,
        divergence=cfg.divergence)
    return losses, m, ostate
  sw, sl = (None if x is None else x.astype(pw.dtype) for x in scores)
  losses, ostate = declared.loss().fn(spec.PairBatch(pw, pl, rw, rl, nw, nl, sw, sl),
                                      spec.HParams(jnp.asarray(cfg.beta, pw.dtype),
                                                   jnp.asarray(cfg.label_smoothing, pw.dtype)), ostate, key)
  return losses.astype(pw.dtype), objectives.pairwise.reward_metrics(pw, pl, rw, rl, cfg.beta), ostate


def _loss_and_metrics(losses, m, pw, pl, reduce):
  """The batch loss and TRL's metrics, each per-pair quantity reduced over the batch by `reduce`."""
  loss = reduce(losses)
  return loss, {
      "loss": loss,
      "rewards/chosen": reduce(m.rewards_chosen),
      "rewards/rejected": reduce(m.rewards_rejected),
      "rewards/margins": reduce(m.margins),
      "rewards/accuracies": reduce(m.accuracies),
      "logps/chosen": reduce(jax.lax.stop_gradient(pw)),
      "logps/rejected": reduce(jax.lax.stop_gradient(pl)),
  }


def _packed_loss_fn(params, micro, ref_params, ostate, key, num_pairs, *, logps_fn, cfg):
  """Σ over the micro-batch's real pairs of the objective / `num_pairs` (the whole optimiser batch's)."""
  pw, pl, nw, nl, rw, rl = _logps(params, micro, ref_params, logps_fn,
                                  ("ref_chosen_logps_BxS", "ref_rejected_logps_BxS"))
  s = pw.shape[1]
  real = (jnp.arange(s)[None, :] < micro["num_pairs_B"][:, None]).reshape(-1)  # [B·S]
  flat = lambda x: x.reshape(-1)
  # Absent slots: log-probs 0 and count 0; a count of 1 keeps length-normalised objectives finite there
  # (their terms are masked out of the sums below, so the value does not matter).
  nw, nl = (jnp.where(real, flat(n), 1) for n in (nw, nl))
  pw, pl = flat(pw), flat(pl)
  losses, m, ostate = _objective(pw, pl, flat(rw), flat(rl), nw, nl, cfg, ostate, key)
  denom = jnp.maximum(num_pairs, 1).astype(losses.dtype)
  loss, metrics = _loss_and_metrics(losses, m, pw, pl, lambda x: jnp.sum(jnp.where(real, x, 0.0)) / denom)
  return loss, (metrics, ostate)


def _loss_fn(params, micro, ref_params, ostate, key, *, logps_fn, cfg):
  pw, pl, nw, nl, rw, rl = _logps(params, micro, ref_params, logps_fn,
                                  ("ref_chosen_logps_B", "ref_rejected_logps_B"))
  scores = tuple(micro.get(k) for k in SCORE_KEYS)
  losses, m, ostate = _objective(pw, pl, rw, rl, nw, nl, cfg, ostate, key, scores)
  loss, metrics = _loss_and_metrics(losses, m, pw, pl, jnp.mean)
  return loss, (metrics, ostate)


def make_train_step(model_config, cfg, *, live_reference, window=None):
  """The optimiser step `step(state, batch_AxBx..., ref_params) -> (state, metrics)` (not jitted).

  `batch` arrays have a leading micro-batch axis A = `cfg.grad_accum`; gradients and metrics are averaged
  over it. With `live_reference=False` the batch carries `ref_chosen_logps_B` / `ref_rejected_logps_B`
  and `ref_params` is ignored (pass None). A non-finite loss or gradient leaves the state unchanged.

  With `cfg.pack_segments` = S > 0 the batch is packed (`PACKED_KEYS` too; precomputed reference values as
  `ref_chosen_logps_BxS` / `ref_rejected_logps_BxS`, 0 for absent slots), and the loss, its gradient and
  the metrics are sums over the real pairs of all A micro-batches divided by their total number
  Σ num_pairs_B (each micro-batch contributes Σ_its pairs / total; the micro-batch sums are added, not
  averaged).

  `window`: the static head window (`logits_window_for`; None: every position).
  """
  tx, schedule = make_optimizer(cfg)
  packed = cfg.pack_segments > 0
  contract = contract_of(cfg.objective)
  ranking, single, with_value = contract == "ranking", contract == "single", needs_value(cfg)
  stateful, scored = is_stateful(cfg), contract == "scored_pair"
  if (ranking or single) and not live_reference:
    raise PrefjaxError(f"train step: the {contract} contract needs live_reference=True (no reference cache)")
  if ranking:
    logps_fn = make_ranking_logps_fn(model_config, cfg.reduction)
    grad_fn = jax.value_and_grad(
        lambda p, micro, ref, o, k: _ranking_loss_fn(p, micro, ref, o, k, logps_fn=logps_fn, cfg=cfg), has_aux=True)
  elif single:
    logps_fn = make_single_logps_fn(model_config, cfg.reduction)
    grad_fn = jax.value_and_grad(
        lambda p, micro, ref, o, k: _single_loss_fn(p, micro, ref, o, k, logps_fn=logps_fn, cfg=cfg,
                                                    needs_value=with_value), has_aux=True)
  elif packed:
    logps_fn = make_packed_logps_fn(model_config, cfg.pack_segments, cfg.reduction, window)
    grad_fn = jax.value_and_grad(
        lambda p, micro, ref, o, k, n: _packed_loss_fn(p, micro, ref, o, k, n, logps_fn=logps_fn, cfg=cfg),
        has_aux=True)
  else:
    logps_fn = make_logps_fn(model_config, cfg.reduction, window)
    grad_fn = jax.value_and_grad(
        lambda p, micro, ref, o, k: _loss_fn(p, micro, ref, o, k, logps_fn=logps_fn, cfg=cfg), has_aux=True)
  ref_keys = ("ref_chosen_logps_BxS", "ref_rejected_logps_BxS") if packed else (
      "ref_chosen_logps_B", "ref_rejected_logps_B")

  def step(state, batch, ref_params):
    # Static (trace-time) checks: a packed batch must reach the packed step and vice versa.
    is_packed = "num_pairs_B" in batch or any("segment_ids" in k for k in batch)
    if is_packed != packed:
      raise PrefjaxError(
          f"train step: the batch is {'packed' if is_packed else 'not packed'} but "
          f"TrainConfig.pack_segments={cfg.pack_segments}" + (
              " (the unpacked step has no segment-aware attention or per-pair losses)" if is_packed
              else "; packed batches come from prefjax.lm.data iterator(pack_segments=S)"))
    if ranking and any(k not in batch for k in RANKING_KEYS):
      raise PrefjaxError(f"train step: objective {cfg.objective!r} (contract 'ranking') needs a batch with "
                         f"{list(RANKING_KEYS)} (prefjax.lm.data.MultiResponseDataset, RankingArrays); got "
                         f"{sorted(batch)}")
    if scored and any(k not in batch for k in SCORE_KEYS):
      raise PrefjaxError(f"train step: objective {cfg.objective!r} (contract 'scored_pair') needs a pair batch with "
                         f"the responses' scores {list(SCORE_KEYS)} (prefjax.lm.data.PreferenceDataset rows with "
                         f"chosen_score / rejected_score, PairArrays with them); got {sorted(batch)}")
    if single and any(k not in batch for k in SINGLE_KEYS):
      raise PrefjaxError(f"train step: objective {cfg.objective!r} (contract 'single') needs a batch with "
                         f"{list(SINGLE_KEYS)} (prefjax.lm.data.SingleResponseDataset, SingleArrays); got "
                         f"{sorted(batch)}")
    if not live_reference and any(k not in batch for k in ref_keys):
      raise PrefjaxError(f"train step: live_reference=False needs {list(ref_keys)} in the batch")
    ref = ref_params if live_reference else None
    extra = (jnp.sum(batch["num_pairs_B"]),) if packed else ()

    trainable = (state.params, state.values) if with_value else state.params
    # A stateful objective's state threads through the micro-batches in order (one update per micro-batch);
    # its PRNG key (keyed objectives, β-DPO's filter) is fold_in(fold_in(key, step), micro-batch).
    ostate = state.objective_state if stateful else ()
    step_key = jax.random.fold_in(state.key, state.step)

    def body(carry, xs):
      acc, ost = carry
      i, micro = xs
      (_, (metrics, ost)), grads = grad_fn(trainable, micro, ref, ost, jax.random.fold_in(step_key, i), *extra)
      return (jax.tree.map(jnp.add, acc, (grads, metrics)), ost), None

    first = jax.tree.map(lambda x: x[0], batch)
    zeros = (jax.tree.map(jnp.zeros_like, trainable),
             jax.eval_shape(lambda: grad_fn(trainable, first, ref, ostate, step_key, *extra)[0][1][0]))
    zeros = (zeros[0], jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros[1]))
    ((grads, metrics), new_ostate), _ = jax.lax.scan(body, (zeros, ostate),
                                                     (jnp.arange(cfg.grad_accum), batch))
    if not packed:  # packed micro-batch terms are already divided by the whole batch's pair count
      a = cfg.grad_accum
      grads = jax.tree.map(lambda g: g / a, grads)
      metrics = jax.tree.map(lambda m: m / a, metrics)
    if with_value:
      grads, value_grads = grads
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
    if with_value:
      finite = finite & jnp.all(jnp.isfinite(value_grads))
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    base = (keep(params, state.params), keep(opt_state, state.opt_state), state.step + finite.astype(jnp.int32),
            state.key)
    if with_value:
      v_updates, v_opt = value_optimizer(cfg).update(value_grads, state.value_opt_state, state.values)
      new_state = ValueTrainState(*base, keep(optax.apply_updates(state.values, v_updates), state.values),
                                  keep(v_opt, state.value_opt_state))
    elif stateful:
      new_state = StatefulTrainState(*base, keep(new_ostate, state.objective_state))
    else:
      new_state = TrainState(*base)
    metrics.update({"grad_norm": grad_norm, "learning_rate": schedule(state.step),
                    "finite": finite})
    return new_state, metrics

  return step


# ------------------------------------------------------------------------------------------------
# Data: in-memory pairs with a resumable iterator (the same contract as prefjax.lm.data).
# ------------------------------------------------------------------------------------------------


# The in-memory datasets and their iterator live with the data (`prefjax.lm.data`); re-exported here.
_check_ranking_batch = data.check_ranking_batch
PairArrays = data.PairArrays
RankingArrays = data.RankingArrays
PairIterator = data.PairIterator
SingleArrays = data.SingleArrays


# ------------------------------------------------------------------------------------------------
# Reference log-probs cache.
# ------------------------------------------------------------------------------------------------


def pair_keys(batch):
  """Content hashes (hex) of each pair's chosen and rejected tokens and masks: the cache keys."""
  rows = np.concatenate([np.asarray(batch[k], np.int32) for k in BATCH_KEYS], axis=1)
  return [hashlib.blake2b(r.tobytes(), digest_size=16).hexdigest() for r in rows]


_PACKED_TAG = b"prefjax packed pair v1"


def packed_pair_keys(batch):
  """Per row, the content hashes (hex) of its real pairs in a packed batch: the cache keys.

  Pair s of row b hashes its own chosen and rejected segments (the tokens and loss mask where
  `*_segment_ids_BxL[b] == s + 1`, cut out of the row, with their lengths and a tag that keeps these keys
  apart from the unpacked `pair_keys`), so it gets the same key whichever row and slot it is packed into.

  Returns:
    a list of B lists; row b's has `num_pairs_B[b]` keys.
  """
  num_pairs = np.asarray(batch["num_pairs_B"])
  arrays = {k: np.asarray(batch[f"{side}_{k2}_BxL"]) for side in SIDES
            for k, k2 in ((f"{side}_t", "tokens"), (f"{side}_m", "loss_mask"), (f"{side}_s", "segment_ids"))}
  out = []
  for b, n in enumerate(num_pairs):
    row = []
    for seg in range(1, int(n) + 1):
      parts = []
      for side in SIDES:
        sel = arrays[f"{side}_s"][b] == seg
        parts.append((arrays[f"{side}_t"][b, sel].astype(np.int32),
                      arrays[f"{side}_m"][b, sel].astype(np.int32)))
      header = np.array([len(parts[0][0]), len(parts[1][0])], np.int64)
      h = hashlib.blake2b(_PACKED_TAG + header.tobytes(), digest_size=16)
      for tokens, mask in parts:
        h.update(tokens.tobytes())
        h.update(mask.tobytes())
      row.append(h.hexdigest())
    out.append(row)
  return out


class ReferenceCache:
  """Reference log-probs by pair hash; filled by `precompute` and lazily, saved as an npz.

  Unpacked batches use `lookup` (keys: `pair_keys`), packed batches `lookup_packed` (keys:
  `packed_pair_keys`, one entry per pair whatever row it is packed into). A packed pair's value is computed
  in the packing context of the batch where it is first missing; reused in another row or slot (or compared
  with the same pair scored unpacked) it can differ from a fresh computation by float32 rounding (a few ulps
  of the summed log-prob: the segment-aware forward sums over a different padded layout).
  """

  def __init__(self, path):
    self.path = path
    self.table = {}
    self.dirty = False
    if path and os.path.exists(path):
      data = np.load(path)
      for k, w, l in zip(data["keys"], data["chosen"], data["rejected"]):
        self.table[str(k)] = (np.float32(w), np.float32(l))

  def lookup(self, batch, compute):
    """`(chosen [B], rejected [B])` float32 for `batch`, computing missing rows with `compute(batch)`."""
    keys = pair_keys(batch)
    missing = [i for i, k in enumerate(keys) if k not in self.table]
    if missing:
      w, l = compute(batch)
      w, l = np.asarray(w, np.float32), np.asarray(l, np.float32)
      for i in missing:
        self.table[keys[i]] = (w[i], l[i])
      self.dirty = True
    return (np.array([self.table[k][0] for k in keys], np.float32),
            np.array([self.table[k][1] for k in keys], np.float32))

  def lookup_packed(self, batch, max_segments, compute):
    """`(chosen [B, S], rejected [B, S])` float32 for a packed batch (0 in absent slots), S = max_segments.

    Missing pairs are computed with `compute(batch) -> ([B, S], [B, S])`.
    """
    keys = packed_pair_keys(batch)
    shape = (len(keys), int(max_segments))
    missing = [(b, s) for b, row in enumerate(keys) for s, k in enumerate(row) if k not in self.table]
    if missing:
      w, l = compute(batch)
      w, l = np.asarray(w, np.float32), np.asarray(l, np.float32)
      for b, s in missing:
        self.table[keys[b][s]] = (w[b, s], l[b, s])
      self.dirty = True
    return tuple(self._fill(keys, j, shape) for j in (0, 1))

  def _fill(self, keys, j, shape):
    out = np.zeros(shape, np.float32)
    for b, row in enumerate(keys):
      for s, k in enumerate(row):
        out[b, s] = self.table[k][j]
    return out

  def save(self):
    if not self.path or not self.dirty:
      return
    keys = sorted(self.table)
    arrays = {"keys": np.array(keys), "chosen": np.array([self.table[k][0] for k in keys], np.float32),
              "rejected": np.array([self.table[k][1] for k in keys], np.float32)}
    tmp = self.path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, self.path)
    self.dirty = False


# ------------------------------------------------------------------------------------------------
# The loop.
# ------------------------------------------------------------------------------------------------


class TrainResult(NamedTuple):
  state: TrainState
  history: list  # the metrics records written this call (and restored ones are in metrics.jsonl)
  preempted: bool  # always False: SIGTERM/SIGINT raise `prefjax.preemption.Preempted` after saving
  resumed_from: Optional[int]


def device_peak_flops(cfg):
  if cfg.peak_flops:
    return float(cfg.peak_flops)
  kind = jax.devices()[0].device_kind
  for name, flops in PEAK_FLOPS.items():
    if kind.startswith(name):
      return flops
  return None


def _boxed_state(model_config, tx, key):
  def build():
    variables = lm_model.init_params(model_config, key)
    return variables, tx.init(variables)
  return jax.eval_shape(build)


def value_optimizer(cfg):
  """The value table's optimiser (`ValueTrainState`): Adam at `cfg.value_learning_rate`, constant."""
  return optax.adam(cfg.value_learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)


def state_shardings(model_config, cfg, mesh):
  """`NamedSharding`s of a `TrainState` (a `ValueTrainState` when `needs_value(cfg)`, its value table
  replicated) on `mesh` via the model's logical axis rules."""
  tx, _ = make_optimizer(cfg)
  boxed_params, boxed_opt = _boxed_state(model_config, tx, jax.random.key(0))
  rep = shd.replicated(mesh)
  base = (shd.logical_shardings(boxed_params, mesh), shd.logical_shardings(boxed_opt, mesh), rep, rep)
  if is_stateful(cfg):
    return StatefulTrainState(*base, jax.tree.map(lambda _: rep, jax.eval_shape(_objective_init(cfg))))
  if not needs_value(cfg):
    return TrainState(*base)
  v_opt = jax.eval_shape(value_optimizer(cfg).init, jax.ShapeDtypeStruct((1,), jnp.float32))
  return ValueTrainState(*base, rep, jax.tree.map(lambda _: rep, v_opt))


def _objective_init(cfg):
  """`() -> state`: a stateful objective's initial state (`spec.Loss.init_state`, keyed by the seed)."""
  return lambda: spec.get(cfg.objective).loss().init_state(jax.random.key(cfg.seed))


def init_state(model_config, cfg, params, key, mesh, num_prompts=0):
  """A `TrainState` from (unboxed) `params`, placed on `mesh`; a `ValueTrainState` with a zero value table of
  `num_prompts` entries when `needs_value(cfg)`."""
  tx, _ = make_optimizer(cfg)
  shardings = state_shardings(model_config, cfg, mesh)
  # A copy: the step donates the state, and `params` may alias the reference's buffers.
  params = jax.tree.map(lambda x: jnp.array(x, copy=True),
                        jax.device_put(nn.unbox(params), shardings.params))
  opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
  base = (params, opt_state, jax.device_put(jnp.zeros((), jnp.int32), shardings.step),
          jax.device_put(key, shardings.key))
  if is_stateful(cfg):
    return StatefulTrainState(*base, jax.jit(_objective_init(cfg), out_shardings=shardings.objective_state)())
  if not needs_value(cfg):
    return TrainState(*base)
  if not isinstance(num_prompts, (int, np.integer)) or num_prompts < 1:
    raise PrefjaxError(f"objective {cfg.objective!r} learns a value per prompt: the dataset must say how many "
                       f"distinct prompts it has (num_prompts >= 1), got {num_prompts!r}")
  values = jax.device_put(jnp.zeros((int(num_prompts),), jnp.float32), shardings.values)
  v_opt = jax.jit(value_optimizer(cfg).init, out_shardings=shardings.value_opt_state)(values)
  return ValueTrainState(*base, values, v_opt)


_abstract_state = loop.abstract_state


def train(model_config, cfg, dataset, workdir, *, init_params, ref_params=None, eval_fn=None,
          mesh=None, on_step=None, verbose=True, extra_config=None):
  """Trains (or resumes training of) a policy on a dataset of the objective's contract; writes everything to
  `workdir`. The loop (resume, evaluation, metrics, checkpoints, SIGTERM) is `prefjax.lm.loop.run`.

  Args:
    model_config: the policy's `TransformerConfig` (the reference has the same architecture).
    cfg: `TrainConfig`.
    dataset: an object with `iterator(batch_size, seed=, state=)` returning an iterator of batch dicts of
      the objective's contract (pairs: `BATCH_KEYS`, numpy int32 `[B, L]`; ranking: `RANKING_KEYS`; single:
      `SINGLE_KEYS`) with `state()` / `restore(state)` (`PairArrays`, `RankingArrays`, `SingleArrays`, or
      `prefjax.lm.data`'s datasets); for an objective that learns a value per prompt (DRO) it also has
      `num_prompts`. With `cfg.pack_segments` > 0 it is called as `iterator(batch_size, seed=, pack_segments=)`
      and must return packed batches (`prefjax.lm.data.PreferenceDataset`).
    workdir: directory (str or `Workdir`): metrics.jsonl, checkpoints/, reference_logps.npz.
    init_params: the policy's initial variables (usually the reference's).
    ref_params: the reference's variables (default: `init_params`).
    eval_fn: optional `eval_fn(params) -> dict of floats`, logged as eval/<name> at step 0, every
      `cfg.eval_every` steps and at the end.
    mesh: device mesh (default: every device on the data axis).
    on_step: optional `on_step(step, record)` hook after each step's bookkeeping (tests use it to
      simulate a crash).
    verbose: print a progress line every `cfg.log_every` steps.
    extra_config: JSON dict stored in checkpoints and compared on resume (e.g. the model config).

  Returns:
    `TrainResult`.

  Raises:
    NonFiniteError: a non-finite loss/gradient (the last good state is checkpointed first).
    PrefjaxError: a checkpoint from another model shape, a malformed batch.
    prefjax.preemption.Preempted: SIGTERM or SIGINT received (the state after the current step is
      checkpointed first; calling `train` again with the same workdir resumes from it).
  """
  workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
  mesh = shd.make_mesh() if mesh is None else mesh
  if cfg.micro_batch % shd.batch_divisor(mesh):
    raise PrefjaxError(f"micro-batch {cfg.micro_batch} (batch_size / grad_accum) must be a multiple of "
                       f"the mesh's data×fsdp = {shd.batch_divisor(mesh)}")
  live = cfg.reference == "live"
  contract = contract_of(cfg.objective)
  ranking, single = contract == "ranking", contract == "single"
  ref_params = init_params if ref_params is None else ref_params
  shardings = state_shardings(model_config, cfg, mesh)
  ref_params = jax.device_put(nn.unbox(ref_params), shardings.params)
  num_prompts = 0
  if needs_value(cfg):
    num_prompts = getattr(dataset, "num_prompts", None)
    if num_prompts is None:
      raise PrefjaxError(f"TrainConfig.objective={cfg.objective!r} learns a value per prompt: the dataset "
                         f"({type(dataset).__name__}) must have num_prompts (prefjax.lm.data.SingleResponseDataset "
                         f"and SingleArrays do)")
  state = init_state(model_config, cfg, init_params, jax.random.key(cfg.seed), mesh, num_prompts)
  meta = {"model": dataclasses.asdict(model_config) | {"dtype": str(model_config.dtype),
                                                      "param_dtype": str(model_config.param_dtype)},
          **(extra_config or {})}
  if cfg.pack_segments:
    _check_accepts_packing(dataset, cfg)
    iterator = dataset.iterator(cfg.batch_size, seed=cfg.seed, pack_segments=cfg.pack_segments)
  else:
    iterator = dataset.iterator(cfg.batch_size, seed=cfg.seed)
  cache = None if live else ReferenceCache(workdir.file(REFERENCE_CACHE))

  def ref_compute(batch):
    if cfg.pack_segments:
      batch = {k: batch[k] for k in BATCH_KEYS + PACKED_KEYS}
    _, logps_fn = _compiled(model_config, cfg, live, mesh, logits_window_for(batch, cfg))
    w, l, _, _ = logps_fn(ref_params, shd.shard_batch(batch, mesh) if _divisible(batch, mesh) else batch)
    return jax.device_get(w), jax.device_get(l)

  def prepare(batch):
    if ranking:
      _check_ranking_batch(batch)
    elif single:
      data.check_single_batch(batch)
      if needs_labels(cfg.objective) and np.any(np.asarray(batch["label_B"]) < 0):
        raise PrefjaxError(f"TrainConfig.objective={cfg.objective!r} reads binary labels, but this batch has "
                           f"rows with a reward and no label (label_B = -1): give it rows with \"label\"")
    else:
      _check_batch(batch, pack_segments=cfg.pack_segments)
      if contract == "scored_pair" and any(k not in batch for k in SCORE_KEYS):
        raise PrefjaxError(f"TrainConfig.objective={cfg.objective!r} reads both responses' scores (contract "
                           f"'scored_pair'), but the batch has no {list(SCORE_KEYS)}: give it preference rows with "
                           f"chosen_score and rejected_score")
    if cache is not None and cfg.pack_segments:
      w, l = cache.lookup_packed(batch, cfg.pack_segments, ref_compute)
      batch = {**batch, "ref_chosen_logps_BxS": w, "ref_rejected_logps_BxS": l}
    elif cache is not None:
      w, l = cache.lookup(batch, ref_compute)
      batch = {**batch, "ref_chosen_logps_B": w, "ref_rejected_logps_B": l}
    return batch

  def step(state, batch):
    jstep, _ = _compiled(model_config, cfg, live, mesh, logits_window_for(batch, cfg))
    a = cfg.grad_accum
    host = {k: np.asarray(v).reshape((a, cfg.micro_batch) + np.shape(v)[1:]) for k, v in batch.items()}
    return jstep(state, shd.shard_batch(host, mesh, batch_axis=1), ref_params if live else None)

  def check(metrics, at, state):
    if not bool(metrics.pop("finite")):
      return loop.non_finite(metrics, at, state, os.path.abspath(workdir.file(CHECKPOINTS)))
    return None

  peak = device_peak_flops(cfg)

  def record(metrics, batch, seconds):
    if ranking:
      seq_len, per_row = batch["tokens_BxKxL"].shape[2], batch["tokens_BxKxL"].shape[1]
    elif single:
      seq_len, per_row = batch["tokens_BxL"].shape[1], 1
    else:
      seq_len, per_row = batch["chosen_tokens_BxL"].shape[1], 2
    n_tokens = cfg.batch_size * per_row * seq_len
    out = {**{k: float(v) for k, v in metrics.items()}, "tokens_per_second": n_tokens / seconds,
           "step_seconds": seconds}
    if cfg.pack_segments:
      out["pairs_per_step"] = int(np.sum(batch["num_pairs_B"]))
    flops = lm_model.flops_per_token(model_config, seq_len) + (
        lm_model.flops_per_token(model_config, seq_len, training=False) if live else 0)
    out["mfu"] = (flops * n_tokens / seconds / (peak * mesh.size)) if peak else None
    return out

  result = loop.run(
      cfg, workdir, state, iterator, step, meta=meta, prepare=prepare, check=check, record=record,
      evaluate=None if eval_fn is None else lambda params, at: eval_fn(params),
      progress=lambda rec: _progress(rec, cfg.num_steps), on_save=None if cache is None else cache.save,
      on_step=on_step, verbose=verbose)
  return TrainResult(*result)


_COMPILED = {}


def _check_accepts_packing(dataset, cfg):
  """A clear error when `dataset.iterator` cannot be asked for packed batches."""
  try:
    params = inspect.signature(dataset.iterator).parameters
  except (TypeError, ValueError):  # no signature to read: let the call decide
    return
  if "pack_segments" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
    return
  raise PrefjaxError(
      f"TrainConfig.pack_segments={cfg.pack_segments}: {type(dataset).__name__}.iterator does not take "
      f"pack_segments, so it cannot give packed batches (prefjax.lm.data.PreferenceDataset can); use "
      f"pack_segments=0 with this dataset")


def _compiled(model_config, cfg, live, mesh, window=None):
  """Jitted step and log-prob functions, reused across `train` calls with the same static setup."""
  fields = dataclasses.replace(cfg, log_every=1, eval_every=0, checkpoint_every=0, keep_checkpoints=1)
  try:
    key = (model_config, fields, live, mesh, window)
    hash(key)
  except TypeError:  # e.g. a dict combination of objectives
    key = None
  if key is not None and key in _COMPILED:
    return _COMPILED[key]
  shardings = state_shardings(model_config, cfg, mesh)
  jstep = jax.jit(make_train_step(model_config, cfg, live_reference=live, window=window),
                  out_shardings=(shardings, None), donate_argnums=(0,))
  if contract_of(cfg.objective) == "ranking":
    logps_fn = jax.jit(make_ranking_logps_fn(model_config, cfg.reduction))
  elif contract_of(cfg.objective) == "single":
    logps_fn = jax.jit(make_single_logps_fn(model_config, cfg.reduction))
  elif cfg.pack_segments:
    logps_fn = jax.jit(make_packed_logps_fn(model_config, cfg.pack_segments, cfg.reduction, window))
  else:
    logps_fn = jax.jit(make_logps_fn(model_config, cfg.reduction, window))
  if key is not None:
    if len(_COMPILED) > 16:
      _COMPILED.clear()
    _COMPILED[key] = (jstep, logps_fn)
  return jstep, logps_fn


def _divisible(batch, mesh):
  return batch["chosen_tokens_BxL"].shape[0] % shd.batch_divisor(mesh) == 0


def _progress(record, num_steps):
  width = 20
  done = int(width * record["step"] / num_steps)
  line = (f"[{'#' * done}{'.' * (width - done)}] step {record['step']}/{num_steps} "
          f"loss {record['loss']:.4f} "
          + (f"margin {record['rewards/margins']:.3f} " if "rewards/margins" in record else
             f"reward {record['rewards/mean']:.3f} " if "rewards/mean" in record else "")
          + (f"acc {record['rewards/accuracies']:.2f} " if "rewards/accuracies" in record else "")
          + (f"V {record['values/mean']:.3f} " if "values/mean" in record else "")
          + f"tok/s {record['tokens_per_second']:.0f}")
  evals = [f"{k[5:]} {v:.3f}" for k, v in record.items() if k.startswith("eval/") and v is not None]
  return line + ("  " + " ".join(evals) if evals else "")

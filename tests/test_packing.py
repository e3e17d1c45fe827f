"""Packed preference batches (prefjax.lm.data, pack_segments) scored by the segment-aware model."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax.errors import PrefjaxError
from prefjax.lm import data
from prefjax.lm import logprobs
from prefjax.lm import model as lm
from prefjax.lm.tokenizer import load_tokenizer

MAX_LENGTH = 20
PACK = 3


def test_packed_iterator_batch_scores_like_unpacked_pairs():
  """`policy_segment_logps` on a `PackedBatchIterator` batch == `policy_logps` of each pair alone."""
  rows = [{"prompt": f"p{i}", "chosen": "c" * (1 + i % 4), "rejected": "r" * (1 + (i * 3) % 5)}
          for i in range(7)]
  ds = data.PreferenceDataset.from_rows(rows, max_length=MAX_LENGTH)
  batch = next(ds.iterator(2, shuffle=False, pack_segments=PACK))
  packed_rows = ds.iterator(2, shuffle=False, pack_segments=PACK).next_indices()
  assert max(len(r) for r in packed_rows) >= 2  # rows really hold several pairs
  flat = [i for r in packed_rows for i in r]
  alone = ds.collate(flat)

  cfg = lm.TransformerConfig(vocab_size=load_tokenizer("byte").vocab_size, d_model=16, num_layers=1,
                             num_heads=2, d_ff=32, max_len=MAX_LENGTH, style="llama", init_std=0.3)
  # Parameters filled from numpy (jax.random initialisation compiles a program per shape: slow on CPU).
  shapes = nn.unbox(jax.eval_shape(functools.partial(lm.init_params, cfg), jax.random.key(0)))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: jnp.asarray(0.3 * rng.normal(size=x.shape), x.dtype), shapes)
  apply_fn = lm.Transformer(cfg).apply
  # The head only at the positions predicting response tokens: each row's response tokens, spread along it.
  window = max(logprobs.max_scored(batch[f"{side}_loss_mask_BxL"]) for side in ("chosen", "rejected"))
  assert window < MAX_LENGTH - 1 - PACK  # the prompts' positions are really skipped

  @jax.jit
  def run(params, batch, alone):
    out, windowed = {}, {}
    for side in ("chosen", "rejected"):
      args = (apply_fn, params, batch[f"{side}_tokens_BxL"], batch[f"{side}_loss_mask_BxL"],
              batch[f"{side}_segment_ids_BxL"], batch[f"{side}_positions_BxL"], PACK,
              batch[f"{side}_attention_mask_BxL"])
      windowed[side] = [logprobs.policy_segment_logps(*args, reduction=r, window=w)
                        for r, w in (("sum", window), ("mean", window), ("sum", MAX_LENGTH + 3))]
      windowed[side].append(logprobs.policy_segment_logps(*args, reduction="mean"))
      out[side] = (
          logprobs.policy_segment_logps(
              apply_fn, params, batch[f"{side}_tokens_BxL"], batch[f"{side}_loss_mask_BxL"],
              batch[f"{side}_segment_ids_BxL"], batch[f"{side}_positions_BxL"], PACK,
              batch[f"{side}_attention_mask_BxL"]),
          logprobs.policy_logps(apply_fn, params, alone[f"{side}_tokens_BxL"],
                                alone[f"{side}_loss_mask_BxL"], alone[f"{side}_attention_mask_BxL"]),
          logprobs.token_logps(apply_fn(
              params, batch[f"{side}_tokens_BxL"],
              attention_mask_BxT=batch[f"{side}_attention_mask_BxL"],
              positions_BxT=batch[f"{side}_positions_BxL"],
              segment_ids_BxT=batch[f"{side}_segment_ids_BxL"]), batch[f"{side}_tokens_BxL"]))
    return out, windowed

  out, windowed = run(params, jax.tree.map(jnp.asarray, batch), jax.tree.map(jnp.asarray, alone))
  for side, (packed, single, tok) in out.items():
    k = 0
    for b, row in enumerate(packed_rows):
      for s in range(PACK):
        if s < len(row):
          np.testing.assert_allclose(packed.logps[b, s], single.logps[k], rtol=1e-5, atol=1e-6)
          assert int(packed.counts[b, s]) == int(single.counts[k]) > 0
          k += 1
        else:
          assert float(packed.logps[b, s]) == 0.0 and int(packed.counts[b, s]) == 0
    # segment_logps agrees with data.segment_sums on the same per-token log-probs (numpy, float64).
    tok = np.asarray(tok, np.float64)
    want = data.segment_sums(tok, batch[f"{side}_loss_mask_BxL"], batch[f"{side}_segment_ids_BxL"],
                             PACK)
    np.testing.assert_allclose(packed.logps, want, rtol=1e-5, atol=1e-6)
    # The windowed head: the same per-pair log-probs and counts (sum and mean; a window wider than the row).
    win_sum, win_mean, wide, full_mean = windowed[side]
    for got, ref in ((win_sum, packed), (win_mean, full_mean), (wide, packed)):
      np.testing.assert_allclose(got.logps, ref.logps, rtol=1e-5, atol=1e-6)
      np.testing.assert_array_equal(got.counts, ref.counts)
  side = max(("chosen", "rejected"), key=lambda x: logprobs.max_scored(batch[f"{x}_loss_mask_BxL"]))
  with pytest.raises(PrefjaxError, match=f"window={window - 1} does not cover"):
    logprobs.policy_segment_logps(apply_fn, params, batch[f"{side}_tokens_BxL"], batch[f"{side}_loss_mask_BxL"],
                                  batch[f"{side}_segment_ids_BxL"], batch[f"{side}_positions_BxL"], PACK,
                                  window=window - 1)

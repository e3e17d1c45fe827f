"""Offline LM trainer on packed batches (TrainConfig.pack_segments): the unpacked step's numbers, per pair.

Tolerances (float32): packed and unpacked rows run the same maths through matmuls over differently padded
rows, so they agree up to rounding. Each comparison's bound is measured on the unpacked computation itself
(tests/float32_noise.py: the change of its outputs when every parameter moves by one ulp), so quantities near
0 (a reward margin, an Adam update of a parameter with a tiny gradient) get the rounding of the terms that
make them, not a fraction of their own size.
"""

import functools
import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax import objectives
from prefjax.errors import PrefjaxError
from prefjax.lm import data as lm_data
from prefjax.lm import logprobs as lm_logprobs
from prefjax.lm import model as lm_model
from prefjax.lm import train as tr
from prefjax.lm.tokenizer import load_tokenizer
from resume_helpers import Crash
from resume_helpers import crash_after
from resume_helpers import records_by_step

import float32_noise

MAX_LENGTH = 24
RTOL = 1e-5  # a float64 numpy value against the float32 loss of a few-op model-free function (~100 ulps)
METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
           "logps/chosen", "logps/rejected")


def _rows():
  # Prompts of 3-4 tokens (BOS + "q<i>"), responses of 2-7 tokens (EOS included): 2-3 pairs per row of 24.
  return [{"prompt": f"q{i}", "chosen": "ab" * (1 + i % 3),
           "rejected": "xyz"[: 1 + (i * 2) % 3] + "w" * (i % 4)} for i in range(12)]


def _write_jsonl(path, rows):
  with open(path, "w", encoding="utf-8") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")
  return str(path)


@functools.lru_cache(maxsize=None)
def _model():
  """A 1-layer Llama-style model (RoPE: positions matter) and two random parameter sets (policy, ref)."""
  config = lm_model.TransformerConfig(vocab_size=load_tokenizer("byte").vocab_size, d_model=16,
                                      num_layers=1, num_heads=2, d_ff=32, max_len=MAX_LENGTH,
                                      style="llama", init_std=0.3)
  # Filled from numpy: jax.random initialisation compiles a program per shape (slow on CPU).
  shapes = nn.unbox(jax.eval_shape(functools.partial(lm_model.init_params, config), jax.random.key(0)))
  out = []
  for seed in (0, 1):
    rng = np.random.default_rng(seed)
    out.append(jax.tree.map(lambda x: jnp.asarray(0.3 * rng.normal(size=x.shape), x.dtype), shapes))
  return config, out[0], out[1]


def _dataset(tmp_path, rows=None):
  path = _write_jsonl(tmp_path / "prefs.jsonl", _rows() if rows is None else rows)
  return lm_data.PreferenceDataset.from_jsonl(path, max_length=MAX_LENGTH)


def _stack(batch, accum):
  return {k: np.asarray(v).reshape((accum, np.shape(v)[0] // accum) + np.shape(v)[1:])
          for k, v in batch.items()}


def _close(a, b, noise, err_msg=""):
  float32_noise.assert_close(a, b, noise, err_msg=err_msg)


def test_packed_step_equals_unpacked_step_on_the_same_pairs(tmp_path):
  """Loss, metrics and AdamW update of a packed batch (4 rows, grad_accum 2, 6 + 5 real pairs, rows with
  fewer than S pairs) equal the unpacked step on the same 11 pairs, with the head at every position and only
  at the response tokens' (window); a length-normalised objective stays finite with absent slots; a mean of
  micro-batch means would differ (so the test can fail)."""
  config, params, ref_params = _model()
  ds = _dataset(tmp_path)
  s = 3
  batch = next(ds.iterator(4, shuffle=False, pack_segments=s))
  rows = ds.iterator(4, shuffle=False, pack_segments=s).next_indices()
  counts = [len(r) for r in rows]
  micro_pairs = (counts[0] + counts[1], counts[2] + counts[3])
  assert micro_pairs[0] != micro_pairs[1] and min(counts) < s, counts
  flat = [i for r in rows for i in r]
  n = len(flat)
  alone = ds.collate(flat)

  # sigmoid_norm divides by both token counts and sft by the chosen count: absent slots (count 0) would give
  # 0/0 = NaN gradients without the trainer's guard. eps = 1 makes Adam's first update −g/(|g| + 1), a
  # monotone function of each gradient entry (an SGD-like step), so equal updates mean equal gradients.
  objective = {"sigmoid_norm": 1.0, "sft": 1.0}
  common = dict(objective=objective, beta=8.0, num_steps=2, learning_rate=1.0, schedule="constant",
                grad_clip=0.0, eps=1.0, reference="live")
  cfg_packed = tr.TrainConfig(batch_size=4, grad_accum=2, pack_segments=s, **common)
  cfg_alone = tr.TrainConfig(batch_size=n, grad_accum=1, **common)
  mesh = tr.shd.make_mesh(devices=jax.devices()[:1])
  window = max(lm_logprobs.max_scored(batch[f"{side}_loss_mask_BxL"]) for side in tr.SIDES)
  assert window < MAX_LENGTH - 1 - s  # the windowed head really skips the prompts' positions
  out, steps = {}, {}
  for name, cfg, b, accum, win in (("packed", cfg_packed, batch, 2, None), ("alone", cfg_alone, alone, 1, None),
                                   ("windowed", cfg_packed, batch, 2, window)):
    step = jax.jit(tr.make_train_step(config, cfg, live_reference=True, window=win))

    def run(both, cfg=cfg, b=b, accum=accum, step=step):
      p, ref = both
      new, m = step(tr.init_state(config, cfg, p, jax.random.key(0), mesh), _stack(b, accum), ref)
      return (jax.device_get(m), jax.tree.map(lambda x, y: np.asarray(x) - np.asarray(y),
                                              jax.device_get(new.params), jax.device_get(p)))
    out[name], steps[name] = run((params, ref_params)), run
  (ma, ua) = out["alone"]
  # Both the policy's and the reference's parameters enter the compared numbers: both are nudged.
  noise_m, noise_u = float32_noise.noise_scale(steps["alone"], (params, ref_params))
  assert max(float(np.max(np.abs(x))) for x in jax.tree.leaves(ua)) > 1e-3  # the step moved the parameters
  for name in ("packed", "windowed"):
    mp, up = out[name]
    assert bool(mp["finite"]) and all(np.all(np.isfinite(x)) for x in jax.tree.leaves(up))
    for k in METRICS + ("grad_norm",):
      _close(mp[k], ma[k], noise_m[k], err_msg=k)
    float32_noise.assert_tree_close(up, ua, noise_u)
  mp = out["packed"][0]

  # Independent per-pair losses (unpacked forward + the objective): the mean over all 11 pairs is the loss;
  # the mean of the two micro-batch means is measurably different.
  logps = jax.jit(tr.make_logps_fn(config))
  pw, pl, nw, nl = logps(params, alone)
  rw, rl, _, _ = logps(ref_params, alone)
  losses = np.asarray(objectives.pairwise_loss(objective, pw, pl, rw, rl, beta=8.0, chosen_lengths=nw,
                                               rejected_lengths=nl), np.float64)
  want = losses.mean()
  wrong = 0.5 * (losses[:micro_pairs[0]].mean() + losses[micro_pairs[0]:].mean())
  _close(mp["loss"], want, noise_m["loss"])
  assert abs(wrong - want) > 30 * float32_noise.FACTOR * noise_m["loss"], (wrong, want)


def test_logits_window_for_packed_rows_counts_response_tokens():
  """Packed rows: R = the most response tokens in a row (not their span), rounded up to WINDOW_MULTIPLE."""
  length = 300
  mask = np.zeros((2, length), np.int32)
  mask[0, [5, 6, 7, 150, 151, 290]] = 1  # spread over 286 positions, 6 tokens
  mask[1, 10:80] = 1  # 70 tokens: the widest count
  batch = {f"{side}_{k}": np.zeros_like(mask) for side in tr.SIDES for k in ("tokens_BxL", "loss_mask_BxL")}
  batch["rejected_loss_mask_BxL"] = mask
  packed = tr.TrainConfig(objective="sigmoid", batch_size=2, pack_segments=3)
  assert tr.logits_window_for(batch, packed) == 2 * tr.WINDOW_MULTIPLE == 128
  unpacked = tr.TrainConfig(objective="sigmoid", batch_size=2)  # the span (286) rounds to 320 ≥ L − 1
  assert tr.logits_window_for(batch, unpacked) is None
  assert tr.logits_window_for(batch, tr.TrainConfig(objective="sigmoid", batch_size=2, pack_segments=3,
                                                    logits_window="full")) is None


def test_length_normalised_objective_is_finite_with_absent_slots():
  """Absent slots (count 0) must not put 0/0 into a length-normalised objective's gradient: here their
  log-probs depend on the parameters (a model-free stand-in for the forward), so only the trainer's
  count guard keeps the gradient finite (jnp.where masking alone would let NaN through its backward)."""
  cfg = tr.TrainConfig(objective={"sigmoid_norm": 1.0, "sft": 1.0}, batch_size=2, pack_segments=3)
  counts = np.array([[3, 2, 0], [4, 0, 0]], np.int32)

  def logps_fn(p, micro):
    del micro
    return -p * (1.0 + counts), -2.0 * p * (1.0 + counts), jnp.asarray(counts), jnp.asarray(counts)

  micro = {"num_pairs_B": np.array([2, 1], np.int32),
           "ref_chosen_logps_BxS": np.zeros((2, 3), np.float32),
           "ref_rejected_logps_BxS": np.zeros((2, 3), np.float32)}
  loss_fn = functools.partial(tr._packed_loss_fn,  # pylint: disable=protected-access
                              logps_fn=logps_fn, cfg=cfg)
  (loss, (metrics, _)), grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      jnp.float32(0.3), micro, None, (), None, jnp.int32(3))  # no objective state, no key
  assert np.isfinite(grad) and grad != 0 and all(np.isfinite(v) for v in metrics.values())
  # Independent: the three real pairs alone (float64 numpy): sigmoid_norm + sft, averaged over 3 pairs.
  n = np.array([3.0, 2.0, 4.0])
  w, l = -0.3 * (1 + n), -0.6 * (1 + n)
  want = np.mean(np.logaddexp(0.0, -cfg.beta * (w / n - l / n)) - w / n)
  np.testing.assert_allclose(float(loss), want, rtol=RTOL)


@functools.lru_cache(maxsize=None)
def _cfgs():
  """The configs of the remaining tests: `tr._compiled` and `tr.train` share their compiled programs."""
  common = dict(objective="sigmoid", beta=0.1, batch_size=2, num_steps=4, learning_rate=1e-2,
                warmup_steps=1, checkpoint_every=2, pack_segments=2)
  return tr.TrainConfig(reference="live", **common), tr.TrainConfig(reference="precomputed", **common)


def test_step0_packed_policy_equals_reference_gives_log2_and_zero_rewards(tmp_path):
  """Acceptance: at step 0 with π = π_ref (live reference) on a packed batch, sigmoid loss = log 2 and
  rewards = 0 exactly (4 real pairs: their float32 mean of equal terms is exact)."""
  config, params, _ = _model()
  cfg, _ = _cfgs()
  ds = _dataset(tmp_path)
  batch = next(ds.iterator(2, seed=0, pack_segments=2))
  assert batch["num_pairs_B"].sum() == 4
  mesh = tr.shd.make_mesh()
  jstep, _ = tr._compiled(config, cfg, True, mesh)  # pylint: disable=protected-access
  state = tr.init_state(config, cfg, params, jax.random.key(0), mesh)
  _, m = jstep(state, _stack(batch, 1), params)
  m = jax.device_get(m)
  for k in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
    assert m[k] == 0.0, (k, m[k])
  assert m["loss"] == np.float32(math.log(2.0)), m["loss"]
  assert m["grad_norm"] > 0


def test_precomputed_reference_matches_live_and_hits_across_rows(tmp_path):
  """The cached reference gives the live loss on the same batch; a pair packed into another row and slot
  (with other neighbours) hits its cache entry, which equals a fresh computation there within float32."""
  config, params, ref_params = _model()
  cfg_live, cfg_pre = _cfgs()
  ds = _dataset(tmp_path)
  it = ds.iterator(2, seed=0, pack_segments=2)
  batch = next(it)
  rows = ds.iterator(2, seed=0, pack_segments=2).next_indices()
  mesh = tr.shd.make_mesh()
  jlive, _ = tr._compiled(config, cfg_live, True, mesh)  # pylint: disable=protected-access
  jpre, logps_fn = tr._compiled(config, cfg_pre, False, mesh)  # pylint: disable=protected-access
  compute = lambda b: tuple(np.asarray(x) for x in logps_fn(ref_params, b)[:2])
  cache = tr.ReferenceCache(None)
  w, l = cache.lookup_packed(batch, 2, compute)
  assert w.shape == l.shape == (2, 2) and len(cache.table) == sum(len(r) for r in rows)
  live = lambda both: jax.device_get(jlive(tr.init_state(config, cfg_live, both[0], jax.random.key(0), mesh),
                                          _stack(batch, 1), both[1])[1])
  m_live, noise_live = live((params, ref_params)), float32_noise.noise_scale(live, (params, ref_params))
  state = tr.init_state(config, cfg_pre, params, jax.random.key(0), mesh)
  _, m_pre = jpre(state, _stack({**batch, "ref_chosen_logps_BxS": w, "ref_rejected_logps_BxS": l}, 1),
                  None)
  m_pre = jax.device_get(m_pre)
  for k in METRICS + ("grad_norm",):
    _close(m_pre[k], m_live[k], noise_live[k], err_msg=k)
  assert abs(float(m_live["rewards/margins"])) > 1e-3  # policy != reference: a real comparison

  # The same pairs in reverse order, as their own dataset: each lands in another row or slot.
  raw = _rows()
  ds2 = _dataset(tmp_path, [raw[i] for r in reversed(rows) for i in reversed(r)])
  batch2 = next(ds2.iterator(2, shuffle=False, pack_segments=2))
  keys1, keys2 = tr.packed_pair_keys(batch), tr.packed_pair_keys(batch2)
  where1 = {k: (b, j) for b, r in enumerate(keys1) for j, k in enumerate(r)}
  where2 = {k: (b, j) for b, r in enumerate(keys2) for j, k in enumerate(r)}
  assert set(where2) == set(where1) and any(where1[k] != where2[k] for k in where1)

  def no_compute(_):
    raise AssertionError("a cache miss for a pair already cached from another row")

  w2, l2 = cache.lookup_packed(batch2, 2, no_compute)
  fresh_w, fresh_l = compute(batch2)
  for k, (b, j) in where2.items():
    b1, j1 = where1[k]
    assert (w2[b, j], l2[b, j]) == (w[b1, j1], l[b1, j1])
  # Same pair, other packing context: equal up to float32 rounding of the reference's log-probs.
  noise_w, noise_l = float32_noise.noise_scale(lambda p: logps_fn(p, batch2)[:2], ref_params)
  _close(w2, fresh_w, noise_w)
  _close(l2, fresh_l, noise_l)


def test_train_packed_end_to_end_and_bit_identical_resume(tmp_path):
  """`train` with pack_segments=2 (cached reference) writes TRL metrics and pairs_per_step; killed after
  checkpoint 2 and restarted, steps 3-4 repeat the uninterrupted run exactly."""
  config, params, _ = _model()
  _, cfg = _cfgs()
  ds = _dataset(tmp_path)
  full = tr.train(config, cfg, ds, str(tmp_path / "full"), init_params=params, verbose=False)
  a = records_by_step(tmp_path / "full")
  assert sorted(a) == [1, 2, 3, 4]
  assert a[1]["loss"] == pytest.approx(math.log(2), abs=1e-6)
  it = ds.iterator(2, seed=0, pack_segments=2)
  pairs = [sum(len(r) for r in it.next_indices()) for _ in range(4)]
  assert [a[k]["pairs_per_step"] for k in (1, 2, 3, 4)] == pairs
  assert all(np.isfinite(r["loss"]) for r in a.values())
  assert os.path.exists(tmp_path / "full" / tr.REFERENCE_CACHE)

  with pytest.raises(Crash):
    tr.train(config, cfg, ds, str(tmp_path / "cut"), init_params=params, on_step=crash_after(3), verbose=False)
  resumed = tr.train(config, cfg, ds, str(tmp_path / "cut"), init_params=params, verbose=False)
  assert resumed.resumed_from == 2
  b = records_by_step(tmp_path / "cut")
  assert sorted(b) == [1, 2, 3, 4]
  for step in (3, 4):
    assert a[step] == b[step], step
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(full.state.params),
               jax.device_get(resumed.state.params))


def test_bad_packing_input_is_a_clear_error(tmp_path):
  config, params, _ = _model()
  with pytest.raises(PrefjaxError, match="pack_segments"):
    tr.TrainConfig(pack_segments=-1)
  with pytest.raises(PrefjaxError, match="pack_segments.*batch-coupled"):
    tr.TrainConfig(objective="aot", pack_segments=2)
  ds = _dataset(tmp_path)
  packed = next(ds.iterator(2, seed=0, pack_segments=2))
  with pytest.raises(PrefjaxError, match="pack_segments=0"):
    tr._check_batch(packed)  # pylint: disable=protected-access
  with pytest.raises(PrefjaxError, match="not packed"):
    tr._check_batch(ds.collate([0, 1]), pack_segments=2)  # pylint: disable=protected-access
  with pytest.raises(PrefjaxError, match="pack_segments=1"):
    tr._check_batch(packed, pack_segments=1)  # pylint: disable=protected-access

  class PackedAnyway:  # a dataset whose iterator packs whatever it is asked

    def iterator(self, batch_size, seed=0, state=None):
      return ds.iterator(batch_size, seed=seed, state=state, pack_segments=2)

  cfg0 = tr.TrainConfig(batch_size=2, num_steps=1)
  with pytest.raises(PrefjaxError, match="TrainConfig.pack_segments=0"):
    tr.train(config, cfg0, PackedAnyway(), str(tmp_path / "a"), init_params=params, verbose=False)
  pairs = tr.PairArrays(ds.collate(np.arange(4)))
  _, cfg2 = _cfgs()
  with pytest.raises(PrefjaxError, match=r"TrainConfig.pack_segments=2: PairArrays\.iterator"):
    tr.train(config, cfg2, pairs, str(tmp_path / "b"), init_params=params, verbose=False)
  # A packed batch given to the unpacked step (and vice versa) fails at trace time, before any compile.
  mesh = tr.shd.make_mesh(devices=jax.devices()[:1])
  state = tr.init_state(config, cfg0, params, jax.random.key(0), mesh)
  with pytest.raises(PrefjaxError, match="packed but TrainConfig.pack_segments=0"):
    tr.make_train_step(config, cfg0, live_reference=True)(state, _stack(packed, 1), params)
  with pytest.raises(PrefjaxError, match="not packed but TrainConfig.pack_segments=2"):
    tr.make_train_step(config, cfg2, live_reference=False)(state, _stack(ds.collate([0, 1]), 1), None)

"""Offline LM trainer: step-0 identities, gradient accumulation, NaN guard, metrics, config errors."""

import functools
import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax import checkpoint as ckpt
from prefjax.errors import PrefjaxError
from prefjax.lm import model as lm_model
from prefjax.lm import synthetic as syn
from prefjax.lm import train as tr

import float32_noise


@functools.lru_cache(maxsize=None)
def _tiny(num_pairs=64):
  """A 2-prompt, 4-token, 2-step task with a random 1-layer policy (shared by the tests: one compile)."""
  task = syn.make_task(seed=1, num_prompts=2, vocab_size=4, response_len=2)
  config = syn.model_config(task, d_model=16, num_layers=1, num_heads=2, d_ff=32)
  params = nn.unbox(lm_model.init_params(config, jax.random.key(0)))
  ref_logp = np.asarray(jax.jit(syn.make_policy_logp(task, config))(params))
  pairs = syn.make_pairs(task, ref_logp, num_pairs, jax.random.key(1))
  return task, config, params, tr.PairArrays(pairs)


TRL_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
            "logps/chosen", "logps/rejected", "grad_norm", "learning_rate", "tokens_per_second",
            "step_seconds", "mfu")


def test_step0_policy_equals_reference_gives_log2_and_zero_rewards():
  """Acceptance: at step 0 with π = π_ref, sigmoid loss = log 2 and rewards = 0 exactly (live and cached)."""
  _, config, params, data = _tiny()
  cfg = tr.TrainConfig(objective="sigmoid", beta=0.1, batch_size=8, num_steps=1)
  batch = next(data.iterator(8, seed=0))
  logps = jax.jit(tr.make_logps_fn(config))
  rw, rl, _, _ = logps(params, batch)
  micro = {k: v[None] for k, v in batch.items()}
  cached = {**micro, "ref_chosen_logps_B": np.asarray(rw)[None], "ref_rejected_logps_B": np.asarray(rl)[None]}
  for live, b in ((True, micro), (False, cached)):
    mesh = tr.shd.make_mesh(devices=jax.devices()[:1])
    state = tr.init_state(config, cfg, params, jax.random.key(0), mesh)
    _, m = jax.jit(tr.make_train_step(config, cfg, live_reference=live))(state, b, params if live else None)
    m = jax.device_get(m)
    for k in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
      assert m[k] == 0.0, (live, k, m[k])
    assert m["rewards/accuracies"] == 0.0
    assert m["loss"] == np.float32(math.log(2.0)), (live, m["loss"])
    assert m["grad_norm"] > 0


def test_grad_accumulation_matches_full_batch():
  """Averaging gradients over 2 micro-batches of 4 equals one batch of 8 for a per-example objective."""
  _, config, params, data = _tiny()
  batch = next(data.iterator(8, seed=0))
  mesh = tr.shd.make_mesh(devices=jax.devices()[:1])
  out = []
  for accum in (1, 2):
    cfg = tr.TrainConfig(objective="ipo", beta=0.5, batch_size=8, grad_accum=accum, num_steps=2,
                         learning_rate=1e-2, reference="live")
    state = tr.init_state(config, cfg, params, jax.random.key(0), mesh)
    b = {k: v.reshape((accum, 8 // accum) + v.shape[1:]) for k, v in batch.items()}
    new, m = jax.jit(tr.make_train_step(config, cfg, live_reference=True))(state, b, params)
    out.append((jax.device_get(new.params), jax.device_get(m)))
  np.testing.assert_allclose(out[0][1]["loss"], out[1][1]["loss"], rtol=1e-6)
  np.testing.assert_allclose(out[0][1]["grad_norm"], out[1][1]["grad_norm"], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), out[0][0], out[1][0])


def test_train_writes_trl_metrics_and_reference_cache(tmp_path, capsys):
  _, config, params, data = _tiny()
  cfg = tr.TrainConfig(objective="sigmoid", beta=0.1, batch_size=8, num_steps=3, learning_rate=1e-2,
                       warmup_steps=1)
  result = tr.train(config, cfg, data, str(tmp_path), init_params=params,
                    eval_fn=lambda p: {"norm": float(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(p)))})
  records = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in records] == [0, 1, 2, 3]
  for r in records[1:]:
    assert set(TRL_KEYS) <= set(r), set(TRL_KEYS) - set(r)
  assert records[1]["loss"] == pytest.approx(math.log(2), abs=1e-6)
  assert records[1]["learning_rate"] == 0.0 and records[2]["learning_rate"] > 0  # warm-up from 0
  assert "eval/norm" in records[0] and "eval/norm" in records[-1]
  assert os.path.exists(tmp_path / tr.REFERENCE_CACHE)
  assert int(result.state.step) == 3
  assert "step 3/3" in capsys.readouterr().out


def test_nonfinite_loss_stops_with_last_good_checkpoint(tmp_path):
  """A NaN reference log-prob at step 3 stops training; checkpoint 2 is the latest and finite."""
  _, config, params, data = _tiny()
  it = data.iterator(8, seed=0)
  batches = [next(it) for _ in range(3)]
  seen = set(tr.pair_keys(batches[0]) + tr.pair_keys(batches[1]))
  keys = [k for k in tr.pair_keys(batches[2]) if k not in seen]
  assert keys
  np.savez(tmp_path / tr.REFERENCE_CACHE, keys=np.array(keys),
           chosen=np.full(len(keys), np.nan, np.float32), rejected=np.zeros(len(keys), np.float32))
  cfg = tr.TrainConfig(objective="sigmoid", batch_size=8, num_steps=5, checkpoint_every=2,
                       learning_rate=1e-2)
  with pytest.raises(tr.NonFiniteError, match="step 3"):
    tr.train(config, cfg, data, str(tmp_path), init_params=params, verbose=False)
  checkpointer = ckpt.Checkpointer(str(tmp_path / tr.CHECKPOINTS))
  assert checkpointer.latest_step() == 2
  mesh = tr.shd.make_mesh(devices=jax.devices()[:1])
  target = tr.init_state(config, cfg, params, jax.random.key(0), mesh)
  state, _ = checkpointer.restore(target)
  assert int(state.step) == 2
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


def test_config_errors_are_clear():
  with pytest.raises(PrefjaxError, match="unknown|known"):
    tr.TrainConfig(objective="no_such_loss")
  with pytest.raises(PrefjaxError, match="grad_accum"):
    tr.TrainConfig(batch_size=6, grad_accum=4)
  with pytest.raises(PrefjaxError, match="reference"):
    tr.TrainConfig(reference="sometimes")
  with pytest.raises(PrefjaxError, match="beta"):
    tr.TrainConfig(beta=0.0)
  with pytest.raises(PrefjaxError, match="missing"):
    tr.PairArrays({"chosen_tokens_BxL": np.zeros((2, 3), np.int32)})


def test_packed_batches_are_rejected(tmp_path):
  """With TrainConfig.pack_segments=0 the trainer refuses packed batches (its unpacked step would score a
  row as one pair, attending across its pairs); tests/test_lm_train_packed.py covers pack_segments > 0."""
  from prefjax.lm import data as lm_data  # pylint: disable=g-import-not-at-top
  rows = [{"prompt": f"p{i}", "chosen": " a", "rejected": " bb"} for i in range(8)]
  ds = lm_data.PreferenceDataset.from_rows(rows, max_length=24)

  class Packed:

    def iterator(self, batch_size, seed=0, state=None):
      return ds.iterator(batch_size, seed=seed, state=state, pack_segments=2)

  config = lm_model.TransformerConfig(vocab_size=259, d_model=8, num_layers=1, num_heads=2, d_ff=16,
                                      max_len=24, style="gpt2")
  params = nn.unbox(lm_model.init_params(config, jax.random.key(0)))
  cfg = tr.TrainConfig(batch_size=2, num_steps=1)
  with pytest.raises(PrefjaxError, match="segment-aware attention"):
    tr.train(config, cfg, Packed(), str(tmp_path), init_params=params, verbose=False)


def test_response_window_step_equals_the_full_head():
  """`TrainConfig.logits_window="response"` (the head only where response tokens are predicted): the trainer's
  window, the full head's log-probs and rewards up to float32 rounding, and the exact step-0 identities."""
  config = lm_model.TransformerConfig(vocab_size=13, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                                      max_len=80, style="gpt2")
  params = nn.unbox(lm_model.init_params(config, jax.random.key(3)))
  rng = np.random.default_rng(0)
  b, length = 4, 80
  batch = {}
  for side, offset in (("chosen", 0), ("rejected", 3)):
    tokens = rng.integers(0, 13, (b, length)).astype(np.int32)
    loss = np.zeros((b, length), np.int32)
    attn = np.zeros((b, length), np.int32)
    for i, (p, r) in enumerate([(20, 9), (41, 5), (30, 17 + offset), (25, 12)]):
      loss[i, p:p + r] = 1
      attn[i, :p + r] = 1
    batch.update({f"{side}_tokens_BxL": tokens, f"{side}_loss_mask_BxL": loss,
                  f"{side}_attention_mask_BxL": attn})
  cfg = tr.TrainConfig(objective="sigmoid", beta=0.1, batch_size=b, num_steps=1)
  full_cfg = tr.TrainConfig(objective="sigmoid", beta=0.1, batch_size=b, num_steps=1, logits_window="full")
  window = tr.logits_window_for(batch, cfg)
  assert window == tr.WINDOW_MULTIPLE == 64  # the widest span (20 tokens) rounded up; 64 < L − 1
  assert tr.logits_window_for(batch, full_cfg) is None
  short = {k: v[:, :40] for k, v in batch.items()}  # 64 ≥ L − 1: the full head
  assert tr.logits_window_for(short, cfg) is None
  mesh = tr.shd.make_mesh(devices=jax.devices()[:1])
  micro = {k: v[None] for k, v in batch.items()}
  policy = jax.tree.map(lambda x: x * 1.5, params)  # policy ≠ reference: non-zero rewards
  step_window = jax.jit(tr.make_train_step(config, cfg, live_reference=True, window=window))
  got = jax.device_get(step_window(tr.init_state(config, cfg, policy, jax.random.key(0), mesh), micro, params)[1])
  # The windowed step's log-probs and rewards equal the full head's (`make_logps_fn` without a window; the
  # gradients' equality is tests/test_lm_model.py's windowed-head test).
  full_logps = jax.jit(tr.make_logps_fn(config))

  def metrics(both):
    pw, pl, _, _ = full_logps(both[0], batch)
    rw, rl, _, _ = full_logps(both[1], batch)
    return {"logps/chosen": np.mean(pw), "logps/rejected": np.mean(pl),
            "rewards/margins": 0.1 * np.mean((pw - rw) - (pl - rl))}
  # The policy's and the reference's parameters both enter the compared numbers: both are nudged.
  want, noise = metrics((policy, params)), float32_noise.noise_scale(metrics, (policy, params))
  assert abs(want["rewards/margins"]) > 1e-3
  for k, v in want.items():
    float32_noise.assert_close(got[k], v, noise[k], err_msg=k)
  _, m0 = step_window(tr.init_state(config, cfg, params, jax.random.key(0), mesh), micro, params)
  m0 = jax.device_get(m0)
  assert m0["loss"] == np.float32(math.log(2.0)) and m0["rewards/margins"] == 0.0


def test_ranking_contract_step_equals_the_listwise_loss_of_each_response_scored_alone(tmp_path):
  """A ranking-contract objective (K = 4 responses per prompt, scored by the exact reward): the step's loss is
  `listwise_loss` of the log-probs of each response scored in its own forward pass; `train` runs it end to
  end from `RankingArrays`; a pair batch, the reference cache and packing are refused by name."""
  import float32_noise  # pylint: disable=g-import-not-at-top
  from prefjax import objectives  # pylint: disable=g-import-not-at-top
  task, config, params, _ = _tiny()
  ref_logp = np.asarray(jax.jit(syn.make_policy_logp(task, config))(params))
  data = tr.RankingArrays(syn.make_rankings(task, ref_logp, 16, 4, jax.random.key(3)))
  batch = next(data.iterator(8, seed=0))
  policy = jax.tree.map(lambda x: x * 1.5, params)
  cfg = tr.TrainConfig(objective="infonca", beta=0.5, batch_size=8, num_steps=2, learning_rate=1e-2,
                       reference="live", log_every=1)
  mesh = tr.shd.make_mesh(devices=jax.devices()[:1])
  step = jax.jit(tr.make_train_step(config, cfg, live_reference=True))
  loss = lambda p: jax.device_get(step(tr.init_state(config, cfg, p, jax.random.key(0), mesh),
                                       {k: v[None] for k, v in batch.items()}, params)[1])["loss"]
  # Independent: each response k as its own [B, L] batch through the pairwise log-prob function.
  single = jax.jit(tr.make_logps_fn(config))

  def alone(p):
    cols = []
    for k in range(4):
      side = {f"{s}_{kind}_BxL": batch[f"{kind}_BxKxL"][:, k] for s in tr.SIDES
              for kind in ("tokens", "loss_mask", "attention_mask")}
      cols.append(single(p, side)[0])
    return jnp.stack(cols, axis=1)

  want = np.mean(objectives.listwise.listwise_loss("infonca", alone(policy), alone(params), beta=0.5,
                                          rewards=batch["scores_BxK"]))
  noise = float32_noise.noise_scale(lambda p: np.mean(objectives.listwise.listwise_loss(
      "infonca", alone(p), alone(params), beta=0.5, rewards=batch["scores_BxK"])), policy)
  float32_noise.assert_close(loss(policy), want, noise)
  assert abs(float(want) - float(loss(params))) > 100 * noise  # policy ≠ reference: a real comparison

  result = tr.train(config, cfg, data, str(tmp_path / "run"), init_params=policy, ref_params=params,
                    verbose=False)
  assert int(result.state.step) == 2 and [r["step"] for r in result.history] == [1, 2]
  assert all(np.isfinite(r["loss"]) and "rewards/accuracies" in r for r in result.history)
  with pytest.raises(PrefjaxError, match="reference='live'"):
    tr.TrainConfig(objective="infonca")
  with pytest.raises(PrefjaxError, match="pack_segments=0"):
    tr.TrainConfig(objective="lipo_lambda", reference="live", pack_segments=2)
  pair_batch = next(_tiny()[3].iterator(8, seed=0))
  with pytest.raises(PrefjaxError, match=r"contract 'ranking'\) needs a batch with"):
    step(tr.init_state(config, cfg, policy, jax.random.key(0), mesh), {k: v[None] for k, v in pair_batch.items()},
         params)


def test_ranking_objective_trains_on_multi_response_jsonl(tmp_path):
  """prompt / responses / scores JSONL (MultiResponseDataset, byte tokenizer) through `train` with LiPO-λ."""
  import json as json_lib  # pylint: disable=g-import-not-at-top
  from prefjax.lm import data as lm_data  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  path = tmp_path / "k.jsonl"
  with open(path, "w", encoding="utf-8") as f:
    for i in range(8):
      responses = [f"answer {i} {w}" for w in ("yes", "no", "maybe")]
      f.write(json_lib.dumps({"prompt": f"question {i}?", "responses": responses,
                              "scores": [float(x) for x in rng.normal(size=3)]}) + "\n")
  ds = lm_data.MultiResponseDataset.from_jsonl(str(path), max_length=32)
  config = lm_model.TransformerConfig(vocab_size=ds.tokenizer.vocab_size, d_model=16, num_layers=1, num_heads=2,
                                      d_ff=32, max_len=32, style="llama")
  params = nn.unbox(lm_model.init_params(config, jax.random.key(0)))
  cfg = tr.TrainConfig(objective="lipo_lambda", beta=0.5, batch_size=4, num_steps=2, learning_rate=1e-2,
                       reference="live", log_every=1)
  result = tr.train(config, cfg, ds, str(tmp_path / "run"), init_params=params, verbose=False)
  assert [r["step"] for r in result.history] == [1, 2] and all(np.isfinite(r["loss"]) for r in result.history)
  # At step 1 the policy is the reference: every implicit reward is 0, and LiPO-λ's loss is its value at 0.
  assert result.history[0]["rewards/mean"] == 0.0


def test_single_contract_step_equals_dro_on_each_response_and_learns_a_value_table(tmp_path):
  """A single-response objective (DRO: one response per example with the exact reward): the step's loss is
  `dro_losses` (policy + value parts) of the response's log-probs and the value table's entry for its prompt;
  the policy's gradient is the policy part's and the table's the value part's (the value table moves towards
  the regression target r − τ ρ); `train` runs it end to end from `SingleArrays`; a pair batch, the reference
  cache and packing are refused by name."""
  from prefjax.objectives import single as single_objectives  # pylint: disable=g-import-not-at-top
  task, config, params, _ = _tiny()
  ref_logp = np.asarray(jax.jit(syn.make_policy_logp(task, config))(params))
  data = tr.SingleArrays(syn.make_singles(task, ref_logp, 16, jax.random.key(3)))
  assert data.num_prompts == task.num_prompts
  batch = next(data.iterator(8, seed=0))
  policy = jax.tree.map(lambda x: x * 1.5, params)
  cfg = tr.TrainConfig(objective="dro", beta=0.5, batch_size=8, num_steps=2, learning_rate=1e-2,
                       reference="live", log_every=1, value_learning_rate=0.1)
  mesh = tr.shd.make_mesh(devices=jax.devices()[:1])
  step = jax.jit(tr.make_train_step(config, cfg, live_reference=True))
  values = np.asarray([0.3, -0.2], np.float32)

  def state_with(p):
    st = tr.init_state(config, cfg, p, jax.random.key(0), mesh, num_prompts=task.num_prompts)
    assert isinstance(st, tr.ValueTrainState)
    return st._replace(values=jnp.asarray(values))

  micro = {k: v[None] for k, v in batch.items()}
  run = lambda p: jax.device_get(step(state_with(p), micro, params))
  # Independent: the response as one side of a pair through the pairwise log-prob function.
  pair_logps = jax.jit(tr.make_logps_fn(config))
  side = {f"{s}_{kind}_BxL": batch[f"{kind}_BxL"] for s in tr.SIDES for kind in ("tokens", "loss_mask",
                                                                                   "attention_mask")}
  alone = lambda p: pair_logps(p, side)[0]

  def want_loss(p):
    out = single_objectives.dro_losses(alone(p), alone(params), values[batch["prompt_id_B"]], batch["reward_B"],
                                       tau=0.5)
    return np.mean(out.policy + out.value)

  noise = float32_noise.noise_scale(want_loss, policy)
  new_state, m = run(policy)
  float32_noise.assert_close(m["loss"], want_loss(policy), noise)
  assert abs(float(want_loss(policy)) - float(want_loss(params))) > 100 * noise  # policy ≠ reference
  # The value table's first Adam step moves each seen prompt's entry by the learning rate, towards the mean
  # of r − τ ρ over that prompt's rows (the sign of the value part's gradient).
  rho = np.asarray(alone(policy)) - np.asarray(alone(params))
  for x in range(task.num_prompts):
    rows = batch["prompt_id_B"] == x
    if rows.any():
      target = np.mean(batch["reward_B"][rows] - 0.5 * rho[rows])
      move = float(new_state.values[x]) - values[x]
      assert np.sign(move) == np.sign(target - values[x]) and abs(abs(move) - 0.1) < 1e-3, (x, move, target)
  assert "values/mean" in m and np.isfinite(m["grad_norm"])

  result = tr.train(config, cfg, data, str(tmp_path / "run"), init_params=policy, ref_params=params,
                    verbose=False)
  assert int(result.state.step) == 2 and [r["step"] for r in result.history] == [1, 2]
  assert all(np.isfinite(r["loss"]) and "values/mean" in r for r in result.history)
  with pytest.raises(PrefjaxError, match="reference='live'"):
    tr.TrainConfig(objective="dro")
  with pytest.raises(PrefjaxError, match="pack_segments=0"):
    tr.TrainConfig(objective="dro", reference="live", pack_segments=2)
  pair_batch = next(_tiny()[3].iterator(8, seed=0))
  with pytest.raises(PrefjaxError, match=r"contract 'single'\) needs a batch with"):
    step(state_with(policy), {k: v[None] for k, v in pair_batch.items()}, params)
  with pytest.raises(PrefjaxError, match="num_prompts"):
    tr.train(config, cfg, _tiny()[3], str(tmp_path / "pairs"), init_params=policy, verbose=False)


def test_single_response_objective_trains_on_completion_jsonl(tmp_path):
  """prompt / completion / label-or-reward JSONL (SingleResponseDataset, byte tokenizer) through `train` with
  DRO: the value table has one entry per distinct prompt, and at step 1 (policy = reference) the implicit
  reward is 0."""
  import json as json_lib  # pylint: disable=g-import-not-at-top
  from prefjax.lm import data as lm_data  # pylint: disable=g-import-not-at-top
  path = tmp_path / "s.jsonl"
  with open(path, "w", encoding="utf-8") as f:
    for i in range(8):
      row = {"prompt": f"question {i % 3}?", "completion": f"answer {i}"}
      row.update({"label": i % 2 == 0} if i < 4 else {"reward": float(i) / 4})
      f.write(json_lib.dumps(row) + "\n")
  ds = lm_data.SingleResponseDataset.from_jsonl(str(path), max_length=32)
  assert ds.num_prompts == 3
  config = lm_model.TransformerConfig(vocab_size=ds.tokenizer.vocab_size, d_model=16, num_layers=1, num_heads=2,
                                      d_ff=32, max_len=32, style="llama")
  params = nn.unbox(lm_model.init_params(config, jax.random.key(0)))
  cfg = tr.TrainConfig(objective="dro", beta=0.5, batch_size=4, num_steps=2, learning_rate=1e-2,
                       reference="live", log_every=1)
  result = tr.train(config, cfg, ds, str(tmp_path / "run"), init_params=params, verbose=False)
  assert [r["step"] for r in result.history] == [1, 2] and all(np.isfinite(r["loss"]) for r in result.history)
  assert result.history[0]["rewards/mean"] == 0.0
  assert result.state.values.shape == (3,) and np.any(np.asarray(result.state.values) != 0)


def test_a_stateful_objective_carries_its_state_in_the_training_state_and_resumes_bit_for_bit(tmp_path):
  """BCO (one response per example with a binary label; a running mean δ of the implicit rewards): the step's
  loss is `bco_loss` of each response scored alone with the state the step was given, and the state it returns
  is `bco_loss`'s; `train` checkpoints the state with the rest (a crash after step 2 and a rerun give the same
  final state, bit for bit); rows with a reward and no label are refused by name."""
  from prefjax.objectives import single as single_objectives  # pylint: disable=g-import-not-at-top
  from resume_helpers import Crash, crash_after  # pylint: disable=g-import-not-at-top,g-multiple-import
  task, config, params, _ = _tiny()
  ref_logp = np.asarray(jax.jit(syn.make_policy_logp(task, config))(params))
  singles = syn.make_singles(task, ref_logp, 16, jax.random.key(3))
  labelled = {**singles, "label_B": (singles["reward_B"] > np.median(singles["reward_B"])).astype(np.int32)}
  data = tr.SingleArrays(labelled)
  batch = next(data.iterator(8, seed=0))
  policy = jax.tree.map(lambda x: x * 1.5, params)
  cfg = tr.TrainConfig(objective="bco", beta=0.5, batch_size=8, num_steps=4, learning_rate=1e-2,
                       reference="live", log_every=1, checkpoint_every=2)
  mesh = tr.shd.make_mesh(devices=jax.devices()[:1])
  step = jax.jit(tr.make_train_step(config, cfg, live_reference=True))
  shift = single_objectives.BCOState(jnp.asarray(0.7, jnp.float32), jnp.asarray(3.0, jnp.float32))

  def state_with(p):
    st = tr.init_state(config, cfg, p, jax.random.key(0), mesh)
    assert isinstance(st, tr.StatefulTrainState)
    return st._replace(objective_state=shift)

  pair_logps = jax.jit(tr.make_logps_fn(config))
  side = {f"{s}_{kind}_BxL": batch[f"{kind}_BxL"] for s in tr.SIDES for kind in ("tokens", "loss_mask",
                                                                                   "attention_mask")}
  alone = lambda p: pair_logps(p, side)[0]
  want = lambda p: single_objectives.bco_loss(alone(p), alone(params), batch["label_B"] == 1, shift, beta=0.5)
  new_state, m = jax.device_get(step(state_with(policy), {k: v[None] for k, v in batch.items()}, params))
  noise = float32_noise.noise_scale(lambda p: (np.mean(want(p)[0]), want(p)[1]), policy)
  float32_noise.assert_close(m["loss"], np.mean(want(policy)[0]), noise[0])
  float32_noise.assert_tree_close(new_state.objective_state, want(policy)[1], noise[1])
  assert float(new_state.objective_state.count) == 3.0 + 8  # eight more rewards entered the running mean

  straight = tr.train(config, cfg, data, str(tmp_path / "a"), init_params=policy, ref_params=params, verbose=False)
  with pytest.raises(Crash):
    tr.train(config, cfg, data, str(tmp_path / "b"), init_params=policy, ref_params=params, verbose=False,
             on_step=crash_after(3))
  resumed = tr.train(config, cfg, data, str(tmp_path / "b"), init_params=policy, ref_params=params, verbose=False)
  assert resumed.resumed_from == 2
  data_of = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
  for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
    np.testing.assert_array_equal(np.asarray(data_of(a)), np.asarray(data_of(b)))
  assert float(straight.state.objective_state.count) == 4 * 8
  with pytest.raises(PrefjaxError, match="reads binary labels.*label_B = -1"):
    tr.train(config, cfg, tr.SingleArrays(singles), str(tmp_path / "c"), init_params=policy, verbose=False)


def test_beta_dpo_and_mmpo_train_a_transformer_on_pairs_and_scored_pairs(tmp_path):
  """β-DPO (a pair objective with running margin statistics and a keyed filter) trains through `train` with
  its state; MMPO (scored pairs: both responses' quality scores) has the step loss `mmpo_loss` of the pair's
  log-probs and the score margin, and a batch without scores is refused by name."""
  from prefjax.objectives import margins  # pylint: disable=g-import-not-at-top
  task, config, params, pairs_data = _tiny()
  policy = jax.tree.map(lambda x: x * 1.5, params)
  cfg = tr.TrainConfig(objective="beta_dpo", beta=0.5, batch_size=8, num_steps=2, learning_rate=1e-2, log_every=1)
  result = tr.train(config, cfg, pairs_data, str(tmp_path / "beta"), init_params=policy, ref_params=params,
                    verbose=False)
  assert [r["step"] for r in result.history] == [1, 2] and all(np.isfinite(r["loss"]) for r in result.history)
  init = margins.beta_dpo_init()
  assert any(float(a) != float(b) for a, b in zip(result.state.objective_state, init))  # the statistics moved

  ref_logp = np.asarray(jax.jit(syn.make_policy_logp(task, config))(params))
  pairs = syn.make_pairs(task, ref_logp, 16, jax.random.key(5))
  scored = tr.PairArrays({**pairs, **syn.pair_scores(task, pairs)})
  batch = next(scored.iterator(8, seed=0))
  np.testing.assert_array_equal(batch["chosen_score_B"],  # the chosen response's exact reward, in float32
                                task.rewards_CxN[batch["chosen_tokens_BxL"][:, 0],
                                                 syn.response_index(task, batch["chosen_tokens_BxL"][:, 1:])
                                                 ].astype(np.float32))
  cfg = tr.TrainConfig(objective="mmpo", beta=0.5, batch_size=8, num_steps=1, learning_rate=1e-2, reference="live")
  mesh = tr.shd.make_mesh(devices=jax.devices()[:1])
  step = jax.jit(tr.make_train_step(config, cfg, live_reference=True))
  logps = jax.jit(tr.make_logps_fn(config))

  def want(p):
    pw, pl, _, _ = logps(p, batch)
    rw, rl, _, _ = logps(params, batch)
    return np.mean(margins.mmpo_loss(pw, pl, rw, rl, batch["chosen_score_B"] - batch["rejected_score_B"], beta=0.5,
                                     gamma=1.0))

  _, m = step(tr.init_state(config, cfg, policy, jax.random.key(0), mesh), {k: v[None] for k, v in batch.items()},
              params)
  float32_noise.assert_close(jax.device_get(m)["loss"], want(policy), float32_noise.noise_scale(want, policy))
  with pytest.raises(PrefjaxError, match="contract 'scored_pair'.*chosen_score"):
    tr.train(config, cfg, pairs_data, str(tmp_path / "noscores"), init_params=policy, verbose=False)
  with pytest.raises(PrefjaxError, match="pack_segments=0"):
    tr.TrainConfig(objective="mmpo", pack_segments=2)

"""Checkpoints: bit-identical resume, SIGTERM/SIGINT save and stop, typed keys, clear error for another model shape."""

import functools
import json
import os
import signal

import flax.linen as nn
import jax
import numpy as np
import pytest

from prefjax import checkpoint as ckpt
from prefjax import preemption
from prefjax.errors import PrefjaxError
from prefjax.lm import model as lm_model
from prefjax.lm import synthetic as syn
from prefjax.lm import train as tr
from resume_helpers import Crash
from resume_helpers import crash_after
from resume_helpers import records_by_step


@functools.lru_cache(maxsize=None)
def _tiny(d_model=16):
  task = syn.make_task(seed=1, num_prompts=2, vocab_size=4, response_len=2)
  config = syn.model_config(task, d_model=d_model, num_layers=1, num_heads=2, d_ff=32)
  params = nn.unbox(lm_model.init_params(config, jax.random.key(0)))
  ref_logp = np.asarray(jax.jit(syn.make_policy_logp(task, config))(params))
  return config, params, tr.PairArrays(syn.make_pairs(task, ref_logp, 40, jax.random.key(1)))


CFG = tr.TrainConfig(objective="sigmoid", beta=0.2, batch_size=8, num_steps=6, learning_rate=1e-2,
                     warmup_steps=2, checkpoint_every=3)


def test_resume_after_kill_is_bit_identical(tmp_path):
  """Acceptance: killed after checkpoint 3 and restarted, steps 4-6 repeat the uninterrupted run exactly
  (5 pairs per epoch of 40 with batches of 8: the resumed iterator also crosses an epoch boundary)."""
  config, params, data = _tiny()
  full = tr.train(config, CFG, data, str(tmp_path / "full"), init_params=params, verbose=False)

  with pytest.raises(Crash):
    tr.train(config, CFG, data, str(tmp_path / "cut"), init_params=params, on_step=crash_after(4), verbose=False)
  resumed = tr.train(config, CFG, data, str(tmp_path / "cut"), init_params=params, verbose=False)
  assert resumed.resumed_from == 3
  a, b = records_by_step(tmp_path / "full"), records_by_step(tmp_path / "cut")
  assert sorted(b) == [1, 2, 3, 4, 5, 6]  # the crashed run's step-4 line was dropped on resume
  for step in (4, 5, 6):
    assert a[step] == b[step], step
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(full.state.params),
               jax.device_get(resumed.state.params))


def test_sigterm_saves_and_stops(tmp_path):
  """SIGTERM (and SIGINT) during training: the step in flight is checkpointed, then `Preempted` is raised
  (the whole experiment stops), the previous handlers are back, and a rerun resumes from that step."""
  config, params, data = _tiny()
  for signum in (signal.SIGTERM, signal.SIGINT):
    before = signal.getsignal(signum)
    workdir = tmp_path / signum.name
    with pytest.raises(preemption.Preempted, match=signum.name) as stop:
      tr.train(config, CFG, data, str(workdir), init_params=params, verbose=False,
               on_step=lambda s, r, n=signum: os.kill(os.getpid(), n) if s == 2 else None)
    assert stop.value.signum == signum and "checkpointed step 2" in str(stop.value)
    assert ckpt.Checkpointer(str(workdir / tr.CHECKPOINTS)).latest_step() == 2
    assert signal.getsignal(signum) is before
    again = tr.train(config, CFG, data, str(workdir), init_params=params, verbose=False)
    assert again.resumed_from == 2 and int(again.state.step) == CFG.num_steps


def test_rerun_after_a_kill_before_any_checkpoint_logs_no_step_twice(tmp_path):
  """A run killed before its first checkpoint starts again from step 0: its old metrics lines are dropped
  (today's behaviour appended the new run after them), and a torn last line does no harm."""
  config, params, data = _tiny()
  cfg = tr.TrainConfig(objective="sigmoid", beta=0.2, batch_size=8, num_steps=4, learning_rate=1e-2)
  with pytest.raises(Crash):
    tr.train(config, cfg, data, str(tmp_path), init_params=params, on_step=crash_after(3), verbose=False)
  with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as f:
    f.write('{"step": 4, "loss"')  # A line torn by a kill mid-write.
  tr.train(config, cfg, data, str(tmp_path), init_params=params, verbose=False)
  with open(tmp_path / "metrics.jsonl", encoding="utf-8") as f:
    steps = [json.loads(line)["step"] for line in f]
  assert steps == [1, 2, 3, 4]


def test_checkpoint_from_other_model_shape_is_a_clear_error(tmp_path):
  """Bad input: resuming a workdir whose checkpoint has d_model 16 with a d_model 8 model."""
  config, params, data = _tiny()
  cfg = tr.TrainConfig(objective="sigmoid", batch_size=8, num_steps=1)
  tr.train(config, cfg, data, str(tmp_path), init_params=params, verbose=False)
  other_config = syn.model_config(syn.make_task(seed=1, num_prompts=2, vocab_size=4, response_len=2),
                                  d_model=8, num_layers=1, num_heads=2, d_ff=32)
  other = nn.unbox(lm_model.init_params(other_config, jax.random.key(0)))
  with pytest.raises(PrefjaxError, match=r"does not match.*embed|does not match"):
    tr.train(other_config, cfg, data, str(tmp_path), init_params=other, verbose=False)


def test_typed_keys_round_trip(tmp_path):
  checkpointer = ckpt.Checkpointer(str(tmp_path))
  state = {"key": jax.random.key(7), "x": np.arange(3.0, dtype=np.float32)}
  checkpointer.save(5, state, {"note": "hi"})
  restored, extra = checkpointer.restore(state)
  assert extra == {"note": "hi"}
  np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(state["key"]))
  np.testing.assert_array_equal(jax.random.normal(restored["key"], (3,)), jax.random.normal(state["key"], (3,)))
  assert checkpointer.restore(state, step=None) is not None
  assert ckpt.Checkpointer(str(tmp_path / "empty")).restore(state) is None

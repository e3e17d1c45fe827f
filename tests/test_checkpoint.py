"""Checkpoints: bit-identical resume, SIGTERM save, typed keys, clear error for another model shape."""

import functools
import os
import signal

import flax.linen as nn
import jax
import numpy as np
import pytest

from prefjax import checkpoint as ckpt
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
  config, params, data = _tiny()
  result = tr.train(config, CFG, data, str(tmp_path), init_params=params, verbose=False,
                    on_step=lambda s, r: os.kill(os.getpid(), signal.SIGTERM) if s == 2 else None)
  assert result.preempted and int(result.state.step) == 2
  assert ckpt.Checkpointer(str(tmp_path / tr.CHECKPOINTS)).latest_step() == 2
  assert signal.getsignal(signal.SIGTERM) is not None


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

"""Mesh sharding on 8 simulated devices: the offline and online LM trainers follow 1 device's losses.

The 8-device checkpoint written here is restored on 1 device by tests/test_multidevice.py.
"""

import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from prefjax import sharding as shd
from prefjax.lm import model as lm_model
from prefjax.lm import online
from prefjax.lm import oracles
from prefjax.lm import synthetic as syn
from prefjax.lm import train as tr

# The parent restores the 8-device checkpoint of this many offline steps.
OFFLINE_STEPS = 3


@pytest.fixture(scope="module")
def tiny():
  task = syn.make_task(seed=1, num_prompts=2, vocab_size=4, response_len=2)
  config = syn.model_config(task, d_model=16, num_layers=1, num_heads=2, d_ff=32)
  params = nn.unbox(lm_model.init_params(config, jax.random.key(0)))
  return task, config, params


def _meshes():
  return (("one", shd.make_mesh(devices=jax.devices()[:1])), ("eight", shd.make_mesh(data=4, fsdp=2)))


def test_offline_trainer_on_8_devices_matches_1_device(tiny, out_dir):
  """3 steps (grad_accum 2) on data 4 × fsdp 2 give 1 device's losses within 1e-5; the parameters are really
  sharded; the 8-device run's checkpoint and final parameters are left for the 1-device restore."""
  task, config, params = tiny
  ref_logp = np.asarray(jax.jit(syn.make_policy_logp(task, config))(params))
  data = tr.PairArrays(syn.make_pairs(task, ref_logp, 64, jax.random.key(1)))
  cfg = tr.TrainConfig(objective="sigmoid", beta=0.2, batch_size=16, grad_accum=2, num_steps=OFFLINE_STEPS,
                       learning_rate=1e-2, reference="live")
  losses = {}
  for name, mesh in _meshes():
    r = tr.train(config, cfg, data, str(out_dir / name), init_params=params, mesh=mesh, verbose=False)
    losses[name] = [h["loss"] for h in r.history]
    if name == "eight":
      leaf = jax.tree.leaves(r.state.params)[0]
      assert len(leaf.sharding.device_set) > 1  # really sharded
      np.savez(out_dir / "eight_params.npz",
               *[np.asarray(x) for x in jax.tree.leaves(jax.device_get(r.state.params))])
  assert len(losses["one"]) == OFFLINE_STEPS
  np.testing.assert_allclose(losses["eight"], losses["one"], rtol=0, atol=1e-5)
  with open(out_dir / "losses.json", "w", encoding="utf-8") as f:
    json.dump(losses, f)


def test_online_egpo_on_8_devices_matches_1_device(tiny, out_dir):
  """2 online EGPO steps (sampling with the KV cache, oracle, the two half-steps): the same losses on 8
  devices as on 1."""
  _, config, params = tiny
  game = syn.make_task(seed=1, num_prompts=2, vocab_size=4, response_len=2, nontransitive_scale=2.0)
  prompts = online.PromptArrays({"prompt_tokens_BxP": np.repeat(np.arange(2, dtype=np.int32), 8)[:, None],
                                 "prompt_mask_BxP": np.ones((16, 1), np.int32)})
  ocfg = online.OnlineConfig(algorithm="egpo", beta=0.5, max_new_tokens=2, batch_size=16, num_steps=2,
                             learning_rate=1e-2)
  losses = {}
  for name, mesh in _meshes():
    r = online.train_online(config, ocfg, prompts, oracles.SyntheticOracle(game), str(out_dir / f"online_{name}"),
                            init_params=params, mesh=mesh, verbose=False, fast_compile=True)
    losses[name] = [h["loss"] for h in r.history if "loss" in h]
  assert len(losses["one"]) == 2
  np.testing.assert_allclose(losses["eight"], losses["one"], rtol=0, atol=1e-5)


def test_spin_history_stack_is_sharded_as_the_parameters(tiny):
  """SPIN with a history of 2 iterates: the stacked iterates are sharded as the parameters, the iterate axis
  whole."""
  _, config, params = tiny
  scfg = online.OnlineConfig(algorithm="spin", spin_history=2, max_new_tokens=2, batch_size=16)
  st = online.init_state(config, scfg, params, jax.random.key(0), shd.make_mesh(data=4, fsdp=2))
  for p, s in zip(jax.tree.leaves(st.params), jax.tree.leaves(st.prev_params)):
    assert s.shape == (2,) + p.shape and s.sharding.spec[0] is None
    assert tuple(s.sharding.spec[1:]) == tuple(p.sharding.spec), (s.sharding.spec, p.sharding.spec)
    np.testing.assert_array_equal(np.asarray(s[1]), np.asarray(p))
  assert max(len(s.sharding.device_set) for s in jax.tree.leaves(st.prev_params)) > 1

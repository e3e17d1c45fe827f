"""Mesh sharding: 8 simulated CPU devices follow 1 device's loss trajectory; checkpoints cross device counts.

The 8-device part runs in a subprocess with XLA_FLAGS set before jax is imported.
"""

import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import numpy as np
import pytest

from prefjax import checkpoint as ckpt
from prefjax import sharding as shd
from prefjax.errors import PrefjaxError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, sys
    import flax.linen as nn, jax, numpy as np
    from prefjax import sharding as shd
    from prefjax.lm import model as lm_model, synthetic as syn, train as tr
    assert jax.device_count() == 8, jax.devices()
    out = sys.argv[1]
    task = syn.make_task(seed=1, num_prompts=2, vocab_size=4, response_len=2)
    config = syn.model_config(task, d_model=16, num_layers=1, num_heads=2, d_ff=32)
    params = nn.unbox(lm_model.init_params(config, jax.random.key(0)))
    ref_logp = np.asarray(jax.jit(syn.make_policy_logp(task, config))(params))
    data = tr.PairArrays(syn.make_pairs(task, ref_logp, 64, jax.random.key(1)))
    cfg = tr.TrainConfig(objective="sigmoid", beta=0.2, batch_size=16, grad_accum=2, num_steps=5,
                         learning_rate=1e-2, reference="live")
    losses = {}
    for name, mesh in (("one", shd.make_mesh(devices=jax.devices()[:1])),
                       ("eight", shd.make_mesh(data=4, fsdp=2))):
      r = tr.train(config, cfg, data, f"{out}/{name}", init_params=params, mesh=mesh, verbose=False)
      losses[name] = [h["loss"] for h in r.history]
      if name == "eight":
        leaf = jax.tree.leaves(r.state.params)[0]
        losses["eight_devices_of_first_param"] = len(leaf.sharding.device_set)
        np.savez(f"{out}/eight_params.npz",
                 *[np.asarray(x) for x in jax.tree.leaves(jax.device_get(r.state.params))])
    # The online trainer (sampling with the KV cache, oracle, EGPO's two half-steps) on the same meshes.
    from prefjax.lm import online, oracles
    game = syn.make_task(seed=1, num_prompts=2, vocab_size=4, response_len=2, nontransitive_scale=2.0)
    prompts = online.PromptArrays({"prompt_tokens_BxP": np.repeat(np.arange(2, dtype=np.int32), 8)[:, None],
                                   "prompt_mask_BxP": np.ones((16, 1), np.int32)})
    ocfg = online.OnlineConfig(algorithm="egpo", beta=0.5, max_new_tokens=2, batch_size=16, num_steps=3,
                               learning_rate=1e-2)
    for name, mesh in (("online_one", shd.make_mesh(devices=jax.devices()[:1])),
                       ("online_eight", shd.make_mesh(data=4, fsdp=2))):
      r = online.train_online(config, ocfg, prompts, oracles.SyntheticOracle(game), f"{out}/{name}",
                              init_params=params, mesh=mesh, verbose=False, fast_compile=True)
      losses[name] = [h["loss"] for h in r.history if "loss" in h]
    # SPIN with a history of 2 iterates: the stacked iterates are sharded as the parameters, iterate axis whole.
    scfg = online.OnlineConfig(algorithm="spin", spin_history=2, max_new_tokens=2, batch_size=16)
    mesh = shd.make_mesh(data=4, fsdp=2)
    st = online.init_state(config, scfg, params, jax.random.key(0), mesh)
    for p, s in zip(jax.tree.leaves(st.params), jax.tree.leaves(st.prev_params)):
      assert s.shape == (2,) + p.shape and s.sharding.spec[0] is None
      assert tuple(s.sharding.spec[1:]) == tuple(p.sharding.spec), (s.sharding.spec, p.sharding.spec)
      np.testing.assert_array_equal(np.asarray(s[1]), np.asarray(p))
    losses["spin_stack_sharded"] = max(len(s.sharding.device_set) for s in jax.tree.leaves(st.prev_params))
    json.dump(losses, open(f"{out}/losses.json", "w"))
""")


@pytest.mark.slow
def test_eight_devices_match_one_and_checkpoint_restores_on_one(tmp_path):
  """Acceptance: 5 steps on 8 simulated devices (data 4 × fsdp 2) give 1 device's losses within 1e-5;
  the 8-device checkpoint restores in this 1-device process and equals the 8-device final parameters;
  3 online EGPO steps (sampling, oracle, two half-steps) also match between 8 devices and 1."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, env=env,
                        capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  losses = json.load(open(tmp_path / "losses.json"))
  assert len(losses["one"]) == 5
  np.testing.assert_allclose(losses["eight"], losses["one"], rtol=0, atol=1e-5)
  assert losses["eight_devices_of_first_param"] > 1  # really sharded
  # Online EGPO: the same samples, oracle queries and updates on 8 devices as on 1.
  assert len(losses["online_one"]) == 3
  np.testing.assert_allclose(losses["online_eight"], losses["online_one"], rtol=0, atol=1e-5)
  assert losses["spin_stack_sharded"] > 1

  from prefjax.lm import synthetic as syn  # pylint: disable=g-import-not-at-top
  from prefjax.lm import model as lm_model  # pylint: disable=g-import-not-at-top
  from prefjax.lm import train as tr  # pylint: disable=g-import-not-at-top
  task = syn.make_task(seed=1, num_prompts=2, vocab_size=4, response_len=2)
  config = syn.model_config(task, d_model=16, num_layers=1, num_heads=2, d_ff=32)
  params = nn.unbox(lm_model.init_params(config, jax.random.key(0)))
  cfg = tr.TrainConfig(objective="sigmoid", beta=0.2, batch_size=16, grad_accum=2, num_steps=5,
                       learning_rate=1e-2, reference="live")
  mesh = shd.make_mesh()
  assert mesh.size == jax.device_count() == 1
  target = tr.init_state(config, cfg, params, jax.random.key(0), mesh)
  state, extra = ckpt.Checkpointer(str(tmp_path / "eight" / tr.CHECKPOINTS)).restore(target)
  assert int(state.step) == 5 and extra["iterator"]["batch_size"] == 16
  expected = np.load(tmp_path / "eight_params.npz")
  for i, x in enumerate(jax.tree.leaves(jax.device_get(state.params))):
    np.testing.assert_array_equal(x, expected[f"arr_{i}"])


def test_mesh_and_batch_errors():
  mesh = shd.make_mesh()
  assert mesh.axis_names == shd.MESH_AXES and mesh.size == jax.device_count()
  with pytest.raises(PrefjaxError, match="number of devices"):
    shd.make_mesh(data=3)
  with pytest.raises(PrefjaxError, match="positive"):
    shd.make_mesh(fsdp=0)
  batch = shd.shard_batch({"x": np.arange(6).reshape(3, 2)}, mesh)
  np.testing.assert_array_equal(batch["x"], np.arange(6).reshape(3, 2))
  assert shd.initialize_distributed() is False  # single process: no-op

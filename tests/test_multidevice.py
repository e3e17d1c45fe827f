"""The 8-simulated-device tests (tests/multidevice) in one subprocess; the 8-device checkpoint restored here.

XLA_FLAGS=--xla_force_host_platform_device_count=8 must be set before jax is imported, so tests/multidevice
runs as `python -m pytest tests/multidevice` in a subprocess with the flag (one process, one jax start-up, for
the sharded LM trainers of tests/multidevice/test_sharding_8.py and the sharded AOT loss of
tests/multidevice/test_ot_8.py). Its JUnit report must list every test there as passed (none skipped); then
this 1-device process restores the 8-device run's checkpoint and checks it equals the 8-device parameters.
"""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import flax.linen as nn
import jax
import numpy as np
import pytest

from prefjax import checkpoint as ckpt
from prefjax import sharding as shd
from prefjax.lm import model as lm_model
from prefjax.lm import synthetic as syn
from prefjax.lm import train as tr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = "--xla_force_host_platform_device_count=8"
EXPECTED = {
    "test_sharding_8.py::test_offline_trainer_on_8_devices_matches_1_device",
    "test_sharding_8.py::test_online_egpo_on_8_devices_matches_1_device",
    "test_sharding_8.py::test_spin_history_stack_is_sharded_as_the_parameters",
    "test_ot_8.py::test_sharded_loss_equals_single_device_on_8_cpu_devices",
}


@pytest.mark.acceptance
def test_multidevice_suite_passes_and_its_checkpoint_restores_on_one_device(tmp_path):
  """Acceptance tier (default-tier cover of its code paths: test_sharding.py, the mesh and sharding rules on
  one device, and the trainers' tests, which shard over a one-device mesh). Every test of tests/multidevice passes on 8 simulated devices (data 4 × fsdp 2 for the LM trainers:
  1 device's losses within 1e-5; the sharded AOT loss equals the single-device one); the 8-device offline
  checkpoint restores in this 1-device process and equals the 8-device final parameters."""
  out = tmp_path / "out"
  out.mkdir()
  junit = tmp_path / "junit.xml"
  env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {FLAG}".strip(), JAX_PLATFORMS="cpu",
             PREFJAX_MULTIDEVICE_OUT=str(out))
  cmd = [sys.executable, "-m", "pytest", "tests/multidevice", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         f"--junitxml={junit}", f"--basetemp={tmp_path / 'basetemp'}"]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540, check=False)
  assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-2000:])
  cases = ET.parse(junit).getroot().iter("testcase")
  passed = set()
  for case in cases:
    assert not list(case), (case.attrib, [c.tag for c in case])  # no failure, error or skipped element
    passed.add(f"{case.attrib['classname'].split('.')[-1]}.py::{case.attrib['name']}")
  assert passed == EXPECTED, passed

  losses = json.load(open(out / "losses.json", encoding="utf-8"))
  steps = len(losses["one"])
  task = syn.make_task(seed=1, num_prompts=2, vocab_size=4, response_len=2)
  config = syn.model_config(task, d_model=16, num_layers=1, num_heads=2, d_ff=32)
  params = nn.unbox(lm_model.init_params(config, jax.random.key(0)))
  cfg = tr.TrainConfig(objective="sigmoid", beta=0.2, batch_size=16, grad_accum=2, num_steps=steps,
                       learning_rate=1e-2, reference="live")
  mesh = shd.make_mesh()
  assert mesh.size == jax.device_count() == 1
  target = tr.init_state(config, cfg, params, jax.random.key(0), mesh)
  state, extra = ckpt.Checkpointer(str(out / "eight" / tr.CHECKPOINTS)).restore(target)
  assert int(state.step) == steps and extra["iterator"]["batch_size"] == 16
  expected = np.load(out / "eight_params.npz")
  leaves = jax.tree.leaves(jax.device_get(state.params))
  assert len(leaves) == len(expected.files)
  for i, x in enumerate(leaves):
    np.testing.assert_array_equal(x, expected[f"arr_{i}"])

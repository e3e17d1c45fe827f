"""The one LM training loop (prefjax.lm.loop): a toy trainer on it resumes bit for bit, and the offline and
online workdirs written before the trainers shared it (tests/legacy/workdirs) still resume."""

import json
import os
import shutil
import signal
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax import checkpoint as ckpt
from prefjax import preemption
from prefjax import sharding as shd
from prefjax.errors import PrefjaxError
from prefjax.lm import loop
from prefjax.lm import online
from prefjax.lm import oracles
from prefjax.lm import train as tr

import float32_noise
from resume_helpers import Crash
from resume_helpers import crash_after
from resume_helpers import records_by_step

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "legacy"))
import make_workdirs as legacy  # pylint: disable=g-import-not-at-top,wrong-import-position


# ------------------------------------------------------------------------------------------------
# A new trainer is a step plus the loop.
# ------------------------------------------------------------------------------------------------


class ToyState(NamedTuple):
  params: Any
  step: jax.Array


class ToyData:
  """y = 3x + 1 with a seeded order: the loop's iterator protocol (next, state, restore)."""

  def __init__(self, seed=0):
    self.rng, self.seed, self.index = np.random.default_rng(seed), seed, 0

  def __next__(self):
    rng = np.random.default_rng([self.seed, self.index])
    self.index += 1
    x = rng.normal(size=8).astype(np.float32)
    return {"x": x, "y": 3 * x + 1}

  def state(self):
    return {"index": self.index, "epoch": 0}

  def restore(self, state):
    self.index = int(state["index"])


@jax.jit
def _toy_step(state, batch):
  def loss(p):
    return jnp.mean((p["w"] * batch["x"] + p["b"] - batch["y"]) ** 2)
  value, grads = jax.value_and_grad(loss)(state.params)
  ok = jnp.isfinite(value)
  params = jax.tree.map(lambda p, g: jnp.where(ok, p - 0.1 * g, p), state.params, grads)
  return ToyState(params, state.step + ok.astype(jnp.int32)), {"loss": value, "finite": ok}


def _toy_run(workdir, cfg, **kw):
  state = ToyState({"w": jnp.zeros(()), "b": jnp.zeros(())}, jnp.zeros((), jnp.int32))

  def check(metrics, step, state):
    return None if bool(metrics.pop("finite")) else loop.non_finite(
        {**metrics, "grad_norm": np.nan}, step, state, str(workdir))

  return loop.run(cfg, workdir, state, ToyData(), _toy_step, check=check, verbose=False,
                  evaluate=lambda params, step: {"w": float(params["w"])}, **kw)


def test_a_toy_trainer_on_the_loop_resumes_bit_for_bit_and_stops_on_sigterm(tmp_path):
  cfg = loop.OptimConfig(num_steps=6, checkpoint_every=2, eval_every=3)
  straight = _toy_run(tmp_path / "a", cfg)
  with pytest.raises(Crash):
    _toy_run(tmp_path / "b", cfg, on_step=crash_after(3))
  resumed = _toy_run(tmp_path / "b", cfg)
  assert resumed.resumed_from == 2  # the crash came before step 4's checkpoint (step 3 is not one)
  for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert records_by_step(tmp_path / "a") == records_by_step(tmp_path / "b")
  assert sorted(records_by_step(tmp_path / "a")) == list(range(7))  # eval at 0 and records 1..6
  assert "eval/w" in records_by_step(tmp_path / "a")[3]

  term = lambda step, record: os.kill(os.getpid(), signal.SIGTERM) if step == 4 else None
  with pytest.raises(preemption.Preempted, match="SIGTERM.*checkpointed step 4 of 6"):
    _toy_run(tmp_path / "c", cfg, on_step=term)
  assert _toy_run(tmp_path / "c", cfg).resumed_from == 4


def test_the_loop_checkpoints_the_last_good_state_before_raising_the_steps_problem(tmp_path):
  cfg = loop.OptimConfig(num_steps=4)
  state = ToyState({"w": jnp.zeros(()), "b": jnp.zeros(())}, jnp.zeros((), jnp.int32))

  class BadAtThree(ToyData):
    def __next__(self):
      batch = super().__next__()
      return {**batch, "y": batch["y"] * (np.nan if self.index == 3 else 1)}

  def check(metrics, step, state):
    return None if bool(metrics.pop("finite")) else loop.non_finite(
        {**metrics, "grad_norm": np.nan}, step, state, "here")

  with pytest.raises(loop.NonFiniteError, match=r"at step 3; .*last good state \(step 2\) checkpointed in here"):
    loop.run(cfg, tmp_path, state, BadAtThree(), _toy_step, check=check, verbose=False)
  assert ckpt.Checkpointer(str(tmp_path / loop.CHECKPOINTS)).latest_step() == 2


def test_both_trainer_configs_share_the_optimiser_fields_and_their_checks():
  shared = {f.name for f in loop.OptimConfig.__dataclass_fields__.values()}
  assert shared <= set(tr.TrainConfig.__dataclass_fields__) and shared <= set(online.OnlineConfig.__dataclass_fields__)
  assert tr.TrainConfig().schedule == "cosine" and online.OnlineConfig().schedule == "constant"
  for cls in (tr.TrainConfig, online.OnlineConfig):
    for field, value in (("learning_rate", 0.0), ("num_steps", 0), ("schedule", "cyclic"), ("grad_clip", -1.0),
                         ("min_lr_ratio", 2.0), ("checkpoint_every", -1)):
      with pytest.raises(PrefjaxError, match=f"{cls.__name__}.{field}"):
        cls(**{field: value})


# ------------------------------------------------------------------------------------------------
# Workdirs written before the loop was shared still resume.
# ------------------------------------------------------------------------------------------------

FLOATS_OFFLINE = ("loss", "grad_norm", "logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected",
                  "rewards/margins")
FLOATS_ONLINE = ("loss", "grad_norm", "kl", "win_rate/opponent")


def _legacy_copy(name, tmp_path):
  src = os.path.join(os.path.dirname(__file__), "legacy", "workdirs", name)
  dst = tmp_path / name
  shutil.copytree(src, dst)
  full = records_by_step(str(dst / "full_metrics.jsonl"))
  os.remove(dst / "full_metrics.jsonl")
  return dst, full


def _restored(workdir, template):
  state, extra = ckpt.Checkpointer(str(workdir / loop.CHECKPOINTS)).restore(loop.abstract_state(template))
  return state, extra


def _assert_step_matches(new, old, noise, keys):
  for k in keys:
    float32_noise.assert_close(new[k], old[k], noise[k], err_msg=k)


@pytest.mark.acceptance
def test_an_offline_workdir_of_the_old_trainer_resumes(tmp_path):
  """Acceptance tier (default-tier cover of its code path: test_lm_loop.py's toy-trainer tests,
  test_lm_train.py and test_lm_online.py's resume tests).

  The checkpoint (state, iterator position, model config), the reference cache and metrics.jsonl of a run
  stopped at step 2 by the trainer before the shared loop: today's trainer resumes it, keeps steps 1-2 as they
  were, and its step 3 is the old trainer's (an uninterrupted old run) within float32 rounding of that step,
  measured by nudging the restored parameters one ulp (tests/float32_noise.py)."""
  wd, full = _legacy_copy("offline", tmp_path)
  kept = records_by_step(str(wd))
  _, config, params, pairs, _ = legacy.setup()
  cfg = legacy.offline_config(legacy.TOTAL)
  mesh = shd.make_mesh(devices=jax.devices()[:1])
  template = tr.init_state(config, cfg, params, jax.random.key(cfg.seed), mesh)
  state, extra = _restored(wd, template)
  assert int(state.step) == legacy.HALF and extra["model"]["d_model"] == config.d_model

  # The old run's step 3, recomputed from the restored state with nudged parameters: its rounding scale.
  it = tr.PairArrays(pairs).iterator(cfg.batch_size, seed=cfg.seed)
  it.restore(extra["iterator"])
  batch = next(it)
  logps = jax.jit(tr.make_logps_fn(config, cfg.reduction))
  w, l = tr.ReferenceCache(str(wd / tr.REFERENCE_CACHE)).lookup(
      batch, lambda b: tuple(np.asarray(x) for x in logps(params, b)[:2]))
  micro = {k: np.asarray(v)[None] for k, v in {**batch, "ref_chosen_logps_B": w, "ref_rejected_logps_B": l}.items()}
  step = jax.jit(tr.make_train_step(config, cfg, live_reference=False, window=tr.logits_window_for(batch, cfg)))
  metrics = lambda p: {k: v for k, v in step(state._replace(params=p), micro, None)[1].items() if k in FLOATS_OFFLINE}
  noise = float32_noise.noise_scale(metrics, state.params)

  result = legacy.run_offline(str(wd), legacy.TOTAL)
  assert result.resumed_from == legacy.HALF
  got = records_by_step(str(wd))
  assert sorted(got) == [1, 2, 3, 4]
  assert all(got[s] == kept[s] for s in (1, 2))
  _assert_step_matches(got[3], full[3], noise, FLOATS_OFFLINE)
  assert got[4]["epoch"] == full[4]["epoch"]


@pytest.mark.acceptance
def test_an_online_workdir_of_the_old_trainer_resumes(tmp_path):
  """Acceptance tier, as the offline one.

  The same for the online trainer (online IPO against the synthetic oracle): the restored state holds the
  PRNG key, so step 3 samples what the old run sampled."""
  wd, full = _legacy_copy("online", tmp_path)
  kept = records_by_step(str(wd))
  task, config, params, _, prompts = legacy.setup()
  cfg = legacy.online_config(legacy.TOTAL)
  mesh = shd.make_mesh(devices=jax.devices()[:1])
  template = online.init_state(config, cfg, params, jax.random.key(cfg.seed), mesh)
  state, extra = _restored(wd, template)
  assert int(state.step) == legacy.HALF and extra["online"]["algorithm"] == "online_ipo"

  it = online.PromptArrays(prompts).iterator(cfg.batch_size, seed=cfg.seed)
  it.restore(extra["iterator"])
  batch = shd.shard_batch(next(it), mesh)
  oracle = oracles.SyntheticOracle(task)
  step = jax.jit(online.make_online_step(config, cfg), static_argnums=3)
  metrics = lambda p: {k: v for k, v in step(state._replace(params=p), batch, params, oracle)[1].items()
                       if k in FLOATS_ONLINE}
  noise = float32_noise.noise_scale(metrics, state.params)

  result = legacy.run_online(str(wd), legacy.TOTAL)
  assert result.resumed_from == legacy.HALF
  got = records_by_step(str(wd))
  assert sorted(got) == [1, 2, 3, 4]
  assert all(got[s] == kept[s] for s in (1, 2))
  _assert_step_matches(got[3], full[3], noise, FLOATS_ONLINE)
  with open(os.path.join(os.path.dirname(__file__), "legacy", "workdirs", "made_by.json"), encoding="utf-8") as f:
    assert len(json.load(f)["commit"]) == 40

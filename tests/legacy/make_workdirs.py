"""Writes tests/legacy/workdirs/: an offline and an online LM training run stopped halfway, by the code of the
commit this script is run at (recorded in workdirs/made_by.json). tests/test_lm_loop.py resumes them with
today's code: checkpoints and workdirs written before the two LM trainers shared one loop must still resume.

  python tests/legacy/make_workdirs.py   # from the repository root; rewrites tests/legacy/workdirs/

Each run trains a 1-layer transformer on the synthetic task (`prefjax.lm.synthetic`, 2 prompts, 4 tokens,
2-token responses) for `HALF` of `TOTAL` steps with a checkpoint at the end, then the same configuration is
trained for `TOTAL` steps from scratch in another folder; metrics.jsonl of the full run is kept (as
full_metrics.jsonl) so the test can compare the resumed steps with what the old code computed.
"""

import json
import os
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "workdirs")
HALF, TOTAL = 2, 4


def setup():
  """The task, model config, π_ref parameters, pairs and prompts both the script and the test build."""
  from prefjax.lm import model as lm_model  # pylint: disable=g-import-not-at-top
  from prefjax.lm import synthetic as syn  # pylint: disable=g-import-not-at-top
  task = syn.make_task(seed=1, num_prompts=2, vocab_size=4, response_len=2)
  config = syn.model_config(task, d_model=16, num_layers=1, num_heads=2, d_ff=32)
  params = nn.unbox(lm_model.init_params(config, jax.random.key(0)))
  ref_logp = np.asarray(jax.jit(syn.make_policy_logp(task, config))(params))
  pairs = syn.make_pairs(task, ref_logp, 32, jax.random.key(1))
  x = np.tile(np.arange(task.num_prompts, dtype=np.int32), 8)[:, None]
  prompts = {"prompt_tokens_BxP": x, "prompt_mask_BxP": np.ones_like(x)}
  return task, config, params, pairs, prompts


def offline_config(num_steps):
  from prefjax.lm import train as lm_train  # pylint: disable=g-import-not-at-top
  return lm_train.TrainConfig(objective="sigmoid", beta=0.1, batch_size=8, num_steps=num_steps,
                              learning_rate=1e-2, schedule="constant", seed=3)


def online_config(num_steps):
  from prefjax.lm import online  # pylint: disable=g-import-not-at-top
  return online.OnlineConfig(algorithm="online_ipo", beta=0.1, batch_size=8, num_steps=num_steps,
                             learning_rate=1e-2, max_new_tokens=2, seed=3)


def run_offline(workdir, num_steps):
  from prefjax.lm import train as lm_train  # pylint: disable=g-import-not-at-top
  _, config, params, pairs, _ = setup()
  return lm_train.train(config, offline_config(num_steps), lm_train.PairArrays(pairs), workdir,
                        init_params=params, verbose=False)


def run_online(workdir, num_steps):
  from prefjax.lm import online  # pylint: disable=g-import-not-at-top
  from prefjax.lm import oracles  # pylint: disable=g-import-not-at-top
  task, config, params, _, prompts = setup()
  return online.train_online(config, online_config(num_steps), online.PromptArrays(prompts),
                             oracles.SyntheticOracle(task), workdir, init_params=params, verbose=False)


def main():
  shutil.rmtree(OUT, ignore_errors=True)
  os.makedirs(OUT)
  for name, run in (("offline", run_offline), ("online", run_online)):
    run(os.path.join(OUT, name), HALF)
    full = os.path.join(OUT, f"{name}_full")
    run(full, TOTAL)
    shutil.copy(os.path.join(full, "metrics.jsonl"), os.path.join(OUT, name, "full_metrics.jsonl"))
    shutil.rmtree(full)
  commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE,
                          check=False).stdout.strip()
  with open(os.path.join(OUT, "made_by.json"), "w", encoding="utf-8") as f:
    json.dump({"commit": commit, "jax": jax.__version__, "python": sys.version.split()[0]}, f, indent=1)


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
  main()

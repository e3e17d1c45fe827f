"""The lm_offline experiment through its runner (quick variant), its configs and the notebook."""

import json
import os

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from experiments.configs import lm_dpo_synthetic
from experiments.configs import lm_pretrained
from prefjax import runners
from prefjax.errors import PrefjaxError
from prefjax.lm import synthetic as syn
from prefjax.runs import lm_offline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_synthetic_evaluation_is_exact():
  """Enumeration oracle: the optimum of Ψ = logit is π_ref e^{r/β} (reward/KL identity), win rate of π_ref is ½."""
  task = syn.make_task(seed=3, num_prompts=2, vocab_size=3, response_len=2)
  ref = task.sft_logp_CxN
  beta = 0.5
  m = syn.evaluate(task, ref, ref)
  assert m["kl"] == pytest.approx(0.0, abs=1e-12) and m["win_rate"] == pytest.approx(0.5, abs=1e-12)
  opt = syn.optimum(task, ref, beta, "logit")
  # RLHF optimum π* ∝ π_ref e^{r/β} (2305.18290 Eq. 4): E r − β KL = β E_x log Z(x).
  log_z = np.log(np.sum(np.exp(ref + task.rewards_CxN / beta), -1))
  mo = syn.evaluate(task, opt, ref)
  assert mo["reward"] - beta * mo["kl"] == pytest.approx(beta * log_z.mean(), rel=1e-9)
  # Brute-force win rate: a double loop over responses for every prompt.
  brute = []
  for c in range(task.num_prompts):
    p, q, r = np.exp(opt[c]), np.exp(ref[c]), task.rewards_CxN[c]
    brute.append(sum(p[i] * q[j] / (1 + np.exp(-(r[i] - r[j])))
                     for i in range(len(r)) for j in range(len(r))))
  assert mo["win_rate"] == pytest.approx(np.mean(brute), rel=1e-12)


@pytest.mark.slow
def test_bad_configs_are_clear(tmp_path):
  config = lm_dpo_synthetic.get_config("quick")
  config.objective = "sigmoid,nope"
  with pytest.raises(PrefjaxError, match="nope"):
    lm_offline.run_lm_offline(config, str(tmp_path))
  config = lm_pretrained.get_config("quick")
  with pytest.raises(PrefjaxError, match="model_dir"):
    lm_offline.run_lm_offline(config, str(tmp_path))


def test_lm_offline_synthetic_end_to_end_on_a_shrunk_config(tmp_path):
  """`lm_dpo_synthetic:quick` cut to a 1-layer model, 4 SFT steps and 6 training steps, through the runner (the
  notebook test runs the whole `:quick` config, DPO and IPO, and checks the claims): IPO's summary with its
  closed-form optimum, π_ref's exact win rate ½ at step 0, the reference's cached log-probs, checkpoints,
  figure, arrays and metrics; DRO beside it trains on single responses (its own data contract) with a value
  table."""
  config = lm_dpo_synthetic.get_config("quick")
  config.objective = "ipo,dro"  # a pair objective with its closed form, and a single-response objective
  config.update(num_steps=6, eval_every=3, log_every=3, checkpoint_every=3, warmup_steps=0, batch_size=16)
  config.synthetic.update(sft_steps=4, num_pairs=64)
  config.model.update(d_model=16, num_layers=1, num_heads=1, d_ff=32)
  run = runners.get_runner(config.experiment)
  assert run is lm_offline.run_lm_offline
  summary = run(config, str(tmp_path))
  assert summary["objectives"].keys() == {"ipo", "dro"}
  assert summary["objectives"]["dro"]["contract"] == "single"
  dro_records = [json.loads(l) for l in open(tmp_path / "dro" / "metrics.jsonl")]
  assert all("values/mean" in r for r in dro_records if "loss" in r)
  assert summary["reference"]["win_rate"] == pytest.approx(0.5, abs=1e-9)
  ipo = summary["objectives"]["ipo"]
  assert ipo["optimum"]["kl"] > 0 and ipo["max_kl"] >= ipo["kl"] >= 0
  for name in ("ipo", "dro"):
    assert os.path.exists(tmp_path / name / "checkpoints")
  assert os.path.exists(tmp_path / "ipo" / "reference_logps.npz")  # cached for pairs; DRO scores it live
  assert not os.path.exists(tmp_path / "dro" / "reference_logps.npz")
  assert os.path.exists(tmp_path / "lm_curves.png")
  arrays = np.load(tmp_path / "arrays.npz")
  np.testing.assert_array_equal(arrays["ipo__step"], [0, 3, 6])
  assert arrays["ipo__win_rate"][0] == pytest.approx(0.5, abs=1e-6)
  records = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert {r["objective"] for r in records} == {"ipo", "dro"}
  assert json.load(open(tmp_path / "summary.json"))["objectives"].keys() == {"ipo", "dro"}


@pytest.mark.acceptance
def test_a_listwise_and_a_single_response_objective_raise_the_exact_win_rate(tmp_path):
  """Acceptance: `lm_dpo_synthetic:quick` with InfoNCA (K = 4 responses per prompt from π_ref scored by the
  exact reward) and DRO (one response per example with its exact reward, a value table learned with the
  policy): both raise the exact win rate against π_ref (½) above 0.7, numbers in summary.json.

  Default tier: test_lm_offline_synthetic_end_to_end_on_a_shrunk_config (DRO through the runner on 6 steps),
  test_lm_train.py's ranking- and single-contract step tests."""
  config = lm_dpo_synthetic.get_config("quick")
  config.objective = "infonca,dro"
  summary = lm_offline.run_lm_offline(config, str(tmp_path))
  assert summary["reference"]["win_rate"] == pytest.approx(0.5, abs=1e-9)
  for name, contract in (("infonca", "ranking"), ("dro", "single")):
    entry = summary["objectives"][name]
    assert entry["contract"] == contract and entry["win_rate"] > 0.7, (name, entry)


@pytest.mark.acceptance
def test_lm_dpo_notebook_runs_the_quick_experiment(tmp_path):
  """Acceptance: the notebook runs `lm_dpo_synthetic:quick` in a Jupyter kernel; DPO and IPO raise the exact win
  rate above 0.7, IPO's KL stays near its optimum's and below DPO's.

  Default tier: test_lm_offline_synthetic_end_to_end_on_a_shrunk_config above (the same runner and outputs on
  6 steps) and tests/test_notebooks_static.py (the notebook's cells compile, its imports resolve)."""
  path = os.path.join(ROOT, "colab", "lm_dpo.ipynb")
  nb = nbformat.read(path, as_version=4)
  params = [c for c in nb.cells if c.cell_type == "code" and "QUICK = False" in c.source]
  assert len(params) == 1
  params[0].source = params[0].source.replace("QUICK = False", "QUICK = True").replace(
      '"runs/lm_dpo_colab"', repr(str(tmp_path / "run")))
  NotebookClient(nb, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": os.path.join(ROOT, "colab")}}).execute()
  # The notebook runs lm_dpo_synthetic:quick (DPO and IPO) through the runner; its outputs carry the
  # acceptance: DPO and IPO raise the exact win rate against π_ref well above ½; IPO's KL stays bounded,
  # near its closed-form optimum's, below DPO's; numbers in summary.json.
  run = tmp_path / "run"
  assert runners.get_runner(lm_dpo_synthetic.get_config("quick").experiment) is lm_offline.run_lm_offline
  summary = json.load(open(run / "summary.json"))
  assert summary["objectives"].keys() == {"sigmoid", "ipo"}
  dpo, ipo = summary["objectives"]["sigmoid"], summary["objectives"]["ipo"]
  assert summary["reference"]["win_rate"] == pytest.approx(0.5, abs=1e-9)
  assert dpo["win_rate"] > 0.7 and ipo["win_rate"] > 0.7, (dpo, ipo)
  assert ipo["max_kl"] < 1.5 * ipo["optimum"]["kl"], ipo
  assert ipo["kl"] < dpo["kl"]
  for name in ("sigmoid", "ipo"):
    assert os.path.exists(run / name / "checkpoints")
  assert os.path.exists(run / "lm_curves.png")
  arrays = np.load(run / "arrays.npz")
  assert arrays["ipo__step"][0] == 0 and arrays["ipo__win_rate"][0] == pytest.approx(0.5, abs=1e-6)
  records = [json.loads(l) for l in open(run / "metrics.jsonl")]
  assert {r["objective"] for r in records} == {"sigmoid", "ipo"}


def _tiny_checkpoint(path, style, vocab_size=259, max_len=64):
  """A random tiny GPT-2 / Llama written by prefjax's own exporter (no torch needed)."""
  import jax  # pylint: disable=g-import-not-at-top
  from prefjax.lm import hf_import  # pylint: disable=g-import-not-at-top
  from prefjax.lm import model as lm_model  # pylint: disable=g-import-not-at-top
  config = lm_model.TransformerConfig(
      vocab_size=vocab_size, d_model=16, num_layers=1, num_heads=2, d_ff=32, max_len=max_len,
      style=style, num_kv_heads=1 if style == "llama" else None, tie_embeddings=style == "gpt2")
  hf_import.export_hf(str(path), config, lm_model.init_params(config, jax.random.key(0)))
  return config


def _prefs(path):
  rows = [{"prompt": f"Q{i}: pick one", "chosen": f" yes {i}", "rejected": f" no no {i}"}
          for i in range(6)]
  rows.append({"prompt": [{"role": "user", "content": "hi"}],
               "chosen": [{"role": "assistant", "content": "hello"}],
               "rejected": [{"role": "assistant", "content": "go"}]})
  rows.append({"prompt": "same", "chosen": " a", "rejected": " a"})  # chosen == rejected: dropped
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_lm_pretrained_end_to_end(tmp_path, style):
  """lm_pretrained (quick) from a local checkpoint written by `hf_import.export_hf` and a JSONL file runs to
  completion through the runner: loss log 2 and rewards 0 at the first step (policy = reference), the data
  report counts the dropped row, checkpoints and summary.json are written, a rerun of the finished run is
  reported done, and a rerun of an interrupted one resumes."""
  _tiny_checkpoint(tmp_path / "model", style)
  _prefs(tmp_path / "prefs.jsonl")
  config = lm_pretrained.get_config("quick")
  config.model_dir = str(tmp_path / "model")
  config.train_path = str(tmp_path / "prefs.jsonl")
  config.tokenizer = "byte"
  config.max_length = 64
  config.num_steps = 2
  config.log_every = 1
  config.learning_rate = 1e-3
  config.warmup_steps = 0
  config.model.attention_impl = "xla" if style == "llama" else "einsum"  # jax.nn.dot_product_attention path
  workdir = tmp_path / "run"
  run = runners.get_runner(config.experiment)
  summary = run(config, str(workdir))
  saved = json.load(open(workdir / "summary.json"))
  assert saved["model"] == style and saved["data"]["kept"] == 7
  assert sum(saved["data"]["dropped"].values()) == 1
  records = [json.loads(l) for l in open(workdir / "sigmoid" / "metrics.jsonl")]
  assert [r["step"] for r in records] == [1, 2]
  assert records[0]["loss"] == pytest.approx(np.log(2.0), abs=1e-6)
  # The cached reference log-probs come from another compiled program than the step's policy forward, so
  # they agree to float32 rounding of a sum of ~60 token log-probs, not bitwise (seen: 9.5e-8).
  for side in ("chosen", "rejected"):
    tol = config.beta * abs(records[0][f"logps/{side}"]) * 64 * np.finfo(np.float32).eps
    assert abs(records[0][f"rewards/{side}"]) <= tol, (side, records[0])
  assert np.isfinite(records[1]["loss"]) and records[1]["loss"] != records[0]["loss"]
  assert summary["objectives"]["sigmoid"]["step"] == 2
  assert summary["objectives"]["sigmoid"]["resumed_from"] is None
  assert os.path.exists(workdir / "sigmoid" / "checkpoints")
  assert run(config, str(workdir)) == saved  # a finished run is reported done, not rerun
  # An unfinished run of the same config resumes (here from the final checkpoint: nothing left to train).
  status = json.load(open(workdir / "status.json"))
  with open(workdir / "status.json", "w") as f:
    json.dump({**status, "state": "interrupted"}, f)
  again = run(config, str(workdir))
  assert again["objectives"]["sigmoid"]["resumed_from"] == 2
  assert again["objectives"]["sigmoid"]["loss"] == records[1]["loss"]
  assert [json.loads(l)["step"] for l in open(workdir / "sigmoid" / "metrics.jsonl")] == [1, 2]


def test_lm_pretrained_rejects_a_tokenizer_larger_than_the_model(tmp_path):
  _tiny_checkpoint(tmp_path / "model", "gpt2", vocab_size=100)
  _prefs(tmp_path / "prefs.jsonl")
  config = lm_pretrained.get_config("quick")
  config.model_dir = str(tmp_path / "model")
  config.train_path = str(tmp_path / "prefs.jsonl")
  config.tokenizer = "byte"
  config.max_length = 64
  with pytest.raises(PrefjaxError, match="vocab_size is 100"):
    lm_offline.run_lm_offline(config, str(tmp_path / "run"))

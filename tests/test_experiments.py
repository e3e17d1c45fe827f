"""End-to-end tests of the experiment entry point, configs, workdir and figures."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import ipo_bandit
from experiments.configs import loss_zoo_bandit
from prefjax import results
from prefjax.bandit import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _closed_form(dataset, tau):
  if dataset == "d1":
    w = np.exp([2 / (3 * tau), 1 / (3 * tau), 0.0])
  else:
    w = np.exp([1 / tau, 1 / (2 * tau), 0.0])
  return w / w.sum()


@pytest.mark.acceptance
def test_ipo_bandit_full_config_matches_closed_forms(tmp_path):
  """Acceptance: the paper's setting (18 000 Adam steps, 10 seeds) — IPO's seed-mean final policy matches
  docs/theory.md §1's closed forms to 1e-3 for every τ on both datasets, and DPO's π(a) > 0.999 on D1.

  Default tier: the same runner (`run_bandit_sweep`) on `ipo_bandit:quick` in test_main_quick_writes_the_workdir
  below and tests/test_runner_contract.py (bandit_sweep); the closed forms themselves in tests/test_bandit_train.py."""
  summary = runs.run_bandit_sweep(ipo_bandit.get_config(), str(tmp_path))
  checked = 0
  for r in summary["runs"]:
    pi = np.asarray(r["final_policy_mean"])
    if r["objective"] == "ipo":
      np.testing.assert_allclose(pi, _closed_form(r["source"], r["beta"]), atol=1e-3)
      np.testing.assert_allclose(r["optimum"], _closed_form(r["source"], r["beta"]), atol=1e-6)
      checked += 1
    elif r["source"] == "d1":
      assert pi[0] > 0.999, r
      checked += 1
  assert checked == 9
  assert os.path.exists(tmp_path / "figure.png")


def test_main_quick_writes_the_workdir(tmp_path):
  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "experiments.main",
         "--config=experiments/configs/ipo_bandit.py:quick", f"--workdir={workdir}",
         "--config.betas=(0.5,)", "--config.num_steps=1000", "--config.record_every=250"]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  config = results.load_config(str(workdir))
  assert config["betas"] == [0.5] and config["num_steps"] == 1000
  metrics = results.load_metrics(str(workdir))
  # 2 datasets × 2 objectives × 1 β × (1000/250 + 1) recorded steps.
  assert len(metrics) == 2 * 2 * 1 * 5
  arrays = results.load_arrays(str(workdir))
  assert arrays["d1__ipo__policy"].shape == (1, 3, 5, 3)
  np.testing.assert_allclose(arrays["d1__ipo__policy"].sum(-1), 1.0, rtol=1e-5)
  summary = results.load_summary(str(workdir))
  assert {(r["source"], r["objective"]) for r in summary["runs"]} == {
      ("d1", "sigmoid"), ("d1", "ipo"), ("unobserved", "sigmoid"), ("unobserved", "ipo")}
  assert os.path.getsize(workdir / "figure.png") > 10_000


@pytest.mark.parametrize("override,message", [
    ("--config.no_such_field=1", "no_such_field"),
    ("--config.objectives=('sigmoid','dpoo')", "dpoo"),
    ("--config.betas=(0.1,-1.0)", "betas"),
])
def test_main_bad_input_is_a_clear_error(tmp_path, override, message):
  cmd = [sys.executable, "-m", "experiments.main", "--config=experiments/configs/ipo_bandit.py:quick",
         f"--workdir={tmp_path}", "--config.num_steps=100", "--config.record_every=100", override]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
  assert out.returncode != 0
  assert message in out.stderr
  assert "Traceback" not in out.stderr or "no_such_field" in message


def test_loss_zoo_table_on_a_shrunk_config(tmp_path):
  """`loss_zoo_bandit:quick` cut to five of its labels (plain DPO, two labels that alias sigmoid with options,
  IPO, AOT) and 20 steps: the sweep trains each label on D1 and the online Bradley–Terry bandit, the table has
  a row per label, IPO's closed form exists on the Bradley–Terry bandit and every run reports `collapsed` (the
  acceptance test below runs all 19 labels for 1 000 steps and checks which collapse)."""
  config = loss_zoo_bandit.get_config("quick")
  config.objectives = ("sigmoid", "cdpo", "dpo_alpha", "ipo", "aot")
  config.num_steps, config.record_every = 20, 10
  summary = runs.run_bandit_sweep(config, str(tmp_path))
  table = (tmp_path / "table.md").read_text()
  assert {r["objective"] for r in summary["runs"]} == set(config.objectives)
  for label in config.objectives:
    assert f"| {label} |" in table
  assert {r["source"] for r in summary["runs"]} == {"d1", "bradley_terry"}
  by = {(r["source"], r["objective"], r["beta"]): r for r in summary["runs"]}
  assert len(by) == 2 * len(config.objectives) * len(config.betas)
  assert by[("bradley_terry", "ipo", 1.0)]["tv_to_ipo_optimum"] is not None
  assert all(isinstance(r["collapsed"], bool) for r in summary["runs"])
  json.dumps(results.load_summary(str(tmp_path)))


@pytest.mark.acceptance
def test_loss_zoo_quick_writes_a_table(tmp_path):
  """Acceptance: all 19 labels of `loss_zoo_bandit:quick` (1 000 steps): a table row each, and DPO collapses on
  D1 while IPO does not.

  Default tier: test_loss_zoo_table_on_a_shrunk_config above (the same runner, table and summary on five
  labels and 20 steps); every objective reaching the bandit trainer: tests/test_objective_spec.py."""
  config = loss_zoo_bandit.get_config("quick")
  summary = runs.run_bandit_sweep(config, str(tmp_path))
  table = (tmp_path / "table.md").read_text()
  labels = {r["objective"] for r in summary["runs"]}
  assert labels == set(config.objectives)
  for label in labels:
    assert f"| {label} |" in table
  by = {(r["source"], r["objective"], r["beta"]): r for r in summary["runs"]}
  # On the online Bradley–Terry bandit both closed forms exist; DPO collapses on D1, IPO does not.
  assert by[("bradley_terry", "ipo", 1.0)]["tv_to_ipo_optimum"] is not None
  assert by[("d1", "sigmoid", 0.1)]["collapsed"] and not by[("d1", "ipo", 1.0)]["collapsed"]
  json.dumps(results.load_summary(str(tmp_path)))

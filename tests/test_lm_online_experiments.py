"""The two online LM experiments: both runners on shrunk configs (default tier), and through
colab/lm_online.ipynb (QUICK = True runs both :quick runners once and checks their claims: acceptance tier)."""

import json
import os

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from experiments.configs import lm_nash_synthetic
from experiments.configs import lm_sppo_synthetic
from prefjax.errors import PrefjaxError
from prefjax.runs import lm_online

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check_workdir(wd, names):
  """figure.png, the per-algorithm evaluation arrays (the last one is the summary's), algorithm-tagged metrics."""
  assert os.path.getsize(wd / "figure.png") > 1000
  with np.load(wd / "arrays.npz") as arrays:
    for name in names:
      e = arrays[f"{name}__step"].shape
      assert all(arrays[f"{name}__{k}"].shape == e for k in lm_online.EVAL_KEYS)
      np.testing.assert_allclose(arrays[f"{name}__duality_gap"][-1], names[name]["duality_gap"])
  lines = open(wd / "metrics.jsonl", encoding="utf-8").read().splitlines()
  assert lines and all("algorithm" in json.loads(line) for line in lines)


def test_both_online_runners_end_to_end_on_shrunk_configs(tmp_path):
  """Both runners through `runners.get_runner`, on their `:quick` configs cut to 4 steps (the notebook test
  runs the whole `:quick` configs and checks the claims): the summary's structure, the exact Nash
  equilibrium's gap, step 0's evaluation of π_ref, one SPPO evaluation per iteration, arrays and figures."""
  from prefjax import runners  # pylint: disable=g-import-not-at-top
  c = lm_nash_synthetic.get_config("quick")
  c.algorithms = "online_dpo,egpo"
  c.verbose = False
  c.online.update(num_steps=4, eval_every=2, log_every=2, checkpoint_every=2, batch_size=8)
  run = runners.get_runner(c.experiment)
  assert run is lm_online.run_lm_nash_synthetic
  nash = run(c, str(tmp_path / "nash"))
  runs = nash["runs"]
  assert set(runs) == {"online_dpo", "egpo"} and all(r["steps"] == 4 for r in runs.values())
  assert nash["claim_holds"] == (runs["egpo"]["duality_gap"] <= c.claim_ratio * runs["online_dpo"]["duality_gap"])
  assert nash["nash_equilibrium"]["duality_gap"] < 1e-9 and nash["nash_equilibrium"]["residual"] < 1e-9
  with np.load(tmp_path / "nash" / "arrays.npz") as arrays:
    for name in runs:
      np.testing.assert_array_equal(arrays[f"{name}__step"], [0, 2, 4])
      # Step 0 evaluates π_ref itself: the reference's gap, win rate ½ against π_ref.
      assert arrays[f"{name}__duality_gap"][0] == pytest.approx(nash["reference"]["duality_gap"], rel=1e-9)
      assert arrays[f"{name}__win_rate"][0] == pytest.approx(0.5, abs=1e-9)
  _check_workdir(tmp_path / "nash", runs)

  c = lm_sppo_synthetic.get_config("quick")
  c.verbose = False
  c.online.update(num_steps=4, iteration_steps=2, eval_every=2, log_every=2, checkpoint_every=2, batch_size=8)
  run = runners.get_runner(c.experiment)
  assert run is lm_online.run_lm_sppo_synthetic
  sppo = run(c, str(tmp_path / "sppo"))
  rates = sppo["win_rate_per_iteration"]
  assert len(rates) == 4 // 2 + 1 and rates[0] == pytest.approx(0.5, abs=1e-9)  # iteration 0 is π_ref
  assert sppo["claim_holds"] == (all(b > a for a, b in zip(rates, rates[1:])) and rates[-1] >= 0.5 + c.claim_margin)
  _check_workdir(tmp_path / "sppo", sppo["runs"])


@pytest.mark.acceptance
def test_notebook_runs_both_quick_experiments_and_shows_their_claims(tmp_path):
  """Acceptance: the notebook runs both `:quick` experiments in a Jupyter kernel; their claims hold (the Nash
  algorithms' gap ≤ claim_ratio × online DPO's; SPPO's win rate rises every iteration).

  Default tier: test_both_online_runners_end_to_end_on_shrunk_configs above (both runners, the same code path
  on 4 steps) and tests/test_notebooks_static.py (the notebook's cells compile, its imports resolve)."""
  nb = nbformat.read(os.path.join(ROOT, "colab", "lm_online.ipynb"), as_version=4)
  params = [c for c in nb.cells if c.cell_type == "code" and "QUICK = False" in c.source]
  assert len(params) == 1, "the notebook must have one parameters cell with QUICK = False"
  params[0].source = params[0].source.replace("QUICK = False", "QUICK = True").replace(
      '"runs/lm_online_colab"', repr(str(tmp_path)))
  NotebookClient(nb, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": os.path.join(ROOT, "colab")}}).execute()

  nash = json.load(open(tmp_path / "nash" / "summary.json", encoding="utf-8"))
  runs = nash["runs"]
  assert set(runs) == {"online_dpo", "online_ipo", "egpo"}
  ratio = lm_nash_synthetic.get_config("quick").claim_ratio
  assert nash["claim_holds"] == all(runs[n]["duality_gap"] <= ratio * runs["online_dpo"]["duality_gap"]
                                    for n in ("online_ipo", "egpo"))
  assert nash["claim_holds"], runs
  assert nash["nash_equilibrium"]["duality_gap"] < 1e-9 and nash["nash_equilibrium"]["residual"] < 1e-9
  assert nash["reference"]["duality_gap"] > runs["online_ipo"]["duality_gap"]

  sppo = json.load(open(tmp_path / "sppo" / "summary.json", encoding="utf-8"))
  rates = sppo["win_rate_per_iteration"]
  cfg = lm_sppo_synthetic.get_config("quick")
  assert len(rates) == cfg.online.num_steps // cfg.online.iteration_steps + 1
  assert rates[0] == pytest.approx(0.5, abs=1e-9)  # iteration 0 is π_ref itself
  assert sppo["claim_holds"] and all(b > a for a, b in zip(rates, rates[1:])), rates

  for sub, names in (("nash", runs), ("sppo", sppo["runs"])):
    _check_workdir(tmp_path / sub, names)
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "claim" in outputs and "True" in outputs


def test_bad_configs_are_clear_errors(tmp_path):
  c = lm_nash_synthetic.get_config("quick")
  c.algorithms = "online_ipo,ppo"
  with pytest.raises(PrefjaxError, match="unknown"):
    lm_online.run_lm_nash_synthetic(c, str(tmp_path / "a"))
  c = lm_nash_synthetic.get_config("quick")
  c.beta = -1.0
  with pytest.raises(PrefjaxError, match="beta"):
    lm_online.run_lm_nash_synthetic(c, str(tmp_path / "b"))
  c = lm_sppo_synthetic.get_config("quick")
  c.online.eval_every = 7
  with pytest.raises(PrefjaxError, match="iteration_steps"):
    lm_online.run_lm_sppo_synthetic(c, str(tmp_path / "c"))


@pytest.mark.parametrize("field,value,match", [
    ("mesh.fsdp", 0, r"config.mesh.fsdp must be >= 1"),
    ("model.num_heads", 3, r"config.model.d_model=\d+ must be a multiple of config.model.num_heads=3"),
    ("synthetic.vocab_size", 1, r"config.synthetic.vocab_size"),
    ("model.style", "gpt3", r"config.model.style")])
def test_every_synthetic_lm_runner_checks_the_shared_fields(field, value, match):
  """The mesh, model and synthetic-task fields are checked by one function for the offline and both online
  synthetic runners: the same message from each."""
  from experiments.configs import lm_dpo_synthetic  # pylint: disable=g-import-not-at-top
  from prefjax.runs import lm_offline  # pylint: disable=g-import-not-at-top
  for module, validate in ((lm_dpo_synthetic, lm_offline.validate_lm_offline),
                           (lm_nash_synthetic, lm_online.validate_lm_nash_synthetic),
                           (lm_sppo_synthetic, lm_online.validate_lm_sppo_synthetic)):
    c = module.get_config("quick")
    node, leaf = field.split(".")
    c[node][leaf] = value
    with pytest.raises(PrefjaxError, match=match):
      validate(c)


def test_spin_fixed_point_kl_is_zero_exactly_at_the_tabular_dynamics_fixed_point(tmp_path):
  """The π* behind summary's kl_to_fixed_point_per_iteration is a fixed point of games.dynamics.spin_step."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from prefjax.games import dynamics  # pylint: disable=g-import-not-at-top
  from prefjax.lm import online  # pylint: disable=g-import-not-at-top
  from prefjax.lm import synthetic as syn  # pylint: disable=g-import-not-at-top
  task = syn.make_task(seed=3, num_prompts=2, vocab_size=3, response_len=2)
  rng = np.random.default_rng(0)
  ref = rng.normal(size=(2, task.num_responses))
  norm = lambda x: x - np.logaddexp.reduce(x, axis=-1, keepdims=True)
  for algorithm, lam, alpha in (("spin", 1.5, 0.5), ("alpha_spin", 1.5, 0.5), ("alpha_spin", 0.5, 0.2)):
    cfg = online.OnlineConfig(algorithm=algorithm, spin_lambda=lam, spin_alpha=alpha, spin_history=2)
    a = alpha if algorithm == "alpha_spin" else 0.0
    star = norm((a * norm(ref) + norm(task.sft_logp_CxN) / lam) / (a + 1.0 / lam))
    for c in range(2):  # the exact iteration, opponent = iterate = π*, does not move π*
      nxt = dynamics.spin_step(jnp.asarray(star[c]), jnp.asarray(star[c]), jnp.asarray(ref[c]),
                               jnp.asarray(task.sft_logp_CxN[c]), 1.0 / lam, a)
      np.testing.assert_allclose(np.asarray(nxt), star[c], atol=1e-5)
    other = norm(rng.normal(size=star.shape))
    path = str(tmp_path / f"{algorithm}{lam}.npz")
    np.savez(path, **{"0": star, "7": other})
    out = lm_online._spin_fixed_point_kls(task, ref, cfg, path)  # pylint: disable=protected-access
    kl_other = float(np.mean(np.sum(np.exp(star) * (star - other), axis=-1)))
    np.testing.assert_allclose(out["kl_to_fixed_point_per_iteration"], [0.0, kl_other], atol=1e-12)
    assert kl_other > 0.01 and out["spin_history"] == 2 and out["kl_to_fixed_point_steps"] == [0, 7]


def test_the_old_lm_runner_paths_give_the_same_objects():
  """prefjax.lm.experiments and prefjax.lm.online_experiments, the runners' old paths, re-export them."""
  from prefjax.lm import experiments as old_offline  # pylint: disable=g-import-not-at-top
  from prefjax.lm import online_experiments as old_online  # pylint: disable=g-import-not-at-top
  from prefjax.runs import lm_offline  # pylint: disable=g-import-not-at-top
  assert old_offline.run_lm_offline is lm_offline.run_lm_offline
  assert old_offline.validate_lm_offline is lm_offline.validate_lm_offline
  assert old_online.run_lm_nash_synthetic is lm_online.run_lm_nash_synthetic
  assert old_online.run_lm_sppo_synthetic is lm_online.run_lm_sppo_synthetic
  assert old_online.EVAL_KEYS is lm_online.EVAL_KEYS
  assert old_online._spin_fixed_point_kls is lm_online._spin_fixed_point_kls  # pylint: disable=protected-access

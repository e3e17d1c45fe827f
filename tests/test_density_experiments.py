"""End-to-end tests of the density-estimation experiments (quick variants) and their notebook."""

import json
import os

import numpy as np
import pytest

from experiments.configs import pbde_misspecified
from experiments.configs import pbde_toy
from prefjax import runners
from prefjax.density import experiments
from prefjax.errors import PrefjaxError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_runners_are_registered():
  assert runners.get_runner("pbde_toy") is experiments.run_pbde_toy
  assert runners.get_runner("pbde_misspecified") is experiments.run_pbde_misspecified


def _check_toy_quick(tmp_path, config):
  """The outputs of `pbde_toy:quick` (run by the density notebook test)."""
  summary = json.load(open(tmp_path / "summary.json"))
  for name in ("config.json", "metrics.jsonl", "arrays.npz", "summary.json", "figure.png"):
    assert os.path.exists(tmp_path / name), name
  assert set(summary["acceptance"]) == {"dpo_beta_4_tv", "dpo_beta_4_ok", "geometric_alpha_0.25_tv",
                                        "geometric_alpha_0.25_ok"}
  runs = summary["runs"]
  assert len(runs) == 3 + 3 + 3 + len(config.slic_deltas) * len(config.slic_lambdas)
  arrays = np.load(tmp_path / "arrays.npz")
  g = config.grid_size
  assert arrays["dpo__log_density"].shape == (3, g) and arrays["slic__log_optimum"].shape[1] == g
  # Each density is normalised on the grid (trapezoid rule).
  dx = 20.0 / (g - 1)
  w = np.full(g, dx)
  w[[0, -1]] = dx / 2
  np.testing.assert_allclose(np.exp(arrays["geometric__log_density"]) @ w, 1.0, rtol=1e-4)
  # Training moves towards the implied optimum (recorded TV falls) for every family with a closed form.
  for fam in ("dpo", "geometric", "ipo"):
    tv = arrays[f"{fam}__tv"]
    assert np.all(tv[:, -1] < tv[:, 0]), (fam, tv)
  # Stronger regularisation keeps the policy closer to π_pre: TV(π, π_pre) falls as β grows (1 < 4 < 16) and
  # as α falls (1 > 1/4 > 1/16), as the optima π_pre p*^{1/β} and π_pre^{1−α} p*^α say.
  for fam, key in (("dpo", "beta"), ("geometric", "alpha")):
    rs = sorted((r for r in runs if r["family"] == fam), key=lambda r: r[key], reverse=fam == "geometric")
    tv_pre = [r["tv_to_pre"] for r in rs]
    assert tv_pre[0] > tv_pre[1] > tv_pre[2], (fam, tv_pre)
  # SLiC's regulariser (λ = 1) keeps the policy closer to π_pre than λ = 0, at every δ.
  for delta in config.slic_deltas:
    by_lam = {r["lam"]: r["tv_to_pre"] for r in runs if r["family"] == "slic" and r["delta"] == delta}
    assert by_lam[1.0] < by_lam[0.0], (delta, by_lam)


def _check_misspecified_structure(tmp_path, config, summary):
  """What every `pbde_misspecified` run writes, however short: files, heatmaps, weights, acceptance keys."""
  for name in ("config.json", "metrics.jsonl", "arrays.npz", "summary.json", "figure.png"):
    assert os.path.exists(tmp_path / name), name
  arrays = np.load(tmp_path / "arrays.npz")
  m = config.heatmap_points
  for k in ("true", "single", "mixture"):
    h = arrays[f"heatmap__{k}"]
    assert h.shape == (m, m) and np.all((h >= 0) & (h <= 1))
    # P(a ≻ b) + P(b ≻ a) = 1 for every model (both the Luce and the mixture likelihoods are symmetric).
    np.testing.assert_allclose(h + h.T, 1.0, atol=1e-5)
  np.testing.assert_allclose(arrays["mixture__weights"].sum(), 1.0, rtol=1e-6)
  assert len(summary["mixture_component_tv"]) == 2 and len(summary["single_tv_to_components"]) == 2
  assert set(summary["acceptance"]) == {"mixture_components_ok", "single_fits_no_component"}
  assert summary["population_nll_truth"] > 0
  assert len(open(tmp_path / "metrics.jsonl").read().splitlines()) == config.num_steps // config.record_every
  return arrays


def _check_misspecified_outputs(tmp_path, config, summary):
  arrays = _check_misspecified_structure(tmp_path, config, summary)
  for k in ("single__loss", "mixture__loss"):
    assert arrays[k][-1] < arrays[k][0], k
  # Even a short run (2 048 pairs) must beat the single-annotator model where it cannot be fooled by the
  # sample: the exact population excess risk (true pair law and label probabilities). The single model is
  # misspecified, so its excess risk is bounded away from 0; the mixture's is not.
  assert 0 <= summary["population_excess_nll_mixture"] < summary["population_excess_nll_single"], summary
  return arrays


# pbde_toy / pbde_misspecified :quick cut to a coarse grid, a 1-layer MLP and a few steps: the runners' code
# paths (each family's sweep, SLiC's whole-grid branch, L-BFGS with held-out scoring and early stopping; Adam
# in tests/test_runner_contract.py) in seconds. The claims (TV falls, the mixture beats the single model) need
# the whole `:quick` runs: the acceptance tests below.
SHRINK = dict(grid_size=32, width=8, num_layers=1, pretrain_steps=4, num_pairs=64, num_steps=4, record_every=2,
              fast_compile=True)


def test_pbde_toy_every_family_end_to_end_on_a_shrunk_config(tmp_path):
  """All four families of `pbde_toy:quick` in one sweep on a shrunk config: files, runs, acceptance keys, arrays'
  shapes and every learned density normalised on the grid (the notebook test checks the TV claims)."""
  config = pbde_toy.get_config("quick")
  with config.unlocked():
    config.update(SHRINK)
  assert set(config.families) == {"dpo", "geometric", "ipo", "slic"}
  summary = runners.get_runner(config.experiment)(config, str(tmp_path))
  for name in ("config.json", "metrics.jsonl", "arrays.npz", "summary.json", "figure.png"):
    assert os.path.exists(tmp_path / name), name
  assert set(summary["acceptance"]) == {"dpo_beta_4_tv", "dpo_beta_4_ok", "geometric_alpha_0.25_tv",
                                        "geometric_alpha_0.25_ok"}
  runs = summary["runs"]
  assert len(runs) == 3 + 3 + 3 + len(config.slic_deltas) * len(config.slic_lambdas)
  assert {r["family"] for r in runs} == {"dpo", "geometric", "ipo", "slic"}
  assert all(np.isfinite(r["tv_to_pre"]) and 0 <= r["tv_to_pre"] <= 1 for r in runs)
  arrays = np.load(tmp_path / "arrays.npz")
  g = config.grid_size
  assert arrays["dpo__log_density"].shape == (3, g) and arrays["slic__log_optimum"].shape[1] == g
  for fam in ("dpo", "geometric", "ipo"):
    assert arrays[f"{fam}__tv"].shape == (3, config.num_steps // config.record_every), fam
  # Each density is normalised on the grid (trapezoid rule).
  dx = 20.0 / (g - 1)
  w = np.full(g, dx)
  w[[0, -1]] = dx / 2
  for fam in ("dpo", "geometric", "ipo", "slic"):
    np.testing.assert_allclose(np.exp(arrays[f"{fam}__log_density"]) @ w, 1.0, rtol=1e-4, err_msg=fam)


def test_pbde_misspecified_lbfgs_with_heldout_early_stopping_on_a_shrunk_config(tmp_path):
  """The default L-BFGS path with a held-out set and early stopping: held-out NLL scored at every record, the
  kept iterate the recorded one with the lowest held-out NLL (Adam: tests/test_runner_contract.py's
  pbde_misspecified case, and with the held-out set the acceptance test below)."""
  config = pbde_misspecified.get_config("quick")
  config.update(SHRINK, heatmap_points=8, holdout_fraction=0.25, early_stopping=True, num_steps=8)
  assert config.optimizer == "lbfgs" and config.num_components == 2
  summary = runners.get_runner(config.experiment)(config, str(tmp_path))
  arrays = _check_misspecified_structure(tmp_path, config, summary)
  assert summary["optimizer"] == "lbfgs"
  assert summary["num_holdout_pairs"] == 16 and summary["num_train_pairs"] == 48
  for model in ("single", "mixture"):
    held = arrays[f"{model}__heldout_nll"]
    assert held.shape == (4,) and np.all(np.isfinite(held))
    assert summary[f"stopping_step_{model}"] == int(arrays["steps"][np.argmin(held)])


@pytest.mark.acceptance
def test_pbde_misspecified_adam_with_heldout_early_stopping(tmp_path):
  """Acceptance: the Adam path with a held-out set and early stopping on the whole `:quick` data (256 steps):
  both losses fall and the mixture's exact population excess risk is below the single model's.

  Default tier: test_pbde_misspecified_lbfgs_with_heldout_early_stopping_on_a_shrunk_config above (held-out
  scoring and early stopping, with L-BFGS, on a shrunk config) and tests/test_runner_contract.py's
  pbde_misspecified case (the Adam path)."""
  config = pbde_misspecified.get_config("quick")
  config.optimizer = "adam"
  config.lr = 3e-3
  config.num_steps = 256
  config.record_every = 64
  config.holdout_fraction = 0.25
  config.early_stopping = True
  summary = experiments.run_pbde_misspecified(config, str(tmp_path))
  arrays = _check_misspecified_outputs(tmp_path, config, summary)
  # Held-out scoring and early stopping: the kept iterate is the recorded one with the lowest held-out NLL.
  assert summary["num_holdout_pairs"] == 512 and summary["num_train_pairs"] == 1536
  assert summary["optimizer"] == "adam"
  for model in ("single", "mixture"):
    held = arrays[f"{model}__heldout_nll"]
    assert np.all(np.isfinite(held)) and summary[f"stopping_step_{model}"] == int(arrays["steps"][np.argmin(held)])


@pytest.mark.parametrize("field, value, message", [
    ("dpo_betas", (1.0, 0.0), "dpo_betas must all be > 0"),
    ("record_every", 7, "must divide config.num_steps"),
    ("families", ("dpo", "kto"), "unknown entries"),
    ("grid_size", 4, "at least 16"),
])
def test_pbde_toy_bad_config_is_a_clear_error(tmp_path, field, value, message):
  config = pbde_toy.get_config("quick")
  with config.unlocked():
    config[field] = value
  with pytest.raises(PrefjaxError, match=message):
    experiments.run_pbde_toy(config, str(tmp_path))


@pytest.mark.parametrize("field, value, message", [
    ("num_components", 0, "num_components"),
    ("holdout_fraction", 1.0, "holdout_fraction"),
    ("early_stopping", True, "early_stopping needs a held-out split"),
    ("optimizer", "sgd", "optimizer must be 'lbfgs' or 'adam'"),
])
def test_pbde_misspecified_bad_config_is_a_clear_error(tmp_path, field, value, message):
  config = pbde_misspecified.get_config("quick")
  config[field] = value
  with pytest.raises(PrefjaxError, match=message):
    experiments.run_pbde_misspecified(config, str(tmp_path))


@pytest.mark.acceptance
def test_density_notebook_runs_quick(tmp_path):
  """Acceptance: the notebook runs `pbde_toy:quick` and `pbde_misspecified:quick` (L-BFGS) in a Jupyter kernel;
  training moves each family towards its optimum and regularisation orders the TVs to π_pre as the optima say.

  Default tier: test_pbde_toy_every_family_end_to_end_on_a_shrunk_config and
  test_pbde_misspecified_lbfgs_with_heldout_early_stopping_on_a_shrunk_config above (both runners, every
  family, L-BFGS, on shrunk configs), tests/test_runner_contract.py (pbde_toy; pbde_misspecified with Adam) and
  tests/test_notebooks_static.py (the notebook's cells compile, its imports resolve)."""
  import nbformat  # pylint: disable=g-import-not-at-top
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top
  path = os.path.join(ROOT, "colab", "density_estimation.ipynb")
  nb = nbformat.read(path, as_version=4)
  params = [c for c in nb.cells if c.cell_type == "code" and "QUICK = False" in c.source]
  assert len(params) == 1, "the notebook must have one parameters cell with QUICK = False"
  params[0].source = params[0].source.replace("QUICK = False", "QUICK = True").replace(
      '"runs/density_colab"', repr(str(tmp_path / "run")))
  NotebookClient(nb, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": os.path.join(ROOT, "colab")}}).execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "dpo" in outputs and "mixture" in outputs
  # The notebook runs pbde_toy:quick and pbde_misspecified:quick (the default L-BFGS path) through the
  # runners; their outputs are checked here rather than by separate runs of the same configs.
  _check_toy_quick(tmp_path / "run" / "toy", pbde_toy.get_config("quick"))
  mis = json.load(open(tmp_path / "run" / "misspecified" / "summary.json"))
  assert mis["optimizer"] == "lbfgs" and mis["num_holdout_pairs"] == 0
  _check_misspecified_outputs(tmp_path / "run" / "misspecified", pbde_misspecified.get_config("quick"), mis)

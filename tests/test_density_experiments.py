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


def _check_misspecified_outputs(tmp_path, config, summary):
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
  for k in ("single__loss", "mixture__loss"):
    assert arrays[k][-1] < arrays[k][0], k
  assert set(summary["acceptance"]) == {"mixture_components_ok", "single_fits_no_component"}
  # Even a short run (2 048 pairs) must beat the single-annotator model where it cannot be fooled by the
  # sample: the exact population excess risk (true pair law and label probabilities). The single model is
  # misspecified, so its excess risk is bounded away from 0; the mixture's is not.
  assert 0 <= summary["population_excess_nll_mixture"] < summary["population_excess_nll_single"], summary
  assert summary["population_nll_truth"] > 0
  return arrays


@pytest.mark.slow
def test_pbde_misspecified_adam_with_heldout_early_stopping(tmp_path):
  """The Adam path with a held-out set and early stopping (the default L-BFGS path runs in the notebook test)."""
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


@pytest.mark.slow
def test_density_notebook_runs_quick(tmp_path):
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

"""End-to-end tests of the preference-game experiment runners (quick variants) and their configs.

Oracles: EGPO's geometric convergence (exact EGPO's final gap at float64 noise), Munos et al.'s Nash-MD bound,
the closed-form Nash solution of Munos et al.'s annotator population and its BT flip, online IPO's
stationary point at the NE vs online DPO's, the cycling of multiplicative weights on rock–paper–scissors and
SPIN's fixed point p_data; bad configs and instance files raise `PrefjaxError`.
"""

import json
import os

import jax
import numpy as np
import pytest

from experiments.configs import annotator_flip
from experiments.configs import egpo_neural
from experiments.configs import egpo_tabular
from experiments.configs import nash_md_rate
from experiments.configs import online_dpo_vs_ipo
from experiments.configs import selfplay_cycles
from prefjax import runners
from prefjax.errors import PrefjaxError
from prefjax.games import experiments
from prefjax.games import instances


def _instance_file(tmp_path, num_games=3, n=5, seed=4, **extra):
  P, ref = instances.egpo_games(jax.random.PRNGKey(seed), num_games, n)
  path = tmp_path / "games.npz"
  arrays = {"P": np.asarray(P, np.float64), "ref_logits": np.asarray(ref, np.float64)}
  arrays.update(extra)
  np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
  return str(path), arrays


def test_runners_are_registered():
  for name, fn in (("egpo", experiments.run_egpo), ("nash_md_rate", experiments.run_nash_md_rate),
                   ("selfplay_cycles", experiments.run_selfplay_cycles),
                   ("online_dpo_vs_ipo", experiments.run_online_dpo_vs_ipo),
                   ("annotator_flip", experiments.run_annotator_flip)):
    assert runners.get_runner(name) is fn


def test_egpo_tabular_quick_on_a_user_instance_file(tmp_path):
  path, arrays = _instance_file(tmp_path)
  config = egpo_tabular.get_config("quick")
  with config.unlocked():
    config.instance_file = path
    config.algorithms = ("egpo",)
  summary = experiments.run_egpo(config, str(tmp_path / "run"))
  out = np.load(tmp_path / "run" / "arrays.npz")
  np.testing.assert_array_equal(out["P"], arrays["P"])
  assert out["steps__beta0.1"].shape == (11,)
  for name in ("egpo__exact", "egpo__sampled"):
    gap = out[f"gap__beta0.1__{name}"]
    assert gap.shape == (3, 1, 11) and np.all(gap >= 0), name
    assert np.all(gap[..., -1] < gap[..., 0]), name
  # EGPO exact converges geometrically (ηβ = 4·lr/N = 0.08 per update, 200 updates) to float64 noise.
  assert summary["headline"]["beta=0.1"]["egpo_exact_final_gap_max"] < 1e-9
  assert summary["settings"][0]["runs"]["egpo__sampled"]["final_gap_max"] > 1e-9  # the sampling noise floor
  assert os.path.exists(tmp_path / "run" / "figure.png")
  assert json.load(open(tmp_path / "run" / "summary.json"))["num_games"] == 3
  lines = open(tmp_path / "run" / "metrics.jsonl").read().splitlines()
  assert len(lines) == 2 * 11


def test_egpo_neural_quick(tmp_path):
  config = egpo_neural.get_config("quick")
  with config.unlocked():
    config.algorithms = ("egpo",)
    config.modes = ("exact",)
    config.num_seeds = 2
    config.betas = (0.1,)  # A better-conditioned game than EGPO's β = 0.01 ...
    config.lrs = (0.05,)  # ... and a larger step than its 0.003, so that 100 updates show progress.
    config.figure = False
  summary = experiments.run_egpo(config, str(tmp_path))
  run = summary["settings"][0]["runs"]["egpo__exact"]
  gap = np.load(tmp_path / "arrays.npz")["gap__beta0.1__egpo__exact"]
  assert gap.shape == (2, 2, 6) and gap.dtype == np.float32
  assert np.all(np.isfinite(gap)) and run["final_gap_max"] > 0
  assert np.all(gap[..., -1] < gap[..., 0])
  # The reference is the network at initialisation: different seeds, different reference policies.
  assert gap[0, 0, 0] != gap[0, 1, 0]


def test_bad_instance_files_and_configs(tmp_path):
  path, _ = _instance_file(tmp_path)
  data = dict(np.load(path))
  missing = tmp_path / "missing.npz"
  np.savez(missing, P=data["P"])
  with pytest.raises(PrefjaxError, match=r"lacks array\(s\) \['ref_logits'\]"):
    experiments.load_instances(str(missing))
  wrong = tmp_path / "wrong.npz"
  np.savez(wrong, P=data["P"], ref_logits=data["ref_logits"][:, :2])
  with pytest.raises(PrefjaxError, match="ref_logits must have shape"):
    experiments.load_instances(str(wrong))
  flat = tmp_path / "flat.npz"
  np.savez(flat, P=data["P"][0], ref_logits=data["ref_logits"])
  with pytest.raises(PrefjaxError, match=r"P must have shape \[G, N, N\]"):
    experiments.load_instances(str(flat))
  notpref = tmp_path / "notpref.npz"
  bad = data["P"].copy()
  bad[0, 0, 1] = bad[0, 1, 0] = 0.8
  np.savez(notpref, P=bad, ref_logits=data["ref_logits"])
  with pytest.raises(PrefjaxError, match=r"P \+ P\^T = 1"):
    experiments.load_instances(str(notpref))
  with pytest.raises(PrefjaxError, match="does not exist"):
    experiments.load_instances(str(tmp_path / "nope.npz"))
  config = egpo_tabular.get_config("quick")
  with config.unlocked():
    config.betas = (-0.1,)
  with pytest.raises(PrefjaxError, match="betas must be > 0"):
    experiments.run_egpo(config, str(tmp_path / "r1"))
  config = egpo_tabular.get_config("quick")
  with config.unlocked():
    config.iterations = (200, 100)
  with pytest.raises(PrefjaxError, match="equal"):
    experiments.run_egpo(config, str(tmp_path / "r2"))
  config = egpo_tabular.get_config("quick")
  with config.unlocked():
    config.algorithms = ("egpoo",)
  with pytest.raises(PrefjaxError, match="unknown game objective"):
    experiments.run_egpo(config, str(tmp_path / "r3"))
  config = nash_md_rate.get_config("quick")
  with config.unlocked():
    config.record_every = 300
  with pytest.raises(PrefjaxError, match="record_every"):
    experiments.run_nash_md_rate(config, str(tmp_path / "r4"))


def test_nash_md_rate_quick_stays_under_the_bound(tmp_path):
  """Acceptance: Nash-MD with η_t = 2/(β(t+2)) stays under 8/(β²(T+1)) at every recorded T."""
  summary = experiments.run_nash_md_rate(nash_md_rate.get_config("quick"), str(tmp_path))
  out = np.load(tmp_path / "arrays.npz")
  assert out["steps"].shape == (10,)
  for b, s in summary["betas"].items():
    assert s["under_bound"], b
    kl = out[f"kl__beta{b}"]
    assert kl.shape == (3, 10)
    assert np.all(kl <= out[f"bound__beta{b}"][None]) and np.all(kl >= 0)
    assert kl[:, -1].max() < kl[:, 0].max()


def test_annotator_flip_quick(tmp_path):
  summary = experiments.run_annotator_flip(annotator_flip.get_config("quick"), str(tmp_path))
  assert summary["bt_flips"]
  assert summary["nash_lp_max_deviation_from_claimed"] < 1e-12
  assert summary["max_jump"]["bt_policy"] == 1.0
  assert summary["max_jump"]["nash_lp"] <= 1.5 * summary["eps_step"] + 1e-12
  assert os.path.exists(tmp_path / "figure.png")


def test_online_dpo_vs_ipo_quick(tmp_path):
  summary = experiments.run_online_dpo_vs_ipo(online_dpo_vs_ipo.get_config("quick"), str(tmp_path))
  assert summary["runs"]["ipo"]["final_gap_median"] < 1e-8
  assert summary["runs"]["ipo"]["final_gap_max"] < 1e-4
  assert summary["runs"]["dpo"]["final_gap_median"] > 1e-3
  out = np.load(tmp_path / "arrays.npz")
  half = out["steps"].size // 2
  dpo, ipo = out["gap__dpo"], out["gap__ipo"]
  assert np.all(ipo[:, -1] < 0.2 * ipo[:, half])  # IPO is still converging
  assert np.all(dpo[:, -1] > 1e-3)
  assert summary["runs"]["dpo"]["final_tv_to_ne_median"] > 1e-2


def test_selfplay_cycles_quick(tmp_path):
  summary = experiments.run_selfplay_cycles(selfplay_cycles.get_config("quick"), str(tmp_path))
  cyc = summary["mwu"]["cyclic"]
  # Rock–paper–scissors: the average iterate approaches the uniform NE, the last iterate keeps cycling.
  assert cyc["final_exploit_avg"] < 0.5 * cyc["max_exploit_last_second_half"]
  assert summary["spin"]["spin"]["final_tv_to_data"] < 1e-6
  assert summary["spin"]["alpha_spin"]["final_tv_to_data"] > 1e-3  # α-SPIN's fixed point is π_ref-tilted.
  for label in ("soft", "hard"):
    assert np.isfinite(summary["sppo"][label]["final_exploit"])
  out = np.load(tmp_path / "arrays.npz")
  assert out["mwu__cyclic__exploit_last"].shape == out["steps"].shape == (10,)


@pytest.mark.acceptance
def test_nash_games_notebook_runs_quick(tmp_path):
  """Acceptance: the notebook runs egpo_tabular, nash_md_rate and annotator_flip (`:quick`) in a Jupyter kernel.

  Default tier: the same runners on the same configs in test_egpo_tabular_quick_on_a_user_instance_file,
  test_nash_md_rate_quick_stays_under_the_bound and test_annotator_flip_quick above, and
  tests/test_notebooks_static.py (the notebook's cells compile, its imports resolve)."""
  import nbformat  # pylint: disable=g-import-not-at-top
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  nb = nbformat.read(os.path.join(root, "colab", "nash_games.ipynb"), as_version=4)
  params = [c for c in nb.cells if c.cell_type == "code" and "QUICK = False" in c.source]
  assert len(params) == 1, "the notebook must have one parameters cell with QUICK = False"
  assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # no outputs committed
  params[0].source = params[0].source.replace("QUICK = False", "QUICK = True").replace(
      '"runs/nash_games_colab"', repr(str(tmp_path / "run")))
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": os.path.join(root, "colab")}}).execute()
  for sub in ("egpo", "rate", "flip"):
    assert os.path.exists(tmp_path / "run" / sub / "figure.png")
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "egpo_exact_final_gap_max" in outputs and "BT optimum flips: True" in outputs

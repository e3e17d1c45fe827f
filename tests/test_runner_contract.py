"""The workdir contract (`prefjax.workdir.experiment`) for every non-LM experiment runner.

Each registered runner runs its `:quick` config, shrunk further by overrides so a run takes seconds:

- a bad value of a field raises `PrefjaxError` naming the field and leaves the workdir byte for byte as it was
  (a sentinel record, and a finished run);
- the same config twice: the second call returns the stored summary without running (nothing in the workdir
  changes; metrics.jsonl is not doubled);
- another config is refused with a message naming the differing field, and `overwrite=True` replaces the run
  (the new config.json, metrics.jsonl without the old lines);
- config.json, summary.json and arrays.npz are 0644 under umask 022; status.json ends "complete" and lists the
  figures.

Also the objective benchmark's label-noise and ranked-data verdicts, on synthetic numbers: a "win" only when
the 95% intervals separate.
"""

import importlib
import json
import os
import signal
import stat

import jax
from jax.experimental.compilation_cache import compilation_cache
import ml_collections
import numpy as np
import pytest

from prefjax import preemption
from prefjax import runners
from prefjax import workdir as workdir_lib
from prefjax.bandit import objective_benchmark as ob
from prefjax.bandit import runs as bandit_runs
from prefjax.errors import PrefjaxError
from resume_helpers import snapshot

# experiment name → (config file, overrides of its :quick variant, the field changed for "another config").
CASES = {
    "bandit_sweep": ("ipo_bandit", dict(num_steps=40, record_every=20, num_seeds=2, betas=(0.5,),
                                        datasets=("d1",)), "name"),
    "objective_benchmark": ("objective_benchmark", dict(
        objectives=("sigmoid",), num_steps=10, record_every=5, num_seeds=2, num_contexts=4,
        num_responses=4, num_prompts=8, prompt_counts=(4,), label_noise_levels=(0.0, 0.2), batch_size=4,
        figure=False), "name"),
    "egpo": ("egpo_tabular", dict(algorithms=("egpo",), modes=("exact",), iterations=(20,), num_records=2,
                                  num_games=2, num_actions=3), "name"),
    "nash_md_rate": ("nash_md_rate", dict(betas=(1.0,), num_steps=20, record_every=10, num_games=2,
                                          num_actions=3), "name"),
    "selfplay_cycles": ("selfplay_cycles", dict(num_steps=20, record_every=10, sppo_iterations=1,
                                                sppo_inner_steps=2, num_actions=3, figure=False), "name"),
    "online_dpo_vs_ipo": ("online_dpo_vs_ipo", dict(num_games=2, num_actions=3, num_steps=20, record_every=10),
                          "name"),
    "annotator_flip": ("annotator_flip", dict(eps=(-0.1, 0.1)), "name"),
    "pbde_toy": ("pbde_toy", dict(grid_size=32, width=8, num_layers=1, pretrain_steps=4, num_pairs=64,
                                  num_steps=4, record_every=2, families=("dpo", "geometric"), dpo_betas=(4.0,),
                                  geometric_alphas=(0.25,), fast_compile=True, figure=False), "name"),
    "pbde_misspecified": ("pbde_misspecified", dict(grid_size=32, width=8, num_layers=1, pretrain_steps=4,
                                                    num_pairs=64, num_steps=4, record_every=2, heatmap_points=8,
                                                    num_components=1, optimizer="adam", figure=False), "name"),
    "arena_ranking": ("arena_ranking", dict(num_models=4, k=3, votes=(20,), num_simulations=2,
                                            coverage_votes=20, bootstrap_rounds=2, intransitivity=(0.0,)),
                      "tau_target"),
    "curation_loop": ("curation_loop", dict(num_items=9, num_generations=2, candidates=(1, 4),
                                            real_fractions=(0.0,), lambda_candidates=4, sampled_candidates=(4,),
                                            sampled_real_fractions=(0.0,), num_samples=64, num_seeds=2,
                                            figure=False), "seed"),
}

# (experiment, field, bad value): each must be refused naming the field, before anything is written.
BAD = [
    ("bandit_sweep", "num_seeds", 0),  # was a JAX IndexError
    ("bandit_sweep", "betas", ("abc",)),  # was a numpy ValueError
    ("bandit_sweep", "betas", (0.5, -1.0)),
    ("bandit_sweep", "objectives", ("sigmoid", "dpoo")),
    ("bandit_sweep", "record_every", 7),
    ("bandit_sweep", "datasets", ("d1", "d9")),
    ("bandit_sweep", "tail_fraction", 0.0),
    ("objective_benchmark", "objectives", ("sigmoid", "nope")),
    ("objective_benchmark", "label_noise_levels", (0.0, 0.6)),
    ("objective_benchmark", "num_seeds", 0),
    ("objective_benchmark", "record_every", 3),
    ("objective_benchmark", "policy", "cnn"),
    ("egpo", "betas", (-0.1,)),
    ("egpo", "algorithms", ("egpoo",)),
    ("egpo", "num_records", 3),
    ("egpo", "modes", ("exact", "exact")),
    ("nash_md_rate", "record_every", 7),
    ("nash_md_rate", "betas", ()),
    ("selfplay_cycles", "alpha", 1.5),
    ("selfplay_cycles", "sppo_k", 1),
    ("selfplay_cycles", "record_every", 3),
    ("online_dpo_vs_ipo", "lr", -1.0),
    ("online_dpo_vs_ipo", "record_every", 3),
    ("annotator_flip", "eps", (0.1, 0.5)),  # 0.5 is out of [-2/3, 1/3]
    ("annotator_flip", "eps", (0.1, -0.1)),  # not increasing
    ("pbde_toy", "families", ("dpo", "kto")),
    ("pbde_toy", "dpo_betas", (1.0, 0.0)),
    ("pbde_toy", "record_every", 3),
    ("pbde_misspecified", "holdout_fraction", 1.0),
    ("pbde_misspecified", "optimizer", "sgd"),
    ("arena_ranking", "num_simulations", 1),
    ("arena_ranking", "ci", 1.5),
    ("arena_ranking", "votes", (20, 10)),
    ("curation_loop", "real_fractions", (0.0, 2.0)),
    ("curation_loop", "num_seeds", 1),
]


@pytest.fixture(scope="module", autouse=True)
def persistent_compilation_cache(tmp_path_factory):
  """The overwrite check reruns each runner, which rebuilds (and would recompile) the same XLA programs: a
  compilation cache on disk for this module makes the second run cost about a second instead of the first's."""
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  old = {n: getattr(jax.config, n) for n in names}
  for n, v in zip(names, (str(tmp_path_factory.mktemp("xla_cache")), 0.0, 0)):
    jax.config.update(n, v)
  compilation_cache.reset_cache()
  yield
  for n, v in old.items():
    jax.config.update(n, v)
  compilation_cache.reset_cache()


@pytest.fixture(autouse=True)
def umask_022():
  old = os.umask(0o022)
  yield
  os.umask(old)


def _config(name, **extra):
  module, overrides, _ = CASES[name]
  config = importlib.import_module(f"experiments.configs.{module}").get_config("quick")
  with config.unlocked():
    for k, v in {**overrides, **extra}.items():
      config[k] = v
  return config


def _lines(path):
  with open(os.path.join(path, "metrics.jsonl"), encoding="utf-8") as f:
    return f.read().splitlines()


def _json(path, name):
  with open(os.path.join(path, name), encoding="utf-8") as f:
    return json.load(f)


def test_every_case_is_a_registered_runner_with_a_validate():
  for name in CASES:
    run = runners.get_runner(name)
    assert callable(run.validate) and run.resumable is False, name
    assert _config(name).experiment == name


@pytest.mark.parametrize("name,field,value", BAD, ids=[f"{n}-{f}-{v}" for n, f, v in BAD])
def test_bad_value_names_the_field_and_leaves_the_workdir_as_it_was(tmp_path, name, field, value):
  run = runners.get_runner(name)
  (tmp_path / "config.json").write_text('{"sentinel": 1}\n')
  (tmp_path / "metrics.jsonl").write_text('{"step": 0, "sentinel": 1}\n')
  before = snapshot(tmp_path)
  config = _config(name)
  with config.unlocked():
    config[field] = value
  with pytest.raises(PrefjaxError, match=field) as e:
    run(config, str(tmp_path))
  assert "\n" not in str(e.value)
  assert snapshot(tmp_path) == before
  with pytest.raises(PrefjaxError, match=field):  # Also with overwrite: validation comes first.
    run(config, str(tmp_path), overwrite=True)
  assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", list(CASES))
def test_runner_keeps_the_workdir_contract(tmp_path, capsys, name):
  run = runners.get_runner(name)
  wd = str(tmp_path / "run")
  config = _config(name)
  summary = run(config, wd)

  # A finished run: status complete, its files 0644, the summary on disk is the one returned.
  status = _json(wd, "status.json")
  assert status["state"] == "complete", status
  for f in ("config.json", "summary.json", "arrays.npz"):
    assert stat.S_IMODE(os.stat(os.path.join(wd, f)).st_mode) == 0o644, f
  for f in os.listdir(wd):
    if f.endswith(".png"):
      assert f in status["files"], (f, status["files"])
  stored = _json(wd, "summary.json")
  assert stored == json.loads(json.dumps(workdir_lib.to_jsonable(summary), sort_keys=True))
  lines = _lines(wd)
  assert lines
  if name == "selfplay_cycles":  # It prints a line per phase as it goes (it used to print nothing).
    out = capsys.readouterr().out
    assert "[1/9] MWU" in out and "[9/9] fictitious play" in out, out

  # The same config again: the stored summary, nothing rerun or rewritten.
  before = snapshot(wd)
  capsys.readouterr()
  again = run(_config(name), wd)
  assert again == stored
  assert "already holds a finished run" in capsys.readouterr().out
  assert snapshot(wd) == before
  assert len(_lines(wd)) == len(lines)

  # A bad value into the finished run's workdir: refused, the workdir byte for byte as it was.
  bad_name, bad_field, bad_value = next(b for b in BAD if b[0] == name)
  bad = _config(name)
  with bad.unlocked():
    bad[bad_field] = bad_value
  with pytest.raises(PrefjaxError, match=bad_field):
    run(bad, wd)
  assert snapshot(wd) == before
  del bad_name

  # Another config: refused, naming the differing field; with overwrite=True it replaces the run.
  field = CASES[name][2]
  other = _config(name)
  with other.unlocked():
    other[field] = "other_name" if field == "name" else (0.5 if field == "tau_target" else 7)
  with pytest.raises(PrefjaxError, match=field):
    run(other, wd)
  assert snapshot(wd) == before
  run(other, wd, overwrite=True)
  assert _json(wd, "config.json")[field] == other[field]
  assert _json(wd, "status.json")["state"] == "complete"
  assert len(_lines(wd)) == len(lines)  # The old run's lines are gone, the new run's are there once.


def test_sigterm_stops_between_compiled_calls(tmp_path, monkeypatch):
  """SIGTERM during the first data source's sweep: the bandit sweep stops before the second one, marked
  interrupted, with no summary (and a rerun starts it again from scratch)."""
  make_sweep = bandit_runs.train_lib.make_sweep
  calls = []

  def make_sweep_then_sigterm(*args, **kwargs):
    sweep = make_sweep(*args, **kwargs)

    def run(*a):
      calls.append(1)
      out = sweep(*a)
      os.kill(os.getpid(), signal.SIGTERM)  # Inside handle_signals: only sets the flag.
      return out
    return run

  monkeypatch.setattr(bandit_runs.train_lib, "make_sweep", make_sweep_then_sigterm)
  config = _config("bandit_sweep", datasets=("d1", "unobserved"), figure=False)
  with pytest.raises(preemption.Preempted, match="after 1 of 2 data sources"):
    bandit_runs.run_bandit_sweep(config, str(tmp_path), command="rerun me")
  assert len(calls) == 1
  status = _json(tmp_path, "status.json")
  assert status["state"] == "interrupted" and status["resume"] == "rerun me"
  assert not os.path.exists(tmp_path / "summary.json")
  monkeypatch.setattr(bandit_runs.train_lib, "make_sweep", make_sweep)
  bandit_runs.run_bandit_sweep(config, str(tmp_path))
  assert _json(tmp_path, "status.json")["state"] == "complete"
  assert {json.loads(l)["source"] for l in _lines(tmp_path)} == {"d1", "unobserved"}


# ----------------------------------------------------------------------------------------------------
# The objective benchmark's verdicts respect the intervals.


def _summary(rewards_by_objective, noise=0.2):
  """A benchmark summary with per-seed final rewards at ε = `noise` (and at ε = 0) per objective."""
  objectives = []
  for label, seeds in rewards_by_objective.items():
    seeds = np.asarray(seeds, np.float64)
    rows = []
    for eps in (0.0, noise):
      stats = ob._stats(seeds)
      rows.append({"noise": eps, "reward": stats, "win_rate": stats, "tv_to_optimum": stats,
                   "reward_per_seed": seeds.tolist()})
    objectives.append({"objective": label, "family": "pairwise", "label_noise": rows, "ranked_data": []})
  return {"objectives": objectives, "reference": {"reward": 0.0}, "optimum": {"reward": 2.0}}


def _noise_config(robust=("robust",)):
  return ml_collections.ConfigDict({"label_noise_levels": (0.0, 0.2), "baseline_objective": "sigmoid",
                                    "robust_objectives": robust})


def _old_robust_beats_baseline(summary, config):
  """The verdict before the fix: the best robust objective's seed mean above the baseline's."""
  by = {e["objective"]: e for e in summary["objectives"]}
  top = max(config.label_noise_levels)
  at = lambda l: next(x for x in by[l]["label_noise"] if x["noise"] == top)
  best = max(config.robust_objectives, key=lambda r: at(r)["reward"]["mean"])
  return at(best)["reward"]["mean"] > at(config.baseline_objective)["reward"]["mean"]


def test_label_noise_verdict_needs_the_intervals_to_separate():
  # Independent seed noise: robust's mean is higher, but the paired difference's interval contains 0.
  summary = _summary({"sigmoid": [1.0, 2.2, 1.6], "robust": [2.1, 1.3, 2.0]})
  config = _noise_config()
  assert _old_robust_beats_baseline(summary, config)  # The old logic declared a win here.
  v = ob.label_noise_verdict(summary, config)
  assert v["verdict"] == "no significant difference" and not v["robust_beats_baseline"]
  d = v["difference"]
  assert d["mean"] - d["half_width"] < 0 < d["mean"] + d["half_width"] and d["level"] == 0.95
  summary["label_noise_verdict"] = v
  summary.update(beta=0.5, policy="linear", num_seeds=3)
  for e in summary["objectives"]:
    e.update({m: e["label_noise"][0]["reward"] for m in ("reward", "kl", "win_rate", "tv_to_optimum",
                                                         "fsd_violation")}, data="pairs")
  summary["optimum"].update(kl=1.0, win_rate=0.7)
  table = ob.format_table(summary)
  assert "no significant difference" in table and "robust wins" not in table

  # The same means with seeds that move together (common datasets): the paired interval is above 0.
  v = ob.label_noise_verdict(_summary({"sigmoid": [1.0, 2.0, 1.5], "robust": [1.3, 2.25, 1.8]}), config)
  assert v["verdict"] == "wins" and v["robust_beats_baseline"]
  v = ob.label_noise_verdict(_summary({"sigmoid": [1.3, 2.25, 1.8], "robust": [1.0, 2.0, 1.5]}), config)
  assert v["verdict"] == "loses" and not v["robust_beats_baseline"]
  # One seed: no interval, no verdict either way.
  v = ob.label_noise_verdict(_summary({"sigmoid": [1.0], "robust": [2.0]}), config)
  assert v["verdict"] == "undetermined" and not v["robust_beats_baseline"]


def test_verdict_from_two_intervals_as_reported():
  """The reported case (a summary without per-seed values): 1.842 ± 1.304 vs 1.616 ± 1.625 overlap."""
  robust, dpo = {"mean": 1.842, "ci95": 1.304}, {"mean": 1.616, "ci95": 1.625}
  assert ob.compare(a_stats=robust, b_stats=dpo)[0] == "no significant difference"
  assert ob.compare(a_stats={"mean": 3.5, "ci95": 0.2}, b_stats=dpo)[0] == "wins"
  assert ob.compare(a_stats={"mean": -0.5, "ci95": 0.2}, b_stats=dpo)[0] == "loses"
  old = {"noise": 0.2, "best_robust": "robust", "baseline": "sigmoid", "best_robust_reward": robust,
         "baseline_reward": dpo, "robust_beats_baseline": True}  # As an old summary.json stored it.
  line = ob._noise_verdict_line({}, old)
  assert "no significant difference" in line and "wins" not in line


def test_ranked_data_verdict_needs_the_ranges_to_separate():
  def entry(label, family, rows):
    return {"objective": label, "family": family,
            "ranked_data": [{"num_prompts": p, "reward": {"mean": m, "ci95": h}} for p, m, h in rows]}

  summary = {"reference": {"reward": 0.0}, "optimum": {"reward": 1.0}}
  config = ml_collections.ConfigDict({"prompt_counts": (8, 32), "target_gain": 0.8,
                                      "baseline_objective": "sigmoid"})
  # PL's mean reaches 80% at P = 8, DPO's at 32, but the intervals allow both at 8 or 32.
  summary["objectives"] = [entry("sigmoid", "pairwise", [(8, 0.7, 0.3), (32, 0.9, 0.05)]),
                           entry("plackett_luce", "listwise", [(8, 0.82, 0.3), (32, 0.9, 0.05)])]
  v = ob.ranked_data_verdict(summary, config)
  assert v["prompts_needed"] == {"sigmoid": 32, "plackett_luce": 8}  # The old verdict said "fewer" from these.
  assert v["listwise_vs_baseline"] == {"plackett_luce": "no significant difference"}
  assert v["listwise_fewer_than_baseline"] == {"plackett_luce": False}
  # Tight intervals: PL surely reaches it at 8, DPO surely not before 32.
  summary["objectives"] = [entry("sigmoid", "pairwise", [(8, 0.5, 0.05), (32, 0.9, 0.05)]),
                           entry("plackett_luce", "listwise", [(8, 0.9, 0.05), (32, 0.95, 0.05)])]
  v = ob.ranked_data_verdict(summary, config)
  assert v["listwise_vs_baseline"] == {"plackett_luce": "fewer"}
  assert v["listwise_fewer_than_baseline"] == {"plackett_luce": True}

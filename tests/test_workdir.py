"""The workdir contract (docs/workdir.md), preemption, and the entry point's one-line errors.

Each test here failed on the code before the contract existed: config.json was written before validation,
reruns appended to metrics.jsonl, files were 0600, SIGTERM/SIGINT were not turned into a clean stop with a
non-zero exit, and bad command lines ended in tracebacks.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile

import ml_collections
import numpy as np
import pytest

from prefjax import preemption
from prefjax import workdir as workdir_lib
from prefjax.errors import PrefjaxError
from resume_helpers import snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**kw):
  c = ml_collections.ConfigDict({"experiment": "toy", "steps": 3, "beta": 0.5, "nested": {"width": 2}})
  c.update(kw)
  return c


def _validate(config):
  if not config.beta > 0:
    raise PrefjaxError(f"config.beta must be > 0, got {config.beta}")


def _make_runner(calls, resumable=False, body=None):
  @workdir_lib.experiment(validate=_validate, resumable=resumable)
  def run(config, wd):
    calls.append(wd.path)
    for step in range(config.steps):
      wd.append_metrics({"step": step})
    if body is not None:
      body(config, wd)
    wd.write_arrays({"x": np.arange(3)})
    summary = {"steps": config.steps}
    wd.write_summary(summary)
    return summary
  return run


def test_bad_config_leaves_the_workdir_as_it_was(tmp_path):
  calls = []
  run = _make_runner(calls)
  run(_config(), str(tmp_path))
  before = snapshot(tmp_path)
  with pytest.raises(PrefjaxError, match="config.beta"):
    run(_config(beta=-1.0), str(tmp_path))
  assert snapshot(tmp_path) == before and len(calls) == 1


def test_same_config_twice_is_reported_done_and_metrics_are_not_doubled(tmp_path, capsys):
  calls = []
  run = _make_runner(calls)
  first = run(_config(), str(tmp_path))
  second = run(_config(), str(tmp_path))
  assert first == second and len(calls) == 1
  assert "already holds a finished run" in capsys.readouterr().out
  with open(tmp_path / "metrics.jsonl") as f:
    assert len(f.readlines()) == 3
  assert json.loads((tmp_path / "status.json").read_text())["state"] == "complete"


def test_another_config_is_refused_unless_overwrite(tmp_path):
  calls = []
  run = _make_runner(calls)
  run(_config(), str(tmp_path))
  (tmp_path / "figure.png").write_bytes(b"old figure")  # a file the old run wrote
  wd = workdir_lib.Workdir(str(tmp_path))
  with pytest.raises(PrefjaxError, match=r"another config \(nested.width: 2 → 5; steps: 3 → 2\).*--overwrite"):
    run(_config(steps=2, nested={"width": 5}), str(tmp_path))
  with pytest.raises(PrefjaxError, match="experiment 'toy'"):
    run(_config(experiment="other"), str(tmp_path))
  del wd
  run(_config(steps=2), str(tmp_path), overwrite=True)
  with open(tmp_path / "metrics.jsonl") as f:
    assert [json.loads(l)["step"] for l in f] == [0, 1]
  assert json.loads((tmp_path / "config.json").read_text())["steps"] == 2


def test_overwrite_removes_the_old_runs_files(tmp_path):
  def figure(config, wd):
    with open(wd.file(f"figure_{config.steps}.png"), "wb") as f:
      f.write(b"png")
  run = _make_runner([], body=figure)
  run(_config(), str(tmp_path))
  (tmp_path / "notes.txt").write_text("mine")  # not the run's: kept
  run(_config(steps=2), str(tmp_path), overwrite=True)
  assert not (tmp_path / "figure_3.png").exists() and (tmp_path / "figure_2.png").exists()
  assert (tmp_path / "notes.txt").read_text() == "mine"


def test_unfinished_attempt_is_restarted_or_resumed(tmp_path):
  def crash(config, wd):
    raise RuntimeError("boom")
  for resumable in (False, True):
    path = tmp_path / str(resumable)
    with pytest.raises(RuntimeError):
      _make_runner([], resumable=resumable, body=crash)(_config(), str(path))
    status = json.loads((path / "status.json").read_text())
    assert status["state"] == "failed" and "boom" in status["message"]
    assert not (path / "summary.json").exists()
    kept = (path / "metrics.jsonl").read_text()
    calls = []
    _make_runner(calls, resumable=resumable)(_config(), str(path))
    lines = (path / "metrics.jsonl").read_text().splitlines()
    # Non-resumable runners start again from scratch; a resumable one keeps its files (its trainer cuts
    # metrics.jsonl back to its checkpoint — this toy runner appends).
    assert len(lines) == (6 if resumable else 3), (resumable, kept)


def test_old_workdir_without_status_counts_as_finished(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps(workdir_lib.to_jsonable(_config())))
  (tmp_path / "summary.json").write_text('{"steps": 3}')
  calls = []
  assert _make_runner(calls)(_config(), str(tmp_path)) == {"steps": 3} and not calls


def test_run_files_without_a_config_are_refused(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n')
  with pytest.raises(PrefjaxError, match="no readable config.json"):
    _make_runner([])(_config(), str(tmp_path))
  _make_runner([])(_config(), str(tmp_path), overwrite=True)


def test_files_are_0644(tmp_path):
  old = os.umask(0o022)
  try:
    _make_runner([])(_config(), str(tmp_path))
  finally:
    os.umask(old)
  for name in ("config.json", "summary.json", "arrays.npz", "status.json", "metrics.jsonl"):
    assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name


@pytest.mark.parametrize("kind", ["empty", "file", "under_file"])
def test_bad_workdir_paths(tmp_path, kind):
  (tmp_path / "f").write_text("x")
  path = {"empty": "", "file": str(tmp_path / "f"), "under_file": str(tmp_path / "f" / "run")}[kind]
  match = {"empty": "the workdir is empty", "file": "is a file, not a folder", "under_file": "is a file"}[kind]
  with pytest.raises(PrefjaxError, match=match):
    _make_runner([])(_config(), path)


def test_unwritable_workdir_names_the_workdir_not_a_temporary_file(tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr(tempfile, "mkstemp", refuse)
  with pytest.raises(PrefjaxError) as e:
    _make_runner([])(_config(), str(tmp_path))
  assert str(tmp_path / "config.json") in str(e.value) and ".tmp-" not in str(e.value)
  assert "Permission denied" in str(e.value)


def test_truncate_metrics_keeps_steps_up_to_the_checkpoint_and_drops_a_torn_line(tmp_path):
  wd = workdir_lib.Workdir(str(tmp_path))
  for s in range(5):
    wd.append_metrics({"step": s})
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 5, "lo')
  wd.truncate_metrics(2)
  assert [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl")] == [0, 1, 2]
  wd.truncate_metrics(None)
  assert (tmp_path / "metrics.jsonl").read_text() == ""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_marks_the_run_interrupted(tmp_path, signum):
  def stop(config, wd):
    os.kill(os.getpid(), signum)
    preemption.check("step 2 saved")
  before = signal.getsignal(signum)
  with pytest.raises(preemption.Preempted) as e:
    _make_runner([], resumable=True, body=stop)(_config(), str(tmp_path), command="python -m x --resume")
  assert e.value.signum == signum and preemption.exit_code(signum) == 128 + signum
  status = json.loads((tmp_path / "status.json").read_text())
  assert status["state"] == "interrupted" and signal.Signals(signum).name in status["message"]
  assert status["resume"] == "python -m x --resume"
  assert not (tmp_path / "summary.json").exists()
  assert signal.getsignal(signum) is before


def test_second_signal_stops_at_once():
  with preemption.handle_signals():
    os.kill(os.getpid(), signal.SIGTERM)
    assert preemption.requested() == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGTERM)
  with preemption.handle_signals():  # The flag is cleared when a new outermost block starts.
    assert preemption.requested() is None


# --- the entry point ----------------------------------------------------------------------------------------


def _main(*args, cwd=ROOT, env=None):
  return subprocess.run([sys.executable, "-m", "experiments.main", *args], cwd=cwd, capture_output=True,
                        text=True, timeout=300, env=env)


def _one_line_error(r, *fragments):
  assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
  lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith("WARNING")]
  assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])


def test_help_lists_every_config_with_its_variants(tmp_path):
  r = _main("--help", cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  names = [f[:-3] for f in os.listdir(os.path.join(ROOT, "experiments", "configs"))
           if f.endswith(".py") and f not in ("__init__.py", "common.py")]
  for name in names:
    assert f"  {name} " in r.stdout or f"  {name}\n" in r.stdout, name
  assert "pbde_toy :quick :paper" in r.stdout


@pytest.mark.parametrize("args,fragments", [
    (["--config=experiments/configs/ipo_bandit.py:quick", "--config.nmu_steps=1"],
     ["--config.nmu_steps", "num_steps"]),
    (["--config=experiments/configs/nope.py"], ["no such file"]),
    (["--config=experiments/configs"], ["is a folder"]),
    (["--config=experiments/configs/ipo_bandit.py:quik"], ["unknown config argument 'quik'"]),
    (["--config=experiments/configs/ipo_bandit.py:quick", "--config.betas=abc"], ["config.betas[0]"]),
    (["--config=experiments/configs/ipo_bandit.py:quick", "--config.num_steps=abc"], ["config.num_steps"]),
])
def test_bad_command_lines_are_one_line_errors(tmp_path, args, fragments):
  _one_line_error(_main(*args, f"--workdir={tmp_path / 'w'}"), *fragments)
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("kind", ["empty", "file", "under_file"])
def test_bad_workdirs_are_one_line_errors(tmp_path, kind):
  (tmp_path / "f").write_text("x")
  workdir = {"empty": "", "file": str(tmp_path / "f"), "under_file": str(tmp_path / "f" / "w")}[kind]
  _one_line_error(_main("--config=experiments/configs/ipo_bandit.py:quick", f"--workdir={workdir}"),
                  "workdir")


def test_runs_from_any_directory_and_reports_a_finished_run(tmp_path):
  args = ["--config=experiments/configs/ipo_bandit.py:quick", "--workdir=out", "--config.num_steps=200",
          "--config.num_seeds=2", "--config.figure=False", "--config.datasets=('d1',)"]
  r = _main(*args, cwd=tmp_path)  # The config path is found from the repository root.
  assert r.returncode == 0, r.stderr[-3000:]
  assert json.loads((tmp_path / "out" / "status.json").read_text())["state"] == "complete"
  lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
  r = _main(*args, cwd=tmp_path)
  assert r.returncode == 0 and "already holds a finished run" in r.stdout
  assert (tmp_path / "out" / "metrics.jsonl").read_text().splitlines() == lines
  _one_line_error(_main(*args, "--config.num_seeds=3", cwd=tmp_path), "num_seeds: 2 → 3", "--overwrite")
  r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "main.py"), "--help"], cwd=tmp_path,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0 and "ipo_bandit" in r.stdout, r.stderr[-2000:]


def test_sigterm_exits_143_and_prints_how_to_resume(tmp_path):
  """A registered runner stopped by SIGTERM: status interrupted, exit 143, the resume command printed."""
  script = f"""
import os, signal, sys
from prefjax import preemption, runners, workdir
@workdir.experiment(resumable=True)
def run(config, wd):
  os.kill(os.getpid(), signal.SIGTERM)
  preemption.check("checkpointed step 1")
runners.get_runner = lambda name: run
from experiments import main
sys.exit(main.main(["experiments.main", "--config=experiments/configs/ipo_bandit.py:quick",
                    "--workdir={tmp_path / 'w'}"]))
"""
  r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 143, r.stderr[-3000:]
  assert "resume with" in r.stderr and "--workdir=" in r.stderr
  assert json.loads((tmp_path / "w" / "status.json").read_text())["state"] == "interrupted"


def test_a_notebook_copied_elsewhere_imports_prefjax_and_its_configs(tmp_path):
  """The notebooks' install cell finds prefjax and `experiments` wherever the notebook is (both installed)."""
  with open(os.path.join(ROOT, "colab", "ipo_bandit.ipynb"), encoding="utf-8") as f:
    cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
  install = "".join(cells[0]["source"])
  code = install + "\nfrom experiments.configs import ipo_bandit\nprint(ipo_bandit.get_config('quick').name)\n"
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                     env=env)
  assert r.returncode == 0 and r.stdout.strip() == "ipo_bandit", r.stderr[-2000:]


def test_notebook_and_command_outputs_are_ignored_by_git():
  for path in ("colab/runs/ipo_bandit_colab/summary.json", "runs/x/config.json"):
    r = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    assert r.returncode == 0, path

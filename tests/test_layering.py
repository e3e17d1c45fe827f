"""The package's layering: the import-linter contracts of pyproject.toml ([tool.importlinter]) hold.

Tiers, bottom to top: errors; the base helpers (config_checks, intervals, jit_utils, preemption, workdir,
results, checkpoint, sharding); objectives and games; envs; the families (bandit, curation, density, lm,
ranking) and analysis_tools; plotting; the runners (runs) and their registry (runners). objectives import only
the base tier and games.preferences; only prefjax.plotting imports matplotlib (the runners of prefjax.runs draw
through it); nothing in prefjax imports the repository's `experiments/` or `analysis/`. The old paths of the moved runners and figures are re-export shims
(`ignore_imports`), and the names they re-export are the same objects as at the new paths.
"""

import ast
import importlib
import pathlib
import pkgutil
import shutil
import subprocess
import sys

from importlinter import api
import pytest

import prefjax
import prefjax.games

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _lint(cwd):
  """Runs import-linter on `cwd`/pyproject.toml over `cwd`/prefjax (a fresh process, no cache)."""
  code = ("import sys; from importlinter.cli import lint_imports; "
          "sys.exit(lint_imports(no_cache=True, no_logo=True))")
  return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_import_contracts_hold():
  result = _lint(ROOT)
  assert result.returncode == 0, result.stdout + result.stderr


def test_contracts_catch_violations(tmp_path):
  # The same contracts on a copy of the package with upward imports (a base module importing lm, a library
  # module importing a figure module or a runner), an objective importing a game module, imports of the scripts
  # and matplotlib in a game module: each is reported.
  shutil.copytree(ROOT / "prefjax", tmp_path / "prefjax", ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copy(ROOT / "pyproject.toml", tmp_path)
  for module, line in (("sharding", "from prefjax.lm import model"),
                       ("objectives/registry", "from prefjax.games import nash"),
                       ("errors", "import analysis"), ("results", "import experiments.configs"),
                       ("games/nash", "import matplotlib.pyplot"),
                       ("density/grid", "from prefjax.plotting import density"),
                       ("bandit/train", "from prefjax.runs import bandit_sweep")):
    with open(tmp_path / "prefjax" / f"{module}.py", "a") as f:
      f.write(f"\n{line}\n")
  result = _lint(tmp_path)
  out = result.stdout + result.stderr
  assert result.returncode != 0, out
  for expected in ("prefjax.sharding -> prefjax.lm.model", "prefjax.objectives.registry -> prefjax.games.nash",
                   "prefjax.errors -> analysis", "prefjax.results -> experiments",
                   "prefjax.games.nash -> matplotlib", "prefjax.density.grid -> prefjax.plotting.density",
                   "prefjax.bandit.train -> prefjax.runs.bandit_sweep"):
    assert expected in out, out


def test_objectives_contract_names_every_other_game_module():
  contracts = {c["id"]: c for c in api.read_configuration(str(ROOT / "pyproject.toml"))["contracts_options"]}
  forbidden = set(contracts["objectives"]["forbidden_modules"])
  games = {f"prefjax.games.{m.name}" for m in pkgutil.iter_modules(prefjax.games.__path__)}
  assert games - forbidden == {"prefjax.games.preferences"}, sorted(games - forbidden)


def test_no_matplotlib_contract_names_every_library_module():
  # A new top-level module of prefjax is checked for matplotlib unless it is the figures or the runners.
  contracts = {c["id"]: c for c in api.read_configuration(str(ROOT / "pyproject.toml"))["contracts_options"]}
  sources = set(contracts["no-matplotlib"]["source_modules"])
  top = {f"prefjax.{m.name}" for m in pkgutil.iter_modules(prefjax.__path__)}
  library = top - {"prefjax.plotting", "prefjax.runs"}
  assert sources == library, sorted(sources ^ library)


_DYNAMIC_IMPORTS = {"import_module", "__import__", "find_spec", "run_module"}  # First argument: a module name.
_PATH_IMPORTS = {"spec_from_file_location", "run_path", "SourceFileLoader"}  # Load a file by path.


def test_no_dynamic_import_outside_prefjax():
  # import-linter sees only import statements: a module loaded by name or path must not escape the contracts.
  bad = []
  for path in sorted((ROOT / "prefjax").rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if not isinstance(node, ast.Call):
        continue
      func = node.func
      name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
      first = node.args[0] if node.args else None
      where = f"{path.relative_to(ROOT)}:{node.lineno}"
      if name in _PATH_IMPORTS:
        bad.append(f"{where} loads a file by path ({name})")
      elif (name in _DYNAMIC_IMPORTS and isinstance(first, ast.Constant) and isinstance(first.value, str)
            and not first.value.startswith("prefjax.")):
        bad.append(f"{where} imports {first.value!r}")
      elif (name in ("insert", "append", "extend") and isinstance(func, ast.Attribute)
            and ast.unparse(func.value) == "sys.path"):
        bad.append(f"{where} changes sys.path")
  from prefjax import runners  # pylint: disable=g-import-not-at-top
  bad += [f"runner {k} -> {v}" for k, v in runners.RUNNERS.items() if not v.startswith("prefjax.")]
  assert not bad, bad


def test_moved_names_keep_their_old_paths():
  from prefjax import sharding  # pylint: disable=g-import-not-at-top
  from prefjax.envs import preferences as old_preferences  # pylint: disable=g-import-not-at-top
  from prefjax.games import preferences  # pylint: disable=g-import-not-at-top
  from prefjax.lm import data  # pylint: disable=g-import-not-at-top
  from prefjax.lm import logprobs  # pylint: disable=g-import-not-at-top
  from prefjax.lm import model  # pylint: disable=g-import-not-at-top
  assert model.LOGICAL_AXIS_RULES is sharding.LOGICAL_AXIS_RULES
  assert data.segment_sums is logprobs.segment_sums
  assert preferences.__all__
  assert all(getattr(old_preferences, n) is getattr(preferences, n) for n in preferences.__all__)


# Old path → (new modules, the names the old path must still give: what tests, notebooks, analysis/ and
# benchmarks/ import from it, and the runners' public names).
_SHIMS = {
    "prefjax.bandit.runs": (("prefjax.runs.bandit_sweep",), ("run_bandit_sweep", "validate_bandit_sweep",
                                                              "format_table", "train_lib", "COLLAPSE_THRESHOLD")),
    "prefjax.bandit.objective_benchmark": (
        ("prefjax.runs.objective_benchmark", "prefjax.plotting.benchmark"),
        ("run_objective_benchmark", "validate_objective_benchmark", "compare", "label_noise_verdict",
         "ranked_data_verdict", "format_table", "_noise_verdict_line", "_stats", "make_env", "WIN", "TIE",
         "plot_benchmark", "FAMILY_COLORS")),
    "prefjax.games.experiments": (
        ("prefjax.runs.games", "prefjax.plotting.games", "prefjax.objectives.nash"),
        ("run_egpo", "run_nash_md_rate", "run_selfplay_cycles", "run_online_dpo_vs_ipo", "run_annotator_flip",
         "validate_egpo", "load_instances", "online_dpo_loss", "LOG_FLOOR")),
    "prefjax.density.experiments": (
        ("prefjax.runs.density", "prefjax.density.train"),
        ("run_pbde_toy", "run_pbde_misspecified", "validate_pbde_toy", "population_mixture_nll", "FAMILY_IDS",
         "FAMILIES", "TOY_TV_THRESHOLD", "MIXTURE_TV_THRESHOLD", "_distinct_points", "_sweep_loss")),
    "prefjax.ranking.experiments": (("prefjax.runs.ranking", "prefjax.plotting.ranking"),
                                    ("run_arena_ranking", "validate_arena_ranking", "METHODS", "votes_to_reach",
                                     "wilson_interval")),
    "prefjax.curation": (("prefjax.runs.curation",), ("run_curation_loop", "validate_curation_loop",
                                                      "make_instance")),
    "prefjax.analysis_tools.gradient_field": (("prefjax.plotting.gradient_field",), ("plot_gradient_fields",)),
    "prefjax.lm.experiments": (("prefjax.runs.lm_offline",), ("run_lm_offline", "validate_lm_offline",
                                                              "validate_mesh", "validate_synthetic_model", "TASKS")),
    "prefjax.lm.online_experiments": (
        ("prefjax.runs.lm_online",), ("run_lm_nash_synthetic", "run_lm_sppo_synthetic", "validate_lm_nash_synthetic",
                                      "validate_lm_sppo_synthetic", "ExactEvaluator", "EVAL_KEYS",
                                      "_spin_fixed_point_kls")),
    "prefjax.analysis_tools": (("prefjax.plotting.gradient_field",), ("plot_gradient_fields",)),
    "prefjax.plotting": (("prefjax.plotting.bandit", "prefjax.plotting.lm"),
                         ("plot_bandit_sweep", "plot_lm_curves", "plot_lm_online", "ACTION_NAMES", "LINESTYLES",
                          "LM_PANELS")),
}


@pytest.mark.parametrize("old", sorted(_SHIMS))
def test_moved_runners_and_figures_keep_their_old_paths(old):
  new_modules, names = _SHIMS[old]
  shim = importlib.import_module(old)
  new = [importlib.import_module(m) for m in new_modules]
  for name in names:
    homes = [m for m in new if name in vars(m)]
    assert homes, f"{name} is in none of {new_modules}"
    assert getattr(shim, name) is getattr(homes[0], name), f"{old}.{name}"
  assert hasattr(shim, "nope_not_a_name") is False


def test_the_density_trainer_keeps_its_old_private_name():
  from prefjax.density import experiments  # pylint: disable=g-import-not-at-top
  from prefjax.density import train  # pylint: disable=g-import-not-at-top
  assert experiments._make_sweep is train.make_sweep  # pylint: disable=protected-access


def test_every_runner_lives_in_prefjax_runs():
  from prefjax import runners  # pylint: disable=g-import-not-at-top
  for name, target in runners.RUNNERS.items():
    module = target.split(":")[0]
    assert module.startswith("prefjax.runs."), (name, target)
    assert callable(runners.get_runner(name)), name

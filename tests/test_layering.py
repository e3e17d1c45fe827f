"""The package's layering: the import-linter contracts of pyproject.toml ([tool.importlinter]) hold.

Tiers, bottom to top: errors; the base helpers (config_checks, intervals, jit_utils, preemption, workdir,
results, checkpoint, sharding); objectives and games; envs; the families (bandit, curation, density, lm,
ranking); runners, plotting, analysis_tools. objectives import only the base tier and games.preferences, and
nothing in prefjax imports the repository's `experiments/` or `analysis/`.
"""

import ast
import pathlib
import pkgutil
import shutil
import subprocess
import sys

from importlinter import api

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
  # The same contracts on a copy of the package with an upward import, an objective importing a game module,
  # and imports of the scripts: each is reported.
  shutil.copytree(ROOT / "prefjax", tmp_path / "prefjax", ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copy(ROOT / "pyproject.toml", tmp_path)
  for module, line in (("sharding", "from prefjax.lm import model"),
                       ("objectives/registry", "from prefjax.games import nash"),
                       ("errors", "import analysis"), ("results", "import experiments.configs")):
    with open(tmp_path / "prefjax" / f"{module}.py", "a") as f:
      f.write(f"\n{line}\n")
  result = _lint(tmp_path)
  out = result.stdout + result.stderr
  assert result.returncode != 0, out
  for expected in ("prefjax.sharding -> prefjax.lm.model", "prefjax.objectives.registry -> prefjax.games.nash",
                   "prefjax.errors -> analysis", "prefjax.results -> experiments"):
    assert expected in out, out


def test_objectives_contract_names_every_other_game_module():
  contracts = {c["id"]: c for c in api.read_configuration(str(ROOT / "pyproject.toml"))["contracts_options"]}
  forbidden = set(contracts["objectives"]["forbidden_modules"])
  games = {f"prefjax.games.{m.name}" for m in pkgutil.iter_modules(prefjax.games.__path__)}
  assert games - forbidden == {"prefjax.games.preferences"}, sorted(games - forbidden)


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

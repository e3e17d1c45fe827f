"""Every Colab notebook, checked without executing it (the default tier's stand-in for the notebook runs).

The notebooks are thin: their code cells call a runner on a `:quick` or full config. Running them (a Jupyter
kernel per notebook, a whole `:quick` experiment each) is the acceptance tier's job (tests/test_colab.py,
test_lm_experiments.py, test_lm_online_experiments.py, test_density_experiments.py, test_arena.py,
test_game_experiments.py, test_objective_benchmark.py); the runners they call are run on shrunk configs in
the default tier (tests/test_runner_contract.py and each experiment's test file). Here, for each notebook:
outputs stripped, exactly one parameters cell with `QUICK = False` (which the acceptance tests flip), every
code cell compiles once IPython magics (`%...`, `!...`) are stripped, and every
`from prefjax... import` / `from experiments... import` / `import prefjax...` names a module and attributes
that exist.
"""

import ast
import glob
import importlib
import os

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "colab", "*.ipynb")))
PACKAGES = ("prefjax", "experiments")


def _code_cells(path):
  nb = nbformat.read(path, as_version=4)
  return [c for c in nb.cells if c.cell_type == "code"]


def _strip_magics(source):
  return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _imports(tree):
  """(module, [names]) for each `from M import a, b` and (M, []) for each `import M` of prefjax/experiments."""
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] in PACKAGES:
      yield node.module, [a.name for a in node.names]
    elif isinstance(node, ast.Import):
      for a in node.names:
        if a.name.split(".")[0] in PACKAGES:
          yield a.name, []


def test_there_are_notebooks():
  names = {os.path.basename(p) for p in NOTEBOOKS}
  assert {"ipo_bandit.ipynb", "lm_dpo.ipynb", "lm_online.ipynb", "density_estimation.ipynb", "arena.ipynb",
          "nash_games.ipynb", "objective_benchmark.ipynb"} <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_is_stripped_parameterised_and_its_code_compiles_and_imports_resolve(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  cells = _code_cells(path)
  assert cells, "no code cells"
  for i, c in enumerate(cells):
    assert not c.get("outputs"), f"code cell {i} has outputs: strip them before committing"
    assert c.get("execution_count") is None, f"code cell {i} has an execution count: strip it"
  params = [c for c in cells if "QUICK = False" in c.source]
  assert len(params) == 1, "the notebook must have exactly one parameters cell with QUICK = False"
  assert "QUICK = True" not in "".join(c.source for c in cells)
  # ... and QUICK is assigned once, there, to False (the acceptance tests flip that line).
  quick = [node.value for c in cells for node in ast.walk(ast.parse(_strip_magics(c.source)))
           if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "QUICK" for t in node.targets)]
  assert len(quick) == 1 and isinstance(quick[0], ast.Constant) and quick[0].value is False, quick
  assert any(line.strip() == "QUICK = False" for line in params[0].source.splitlines())
  # The acceptance tests redirect the parameters cell's WORKDIR to a temporary folder.
  assert "WORKDIR = " in params[0].source, params[0].source
  checked = 0
  for i, c in enumerate(cells):
    source = _strip_magics(c.source)
    try:
      tree = ast.parse(source)
      compile(tree, f"{os.path.basename(path)}[cell {i}]", "exec")
    except SyntaxError as e:
      pytest.fail(f"code cell {i} does not compile: {e}")
    for module_name, names in _imports(tree):
      module = importlib.import_module(module_name)
      for name in names:
        if not hasattr(module, name):  # `from pkg import submodule` imports a module not yet loaded
          importlib.import_module(f"{module_name}.{name}")
      checked += 1
  assert checked, "the notebook imports nothing from prefjax or experiments"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_calls_resolve_to_existing_attributes(path):
  """`module.attr` in a code cell, for a module imported from prefjax/experiments, names an existing attribute
  (e.g. `experiments.run_pbde_toy`, `ipo_bandit.get_config`): a renamed runner fails here, not only in the
  acceptance tier."""
  bound = {}
  trees = []
  for c in _code_cells(path):
    tree = ast.parse(_strip_magics(c.source))
    trees.append(tree)
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] in PACKAGES:
        for a in node.names:
          try:
            obj = importlib.import_module(f"{node.module}.{a.name}")
          except ModuleNotFoundError:
            obj = getattr(importlib.import_module(node.module), a.name)
          bound[a.asname or a.name] = obj
  missing = []
  for tree in trees:
    for node in ast.walk(tree):
      if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
        obj = bound[node.value.id]
        if isinstance(obj, type(os)) and not hasattr(obj, node.attr):
          missing.append(f"{node.value.id}.{node.attr}")
  assert not missing, missing

"""Executes the IPO bandit Colab notebook with its quick variant (acceptance tier)."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.acceptance
def test_ipo_bandit_notebook_runs_quick(tmp_path):
  """Acceptance: the notebook runs `ipo_bandit:quick` in a Jupyter kernel and shows its table and figure.

  Default tier: tests/test_notebooks_static.py (the notebook's cells compile, its imports and runner resolve,
  one QUICK = False cell), tests/test_experiments.py::test_main_quick_writes_the_workdir (`ipo_bandit:quick`
  through `run_bandit_sweep`, figure included) and test_runner_contract.py (the bandit_sweep runner)."""
  path = os.path.join(ROOT, "colab", "ipo_bandit.ipynb")
  nb = nbformat.read(path, as_version=4)
  params = [c for c in nb.cells if c.cell_type == "code" and "QUICK = False" in c.source]
  assert len(params) == 1, "the notebook must have one parameters cell with QUICK = False"
  params[0].source = params[0].source.replace("QUICK = False", "QUICK = True").replace(
      '"runs/ipo_bandit_colab"', repr(str(tmp_path / "run")))
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": os.path.join(ROOT, "colab")}}).execute()
  assert os.path.exists(tmp_path / "run" / "figure.png")
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "d1" in outputs and "ipo" in outputs

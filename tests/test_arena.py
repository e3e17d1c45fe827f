"""Tests of simulated arenas and the `arena_ranking` experiment (docs/theory.md §7)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from experiments.configs import arena_ranking as arena_config
from prefjax import results
from prefjax.errors import PrefjaxError
from prefjax.ranking import aggregate
from prefjax.ranking import experiments
from prefjax.ranking import simulate


def test_preference_matrix_and_cycles():
  arena = simulate.make_arena(jax.random.PRNGKey(0), 7)
  P = np.asarray(simulate.preference_matrix(arena))
  np.testing.assert_allclose(P + P.T, 1.0, atol=1e-6)
  s = np.asarray(arena.skills)
  np.testing.assert_allclose(P, 1 / (1 + np.exp(-(s[:, None] - s[None, :]))), atol=1e-6)
  assert int(aggregate.count_cyclic_triads(P)) == 0
  # A strong intransitive part creates cycles (blade–chest games are rock–paper–scissors-like).
  cyc = simulate.make_arena(jax.random.PRNGKey(0), 7, skill_scale=0.1, intransitivity=3.0)
  Pc = np.asarray(simulate.preference_matrix(cyc))
  np.testing.assert_allclose(Pc + Pc.T, 1.0, atol=1e-6)
  assert int(aggregate.count_cyclic_triads(Pc)) > 0


def test_battles_and_rankings_follow_the_model():
  """Empirical frequencies against the model's probabilities, within 5 standard errors."""
  arena = simulate.make_arena(jax.random.PRNGKey(1), 4, intransitivity=1.0)
  P = np.asarray(simulate.preference_matrix(arena), np.float64)
  a, b, o = map(np.asarray, simulate.sample_battles(jax.random.PRNGKey(2), arena, 60_000))
  assert np.all(a != b)
  n_pair = np.zeros((4, 4))
  np.add.at(n_pair, (a, b), 1)
  wins = np.zeros((4, 4))
  np.add.at(wins, (a[o == 0], b[o == 0]), 1)
  off = ~np.eye(4, dtype=bool)
  se = np.sqrt(P * (1 - P) / np.maximum(n_pair, 1))
  assert np.all(np.abs(wins / np.maximum(n_pair, 1) - P)[off] < 5 * se[off])
  # Pairs are uniform over the 12 ordered pairs.
  assert np.all(np.abs(n_pair[off] / len(a) - 1 / 12) < 5 * np.sqrt((1 / 12) * (11 / 12) / len(a)))
  # K = 2 rankings reproduce the pairwise model exactly (μ_i − μ_j = s_i − s_j + A_ij).
  r2 = np.asarray(simulate.sample_rankings(jax.random.PRNGKey(3), arena, 60_000, 2))
  first, second = r2[:, 0], r2[:, 1]
  n2 = np.zeros((4, 4))
  np.add.at(n2, (np.minimum(first, second), np.maximum(first, second)), 1)
  w2 = np.zeros((4, 4))
  np.add.at(w2, (first, second), 1)
  for i, j in itertools.combinations(range(4), 2):
    p_hat = w2[i, j] / n2[i, j]
    assert abs(p_hat - P[i, j]) < 5 * np.sqrt(P[i, j] * (1 - P[i, j]) / n2[i, j]), (i, j)


def test_kwise_transitive_rankings_are_plackett_luce():
  """With c = 0, i precedes j in a Plackett–Luce ranking with probability σ(s_i − s_j) (Luce's IIA), and
  the first place follows the softmax of the skills over the set."""
  arena = simulate.make_arena(jax.random.PRNGKey(4), 3)
  s = np.asarray(arena.skills, np.float64)
  r = np.asarray(simulate.sample_rankings(jax.random.PRNGKey(5), arena, 40_000, 3))
  soft = np.exp(s) / np.exp(s).sum()
  first = np.bincount(r[:, 0], minlength=3) / len(r)
  assert np.all(np.abs(first - soft) < 5 * np.sqrt(soft * (1 - soft) / len(r)))
  pos = np.argsort(r, axis=1)  # pos[m, i] = position of model i.
  for i, j in itertools.combinations(range(3), 2):
    p = 1 / (1 + np.exp(-(s[i] - s[j])))
    assert abs(np.mean(pos[:, i] < pos[:, j]) - p) < 5 * np.sqrt(p * (1 - p) / len(r))


def test_kendall_tau_matches_scipy_and_truths():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(2, 4, 9))
  tau = np.asarray(simulate.kendall_tau(jnp.asarray(x), jnp.asarray(y)))
  np.testing.assert_allclose(tau, [stats.kendalltau(a, b)[0] for a, b in zip(x, y)], atol=1e-6)
  assert float(simulate.kendall_tau(jnp.zeros(5), jnp.arange(5.0))) == 0.0
  with pytest.raises(PrefjaxError, match="shapes"):
    simulate.kendall_tau(jnp.zeros(3), jnp.zeros(4))
  # Population BT projection: the skills when transitive; the BT score equations otherwise.
  arena = simulate.make_arena(jax.random.PRNGKey(6), 5)
  np.testing.assert_allclose(simulate.population_bradley_terry(arena), arena.skills, atol=1e-5)
  arena = simulate.make_arena(jax.random.PRNGKey(6), 5, intransitivity=1.0)
  s_star = np.asarray(simulate.population_bradley_terry(arena), np.float64)
  P = np.asarray(simulate.preference_matrix(arena), np.float64)
  fitted = 1 / (1 + np.exp(-(s_star[:, None] - s_star[None, :])))
  np.testing.assert_allclose(fitted.sum(1), P.sum(1), atol=1e-4)
  # Its order is the Borda order of P.
  assert float(simulate.kendall_tau(jnp.asarray(s_star), simulate.borda_truth(arena))) == 1.0


def test_votes_to_reach():
  assert experiments.votes_to_reach([10, 100], [0.5, 0.9], 0.7) == pytest.approx(np.sqrt(1000))
  assert experiments.votes_to_reach([10, 100], [0.8, 0.9], 0.7) == 10
  assert experiments.votes_to_reach([10, 100], [0.5, 0.6], 0.7) is None


def test_runner_rejects_bad_config(tmp_path):
  config = arena_config.get_config("quick")
  config.k = 9
  with pytest.raises(PrefjaxError, match="config.k"):
    experiments.run_arena_ranking(config, str(tmp_path))
  config = arena_config.get_config("quick")
  config.votes = (400, 50)
  with pytest.raises(PrefjaxError, match="config.votes"):
    experiments.run_arena_ranking(config, str(tmp_path))


def test_arena_runner_end_to_end_on_a_shrunk_config(tmp_path):
  """The `arena_ranking` runner on `:quick` cut to 4 models, 20 votes and 2 simulations (the notebook test runs
  5 models, 200 votes, 6 simulations and checks that the rankings beat chance): arrays, summary, metrics and
  figure for both settings."""
  from prefjax import runners  # pylint: disable=g-import-not-at-top
  config = arena_config.get_config("quick")
  config.update(num_models=4, k=3, votes=(20,), num_simulations=2, coverage_votes=20, bootstrap_rounds=2)
  run = runners.get_runner(config.experiment)
  assert run is experiments.run_arena_ranking
  summary = run(config, str(tmp_path))
  arrays = results.load_arrays(str(tmp_path))
  assert arrays["tau"].shape == (2, len(experiments.METHODS), 1, 2)
  assert np.all(np.abs(arrays["tau"]) <= 1)
  assert arrays["coverage"].shape == (2, 2, 4)
  assert set(summary["settings"]) == {"transitive", "intransitive_c0.5"}
  for entry in summary["settings"].values():
    assert set(entry["tau_final"]) == set(experiments.METHODS)
    assert 0.0 <= entry["bootstrap"]["coverage"] <= 1.0
  assert len(results.load_metrics(str(tmp_path))) == 2 * len(experiments.METHODS)
  assert (tmp_path / "figure.png").stat().st_size > 10_000


@pytest.mark.acceptance
def test_arena_notebook_and_runner_quick(tmp_path):
  """Acceptance: the notebook runs the runner (5 models, K = 3, 200 votes, 6 simulations) in a Jupyter kernel;
  both fits rank far better than chance and the bootstrap covers.

  Default tier: test_arena_runner_end_to_end_on_a_shrunk_config above (the same runner and outputs),
  tests/test_runner_contract.py (arena_ranking) and tests/test_notebooks_static.py (the notebook's cells
  compile, its imports resolve)."""
  import os  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  nb = nbformat.read(os.path.join(root, "colab", "arena.ipynb"), as_version=4)
  assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs must be stripped"
  params = [c for c in nb.cells if c.cell_type == "code" and "QUICK = False" in c.source]
  assert len(params) == 1, "the notebook must have one parameters cell with QUICK = False"
  params[0].source = params[0].source.replace("QUICK = False", "QUICK = True").replace(
      '"runs/arena_colab"', repr(str(tmp_path / "run")))
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": os.path.join(root, "colab")}}).execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "coverage" in outputs and "PL (4-wise)" in outputs
  # The notebook ran the `arena_ranking` runner (QUICK: 5 models, K = 3, 200 votes, 6 simulations): its
  # workdir is the runner's end-to-end test (one compilation of the experiment serves both).
  workdir = str(tmp_path / "run")
  summary = results.load_summary(workdir)
  arrays = results.load_arrays(workdir)
  assert arrays["tau"].shape == (2, len(experiments.METHODS), 1, 6)
  assert np.all(np.abs(arrays["tau"]) <= 1)
  assert arrays["coverage"].shape == (2, 6, 5)
  for setting in ("transitive", "intransitive_c0.5"):
    entry = summary["settings"][setting]
    # 200 votes on 5 models rank far better than chance.
    assert entry["tau_final"]["bt_mle"] > 0.5 and entry["tau_final"]["pl_kwise"] > 0.5
    assert 0.5 < entry["bootstrap"]["coverage"] <= 1.0
  assert len(results.load_metrics(workdir)) == 2 * len(experiments.METHODS)
  assert (tmp_path / "run" / "figure.png").stat().st_size > 10_000

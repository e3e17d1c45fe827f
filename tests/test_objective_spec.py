"""The objective index (prefjax.objectives.spec): declarations, lookups, generated docs, and every trainer
consuming objectives by data contract."""

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import objective_benchmark as benchmark_config
from prefjax import objectives
from prefjax.bandit import objective_benchmark as ob
from prefjax.bandit import train as bandit_train
from prefjax.envs import bandit
from prefjax.errors import PrefjaxError
from prefjax.lm import model as lm_model
from prefjax.lm import synthetic as syn
from prefjax.lm import train as lm_train
from prefjax.objectives import spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL = spec.list_objectives()


def test_every_declaration_is_complete():
  assert len(ALL) == len(set(ALL)) >= 40
  for name in ALL:
    o = spec.get(name)
    assert o.family in spec.FAMILIES and o.contract in spec.CONTRACTS, name
    assert o.display_name and o.formula and o.verified, name
    assert o.arxiv == "" or (len(o.arxiv) == 10 and o.arxiv[4] == "."), (name, o.arxiv)
    if spec.CONTRACTS[o.contract].batch_type is not None:
      assert callable(o.build), name
    for alias in o.aliases:
      assert spec.get(f"{o.family}:{alias}") is o
  # Every family module's own registry agrees with the index (no objective is registered in one only).
  pairwise = {n for n in objectives.pairwise.PAIRWISE_REGISTRY.names() if objectives.pairwise.PAIRWISE_REGISTRY.canonical(n) == n}
  assert pairwise == set(spec.list_objectives("pairwise"))
  reg = objectives.listwise.LISTWISE_REGISTRY
  assert {n for n in reg.names() if reg.canonical(n) == n} == set(spec.list_objectives("listwise"))
  reg = objectives.nash.NASH_OBJECTIVES
  assert {n for n in reg.names() if reg.canonical(n) == n} == {spec.get(n).name for n in spec.list_objectives("nash")}
  reg = objectives.density.DENSITY_LOSSES
  assert {n for n in reg.names() if reg.canonical(n) == n} == {spec.get(n).name for n in
                                                               spec.list_objectives("density")}


def test_lookups_aliases_families_and_errors():
  assert spec.get("dpo") is spec.get("sigmoid") is spec.get("pairwise:cdpo")
  assert spec.get("dpo").family == "pairwise" and spec.get("density:dpo").family == "density"
  assert spec.display_name("cdpo") == "cDPO" and spec.display_name("dpo") == "DPO"
  assert spec.display_name("not_an_objective") == "not_an_objective"
  assert spec.optimum_psi("dpo") == "logit" and spec.optimum_psi("ipo") == "identity"
  assert spec.optimum_psi("cdpo", 0.1) is None and spec.optimum_psi("hinge") is None
  assert spec.optimum_kind("sigmoid") == "rlhf"
  assert set(spec.list_objectives(contract="ranking")) == set(spec.list_objectives("listwise"))
  assert "density:dpo" in spec.list_objectives("density") and "luce" in spec.list_objectives("density")
  assert objectives.list_objectives() == objectives.pairwise.list_objectives()  # the old meaning is kept
  assert objectives.list_objectives(contract="single") == ["dro", "bco"]
  with pytest.raises(PrefjaxError, match=r"unknown objective 'dpoo' \(did you mean 'dpo'\?\)"):
    spec.get("dpoo")
  with pytest.raises(PrefjaxError, match="unknown listwise objective 'sigmoid'"):
    spec.get("listwise:sigmoid")
  with pytest.raises(PrefjaxError, match="unknown data contract"):
    spec.list_objectives(contract="pairs")
  with pytest.raises(PrefjaxError, match="does not take option"):
    spec.get("mmpo").loss(gama=2.0)
  with pytest.raises(PrefjaxError, match="already declared"):
    spec.declare(spec.get("ipo"))
  with pytest.raises(PrefjaxError, match="unknown contract"):
    spec.Objective("x", "pairwise", "pairs", lambda o: None)


def test_docs_objectives_md_is_generated_from_the_index():
  path = os.path.join(ROOT, "docs", "objectives.md")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  assert text == spec.markdown_table(), (
      "docs/objectives.md is stale: regenerate it with `python -m prefjax.objectives.spec > docs/objectives.md`")
  for name in ALL:
    assert f"`{spec.get(name).name}`" in text


@functools.lru_cache(maxsize=None)
def _tiny_lm():
  """A 2-prompt, 4-token task with a random 1-layer policy and one batch of pairs (one compile per objective)."""
  task = syn.make_task(seed=1, num_prompts=2, vocab_size=4, response_len=2)
  config = syn.model_config(task, d_model=16, num_layers=1, num_heads=2, d_ff=32)
  params = nn.unbox(lm_model.init_params(config, jax.random.key(0)))
  ref_logp = np.asarray(jax.jit(syn.make_policy_logp(task, config))(params))
  pairs = syn.make_pairs(task, ref_logp, 8, jax.random.key(1))
  rankings = syn.make_rankings(task, ref_logp, 8, 4, jax.random.key(2))
  singles = syn.make_singles(task, ref_logp, 8, jax.random.key(3))
  labelled = {**singles, "label_B": (singles["reward_B"] > np.median(singles["reward_B"])).astype(np.int32)}
  batches = {"pair": next(lm_train.PairArrays(pairs).iterator(8, seed=0)),
             "scored_pair": next(lm_train.PairArrays({**pairs, **syn.pair_scores(task, pairs)}).iterator(8, seed=0)),
             "ranking": next(lm_train.RankingArrays(rankings).iterator(8, seed=0)),
             "single": next(lm_train.SingleArrays(labelled).iterator(8, seed=0))}
  return config, params, batches


def _lm_step(objective):
  """One LM offline optimiser step with `objective` (policy ≠ reference) on its contract's batch."""
  config, params, batches = _tiny_lm()
  contract = lm_train.contract_of(objective)
  batch = batches[contract]
  cfg = lm_train.TrainConfig(objective=objective, beta=0.5, batch_size=8, num_steps=1, learning_rate=1e-2,
                             reference="precomputed" if contract in lm_train.PAIR_CONTRACTS else "live")
  mesh = lm_train.shd.make_mesh(devices=jax.devices()[:1])
  policy = jax.tree.map(lambda x: x * 1.5, params)
  state = lm_train.init_state(config, cfg, policy, jax.random.key(0), mesh, num_prompts=2)
  new, m = jax.jit(lm_train.make_train_step(config, cfg, live_reference=True))(
      state, {k: v[None] for k, v in batch.items()}, params)
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(policy)))
  return jax.device_get(m), moved


def _bandit_setup(objective):
  """The tabular bandit trainer on the 4-action dataset d1, with its data and a zero reference."""
  pairs = np.asarray(bandit.named_dataset("d1"))
  env = bandit.PairDataset(4)
  cfg = bandit_train.TrainConfig(objective=objective, num_steps=4, record_every=2, batch_size=4,
                                 optimizer="sgd")
  return bandit_train.make_train(cfg, env), env.make_params(pairs)


def _bandit_train(objective):
  return _bandit_setup(objective)[0]


def _refusal(trainer, contracts):
  return rf"{trainer} cannot train objective .*its data contract is .*feeds the contracts {contracts}"


# One LM step compiles a program per objective (5-15 s each on 2 cores): the default tier steps one objective
# of each family on the pair and ranking contracts (pairwise, ot, margins, listwise) and checks every refusal;
# the acceptance tier steps them all. The single and scored-pair contracts and the stateful objectives step in
# the default tier in tests/test_lm_train.py (DRO, BCO, β-DPO, MMPO, each against its loss function).
_LM_DEFAULT_TIER = {"sigmoid", "aot", "gamma_po", "infonca"}


def _lm_params():
  for name in ALL:
    o = spec.get(name)
    runs = o.contract in lm_train.CONTRACTS
    yield name if not runs or name in _LM_DEFAULT_TIER else pytest.param(name, marks=pytest.mark.acceptance)


@pytest.mark.parametrize("name", list(_lm_params()))
def test_every_objective_trains_an_lm_step_or_is_refused_by_its_contract(name):
  o = spec.get(name)
  if o.contract not in lm_train.CONTRACTS:
    with pytest.raises(PrefjaxError, match=_refusal("the LM offline trainer", r"\['pair', 'scored_pair', 'ranking', 'single'\]")):
      lm_train.TrainConfig(objective=name)
    return
  m, moved = _lm_step(name)
  assert np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"]) and moved > 0, (name, m)


@pytest.mark.parametrize("name", ALL)
def test_every_objective_reaches_the_bandit_trainers_or_is_refused_by_its_contract(name):
  o = spec.get(name)
  # The objective benchmark feeds six contracts; the tabular bandit trainer the pair contract (stateful
  # objectives: the benchmark only).
  if o.contract in ob.ADAPTERS:
    loss = ob.make_loss(name)
    assert callable(loss) and hasattr(loss, "init_state")
  else:
    with pytest.raises(PrefjaxError, match=_refusal("the bandit objective benchmark", ".*")):
      ob.make_loss(name)
  if o.contract in bandit_train.CONTRACTS and not o.stateful:
    assert callable(_bandit_train(name))
  elif o.contract not in bandit_train.CONTRACTS:
    with pytest.raises(PrefjaxError, match=_refusal("the bandit trainer", r"\['pair'\]")):
      _bandit_train(name)


def test_a_throwaway_pairwise_objective_reaches_every_trainer_with_no_other_file_touched(tmp_path):
  """register_pairwise at run time: the bandit trainer, the objective benchmark's table and an LM step."""
  # A squared-hinge pairwise loss: max(0, 1 − βΔ)².
  objectives.register_pairwise("throwaway_sq_hinge", lambda x, h: jnp.maximum(0.0, 1.0 - h.beta * x.margins) ** 2)
  try:
    o = spec.get("throwaway_sq_hinge")
    assert (o.family, o.contract) == ("pairwise", "pair")
    assert "throwaway_sq_hinge" in ob.list_benchmark_objectives()
    # The tabular bandit trainer.
    train, params = _bandit_setup("throwaway_sq_hinge")
    hparams = bandit_train.make_hparams([0.5], 0.1)
    (state, metrics) = bandit_train.make_sweep(train)(jax.random.split(jax.random.PRNGKey(0), 2), hparams, params,
                                                      jnp.zeros((1, 4)))
    assert np.all(np.isfinite(np.asarray(metrics.loss))) and np.any(np.asarray(state.logits) != 0)
    # The objective benchmark's table.
    config = benchmark_config.get_config("quick")
    config.objectives = ("throwaway_sq_hinge", "sigmoid")
    config.robust_objectives = ("throwaway_sq_hinge",)
    config.num_steps, config.record_every, config.figure = 50, 50, False
    summary = ob.run_objective_benchmark(config, str(tmp_path / "bench"))
    assert [e["objective"] for e in summary["objectives"]] == ["throwaway_sq_hinge", "sigmoid"]
    assert "throwaway_sq_hinge" in (tmp_path / "bench" / "table.md").read_text(encoding="utf-8")
    # One LM offline step.
    m, moved = _lm_step("throwaway_sq_hinge")
    assert np.isfinite(m["loss"]) and moved > 0
  finally:
    objectives.pairwise.unregister_pairwise("throwaway_sq_hinge")
  with pytest.raises(PrefjaxError, match="unknown objective"):
    spec.get("throwaway_sq_hinge")


def test_the_worked_example_in_docs_adding_an_objective_runs():
  """The doc's declaration is executed as written, then used as the doc says; its loss is the formula's."""
  import re  # pylint: disable=g-import-not-at-top
  with open(os.path.join(ROOT, "docs", "adding_an_objective.md"), encoding="utf-8") as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
  assert len(blocks) == 2
  namespace = {}
  exec(compile(blocks[0], "adding_an_objective.md", "exec"), namespace)  # pylint: disable=exec-used
  try:
    exec(compile(blocks[1], "adding_an_objective.md", "exec"), namespace)  # pylint: disable=exec-used
    assert namespace["cfg"].objective == "squared_hinge_example"
    rng = np.random.default_rng(0)
    pw, pl, rw, rl = (rng.normal(size=6).astype(np.float32) for _ in range(4))
    batch = spec.PairBatch(*(jnp.asarray(x) for x in (pw, pl, rw, rl)))
    losses, _ = spec.get("squared_hinge_example").loss().fn(batch, spec.HParams(0.7), (), None)
    want = np.maximum(0.0, 1.0 - 0.7 * ((pw - rw) - (pl - rl)).astype(np.float64)) ** 2
    np.testing.assert_allclose(losses, want, rtol=1e-6, atol=1e-6)
    assert "squared_hinge_example" in ob.list_benchmark_objectives()
  finally:
    spec.undeclare("squared_hinge_example")

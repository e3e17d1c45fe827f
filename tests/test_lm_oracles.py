"""Preference oracles for sequences: the synthetic task's general (non-transitive) preference and its game,
the oracle interface, the reward model and the pairwise preference model."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax.errors import PrefjaxError
from prefjax.lm import model as lm_model
from prefjax.lm import oracles
from prefjax.lm import reward_model as rm
from prefjax.lm import synthetic as syn

SMALL = dict(seed=1, num_prompts=2, vocab_size=4, response_len=2)


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def nt_task():
  return syn.make_task(**SMALL, nontransitive_scale=syn.NONTRANSITIVE_SCALE)


def _random_logp(task, seed, scale=2.0):
  z = scale * np.random.default_rng(seed).standard_normal((task.num_prompts, task.num_responses))
  return z - np.logaddexp.reduce(z, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------------
# The synthetic task's general preference and its game.


def test_general_preference_matrix_brute_force(nt_task):
  """P[x, y, y'] = σ(r(x,y) − r(x,y') + Σ_t B[x,t,y_t,y'_t]) entry by entry; P + Pᵀ = 1; values in (0, 1)."""
  task = nt_task
  b = task.cycle_tables_CxRxVxV
  assert b.shape == (2, 2, 4, 4)
  np.testing.assert_array_equal(b, -np.swapaxes(b, -1, -2))
  assert np.abs(b).max() > 0
  P = syn.preference_matrix(task)
  assert P.shape == (2, 16, 16) and P.dtype == np.float64
  for c in range(task.num_prompts):
    for i, y in enumerate(task.responses_NxR):
      for j, yp in enumerate(task.responses_NxR):
        r = sum(task.reward_table_CxRxV[c, t, y[t]] - task.reward_table_CxRxV[c, t, yp[t]] for t in range(2))
        cyc = sum(b[c, t, y[t], yp[t]] for t in range(2))
        assert P[c, i, j] == pytest.approx(_sigmoid(r + cyc), rel=1e-13, abs=0)
  np.testing.assert_allclose(P + np.swapaxes(P, -1, -2), 1.0, rtol=0, atol=1e-15)
  assert np.all(P > 0) and np.all(P < 1)


def test_scale_zero_is_bradley_terry_exactly():
  """Scale 0: the same tables as before, B = 0 and P = σ(r − r') bit for bit; old 8-field constructions work."""
  bt = syn.make_task(**SMALL)
  nt = syn.make_task(**SMALL, nontransitive_scale=1.5)
  for field in ("sft_logits_CxRxV", "reward_table_CxRxV", "rewards_CxN", "sft_logp_CxN"):
    np.testing.assert_array_equal(getattr(bt, field), getattr(nt, field))
  assert not np.any(bt.cycle_tables_CxRxVxV)
  r = bt.rewards_CxN
  np.testing.assert_array_equal(syn.preference_matrix(bt), 1.0 / (1.0 + np.exp(-(r[:, :, None] - r[:, None, :]))))
  old = syn.SyntheticTask(*bt[:8])
  assert old.cycle_tables_CxRxVxV is None
  np.testing.assert_array_equal(syn.preference_matrix(old), syn.preference_matrix(bt))
  with pytest.raises(PrefjaxError, match="nontransitive_scale"):
    syn.make_task(**SMALL, nontransitive_scale=-1.0)


def test_default_scale_is_non_transitive():
  """At NONTRANSITIVE_SCALE most prompts of the default task have no Condorcet winner (brute force);
  without cycles every prompt has one (the reward's argmax)."""
  def has_condorcet(P):
    n = P.shape[-1]
    wins = (P > 0.5) | np.eye(n, dtype=bool)
    return wins.all(-1).any(-1)
  bt = syn.make_task()
  nt = syn.make_task(nontransitive_scale=syn.NONTRANSITIVE_SCALE)
  assert has_condorcet(syn.preference_matrix(bt)).all()
  assert has_condorcet(syn.preference_matrix(nt)).sum() <= 1  # of 4 prompts


def test_nash_equilibrium_fixed_point_float64(nt_task):
  """π*_β = softmax(log π_ref + P π*_β / β) to 1e-10 (numpy float64 check); gap 0 there, > 0 at π_ref."""
  task = nt_task
  ref = _random_logp(task, 0, scale=1.0)
  beta = 0.3
  ne = syn.nash_equilibrium(task, ref, beta)
  assert ne.logp_CxN.shape == (2, 16) and ne.logp_CxN.dtype == np.float64
  assert ne.residual_C.shape == (2,) and np.all(ne.residual_C <= 1e-12)
  pi = np.exp(ne.logp_CxN)
  np.testing.assert_allclose(pi.sum(-1), 1.0, atol=1e-14)
  P = syn.preference_matrix(task)
  z = ref + np.einsum("cnm,cm->cn", P, pi) / beta
  br = np.exp(z - np.logaddexp.reduce(z, axis=-1, keepdims=True))
  assert np.abs(pi - br).max() <= 1e-10
  at_ne = syn.evaluate(task, ne.logp_CxN, ref, beta=beta)
  at_ref = syn.evaluate(task, ref, ref, beta=beta)
  assert 0.0 <= at_ne["duality_gap"] <= 1e-10
  assert at_ref["duality_gap"] > 1e-3


def test_evaluate_game_metrics_brute_force(nt_task):
  """exploitability = E_x max_y Σ_y' P π − ½ ≥ 0, duality gap = E_x 2β KL(π ‖ BR(π)), win_rate_vs: double loops."""
  task = nt_task
  P = syn.preference_matrix(task)
  ref = _random_logp(task, 1, scale=1.0)
  beta = 0.5
  for seed in (2, 3):
    lp = _random_logp(task, seed)
    other = _random_logp(task, seed + 10)
    m = syn.evaluate(task, lp.astype(np.float32), ref, beta=beta)
    pi, q, o = np.exp(lp), np.exp(ref), np.exp(other)
    expl, gap, wr, wr_other = [], [], [], []
    for c in range(task.num_prompts):
      n = task.num_responses
      payoff = [sum(P[c, y, yp] * pi[c, yp] for yp in range(n)) for y in range(n)]
      expl.append(max(payoff) - 0.5)
      z = np.log(q[c]) + np.array(payoff) / beta
      log_br = z - np.logaddexp.reduce(z)
      gap.append(2 * beta * sum(pi[c, y] * (lp[c, y] - log_br[y]) for y in range(n)))
      wr.append(sum(pi[c, y] * P[c, y, yp] * q[c, yp] for y in range(n) for yp in range(n)))
      wr_other.append(sum(pi[c, y] * P[c, y, yp] * o[c, yp] for y in range(n) for yp in range(n)))
    assert m["exploitability"] >= 0
    # float32 policy input: its rounding (~1e-7 relative) bounds the agreement.
    assert m["exploitability"] == pytest.approx(np.mean(expl), abs=1e-6)
    assert m["duality_gap"] == pytest.approx(np.mean(gap), rel=1e-5)
    assert m["win_rate"] == pytest.approx(np.mean(wr), abs=1e-6)
    assert syn.win_rate_vs(task, lp, other) == pytest.approx(np.mean(wr_other), rel=1e-12)
    assert syn.win_rate_vs(task, lp, lp) == pytest.approx(0.5, abs=1e-14)
  assert "duality_gap" not in syn.evaluate(task, ref, ref)
  with pytest.raises(PrefjaxError, match="policy_logp_CxN"):
    syn.evaluate(task, ref[:, :3], ref)


def test_response_index_round_trip(nt_task):
  task = nt_task
  idx = syn.response_index(task, task.responses_NxR)
  np.testing.assert_array_equal(np.asarray(idx), np.arange(task.num_responses))
  ys = np.asarray(jax.random.randint(jax.random.key(0), (3, 5, 2), 0, 4), np.int32)
  jitted = jax.jit(lambda y: syn.response_index(task, y))(ys)
  assert jitted.shape == (3, 5) and jitted.dtype == jnp.int32
  np.testing.assert_array_equal(task.responses_NxR[np.asarray(jitted)], ys)
  with pytest.raises(PrefjaxError, match="R = 2"):
    syn.response_index(task, ys[..., :1])
  with pytest.raises(PrefjaxError, match="tokens"):
    syn.response_index(task, ys + 4)


# ----------------------------------------------------------------------------------------------------
# Oracle interface.


def _all_pairs(task, c, prompt_len=3):
  """Every (a, b) pair for prompt c, with a left-padded prompt of `prompt_len` tokens."""
  n = task.num_responses
  ia, ib = (g.ravel() for g in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
  b = ia.size
  prompt = np.full((b, prompt_len), 3, np.int32)  # padding tokens (any id) are ignored
  prompt[:, -1] = c
  pmask = np.zeros((b, prompt_len), np.int32)
  pmask[:, -1] = 1
  ones = np.ones((b, task.response_len), np.int32)
  return (prompt, pmask, task.responses_NxR[ia], ones, task.responses_NxR[ib], ones), ia, ib


@jax.jit
def _prefer(oracle, *args):
  return oracle.prefer(*args)


def test_synthetic_oracle_matches_matrix_inside_jit(nt_task):
  task = nt_task
  oracle = oracles.SyntheticOracle(task)
  P = syn.preference_matrix(task)
  for c in range(task.num_prompts):
    args, ia, ib = _all_pairs(task, c)
    p = _prefer(oracle, *args)
    assert p.shape == (ia.size,) and p.dtype == jnp.float32
    # float32 tables: the log-odds carry ~1e-6 absolute rounding, σ' ≤ ¼.
    np.testing.assert_allclose(np.asarray(p), P[c, ia, ib], rtol=0, atol=1e-6)
    swapped = _prefer(oracle, args[0], args[1], args[4], args[5], args[2], args[3])
    np.testing.assert_allclose(np.asarray(p) + np.asarray(swapped), 1.0, rtol=0, atol=2 ** -23)
    np.testing.assert_allclose(np.asarray(oracle.prefer(*args)), np.asarray(p), rtol=0, atol=1e-7)
  with pytest.raises(PrefjaxError, match="exactly R = 2"):
    args, _, _ = _all_pairs(task, 0)
    oracle.prefer(args[0], args[1], args[2][:, :1], args[3][:, :1], args[4][:, :1], args[5][:, :1])
  with pytest.raises(PrefjaxError, match="mask_b_BxT"):
    oracle.prefer(*args[:5], args[5][:3])


def test_check_probabilities_and_labels():
  p = np.array([0.1, 0.5, 1.0, 0.0], np.float32)
  assert oracles.check_probabilities(p, "test") is p
  for bad, kind in ((np.nan, "NaN"), (1.5, "> 1"), (-0.25, "< 0")):
    q = p.copy()
    q[2] = bad
    with pytest.raises(PrefjaxError, match=rf"the oracle at step 7.*{kind}.*row 2"):
      oracles.check_probabilities(q, "the oracle at step 7")
  key = jax.random.key(0)
  n = 40_000
  labels = jax.jit(oracles.bernoulli_labels)(key, jnp.full((n,), 0.3))
  assert labels.dtype == jnp.float32 and set(np.unique(np.asarray(labels))) <= {0.0, 1.0}
  assert abs(float(labels.mean()) - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)


# ----------------------------------------------------------------------------------------------------
# Reward model and pairwise model (tiny models, one training run each).


def _model_config(task):
  return syn.model_config(task, d_model=16, num_layers=1, num_heads=2, d_ff=32)


@pytest.fixture(scope="module")
def trained_rm():
  """A reward model trained by Bradley–Terry on the (transitive) task's offline pairs."""
  task = syn.make_task(**SMALL)
  config = _model_config(task)
  params = rm.init_reward_model(config, jax.random.key(0))
  pairs = syn.make_pairs(task, task.sft_logp_CxN, 512, jax.random.key(1))
  data = rm.preference_data_from_pairs(pairs)
  trained, losses = rm.train_reward_model(config, params, data, jax.random.key(2), num_steps=300,
                                          learning_rate=1e-2)
  return task, config, trained, losses


def test_reward_model_learns_the_preference(trained_rm):
  """Expected pairwise label accuracy over y, y' ~ π_ref, exact: well above chance, at most Bayes's."""
  task, config, params, losses = trained_rm
  assert losses.shape == (300,) and losses[-10:].mean() < losses[:10].mean()
  oracle = oracles.RewardModelOracle(config, params)
  P = syn.preference_matrix(task)
  q = np.exp(task.sft_logp_CxN)
  acc, bayes = [], []
  for c in range(task.num_prompts):
    args, ia, ib = _all_pairs(task, c, prompt_len=1)
    p_hat = np.asarray(_prefer(oracle, *args), np.float64)
    p = P[c, ia, ib]
    w = q[c, ia] * q[c, ib]
    says_a = (p_hat > 0.5).astype(np.float64) + 0.5 * (p_hat == 0.5)
    acc.append(np.sum(w * (says_a * p + (1 - says_a) * (1 - p))))
    bayes.append(np.sum(w * np.maximum(p, 1 - p)))
  acc, bayes = np.mean(acc), np.mean(bayes)
  assert acc <= bayes + 1e-12
  assert acc - 0.5 > 0.5 * (bayes - 0.5), (acc, bayes)
  # The oracle is σ(r_a − r_b) of the model's rewards.
  args, _, _ = _all_pairs(task, 1, prompt_len=1)
  r_a = rm.reward(config, params, args[0], args[1], args[2], args[3])
  r_b = rm.reward(config, params, args[0], args[1], args[4], args[5])
  np.testing.assert_allclose(np.asarray(_prefer(oracle, *args)), np.asarray(jax.nn.sigmoid(r_a - r_b)),
                             rtol=0, atol=1e-6)


def test_reward_model_save_load(trained_rm, tmp_path):
  task, config, params, _ = trained_rm
  # return_hidden: the hidden states are the unembedding's input; the default output is unchanged.
  tokens = np.asarray(task.responses_NxR[:5], np.int32)
  apply = lm_model.Transformer(config).apply
  logits, hidden = apply(params["trunk"], tokens, return_hidden=True)
  assert hidden.shape == (5, 2, config.d_model)
  np.testing.assert_array_equal(np.asarray(apply(params["trunk"], tokens)), np.asarray(logits))
  head = params["trunk"]["params"]["head"]
  np.testing.assert_allclose(np.asarray(hidden @ head), np.asarray(logits), rtol=1e-5, atol=1e-5)
  path = str(tmp_path / "rm")
  rm.save_reward_model(path, config, params)
  config2, params2 = rm.load_reward_model(path)
  assert config2 == config
  args, _, _ = _all_pairs(task, 0, prompt_len=1)
  p1 = _prefer(oracles.RewardModelOracle(config, params), *args)
  p2 = _prefer(oracles.RewardModelOracle(config2, params2), *args)
  np.testing.assert_array_equal(np.asarray(p1), np.asarray(p2))
  missing = str(tmp_path / "nope")
  with pytest.raises(PrefjaxError, match="nope"):
    rm.load_reward_model(missing)
  with pytest.raises(PrefjaxError, match="pairwise"):
    rm.load_reward_model(path, kind="pairwise")
  # Wrong shapes: the stored config says d_model 8, the arrays are d_model 16.
  meta = json.load(open(os.path.join(path, "config.json")))
  meta["model_config"]["d_model"] = 8
  json.dump(meta, open(os.path.join(path, "config.json"), "w"))
  with pytest.raises(PrefjaxError, match=r"do not match.*embed.*\(4, 8\), got \(4, 16\)"):
    rm.load_reward_model(path)
  os.remove(os.path.join(path, "params.npz"))
  with pytest.raises(PrefjaxError, match="params.npz"):
    rm.load_reward_model(path)


def test_pairwise_model_antisymmetric_and_trained(nt_task):
  """Trained on the non-transitive oracle's probabilities: p(a,b) + p(b,a) = 1, shapes, jit; loss falls."""
  task = nt_task
  base = _model_config(task)
  config = rm.pairwise_config(base, 3, task.response_len)  # room for left-padded prompts of 3 tokens
  assert config.vocab_size == task.vocab_size + 1 and config.max_len == 3 + 2 * task.response_len + 1
  params = rm.init_pairwise_model(config, jax.random.key(0))
  oracle = oracles.SyntheticOracle(task)
  kx, ka, kb, kt = jax.random.split(jax.random.key(1), 4)
  n = 256
  prompts = np.asarray(jax.random.randint(kx, (n, 1), 0, task.num_prompts), np.int32)
  ya = np.asarray(jax.random.randint(ka, (n, 2), 0, task.vocab_size), np.int32)
  yb = np.asarray(jax.random.randint(kb, (n, 2), 0, task.vocab_size), np.int32)
  ones, ones_p = np.ones((n, 2), np.int32), np.ones((n, 1), np.int32)
  labels = np.asarray(oracle.prefer(prompts, ones_p, ya, ones, yb, ones))
  data = rm.PreferenceData(prompts, ones_p, ya, ones, yb, ones, labels)
  trained, losses = rm.train_pairwise_model(config, params, data, kt, num_steps=60, learning_rate=3e-3,
                                            batch_size=128)
  assert losses[-10:].mean() < losses[:10].mean()
  model = oracles.PairwiseModelOracle(config, trained)
  args, ia, ib = _all_pairs(task, 1)
  # A shorter second response (mask 0 on its last token) is a valid input too.
  mask_b = args[5].copy()
  mask_b[::2, -1] = 0
  args = args[:5] + (mask_b,)
  p = _prefer(model, *args)
  swapped = _prefer(model, args[0], args[1], args[4], args[5], args[2], args[3])
  assert p.shape == (ia.size,) and p.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(p) + np.asarray(swapped), 1.0, rtol=0, atol=1e-6)
  assert np.all((np.asarray(p) > 0) & (np.asarray(p) < 1))
  diag = ia == ib
  np.testing.assert_allclose(np.asarray(p)[diag & (np.arange(ia.size) % 2 == 1)], 0.5, atol=1e-6)


def test_online_dpo_fixed_point(nt_task):
  """Bradley–Terry: the fixed point is the RLHF optimum π_ref e^{r/β} (closed form); non-transitive: the
  stationarity condition holds (numpy check) and the point is far from π*_β in duality gap."""
  beta = 1.0
  bt = syn.make_task(**SMALL)
  ref = _random_logp(bt, 4, scale=1.0)
  fp = syn.online_dpo_fixed_point(bt, ref, beta)
  assert np.all(fp.residual_C <= 1e-10)
  z = ref + bt.rewards_CxN / beta
  # Residual 1e-10 in F ⇒ ~1e-10·(1/min σ') error in βℓ: far below the 1e-7 tolerance.
  np.testing.assert_allclose(fp.logp_CxN, z - np.logaddexp.reduce(z, axis=-1, keepdims=True), atol=1e-7)
  task = nt_task
  fp = syn.online_dpo_fixed_point(task, ref, beta)
  assert np.all(fp.residual_C <= 1e-10)
  pi = np.exp(fp.logp_CxN)
  ell = beta * (fp.logp_CxN - ref)
  P = syn.preference_matrix(task)
  F = np.einsum("cnm,cm->cn", _sigmoid(ell[:, :, None] - ell[:, None, :]) - P, pi)
  assert np.abs(F).max() <= 1e-9
  gap_dpo = syn.evaluate(task, fp.logp_CxN, ref, beta=beta)["duality_gap"]
  gap_ref = syn.evaluate(task, ref, ref, beta=beta)["duality_gap"]
  assert gap_dpo > gap_ref > 0

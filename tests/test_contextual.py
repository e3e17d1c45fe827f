"""Tests of the contextual preference bandit: exact evaluation vs Monte Carlo and closed forms, data, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax.bandit import contextual
from prefjax.errors import PrefjaxError
from prefjax.objectives import ot


def _bandit(num_annotators=2, reward_kind="linear"):
  return contextual.make_params(jax.random.PRNGKey(3), num_contexts=5, num_responses=6, context_dim=3,
                                reward_kind=reward_kind, num_annotators=num_annotators, reward_scale=1.5)


def _np(params):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), params)


def test_exact_metrics_match_monte_carlo():
  """Reward, KL and win rate (general, non-BT preference) against sampled estimates, within 5 SE."""
  params = _bandit(num_annotators=2, reward_kind="mlp")
  logits = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (5, 6)))
  ev = contextual.evaluate(jnp.asarray(logits), params, 0.5)
  p = _np(params)
  rng = np.random.default_rng(0)
  n = 40_000
  pi = np.exp(logits - logits.max(-1, keepdims=True))
  pi /= pi.sum(-1, keepdims=True)
  ref = np.exp(p.ref_logits)
  ref /= ref.sum(-1, keepdims=True)
  x = rng.choice(5, size=n, p=p.context_probs / p.context_probs.sum())
  y = (rng.random(n)[:, None] > np.cumsum(pi[x], -1)).sum(-1)
  y_ref = (rng.random(n)[:, None] > np.cumsum(ref[x], -1)).sum(-1)
  r_bar = np.einsum("m,mxn->xn", p.annotator_weights, p.annotator_rewards)
  r = p.annotator_rewards
  pref = np.einsum("m,mxij->xij", p.annotator_weights, 1 / (1 + np.exp(-(r[..., :, None] - r[..., None, :]))))
  wins = rng.random(n) < pref[x, y, y_ref]
  samples = {
      "reward": r_bar[x, y],
      "kl": np.log(pi[x, y]) - np.log(ref[x, y]),
      "win_rate": wins.astype(np.float64),
  }
  for name, s in samples.items():
    se = s.std(ddof=1) / np.sqrt(n)
    assert abs(float(getattr(ev, name)) - s.mean()) < 5 * se, (name, float(getattr(ev, name)), s.mean(), se)
  # The preference is a general one: P + Pᵀ = 1, and it is not a BT matrix of the mean reward.
  np.testing.assert_allclose(pref + np.swapaxes(pref, -1, -2), 1.0, atol=1e-12)
  bt = 1 / (1 + np.exp(-(r_bar[..., :, None] - r_bar[..., None, :])))
  assert np.abs(bt - pref).max() > 1e-3


def test_reference_policy_has_zero_kl_half_win_rate_and_no_fsd_violation():
  params = _bandit()
  ev = contextual.evaluate(params.ref_logits, params, 1.0)
  assert abs(float(ev.kl)) < 1e-6
  assert abs(float(ev.win_rate) - 0.5) < 1e-6
  assert float(ev.fsd_violation) < 1e-5
  expected_reward = float(jnp.sum(params.context_probs[:, None] * jnp.exp(params.ref_logits) * params.rewards))
  assert abs(float(ev.reward) - expected_reward) < 1e-6


def test_optimum_maximises_regularised_reward():
  """π* ∝ π_ref e^{r̄/β} beats 300 random policies on reward − β KL, with value β E_x log E_{π_ref} e^{r̄/β};
  its TV distance to itself is 0 and its reward distribution dominates π_ref's (FSD violation 0).
  Float32 throughout: the tolerances are a few float32 roundings of O(1) sums."""
  params = _bandit()
  beta = 0.7
  objective = lambda ev: float(ev.reward - beta * ev.kl)
  star = contextual.evaluate(contextual.optimal_logits(params, beta), params, beta)
  p = _np(params)
  r_bar = np.einsum("m,mxn->xn", p.annotator_weights, p.annotator_rewards)
  z = p.ref_logits + r_bar / beta
  log_norm = z.max(-1) + np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1))
  closed = beta * float(np.sum(p.context_probs * log_norm))
  assert abs(objective(star) - closed) < 1e-5
  assert float(star.tv_to_optimum) < 1e-6
  assert float(star.fsd_violation) < 1e-6
  keys = jax.random.split(jax.random.PRNGKey(0), 300)
  scales = jnp.linspace(0.1, 3.0, 300)
  logits = jax.jit(jax.vmap(lambda k, s: params.ref_logits + s * jax.random.normal(k, (5, 6))))(keys, scales)
  values = jax.jit(jax.vmap(lambda l: contextual.evaluate(l, params, beta)))(logits)
  assert float(jnp.max(values.reward - beta * values.kl)) < objective(star) - 1e-4
  assert float(jnp.min(values.tv_to_optimum)) > 0


@pytest.mark.parametrize("n,m", [(7, 7), (5, 3), (8, 12)])
def test_weighted_fsd_matches_sample_fsd(n, m):
  """On empirical distributions (weights = counts / n) the exact weighted measure is `ot.fsd_violation`;
  integer samples make ties."""
  rng = np.random.default_rng(n * 100 + m)
  exact_fn = jax.jit(contextual.fsd_violation_weighted)
  sample_fn = jax.jit(ot.fsd_violation)
  for _ in range(20):
    u = rng.integers(0, 6, n).astype(np.float32)
    v = rng.integers(0, 6, m).astype(np.float32)
    atoms = np.concatenate([u, v])
    wp = np.concatenate([np.full(n, 1 / n), np.zeros(m)])
    wq = np.concatenate([np.zeros(n), np.full(m, 1 / m)])
    exact = float(exact_fn(jnp.asarray(atoms), jnp.asarray(wp), jnp.asarray(wq)))
    assert abs(exact - float(sample_fn(jnp.asarray(u), jnp.asarray(v)))) < 1e-5


def test_dataset_labels_are_consistent_bt_pairs_with_flips():
  """Responses are distinct, ranks are permutations, the pair label follows the ranking, and
  P(y_1 labelled better) = (1 − ε) P(y_1 ≻ y_2 | x) + ε P(y_2 ≻ y_1 | x) within 5 SE (PL marginals are BT)."""
  params = _bandit(num_annotators=2)
  eps = 0.2
  n = 10_000
  data = contextual.sample_dataset(jax.random.PRNGKey(11), params, n, 4, noise=eps, score_noise=0.1)
  contextual.check_dataset(data, params)
  d = jax.tree.map(np.asarray, data)
  assert np.all(np.sort(d.ranks, -1) == np.arange(4))
  assert all(len(set(row)) == 4 for row in d.responses[:200])
  np.testing.assert_array_equal(d.chosen, (d.ranks[:, 1] < d.ranks[:, 0]).astype(np.int32))
  pref = np.asarray(params.preference, np.float64)[d.context, d.responses[:, 0], d.responses[:, 1]]
  expected = (1 - eps) * pref + eps * (1 - pref)
  first_wins = (d.chosen == 0).astype(np.float64)
  se = np.sqrt(np.mean(expected * (1 - expected)) / n)
  assert abs(first_wins.mean() - expected.mean()) < 5 * se
  assert abs(d.flipped.mean() - eps) < 5 * np.sqrt(eps * (1 - eps) / n)


def test_policies_start_at_the_reference():
  params = _bandit()
  for kind in contextual.POLICY_KINDS:
    policy = contextual.init_policy(jax.random.PRNGKey(0), kind, params.features.shape[-1], hidden=5)
    np.testing.assert_allclose(contextual.policy_logits(policy, params), params.ref_logits, atol=1e-6)


def test_bad_input_is_a_clear_error():
  params = _bandit()
  with pytest.raises(PrefjaxError, match="K"):
    contextual.sample_dataset(jax.random.PRNGKey(0), params, 4, 7)  # K > N = 6.
  with pytest.raises(PrefjaxError, match="noise"):
    contextual.sample_dataset(jax.random.PRNGKey(0), params, 4, 3, noise=0.7)
  with pytest.raises(PrefjaxError, match="shape"):
    contextual.evaluate(jnp.zeros((5, 4)), params, 1.0)
  data = contextual.sample_dataset(jax.random.PRNGKey(0), params, 4, 3)
  with pytest.raises(PrefjaxError, match="K mismatch"):
    contextual.check_dataset(data._replace(ranks=data.ranks[:, :2]))
  with pytest.raises(PrefjaxError, match="reward_kind"):
    contextual.make_params(jax.random.PRNGKey(0), reward_kind="cubic")
  with pytest.raises(PrefjaxError, match="policy kind"):
    contextual.init_policy(jax.random.PRNGKey(0), "tabular", 4)
  with pytest.raises(PrefjaxError, match="annotator_weights"):
    contextual.make_params(jax.random.PRNGKey(0), num_annotators=2, annotator_weights=(0.5, 0.6))

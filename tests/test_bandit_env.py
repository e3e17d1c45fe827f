"""Tests for the preference-bandit samplers in prefjax.envs.bandit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax.envs import bandit
from prefjax.games import preferences
from prefjax.errors import PrefjaxError


def test_pair_dataset_samples_rows_uniformly():
  env = bandit.PairDataset(3)
  params = env.make_params(bandit.named_dataset("d1"))
  n = 30_000
  pairs = env.sample(jax.random.PRNGKey(0), params, n)
  assert pairs.chosen.shape == (n,) and pairs.chosen.dtype == jnp.int32
  rows = {(0, 1): 0, (1, 2): 0, (0, 2): 0}
  for c, r in zip(np.asarray(pairs.chosen), np.asarray(pairs.rejected)):
    rows[(int(c), int(r))] += 1
  # Each row has probability 1/3; 5 binomial standard errors.
  se = np.sqrt(n * (1 / 3) * (2 / 3))
  for count in rows.values():
    assert abs(count - n / 3) < 5 * se


def test_preference_bandit_label_frequencies_match_P():
  env = bandit.PreferenceBandit(3)
  P = preferences.bradley_terry(jnp.array([1.0, 0.0, -0.5]))
  mu = np.array([0.5, 0.3, 0.2])
  params = env.make_params(P, mu)
  n = 200_000
  pairs = env.sample(jax.random.PRNGKey(1), params, n)
  c, r = np.asarray(pairs.chosen), np.asarray(pairs.rejected)
  Pn = np.asarray(P, np.float64)
  for i in range(3):
    for j in range(3):
      if i == j:
        continue
      # p(chosen = i, rejected = j) = μ_i μ_j P_ij + μ_j μ_i P_ij (either draw order).
      p = 2 * mu[i] * mu[j] * Pn[i, j]
      count = np.sum((c == i) & (r == j))
      assert abs(count - n * p) < 5 * np.sqrt(n * p * (1 - p))


def test_contextual_bandit_keeps_contexts_apart():
  env = bandit.PreferenceBandit(2, num_contexts=2)
  P = np.stack([np.asarray(preferences.total_order(2)), np.asarray(preferences.total_order(2)).T])
  params = env.make_params(P)
  pairs = env.sample(jax.random.PRNGKey(2), params, 1000)
  ctx, c, r = (np.asarray(a) for a in pairs)
  distinct = c != r
  # Context 0 prefers action 0 always, context 1 prefers action 1 always.
  assert np.all(c[distinct & (ctx == 0)] == 0) and np.all(c[distinct & (ctx == 1)] == 1)
  assert 0.4 < ctx.mean() < 0.6


def test_bad_input_errors():
  env = bandit.PairDataset(3)
  with pytest.raises(PrefjaxError, match="outside"):
    env.make_params([(0, 3)])
  with pytest.raises(PrefjaxError, match="itself"):
    env.make_params([(1, 1)])
  with pytest.raises(PrefjaxError, match=r"\[M, 2\]"):
    env.make_params([0, 1])
  with pytest.raises(PrefjaxError, match="unknown dataset"):
    bandit.named_dataset("d7")
  online = bandit.PreferenceBandit(3)
  with pytest.raises(PrefjaxError, match="P must have shape"):
    online.make_params(np.asarray(preferences.total_order(4)))
  with pytest.raises(PrefjaxError, match="behaviour"):
    online.make_params(np.asarray(preferences.total_order(3)), behaviour=[0.5, 0.5, 0.5])


def test_batch_counts_follow_the_multinomial_law():
  counter = bandit.BatchCounts.build(3, 9)
  assert counter.counts.shape == (55, 3) and np.all(counter.counts.sum(1) == 9)
  n = 400_000
  bits = jax.random.bits(jax.random.PRNGKey(4), (n,), jnp.uint32)
  counts = np.asarray(counter.sample(bits))
  # Marginal of each row: Binomial(9, 1/3); compare the frequencies of its values with 5 standard errors.
  from scipy import stats  # pylint: disable=g-import-not-at-top
  for row in range(3):
    freq = np.bincount(counts[:, row], minlength=10) / n
    pmf = stats.binom.pmf(np.arange(10), 9, 1 / 3)
    assert np.all(np.abs(freq - pmf) < 5 * np.sqrt(pmf * (1 - pmf) / n) + 1e-9)
  # Joint law: the probability of the count vector (3, 3, 3) is 9!/(3!)^3 / 3^9.
  p333 = 1680 / 3**9
  f333 = np.mean(np.all(counts == 3, axis=1))
  assert abs(f333 - p333) < 5 * np.sqrt(p333 * (1 - p333) / n)
  # Too many outcomes: no count sampler.
  assert bandit.BatchCounts.build(100, 9) is None


def test_batch_counts_alias_tables_encode_the_multinomial_law_exactly():
  """The law implied by the alias tables (each column 2^-b, split at accept/2^(32-b)) equals the multinomial
  pmf up to the threshold rounding bound 2^-(33-b)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  for rows, batch in [(3, 9), (4, 5), (2, 1)]:
    counter = bandit.BatchCounts.build(rows, batch)
    b = counter.column_bits
    # Decode every column's own and alias outcome through the sampler itself: a word whose low bits are 0
    # keeps the column's own outcome (if accept > 0), the largest low bits take the alias.
    columns = np.arange(2**b, dtype=np.uint32) << np.uint32(32 - b)
    own = np.asarray(counter.sample(jnp.asarray(columns)))
    alias = np.asarray(counter.sample(jnp.asarray(columns | np.uint32(2**(32 - b) - 1))))
    accept = counter.accept.astype(np.float64) / 2**(32 - b)
    law = {}
    for i in range(2**b):
      for vec, mass in ((tuple(own[i]), accept[i]), (tuple(alias[i]), 1.0 - accept[i])):
        law[vec] = law.get(vec, 0.0) + mass / 2**b
    pmf = {tuple(c): stats.multinomial.pmf(c, batch, np.full(rows, 1.0 / rows)) for c in counter.counts}
    assert set(k for k, v in law.items() if v > 0) <= set(pmf)
    err = max(abs(law.get(k, 0.0) - p) for k, p in pmf.items())
    assert err <= 2.0**-(33 - b), (rows, batch, err)

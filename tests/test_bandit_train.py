"""Tests for the jitted, vmapped bandit trainer (prefjax.bandit.train)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax.bandit import train as train_lib
from prefjax.envs import bandit
from prefjax.errors import PrefjaxError
from prefjax.games import psipo


def _dataset_run(objective, pairs, n, num_steps, batch_size, optimizer, betas, lr, seeds, record_every=None,
                 count_batches=True):
  env = bandit.PairDataset(n)
  params = env.make_params(pairs)
  config = train_lib.TrainConfig(objective=objective, num_steps=num_steps, batch_size=batch_size,
                                 record_every=record_every or num_steps, optimizer=optimizer,
                                 count_batches=count_batches)
  train = train_lib.make_train(config, env)
  keys = jax.random.split(jax.random.PRNGKey(0), seeds)
  hparams = train_lib.make_hparams(betas, lr)
  return train, keys, hparams, params, train_lib.make_sweep(train)(keys, hparams, params,
                                                                   jnp.zeros((1, n)))


@pytest.mark.parametrize("pairs,count_batches", [
    ([(0, 1), (1, 2), (0, 2), (2, 3), (3, 1), (0, 3), (0, 1)], False),  # Sampled batches of 16 rows.
    ([(0, 1), (1, 2), (0, 2), (2, 3), (0, 3)], True),  # 126 count vectors: the exact count sampler.
])
def test_sgd_ipo_mean_over_seeds_equals_empirical_minimiser(pairs, count_batches):
  """IPO's mini-batch gradient is unbiased and the loss quadratic in θ, so under plain SGD the mean over
  seeds of the final logits converges to the least-squares minimiser (closest to θ₀ = 0). Action 4 is never
  observed and must keep its initial logit."""
  pairs = np.asarray(pairs)
  tau = 0.5
  batch = 16 if not count_batches else 5
  if count_batches:
    assert bandit.BatchCounts.build(len(pairs), batch) is not None
  _, _, _, _, (state, _) = _dataset_run("ipo", pairs, 5, 3000, batch, "sgd", [tau], 0.05, 256,
                                        count_batches=count_batches)
  logits = np.asarray(state.logits[0, :, 0, :], np.float64)  # [S, N]
  expected = psipo.ipo_empirical_minimiser(pairs[:, 0], pairs[:, 1], 5, tau)
  mean = logits.mean(0)
  se = logits.std(0, ddof=1) / np.sqrt(logits.shape[0])
  assert np.all(np.abs(mean - expected) < 5 * se + 1e-4), (mean, expected, se)
  # Its gradient is π(4) − π(4) per pair: zero up to float32 rounding of the two log-softmax terms.
  np.testing.assert_allclose(logits[:, 4], 0.0, atol=1e-6)


def test_dpo_margins_diverge_on_d1():
  pairs = np.asarray(bandit.named_dataset("d1"))
  _, _, _, _, (_, metrics) = _dataset_run("sigmoid", pairs, 3, 4000, 9, "adam", [0.1, 1.0], 0.01, 2,
                                          record_every=500)
  policy = np.asarray(metrics.policy[:, :, :, 0, :])  # [H, S, R, N]
  margin = np.log(policy[..., 0]) - np.log(policy[..., 2])
  assert np.all(np.diff(margin, axis=-1) > 0)  # The a-vs-c margin grows at every record...
  assert np.all(policy[..., -1, 0] > 0.99)  # ...and π(a) heads to 1 for every τ.


def test_sweep_equals_single_runs_and_records_steps():
  pairs = np.asarray(bandit.named_dataset("unobserved"))
  train, keys, hparams, params, (state, metrics) = _dataset_run(
      "ipo", pairs, 3, 200, 9, "adam", [0.1, 0.5], 0.01, 3, record_every=50)
  np.testing.assert_array_equal(metrics.step[1, 2], [0, 50, 100, 150, 200])
  single_state, single_metrics = jax.jit(train)(keys[2], jax.tree.map(lambda x: x[1], hparams), params,
                                                jnp.zeros((1, 3)))
  np.testing.assert_allclose(state.logits[1, 2], single_state.logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics.policy[1, 2], single_metrics.policy, rtol=1e-5, atol=1e-6)
  # Step 0 is the reference policy; KL starts at 0.
  np.testing.assert_allclose(metrics.policy[:, :, 0], 1 / 3, rtol=1e-6)
  np.testing.assert_allclose(metrics.kl[:, :, 0], 0.0, atol=1e-7)


@pytest.mark.xla_optimized  # 4 000 SGD steps × 64 seeds: running them, not compiling, is the time
def test_online_bandit_dpo_reaches_rlhf_optimum():
  """On an online Bradley–Terry bandit with full-support μ, DPO's population optimum is the RLHF optimum
  softmax(r/β) (docs/theory.md §1); mean over seeds of the final policy matches it to Monte-Carlo error."""
  rewards = np.array([0.5, 0.0, -0.5])
  env = bandit.PreferenceBandit(3)
  from prefjax.games import preferences  # pylint: disable=g-import-not-at-top
  params = env.make_params(preferences.bradley_terry(jnp.asarray(rewards)))
  config = train_lib.TrainConfig(objective="sigmoid", num_steps=4000, batch_size=64, record_every=4000,
                                 optimizer="sgd")
  train = train_lib.make_train(config, env)
  keys = jax.random.split(jax.random.PRNGKey(3), 64)
  state, _ = train_lib.make_sweep(train)(keys, train_lib.make_hparams([1.0], 0.5), params,
                                         jnp.zeros((1, 3)))
  logits = np.asarray(state.logits[0, :, 0, :], np.float64)
  expected = np.log(np.asarray(psipo.rlhf_optimum(rewards, np.full(3, 1 / 3), 1.0)))
  expected -= expected.mean()  # Softmax gradients sum to zero, so the logits keep summing to zero.
  se = logits.std(0, ddof=1) / np.sqrt(logits.shape[0])
  # SGD's O(lr · gradient variance) bias on this non-quadratic loss is below the seeds' standard error here
  # (lr 0.5, batches of 64); 1e-4 covers float32 rounding of the logits.
  assert np.all(np.abs(logits.mean(0) - expected) < 5 * se + 1e-4), (logits.mean(0), expected)


def test_bad_config_errors():
  env = bandit.PairDataset(3)
  with pytest.raises(PrefjaxError, match="known"):
    train_lib.make_train(train_lib.TrainConfig(objective="dpoo"), env)
  with pytest.raises(PrefjaxError, match="multiple of record_every"):
    train_lib.make_train(train_lib.TrainConfig(num_steps=150, record_every=100), env)
  with pytest.raises(PrefjaxError, match="unknown optimizer"):
    train_lib.make_train(train_lib.TrainConfig(optimizer="adamm"), env)

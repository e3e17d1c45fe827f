"""Tests for prefjax.objectives.single (DRO, BCO, JPO, pairwise Cringe, SimpleMix).

Oracles: DRO's closed-form optimum (π* ∝ π_ref e^{r̄/τ}, V* = τ log E_{π_ref} e^{r̄/τ}) reached by gradient
descent on the exact population loss of a tabular contextual problem with Bernoulli rewards; numpy float64
re-implementations of BCO (with TRL's running-mean reward shift), JPO and the Cringe losses; exact counts
for SimpleMix.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prefjax.errors import PrefjaxError
from prefjax.objectives import pairwise
from prefjax.objectives import single


def np_softplus(z):
  return np.logaddexp(0.0, z)


def test_dro_trained_policy_and_value_match_closed_form(x64):
  rng = np.random.default_rng(0)
  num_x, num_y, tau = 2, 5, 0.4
  ref = rng.dirichlet(np.ones(num_y), size=num_x)
  mu = rng.dirichlet(np.ones(num_y) * 2, size=num_x)  # data policy ≠ π_ref, full support
  rbar = rng.uniform(0.1, 0.9, size=(num_x, num_y))  # P(r = 1 | x, y), rewards in {0, 1}
  # Every (x, y, r) cell of the population, with its probability ρ(x) μ(y|x) P(r|x,y), ρ uniform.
  xs, ys, rs = (a.ravel() for a in np.meshgrid(np.arange(num_x), np.arange(num_y), [0.0, 1.0],
                                               indexing="ij"))
  weight = 0.5 * mu[xs, ys] * np.where(rs == 1.0, rbar[xs, ys], 1 - rbar[xs, ys])

  def population_loss(params):
    logp = jax.nn.log_softmax(params["theta"], axis=-1)[xs, ys]
    out = single.dro_losses(logp, jnp.log(ref[xs, ys]), params["v"][xs], rs, tau=tau)
    return jnp.sum(weight * (out.policy + out.value))

  opt = optax.adam(optax.exponential_decay(0.05, 1000, 0.1))  # decay so Adam settles

  def step(carry, _):
    params, state = carry
    grads = jax.grad(population_loss)(params)
    updates, state = opt.update(grads, state)
    return (optax.apply_updates(params, updates), state), None

  params = {"theta": jnp.zeros((num_x, num_y)), "v": jnp.zeros(num_x)}
  (params, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=4000))((params, opt.init(params)))
  pi_star = ref * np.exp(rbar / tau)
  pi_star /= pi_star.sum(-1, keepdims=True)
  v_star = tau * np.log((ref * np.exp(rbar / tau)).sum(-1))
  np.testing.assert_allclose(jax.nn.softmax(params["theta"], -1), pi_star, atol=1e-6)
  np.testing.assert_allclose(params["v"], v_star, atol=1e-6)
  got_pi, got_v = single.dro_optimum(ref, rbar, tau=tau)
  np.testing.assert_allclose(got_pi, pi_star, rtol=1e-12)
  np.testing.assert_allclose(got_v, v_star, rtol=1e-12)


def test_bco_matches_numpy_with_running_shift(x64):
  rng = np.random.default_rng(1)
  state = single.bco_init(jnp.float64)
  seen = []
  for _ in range(2):
    logp, ref = rng.normal(size=6) - 2, rng.normal(size=6) - 2
    good = rng.random(6) < 0.5
    losses, state = single.bco_loss(logp, ref, good, state, beta=0.3)
    r = 0.3 * (logp - ref)
    seen += list(r)
    delta = np.mean(seen)  # the running mean of every reward so far, this batch included
    want = np.where(good, np_softplus(-(r - delta)), np_softplus(r - delta))
    np.testing.assert_allclose(losses, want, rtol=1e-12)
    np.testing.assert_allclose(state.mean, delta, rtol=1e-12)


def test_jpo_is_dpo_across_prompts(x64):
  rng = np.random.default_rng(2)
  pw, rw, pl, rl = (rng.normal(size=5) for _ in range(4))
  got = single.jpo_loss(pw, rw, pl, rl, beta=0.5)
  np.testing.assert_allclose(got, np_softplus(-0.5 * ((pw - rw) - (pl - rl))), rtol=1e-12)
  np.testing.assert_allclose(got, pairwise.pairwise_loss("sigmoid", pw, pl, rw, rl, beta=0.5), rtol=1e-12)


def test_cringe_losses(x64):
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(2, 4, 6))
  tokens = rng.integers(0, 6, size=(2, 4))
  mask = np.array([[0, 1, 1, 1], [1, 1, 0, 0]])
  got = single.cringe_token_losses(logits, tokens, mask, jax.random.key(0), top_k=1)
  # top_k = 1: the positive is the best token other than the negative one (deterministic).
  want = []
  for b in range(2):
    terms = []
    for t in range(4):
      z = logits[b, t].copy()
      neg = z[tokens[b, t]]
      z[tokens[b, t]] = -np.inf
      terms.append(np_softplus(neg - z.max()))
    want.append(np.sum(np.array(terms) * mask[b]) / mask[b].sum())
  np.testing.assert_allclose(got, want, rtol=1e-12)
  # With top_k = 3 every sampled positive is among the 3 best non-negative tokens: the loss lies between
  # the losses against the best and against the 3rd best.
  got3 = np.asarray(single.cringe_token_losses(logits, tokens, mask, jax.random.key(1), top_k=3))
  assert np.all(got3 >= np.asarray(got) - 1e-12)
  pw, pl = np.array([-3.0, -20.0]), np.array([-4.0, -5.0])
  n = np.array([3.0, 2.0])
  loss = single.pairwise_cringe_loss(pw, pl, n, got, alpha=0.7, margin=2.0, temperature=0.5)
  gate = 1 / (1 + np.exp(-(2.0 - (pw - pl)) / 0.5))
  np.testing.assert_allclose(loss, -pw / n + 0.7 * gate * np.asarray(got), rtol=1e-12)


def test_simplemix_counts_and_sources():
  on = {"chosen": jnp.arange(10), "rejected": jnp.arange(10) + 100}
  off = {"chosen": jnp.arange(20) + 1000, "rejected": jnp.arange(20) + 2000}
  mixed = single.simplemix(jax.random.key(0), on, off, num_pairs=12, on_policy_fraction=0.25)
  flags, src = np.asarray(mixed.on_policy), np.asarray(mixed.source_index)
  assert flags.sum() == 3 and (~flags).sum() == 9
  chosen = np.asarray(mixed.pairs["chosen"])
  np.testing.assert_array_equal(chosen, np.where(flags, src, src + 1000))
  np.testing.assert_array_equal(np.asarray(mixed.pairs["rejected"]) - chosen, np.where(flags, 100, 1000))
  assert len(set(zip(flags, src))) == 12  # without replacement
  with pytest.raises(PrefjaxError, match="needs 12 on-policy"):
    single.simplemix(jax.random.key(0), on, off, num_pairs=12, on_policy_fraction=1.0)


def test_bad_input_errors():
  x = np.zeros(3)
  with pytest.raises(PrefjaxError, match="tau must be finite and > 0"):
    single.dro_losses(x, x, x, x, tau=0.0)
  with pytest.raises(PrefjaxError, match="values has shape"):
    single.dro_losses(x, x, np.zeros(2), x, tau=1.0)
  with pytest.raises(PrefjaxError, match="desirable must be a boolean"):
    single.bco_loss(x, x, np.ones(3), single.bco_init(), beta=0.1)
  with pytest.raises(PrefjaxError, match="top_k"):
    single.cringe_token_losses(np.zeros((1, 2, 3)), np.zeros((1, 2), int), np.ones((1, 2)),
                               jax.random.key(0), top_k=3)

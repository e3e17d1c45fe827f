"""Tests for prefjax.objectives.listwise against numpy float64 re-implementations and pairwise reductions.

Oracles: the formulas of docs/theory.md §3 and the papers written out with explicit Python loops in float64
(not vectorised like the library), the K = 2 reductions to `pairwise_loss` (sigmoid, nca_pair), jit ==
no-jit, and brute-force properties of the data-construction helpers.
"""

import itertools

import jax
import numpy as np
import pytest

from prefjax.errors import PrefjaxError
from prefjax.objectives import listwise
from prefjax.objectives import pairwise

BETA = 0.6


def np_log_sigmoid(z):
  return -np.logaddexp(0.0, -z)


def np_softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def np_infonca(s, r, alpha):
  q = np_softmax(r / alpha)
  return -sum(q[k] * (s[k] - np.log(np.exp(s).sum())) for k in range(len(s)))


def np_nca(s, r, alpha):
  q = np_softmax(r / alpha)
  return -sum(q[k] * np_log_sigmoid(s[k]) + np_log_sigmoid(-s[k]) / len(s) for k in range(len(s)))


def np_plackett_luce(s, ranks, top_k=None):
  order = [int(np.where(ranks == j)[0][0]) for j in range(len(s))]
  used = len(s) - 1 if top_k is None else min(top_k, len(s) - 1)
  return -sum(s[order[k]] - np.log(sum(np.exp(s[order[i]]) for i in range(k, len(s))))
              for k in range(used))


def np_pro(logp, lengths, r, sft_weight, use_temperatures):
  order = sorted(range(len(r)), key=lambda i: -r[i])
  rp = [logp[i] / lengths[i] for i in order]
  rf = [r[i] for i in order]
  total = 0.0
  n = len(r)
  for k in range(n - 1):
    inv_t = {i: (rf[k] - rf[i] if use_temperatures else 1.0) for i in range(k + 1, n)}
    inv_t[k] = max(inv_t[i] for i in range(k + 1, n)) if use_temperatures else 1.0
    total -= inv_t[k] * rp[k] - np.log(sum(np.exp(inv_t[i] * rp[i]) for i in range(k, n)))
  return total - sft_weight * (n - 1) ** 2 * logp[order[0]]  # official code: summed log-prob, (K − 1)² λ


def np_lipo(s, psi):
  n = len(s)
  order = sorted(range(n), key=lambda i: -s[i])
  tau = {i: order.index(i) + 1 for i in range(n)}
  total = 0.0
  for i, j in itertools.permutations(range(n), 2):
    if psi[i] > psi[j]:
      gain = abs((2 ** psi[i] - 1) - (2 ** psi[j] - 1))
      delta = gain * abs(1 / np.log(1 + tau[i]) - 1 / np.log(1 + tau[j]))
      total -= delta * np_log_sigmoid(s[i] - s[j])
  return total


def np_mpo(s, r, alpha):
  w = np.exp(alpha * np.abs(r - r.mean()))
  pos = r > r.mean()
  return -np.log((w[pos] * np.exp(s[pos])).sum() / (w * np.exp(s)).sum())


def _batch(rng, b=3, k=4):
  policy = rng.normal(size=(b, k)) - 2.0
  ref = rng.normal(size=(b, k)) - 2.0
  rewards = rng.normal(size=(b, k))
  lengths = rng.integers(1, 6, size=(b, k)).astype(np.float64)
  return policy, ref, rewards, lengths


def test_objectives_match_numpy_float64(x64):
  rng = np.random.default_rng(0)
  policy, ref, rewards, lengths = _batch(rng)
  s = BETA * (policy - ref)
  ranks = np.argsort(np.argsort(-rewards, axis=1), axis=1)
  cases = {
      ("infonca", (("temperature", 0.7),)): [np_infonca(s[b], rewards[b], 0.7) for b in range(3)],
      ("nca", (("temperature", 0.7),)): [np_nca(s[b], rewards[b], 0.7) for b in range(3)],
      ("plackett_luce", ()): [np_plackett_luce(s[b], ranks[b]) for b in range(3)],
      ("plackett_luce", (("top_k", 2),)): [np_plackett_luce(s[b], ranks[b], 2) for b in range(3)],
      ("pro", (("sft_weight", 0.3),)): [np_pro(policy[b], lengths[b], rewards[b], 0.3, True)
                                        for b in range(3)],
      ("pro", (("use_temperatures", False),)): [np_pro(policy[b], lengths[b], rewards[b], 0.0, False)
                                                for b in range(3)],
      ("lipo_lambda", ()): [np_lipo(s[b], rewards[b]) for b in range(3)],
      ("mpo", (("deviation_weight", 0.5),)): [np_mpo(s[b], rewards[b], 0.5) for b in range(3)],
  }
  def all_losses(policy, ref, rewards, ranks):
    out = []
    for name, options in cases:
      kw = dict(rewards=rewards, lengths=lengths, **dict(options))
      if name == "plackett_luce":
        kw["ranks"], kw["rewards"] = ranks, None
      out.append(listwise.listwise_loss(name, policy, ref, beta=BETA, **kw))
    return out

  eager = all_losses(policy, ref, rewards, ranks)
  jitted = jax.jit(all_losses)(policy, ref, rewards, ranks)  # one program for every objective
  for (name, options), want, got, got_jit in zip(cases, cases.values(), eager, jitted):
    np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"{name} {options}")
    np.testing.assert_allclose(got_jit, got, rtol=1e-12, err_msg=f"jit {name} {options}")


def test_k2_reductions_to_pairwise(x64):
  rng = np.random.default_rng(2)
  b = 5
  pw, pl, rw, rl = (rng.normal(size=b) - 1.0 for _ in range(4))
  policy, ref = np.stack([pw, pl], 1), np.stack([rw, rl], 1)
  rewards = np.tile([1.0, 0.0], (b, 1))
  dpo = pairwise.pairwise_loss("sigmoid", pw, pl, rw, rl, beta=BETA)
  # InfoNCA with hard labels: α = 1e-3 makes q = (1, e^{−1000}) = (1, 0) in float64.
  got = listwise.listwise_loss("infonca", policy, ref, beta=BETA, rewards=rewards, temperature=1e-3)
  np.testing.assert_allclose(got, dpo, rtol=1e-12)
  got = listwise.listwise_loss("plackett_luce", policy, ref, beta=BETA, ranks=np.tile([0, 1], (b, 1)))
  np.testing.assert_allclose(got, dpo, rtol=1e-12)
  got = listwise.listwise_loss("mpo", policy, ref, beta=BETA, rewards=rewards)
  np.testing.assert_allclose(got, dpo, rtol=1e-12)
  # LiPO-λ at K = 2: Δ = |G_w − G_l| |1/log 2 − 1/log 3| whatever the current order, times DPO.
  got = listwise.listwise_loss("lipo_lambda", policy, ref, beta=BETA, rewards=rewards)
  np.testing.assert_allclose(got, (1 / np.log(2) - 1 / np.log(3)) * dpo, rtol=1e-12)
  nca = pairwise.pairwise_loss("nca_pair", pw, pl, rw, rl, beta=BETA)
  got = listwise.listwise_loss("nca", policy, ref, beta=BETA, rewards=rewards, temperature=1e-3)
  np.testing.assert_allclose(got, nca, rtol=1e-12)
  # PRO at K = 2 (official code): a logistic loss on the length-normalised policy log-probs (no reference) with
  # the reward gap g = r_w − r_l as inverse temperature, plus λ (K − 1)² = λ times the chosen NLL (summed).
  gap = rng.uniform(0.5, 2.0, size=b)
  lengths = rng.integers(1, 5, size=(b, 2)).astype(np.float64)
  got = listwise.listwise_loss("pro", policy, ref, beta=BETA, rewards=np.stack([gap, np.zeros(b)], 1),
                               lengths=lengths, sft_weight=0.2)
  want = np.logaddexp(0.0, -gap * (pw / lengths[:, 0] - pl / lengths[:, 1])) - 0.2 * pw
  np.testing.assert_allclose(got, want, rtol=1e-12)
  # Swapping the columns (and the labels) changes nothing.
  got = listwise.listwise_loss("plackett_luce", policy[:, ::-1], ref[:, ::-1], beta=BETA,
                               rewards=rewards[:, ::-1])
  np.testing.assert_allclose(got, dpo, rtol=1e-12)


def test_bad_input_errors():
  rng = np.random.default_rng(3)
  policy, ref, rewards, _ = _batch(rng)
  with pytest.raises(PrefjaxError, match="K mismatch: ref_logps has K = 3"):
    listwise.listwise_loss("infonca", policy, ref[:, :3], beta=BETA, rewards=rewards)
  with pytest.raises(PrefjaxError, match="K mismatch: rewards has K = 5"):
    listwise.listwise_loss("infonca", policy, ref, beta=BETA, rewards=np.zeros((3, 5)))
  with pytest.raises(PrefjaxError, match="ranks has ties in row 1"):
    listwise.listwise_loss("plackett_luce", policy, ref, beta=BETA,
                           ranks=np.array([[0, 1, 2, 3], [0, 0, 1, 2], [3, 2, 1, 0]]))
  with pytest.raises(PrefjaxError, match="rewards has ties in row 0"):
    listwise.listwise_loss("plackett_luce", policy, ref, beta=BETA,
                           rewards=np.array([[1.0, 1.0, 0.0, 2.0]] * 3))
  with pytest.raises(PrefjaxError, match="needs rewards"):
    listwise.listwise_loss("lipo_lambda", policy, ref, beta=BETA)
  with pytest.raises(PrefjaxError, match="needs ranks"):
    listwise.listwise_loss("plackett_luce", policy, ref, beta=BETA)
  nan_rewards = rewards.copy()
  nan_rewards[2, 1] = np.nan
  with pytest.raises(PrefjaxError, match=r"missing \(non-finite\) score at \[prompt, response\] = \[2, 1\]"):
    listwise.listwise_loss("nca", policy, ref, beta=BETA, rewards=nan_rewards)
  with pytest.raises(PrefjaxError, match="does not take option"):
    listwise.listwise_loss("nca", policy, ref, beta=BETA, rewards=rewards, top_k=2)
  with pytest.raises(PrefjaxError, match="all scores equal"):
    listwise.listwise_loss("mpo", policy, ref, beta=BETA, rewards=np.ones((3, 4)))
  with pytest.raises(PrefjaxError, match="beta must be finite and > 0"):
    listwise.listwise_loss("nca", policy, ref, beta=-1.0, rewards=rewards)
  with pytest.raises(PrefjaxError, match="unknown listwise objective"):
    listwise.listwise_loss("listnet", policy, ref, beta=BETA, rewards=rewards)
  with pytest.raises(PrefjaxError, match="2-D array"):
    listwise.listwise_loss("nca", policy[0], ref[0], beta=BETA, rewards=rewards[0])


def test_curriculum_pairs():
  rewards = np.array([[3.0, 1.0, 2.0, 0.0], [1.0, 1.0, 5.0, 4.5]])
  pairs = listwise.curriculum_pairs(rewards)
  # best_vs_rest: K − 1 pairs per prompt minus ties with the best; stage j = (best, j-th worst).
  assert len(pairs.prompt) == 3 + 3
  for b, w, l, g in zip(pairs.prompt, pairs.chosen, pairs.rejected, pairs.gap):
    assert w == np.argmax(rewards[b]) and rewards[b, w] - rewards[b, l] == g > 0
  assert list(pairs.stage) == sorted(pairs.stage)
  first = [(b, l) for b, l, s in zip(pairs.prompt, pairs.rejected, pairs.stage) if s == 0]
  assert sorted(first) == [(0, 3), (1, 0)] or sorted(first) == [(0, 3), (1, 1)]
  every = listwise.curriculum_pairs(rewards, scheme="all", num_stages=3)
  want = sum(int(rewards[b, i] > rewards[b, j]) for b in range(2) for i in range(4) for j in range(4))
  assert len(every.gap) == want
  assert np.all(np.diff(every.gap) <= 0)  # easy (large gap) → hard
  assert list(every.stage) == sorted(every.stage) and set(every.stage) == {0, 1, 2}
  with pytest.raises(PrefjaxError, match="all tied"):
    listwise.curriculum_pairs(np.ones((2, 3)))


def test_ampo_select_covers_extremes_and_clusters():
  rng = np.random.default_rng(4)
  centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
  cluster = np.repeat(np.arange(4), 5)
  embeddings = centres[cluster] + 0.1 * rng.normal(size=(20, 2))
  rewards = rng.normal(size=20)
  rewards[3] = 5.0   # best, in cluster 0
  rewards[7] = -5.0  # worst, in cluster 1
  chosen = listwise.ampo_select(rewards, embeddings, 4)
  assert chosen[0] == 3 and chosen[1] == 7
  assert sorted(cluster[chosen]) == [0, 1, 2, 3]  # one per cluster before any repeat
  assert len(set(chosen.tolist())) == 4
  with pytest.raises(PrefjaxError, match="num_select"):
    listwise.ampo_select(rewards, embeddings, 21)

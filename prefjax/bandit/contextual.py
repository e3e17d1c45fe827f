"""A contextual preference bandit with a known reward, K-response data, feature policies and exact evaluation.

The instance (`ContextualParams`) is a finite set of X contexts with features c_x ∈ R^D, each with N candidate
responses y whose joint features φ(x, y) = [e_{x,y}, c_x ⊙ e_{x,y}] ∈ R^{2D} come from response embeddings
e_{x,y}; a reference policy π_ref(y | x) (random logits); and M annotators with known rewards r_m(x, y)
(linear in φ, or a random tanh network of φ), mixed with weights w_m. The oracle reward is r̄ = Σ_m w_m r_m
and the oracle preference is

  P(y ≻ y' | x) = Σ_m w_m σ(r_m(x, y) − r_m(x, y')),

Bradley–Terry for one annotator and a general (not necessarily BT, possibly intransitive) preference for
several — the "non-BT general preference option".

Data (`sample_dataset`): each prompt draws a context x ∼ ρ, K distinct responses from π_ref(· | x) (Gumbel
top-K, i.e. sampling without replacement), an annotator m ∼ w, and with probability `noise` the annotator's
utility is negated (a label flip). Labels in every format come from that one draw, so the formats are
consistent: a Plackett–Luce ranking of the K responses under the utilities u_k = ±r_m(x, y_k) (Gumbel-max
sort), the pair (y_1, y_2) labelled by their order in that ranking (PL's pairwise marginals are BT, so the pair
is a BT pair with flips at rate `noise`), and scalar scores u_k + σ_s ξ_k.

Policies (`init_policy`, `policy_logits`): logits(x, y) = log π_ref(y | x) + f_θ(φ(x, y)) with f linear
(θ ∈ R^{2D}) or a one-hidden-layer tanh MLP whose output layer starts at zero, so every policy starts at π_ref.
With a linear reward the linear class contains the KL-regularised optimum
π*_β(y | x) ∝ π_ref(y | x) e^{r̄(x, y)/β} (its θ is w̄/β).

Exact evaluation over the finite context set (`evaluate`): expected oracle reward, KL(π ‖ π_ref), win rate
against π_ref under P, total-variation distance to π*_β, and an FSD metric (the measure of quantile levels
t where the policy's oracle-reward quantile is below π_ref's: 0 means the policy's reward distribution
first-order stochastically dominates the reference's; docs/theory.md §5). All averages are over x ∼ ρ.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.games import tabular

REWARD_KINDS = ("linear", "mlp")
POLICY_KINDS = ("linear", "mlp")


class ContextualParams(NamedTuple):
  """A contextual preference bandit instance (everything an exact evaluation needs).

  Attributes:
    context_features: `[X, D]` c_x.
    features: `[X, N, F]` φ(x, y), F = 2D.
    ref_logits: `[X, N]` log π_ref(y | x) (normalised).
    annotator_rewards: `[M, X, N]` r_m(x, y).
    annotator_weights: `[M]` w_m (sum to 1).
    context_probs: `[X]` ρ(x).
  """
  context_features: jax.Array
  features: jax.Array
  ref_logits: jax.Array
  annotator_rewards: jax.Array
  annotator_weights: jax.Array
  context_probs: jax.Array

  @property
  def rewards(self):
    """`[X, N]` oracle reward r̄ = Σ_m w_m r_m."""
    return jnp.einsum("m,mxn->xn", self.annotator_weights, self.annotator_rewards)

  @property
  def preference(self):
    """`[X, N, N]` P(y ≻ y' | x) = Σ_m w_m σ(r_m(y) − r_m(y'))."""
    r = self.annotator_rewards
    return jnp.einsum("m,mxij->xij", self.annotator_weights, jax.nn.sigmoid(r[..., :, None] - r[..., None, :]))


def make_params(key, *, num_contexts=64, num_responses=16, context_dim=4, reward_kind="linear",
                reward_scale=1.0, ref_scale=1.0, num_annotators=1, annotator_weights=None, hidden=16):
  """Draws a random contextual preference bandit (numpy-free, pure in `key`).

  Args:
    key: PRNG key.
    num_contexts: X ≥ 1.
    num_responses: N ≥ 2 candidate responses per context.
    context_dim: D ≥ 1 (features φ have F = 2D dimensions).
    reward_kind: "linear" (r_m = w_m·φ: the optimum is realisable by a linear policy) or "mlp"
      (r_m = v_m·tanh(W_m φ), misspecified for a linear policy).
    reward_scale: standard deviation of each annotator's rewards over (x, y) (they are rescaled to it).
    ref_scale: standard deviation of π_ref's logits (0 gives a uniform π_ref).
    num_annotators: M ≥ 1; M = 1 is Bradley–Terry, M > 1 a general preference (a mixture of BT annotators).
    annotator_weights: `[M]` mixture weights (default uniform).
    hidden: width of the "mlp" reward network.

  Returns:
    `ContextualParams`.
  """
  if reward_kind not in REWARD_KINDS:
    raise PrefjaxError(f"reward_kind must be one of {REWARD_KINDS}, got {reward_kind!r}")
  for value, name, low in ((num_contexts, "num_contexts", 1), (num_responses, "num_responses", 2),
                           (context_dim, "context_dim", 1), (num_annotators, "num_annotators", 1),
                           (hidden, "hidden", 1)):
    if not isinstance(value, (int, np.integer)) or value < low:
      raise PrefjaxError(f"{name} must be an integer >= {low}, got {value!r}")
  if not (np.isfinite(reward_scale) and reward_scale > 0):
    raise PrefjaxError(f"reward_scale must be finite and > 0, got {reward_scale}")
  if not (np.isfinite(ref_scale) and ref_scale >= 0):
    raise PrefjaxError(f"ref_scale must be finite and >= 0, got {ref_scale}")
  if annotator_weights is None:
    weights = jnp.full((num_annotators,), 1.0 / num_annotators, jnp.float32)
  else:
    w = np.asarray(annotator_weights, np.float64)
    if w.shape != (num_annotators,) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
      raise PrefjaxError(
          f"annotator_weights must be {num_annotators} non-negative numbers summing to 1, got {w.tolist()}")
    weights = jnp.asarray(w, jnp.float32)
  return _draw_params(key, weights, num_contexts, num_responses, context_dim, reward_kind, float(reward_scale),
                      float(ref_scale), num_annotators, hidden)


@functools.partial(jax.jit, static_argnums=tuple(range(2, 10)))
def _draw_params(key, weights, num_contexts, num_responses, context_dim, reward_kind, reward_scale, ref_scale,
                 num_annotators, hidden):
  """The jitted body of `make_params` (one compiled program instead of many eager ops)."""
  k_ctx, k_emb, k_ref, k_rew = jax.random.split(key, 4)
  context = jax.random.normal(k_ctx, (num_contexts, context_dim))
  emb = jax.random.normal(k_emb, (num_contexts, num_responses, context_dim))
  features = jnp.concatenate([emb, context[:, None, :] * emb], axis=-1)
  ref_logits = jax.nn.log_softmax(ref_scale * jax.random.normal(k_ref, (num_contexts, num_responses)), -1)
  f = 2 * context_dim
  rewards = []
  for k in jax.random.split(k_rew, num_annotators):
    k1, k2 = jax.random.split(k)
    if reward_kind == "linear":
      r = features @ jax.random.normal(k1, (f,))
    else:
      h = jnp.tanh(features @ (jax.random.normal(k1, (f, hidden)) / np.sqrt(f)))
      r = h @ jax.random.normal(k2, (hidden,))
    rewards.append(reward_scale * (r - r.mean()) / r.std())
  return ContextualParams(context, features, ref_logits, jnp.stack(rewards), weights,
                          jnp.full((num_contexts,), 1.0 / num_contexts, jnp.float32))


def optimal_logits(params, beta):
  """`[X, N]` log π*_β(y | x) = log softmax(log π_ref + r̄/β): the KL-regularised reward maximiser."""
  return jax.nn.log_softmax(params.ref_logits + params.rewards / beta, axis=-1)


# ----------------------------------------------------------------------------------------------------
# Data.
# ----------------------------------------------------------------------------------------------------


class Dataset(NamedTuple):
  """K-response preference data for P prompts; every label format from the same annotator draw.

  Attributes:
    context: `[P]` int32 context index x.
    responses: `[P, K]` int32 response indices (distinct within a prompt), sampled from π_ref(· | x).
    ranks: `[P, K]` int32 Plackett–Luce ranks (0 = best) under the (possibly flipped) annotator utilities.
    scores: `[P, K]` noisy scalar scores u_k + σ_s ξ_k.
    chosen: `[P]` int32 which of the first two responses (column 0 or 1) won: the pair label.
    flipped: `[P]` bool, whether this prompt's labels were flipped (for diagnostics).
  """
  context: jax.Array
  responses: jax.Array
  ranks: jax.Array
  scores: jax.Array
  chosen: jax.Array
  flipped: jax.Array


def check_dataset(data, params=None):
  """Shape checks: every `[P, K]` field has the same P and K (K ≥ 2, K ≤ N); raises `PrefjaxError`."""
  p, k = data.responses.shape
  for name in ("ranks", "scores"):
    shape = getattr(data, name).shape
    if shape != (p, k):
      raise PrefjaxError(f"K mismatch: dataset {name} has shape {shape} but responses has {(p, k)}")
  for name in ("context", "chosen", "flipped"):
    if getattr(data, name).shape != (p,):
      raise PrefjaxError(f"dataset {name} has shape {getattr(data, name).shape}, expected {(p,)}")
  if k < 2:
    raise PrefjaxError(f"the dataset has K = {k} responses per prompt; preference data needs K >= 2")
  if params is not None and k > params.ref_logits.shape[1]:
    raise PrefjaxError(f"K = {k} responses per prompt but the bandit has only N = "
                       f"{params.ref_logits.shape[1]} responses per context")


def sample_dataset(key, params, num_prompts, k, *, noise=0.0, score_noise=0.0):
  """Samples `num_prompts` prompts with K responses each (see the module docstring); jit/vmap-friendly.

  Args:
    key: PRNG key.
    params: `ContextualParams`.
    num_prompts: P (static).
    k: K responses per prompt, 2 ≤ K ≤ N (static).
    noise: flip rate ε ∈ [0, ½] (may be traced): the annotator's utility is negated with probability ε.
    score_noise: σ_s ≥ 0 of the Gaussian noise on scalar scores (may be traced).

  Returns:
    `Dataset`.
  """
  n = params.ref_logits.shape[1]
  if not isinstance(k, (int, np.integer)) or not 2 <= k <= n:
    raise PrefjaxError(f"K (responses per prompt) must be an integer in [2, N = {n}], got {k!r}")
  if not isinstance(num_prompts, (int, np.integer)) or num_prompts < 1:
    raise PrefjaxError(f"num_prompts must be a positive integer, got {num_prompts!r}")
  for value, name in ((noise, "noise"), (score_noise, "score_noise")):
    if not isinstance(value, jax.core.Tracer):
      v = np.asarray(value)
      if v.ndim or not np.isfinite(v) or v < 0 or (name == "noise" and v > 0.5):
        raise PrefjaxError(f"{name} must be a finite scalar in [0, {'0.5' if name == 'noise' else 'inf'}), "
                           f"got {value!r}")
  return _sample(key, params, noise, score_noise, num_prompts, k)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _sample(key, params, noise, score_noise, num_prompts, k):
  """The jitted body of `sample_dataset`."""
  n = params.ref_logits.shape[1]
  k_ctx, k_resp, k_ann, k_flip, k_rank, k_score = jax.random.split(key, 6)
  context = jax.random.categorical(k_ctx, jnp.log(params.context_probs), shape=(num_prompts,))
  gumbel = jax.random.gumbel(k_resp, (num_prompts, n))
  _, responses = jax.lax.top_k(params.ref_logits[context] + gumbel, k)  # K draws without replacement.
  annotator = jax.random.categorical(k_ann, jnp.log(params.annotator_weights), shape=(num_prompts,))
  flipped = jax.random.bernoulli(k_flip, noise, (num_prompts,))
  utility = params.annotator_rewards[annotator[:, None], context[:, None], responses]
  utility = jnp.where(flipped[:, None], -utility, utility)
  order = jnp.argsort(-(utility + jax.random.gumbel(k_rank, utility.shape)), axis=-1)  # PL sample.
  ranks = jnp.argsort(order, axis=-1).astype(jnp.int32)
  scores = utility + score_noise * jax.random.normal(k_score, utility.shape)
  chosen = (ranks[:, 1] < ranks[:, 0]).astype(jnp.int32)
  return Dataset(context.astype(jnp.int32), responses.astype(jnp.int32), ranks, scores, chosen, flipped)


# ----------------------------------------------------------------------------------------------------
# Policies.
# ----------------------------------------------------------------------------------------------------


def init_policy(key, kind, feature_dim, hidden=32):
  """Parameters of a `kind` ("linear" or "mlp") policy; the output starts at 0, so π₀ = π_ref.

  Args:
    key: PRNG key (the MLP's hidden layer is random; the linear policy starts at θ = 0).
    kind: "linear" (θ `[F]`) or "mlp" ({w1 `[F, H]`, b1 `[H]`, w2 `[H]` = 0}).
    feature_dim: F.
    hidden: H.

  Returns:
    A dict of arrays.
  """
  if kind not in POLICY_KINDS:
    raise PrefjaxError(f"policy kind must be one of {POLICY_KINDS}, got {kind!r}")
  if kind == "linear":
    return {"theta": jnp.zeros((feature_dim,), jnp.float32)}
  return {"w1": jax.random.normal(key, (feature_dim, hidden)) / np.sqrt(feature_dim),
          "b1": jnp.zeros((hidden,), jnp.float32), "w2": jnp.zeros((hidden,), jnp.float32)}


def policy_logits(policy, params):
  """`[X, N]` log π_θ(y | x) = log softmax(log π_ref + f_θ(φ)) for a policy from `init_policy`."""
  if "theta" in policy:
    offset = params.features @ policy["theta"]
  else:
    offset = jnp.tanh(params.features @ policy["w1"] + policy["b1"][None, None, :]) @ policy["w2"]
  return jax.nn.log_softmax(params.ref_logits + offset, axis=-1)


# ----------------------------------------------------------------------------------------------------
# Exact evaluation.
# ----------------------------------------------------------------------------------------------------


class Evaluation(NamedTuple):
  """Exact metrics of a policy (each a scalar, averaged over x ∼ ρ)."""
  reward: jax.Array  # E_x E_{y∼π} r̄(x, y).
  kl: jax.Array  # E_x KL(π(·|x) ‖ π_ref(·|x)).
  win_rate: jax.Array  # E_x p(π ≻ π_ref | x) = E_x πᵀ P π_ref.
  tv_to_optimum: jax.Array  # E_x ½ ‖π(·|x) − π*_β(·|x)‖₁.
  fsd_violation: jax.Array  # measure of {t : Q_π(t) < Q_ref(t)} for the oracle-reward distributions.


def fsd_violation_weighted(values, weights_p, weights_q):
  """Exact measure of {t ∈ (0, 1) : Q_p(t) < Q_q(t)} for two discrete distributions on the same atoms.

  Q(t) = min{v : F(v) ≥ t} (left-continuous quantile). Q_p(t) < Q_q(t) iff some atom v has
  F_q(v) < t ≤ F_p(v), so the set is the union over atoms of (F_q(v), F_p(v)]; with atoms sorted both ends are
  non-decreasing and the union's measure is Σ_i max(0, b_i − max(a_i, b_{i−1})), a = F_q, b = F_p, b_0 = 0.
  Tied values use the CDF at the end of their tie group. For equal weights 1/n on n samples this is
  `prefjax.objectives.ot.fsd_violation(p_samples, q_samples)`.

  Args:
    values: `[A]` atom values.
    weights_p: `[A]` probabilities of p (sum 1).
    weights_q: `[A]` probabilities of q (sum 1).

  Returns:
    Scalar in [0, 1]; 0 iff p first-order stochastically dominates q.
  """
  order = jnp.argsort(values)
  v = values[order]
  group_end = jnp.searchsorted(v, v, side="right") - 1
  a = jnp.cumsum(weights_q[order])[group_end]
  b = jnp.cumsum(weights_p[order])[group_end]
  b_prev = jnp.concatenate([jnp.zeros((1,), b.dtype), b[:-1]])
  return jnp.sum(jnp.maximum(0.0, b - jnp.maximum(a, b_prev)))


def evaluate(logits, params, beta):
  """Exact metrics of the policy softmax(`logits`) on the bandit `params` (see `Evaluation`).

  Args:
    logits: `[X, N]` policy logits (normalised or not).
    params: `ContextualParams`.
    beta: scalar β > 0 of the optimum π*_β ∝ π_ref e^{r̄/β}.

  Returns:
    `Evaluation` of scalars.
  """
  if logits.shape != params.ref_logits.shape:
    raise PrefjaxError(f"policy logits have shape {logits.shape} but the bandit has [X, N] = "
                       f"{params.ref_logits.shape}")
  return _evaluate(logits, params, beta)


@jax.jit
def _evaluate(logits, params, beta):
  """The jitted body of `evaluate`."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  pi = jnp.exp(logp)
  ref = jnp.exp(params.ref_logits)
  rho = params.context_probs
  reward = jnp.sum(rho[:, None] * pi * params.rewards)
  kl = jnp.sum(rho * tabular.kl_from_logits(logp, params.ref_logits))
  win = jnp.sum(rho * tabular.win_rate(params.preference, pi, ref))
  tv = jnp.sum(rho * 0.5 * jnp.abs(pi - jnp.exp(optimal_logits(params, beta))).sum(-1))
  fsd = fsd_violation_weighted(params.rewards.reshape(-1), (rho[:, None] * pi).reshape(-1),
                               (rho[:, None] * ref).reshape(-1))
  return Evaluation(reward, kl, win, tv, fsd)

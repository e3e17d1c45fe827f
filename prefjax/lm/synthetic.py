"""A synthetic LM preference task with a known answer: every quantity of THEORY.md §9 exactly.

Sequences are one prompt token x ∈ {0, …, C−1} followed by a response y of R tokens over the whole
vocabulary {0, …, V−1} (tokens `[x, y_1, …, y_R]`, L = R + 1). The response space has N = V^R elements,
small enough to enumerate: one forward pass over all C·N sequences gives π(y|x) exactly, so the oracle
metrics below are exact, not Monte-Carlo.

- Known SFT distribution μ(y|x) = Π_t softmax(φ_{x,t})_{y_t}, φ ~ N(0, sft_scale²) from the task seed.
  The reference policy π_ref is the transformer trained by SFT on μ: exact expected cross-entropy
  −E_x Σ_y μ(y|x) log π(y|x) (its minimiser is μ; `reference_kl_to_sft` reports how close it got).
- Oracle reward r(x, y) = Σ_t θ_{x,t,y_t}, θ ~ N(0, reward_scale²); preferences are Bradley–Terry,
  p(y ≻ y' | x) = σ(r(x,y) − r(x,y')).
- Offline data: x uniform, y, y' ~ π_ref(·|x) independently, labelled by a Bernoulli draw from p(y ≻ y').
- Exact evaluation of a policy π: expected oracle reward E_x E_{y∼π} r, win rate against π_ref
  E_x Σ_{y,y'} π(y|x) π_ref(y'|x) p(y ≻ y'|x), and KL(π ‖ π_ref) averaged over prompts.
- Closed-form optima (Azar et al. 2310.12036, §4): with μ = π_ref the ΨPO optimum is
  π*(y|x) ∝ π_ref(y|x) exp(E_{y'∼π_ref} Ψ(p(y ≻ y'|x)) / β); Ψ = logit gives DPO/RLHF's optimum
  π_ref e^{r/β} (up to normalisation), Ψ = identity IPO's, whose KL stays bounded (≤ 1/β-scale) whatever
  the data size, while DPO's empirical minimiser can drift further (the paper's §4.2 argument).
"""

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prefjax.errors import PrefjaxError
from prefjax.games import psipo
from prefjax.lm import logprobs
from prefjax.lm import model as lm_model


class SyntheticTask(NamedTuple):
  """The task's arrays (numpy).

  Attributes:
    num_prompts: C.
    vocab_size: V.
    response_len: R.
    responses_NxR: every response, N = V^R rows.
    sft_logits_CxRxV: φ, the known SFT distribution's per-position logits.
    reward_table_CxRxV: θ, the oracle reward's per-position table.
    rewards_CxN: r(x, y) for every prompt and response.
    sft_logp_CxN: log μ(y|x).
  """
  num_prompts: int
  vocab_size: int
  response_len: int
  responses_NxR: np.ndarray
  sft_logits_CxRxV: np.ndarray
  reward_table_CxRxV: np.ndarray
  rewards_CxN: np.ndarray
  sft_logp_CxN: np.ndarray

  @property
  def seq_len(self):
    return self.response_len + 1

  @property
  def num_responses(self):
    return self.responses_NxR.shape[0]


def make_task(seed=0, num_prompts=4, vocab_size=6, response_len=3, sft_scale=1.0, reward_scale=1.0):
  """Builds the task's tables from `seed` (numpy; deterministic)."""
  for name, v in (("num_prompts", num_prompts), ("vocab_size", vocab_size), ("response_len", response_len)):
    if not isinstance(v, (int, np.integer)) or v < 1:
      raise PrefjaxError(f"make_task: {name} must be a positive integer, got {v!r}")
  if num_prompts > vocab_size:
    raise PrefjaxError(f"make_task: num_prompts={num_prompts} must be <= vocab_size={vocab_size} "
                       f"(prompts are tokens)")
  if vocab_size ** response_len > 50_000:
    raise PrefjaxError(f"make_task: V^R = {vocab_size ** response_len} responses is too many to enumerate")
  rng = np.random.default_rng(seed)
  phi = sft_scale * rng.standard_normal((num_prompts, response_len, vocab_size))
  theta = reward_scale * rng.standard_normal((num_prompts, response_len, vocab_size))
  responses = np.array(list(itertools.product(range(vocab_size), repeat=response_len)), np.int32)
  pos = np.arange(response_len)
  rewards = theta[:, pos[None, :], responses].sum(-1)  # [C, N]
  logmu = phi - np.log(np.exp(phi).sum(-1, keepdims=True))
  sft_logp = logmu[:, pos[None, :], responses].sum(-1)
  return SyntheticTask(num_prompts, vocab_size, response_len, responses, phi, theta, rewards, sft_logp)


def all_sequences(task):
  """`(tokens [C·N, L], loss_mask [C·N, L])`: every prompt followed by every response, row-major in (x, y)."""
  c, n = task.num_prompts, task.num_responses
  prompts = np.repeat(np.arange(c, dtype=np.int32), n)[:, None]
  tokens = np.concatenate([prompts, np.tile(task.responses_NxR, (c, 1))], axis=1)
  mask = np.ones_like(tokens)
  mask[:, 0] = 0
  return tokens, mask


def model_config(task, d_model=32, num_layers=2, num_heads=2, d_ff=64, style="gpt2", **kwargs):
  """A small `TransformerConfig` for the task.

  GPT-2 style by default: μ depends on the absolute position, which learned positions give directly (a
  2-layer RoPE model only sees relative positions and fits μ an order of magnitude worse in KL).
  """
  return lm_model.TransformerConfig(vocab_size=task.vocab_size, d_model=d_model, num_layers=num_layers,
                                    num_heads=num_heads, d_ff=d_ff, max_len=task.seq_len, style=style, **kwargs)


def make_policy_logp(task, config):
  """`fn(params) -> [C, N]` exact log π(y|x) for every prompt and response (one forward pass)."""
  tokens, mask = all_sequences(task)
  tokens, mask = jnp.asarray(tokens), jnp.asarray(mask)
  apply_fn = lm_model.Transformer(config).apply

  def fn(params):
    out = logprobs.policy_logps(apply_fn, params, tokens, mask)
    return out.logps.reshape(task.num_prompts, task.num_responses)

  return fn


def train_reference(task, config, key, *, num_steps=300, learning_rate=3e-3):
  """SFT of the reference policy: minimises −E_x Σ_y μ(y|x) log π(y|x) exactly (Adam, full batch).

  Returns:
    `(variables, final cross-entropy minus entropy of μ = mean_x KL(μ ‖ π_ref))`.
  """
  variables = lm_model.init_params(config, key)
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  params = nn.unbox(variables)
  logp_fn = make_policy_logp(task, config)
  mu = jnp.asarray(np.exp(task.sft_logp_CxN), jnp.float32)
  entropy = float(-(np.exp(task.sft_logp_CxN) * task.sft_logp_CxN).sum(-1).mean())
  tx = optax.adam(learning_rate)

  def loss(p):
    return -jnp.mean(jnp.sum(mu * logp_fn(p), axis=-1))

  @jax.jit
  def run(p):
    def body(carry, _):
      p, s = carry
      value, g = jax.value_and_grad(loss)(p)
      u, s = tx.update(g, s, p)
      return (optax.apply_updates(p, u), s), value
    (p, _), _ = jax.lax.scan(body, (p, tx.init(p)), None, length=num_steps)
    return p, loss(p)

  params, ce = run(params)
  return params, float(ce) - entropy


def make_pairs(task, ref_logp_CxN, num_pairs, key):
  """Offline preference pairs: x uniform, y, y' ~ π_ref(·|x), label ~ Bernoulli(σ(r − r')).

  Returns:
    A dict with the batch contract's `[num_pairs, L]` int32 arrays plus `prompt`, `chosen_index`,
    `rejected_index` (ints into the enumeration).
  """
  kx, ky, kl = jax.random.split(key, 3)
  x = np.asarray(jax.random.randint(kx, (num_pairs,), 0, task.num_prompts))
  logits = jnp.asarray(ref_logp_CxN)[x]
  ys = np.asarray(jax.random.categorical(ky, logits[:, None, :], axis=-1, shape=(num_pairs, 2)))
  r = task.rewards_CxN[x[:, None], ys]
  p_first = 1.0 / (1.0 + np.exp(-(r[:, 0] - r[:, 1])))
  first_wins = np.asarray(jax.random.uniform(kl, (num_pairs,))) < p_first
  chosen = np.where(first_wins, ys[:, 0], ys[:, 1])
  rejected = np.where(first_wins, ys[:, 1], ys[:, 0])
  out = {"prompt": x.astype(np.int32), "chosen_index": chosen.astype(np.int32),
         "rejected_index": rejected.astype(np.int32)}
  mask = np.ones((num_pairs, task.seq_len), np.int32)
  mask[:, 0] = 0
  for side, idx in (("chosen", chosen), ("rejected", rejected)):
    out[f"{side}_tokens_BxL"] = np.concatenate([x[:, None], task.responses_NxR[idx]], 1).astype(np.int32)
    out[f"{side}_loss_mask_BxL"] = mask.copy()
    out[f"{side}_attention_mask_BxL"] = np.ones((num_pairs, task.seq_len), np.int32)
  return out


def preference_matrix(task):
  """`[C, N, N]` Bradley–Terry p(y ≻ y' | x) = σ(r(x,y) − r(x,y'))."""
  r = task.rewards_CxN
  return 1.0 / (1.0 + np.exp(-(r[:, :, None] - r[:, None, :])))


def evaluate(task, policy_logp_CxN, ref_logp_CxN):
  """Exact oracle metrics of π against π_ref (float64, numpy).

  Returns:
    dict: reward (E_x E_{y∼π} r), win_rate (E_x p(π ≻ π_ref | x)), kl (E_x KL(π ‖ π_ref)).
  """
  lp = np.asarray(policy_logp_CxN, np.float64)
  lq = np.asarray(ref_logp_CxN, np.float64)
  shape = (task.num_prompts, task.num_responses)
  if lp.shape != shape or lq.shape != shape:
    raise PrefjaxError(f"evaluate: log-probs must be [num_prompts, num_responses] = {shape}, got "
                       f"{lp.shape} and {lq.shape}")
  lp = lp - np.logaddexp.reduce(lp, axis=-1, keepdims=True)  # renormalise float32 rounding
  lq = lq - np.logaddexp.reduce(lq, axis=-1, keepdims=True)
  p, q = np.exp(lp), np.exp(lq)
  pref = preference_matrix(task)
  return {
      "reward": float(np.mean(np.sum(p * task.rewards_CxN, -1))),
      "win_rate": float(np.mean(np.einsum("cn,cnm,cm->c", p, pref, q))),
      "kl": float(np.mean(np.sum(p * (lp - lq), -1))),
  }


def optimum(task, ref_logp_CxN, beta, psi):
  """The ΨPO population optimum with μ = π_ref (psi: "logit" = DPO/RLHF, "identity" = IPO); `[C, N]` log-probs."""
  lq = np.asarray(ref_logp_CxN, np.float64)
  q = np.exp(lq - np.logaddexp.reduce(lq, axis=-1, keepdims=True))
  with jax.enable_x64(True):
    pi = psipo.psipo_optimum(jnp.asarray(preference_matrix(task)), jnp.asarray(q), jnp.asarray(q),
                             beta, psi=psi)
    return np.log(np.maximum(np.asarray(pi), 1e-300))

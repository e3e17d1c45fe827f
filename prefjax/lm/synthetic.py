"""A synthetic LM preference task with a known answer: every quantity of docs/theory.md §9 exactly.

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
- Non-transitive variant (`nontransitive_scale` s > 0): per-token cycle tables
  B[x, t] (antisymmetric V×V, see `make_task`) enter the general preference
  p(y ≻ y' | x) = σ(r(x,y) − r(x,y') + Σ_t B[x, t, y_t, y'_t]); B = 0 at s = 0 gives Bradley–Terry exactly.
  The preference game's regularised Nash equilibrium (Munos et al. 2312.00886), its exploitability and
  duality gap are then exact too (`nash_equilibrium`, `evaluate(..., beta=)`, `win_rate_vs`), and so is
  the point where exact online DPO settles (`online_dpo_fixed_point`); `response_index` maps sampled
  responses into the enumeration.
- Closed-form optima (Azar et al. 2310.12036, §4): with μ = π_ref the ΨPO optimum is
  π*(y|x) ∝ π_ref(y|x) exp(E_{y'∼π_ref} Ψ(p(y ≻ y'|x)) / β); Ψ = logit gives DPO/RLHF's optimum
  π_ref e^{r/β} (up to normalisation), Ψ = identity IPO's, whose KL stays bounded (≤ 1/β-scale) whatever
  the data size, while DPO's empirical minimiser can drift further (the paper's §4.2 argument).
"""

import itertools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prefjax.errors import PrefjaxError
from prefjax.games import nash
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
    cycle_tables_CxRxVxV: B, the non-transitive per-token cycle tables (antisymmetric in the last two
      axes), or None (= zeros: Bradley–Terry). Last field, default None, so older constructions still work.
  """
  num_prompts: int
  vocab_size: int
  response_len: int
  responses_NxR: np.ndarray
  sft_logits_CxRxV: np.ndarray
  reward_table_CxRxV: np.ndarray
  rewards_CxN: np.ndarray
  sft_logp_CxN: np.ndarray
  cycle_tables_CxRxVxV: Optional[np.ndarray] = None

  @property
  def seq_len(self):
    return self.response_len + 1

  @property
  def num_responses(self):
    return self.responses_NxR.shape[0]


# Recommended `nontransitive_scale` for a clearly non-transitive task (see `make_task`).
NONTRANSITIVE_SCALE = 2.0


def _cycle_tables(rng, num_prompts, response_len, vocab_size):
  """Unit-scale per-token cycles: sin(2π (ρ(a) − ρ(b)) / V) for a uniformly random permutation ρ per (x, t)."""
  rho = np.argsort(rng.random((num_prompts, response_len, vocab_size)), axis=-1)
  b = np.sin(2.0 * np.pi * (rho[..., :, None] - rho[..., None, :]) / vocab_size)
  return 0.5 * (b - np.swapaxes(b, -1, -2))  # exactly antisymmetric in floating point


def make_task(seed=0, num_prompts=4, vocab_size=6, response_len=3, sft_scale=1.0, reward_scale=1.0,
              nontransitive_scale=0.0):
  """Builds the task's tables from `seed` (numpy; deterministic).

  The non-transitive part: for every prompt x and position t, a uniformly random permutation ρ_{x,t} places
  the V tokens on a circle and B[x, t, a, b] = s · sin(2π (ρ(a) − ρ(b)) / V) — a generalised
  rock–paper–scissors (V = 3: RPS with strength s·sin(2π/3)): every token beats the tokens less than half
  a turn behind it and loses to those less than half a turn ahead (diametric pairs tie for even V; V ≤ 2
  admits no cycle, B = 0). The general preference is p(y ≻ y'|x) = σ(r(x,y) − r(x,y') + Σ_t B[x,t,y_t,y'_t]),
  with B antisymmetric, so p + pᵀ = 1. A sequence-level Condorcet winner must be a token-level Condorcet
  winner at every position of the per-token game θ_a − θ_b + B_ab, which the cycles destroy once
  s·sin(2π/V) exceeds the reward's per-token spread. At the recommended `NONTRANSITIVE_SCALE` = 2 (with
  reward_scale = 1, the default task V = 6, R = 3, C = 4) 3 of seed 0's 4 prompts have no Condorcet winner
  (78 of the 80 prompts of seeds 0–19; 0 of 80 without cycles). With π_ref = μ (seed 0) the stationary
  point of exact tabular online DPO (pairs from π, Σ_y' π(y') [σ(β(ℓ_y − ℓ_y')) − P_yy'] = 0) has duality
  gap 0.79 at β = 0.5 and 0.61 at β = 1 (π_ref's: 0.067, 0.034; π*_β's: 0) and exploitability 0.20 / 0.30.

  φ and θ are drawn first from the seed's stream, then the permutations, so φ, θ (hence every task with
  `nontransitive_scale=0`, whose B is exactly zero) are unchanged from older versions.

  Args:
    seed: numpy seed of the tables.
    num_prompts: C (≤ V: prompts are tokens).
    vocab_size: V.
    response_len: R (V^R ≤ 50 000 responses are enumerated).
    sft_scale: std of the SFT logits φ.
    reward_scale: std of the per-token reward θ.
    nontransitive_scale: s ≥ 0, the cycles' amplitude (0: Bradley–Terry).

  Returns:
    A `SyntheticTask`.
  """
  for name, v in (("num_prompts", num_prompts), ("vocab_size", vocab_size), ("response_len", response_len)):
    if not isinstance(v, (int, np.integer)) or v < 1:
      raise PrefjaxError(f"make_task: {name} must be a positive integer, got {v!r}")
  if num_prompts > vocab_size:
    raise PrefjaxError(f"make_task: num_prompts={num_prompts} must be <= vocab_size={vocab_size} "
                       f"(prompts are tokens)")
  if vocab_size ** response_len > 50_000:
    raise PrefjaxError(f"make_task: V^R = {vocab_size ** response_len} responses is too many to enumerate")
  if not np.isfinite(nontransitive_scale) or nontransitive_scale < 0:
    raise PrefjaxError(f"make_task: nontransitive_scale must be finite and >= 0, got {nontransitive_scale!r}")
  rng = np.random.default_rng(seed)
  phi = sft_scale * rng.standard_normal((num_prompts, response_len, vocab_size))
  theta = reward_scale * rng.standard_normal((num_prompts, response_len, vocab_size))
  responses = np.array(list(itertools.product(range(vocab_size), repeat=response_len)), np.int32)
  pos = np.arange(response_len)
  rewards = theta[:, pos[None, :], responses].sum(-1)  # [C, N]
  logmu = phi - np.log(np.exp(phi).sum(-1, keepdims=True))
  sft_logp = logmu[:, pos[None, :], responses].sum(-1)
  cycles = float(nontransitive_scale) * _cycle_tables(rng, num_prompts, response_len, vocab_size)
  if nontransitive_scale == 0:
    cycles = np.zeros_like(cycles)
  return SyntheticTask(num_prompts, vocab_size, response_len, responses, phi, theta, rewards, sft_logp, cycles)


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
  """Offline preference pairs: x uniform, y, y' ~ π_ref(·|x), label ~ Bernoulli(p(y ≻ y'|x)).

  p is the task's general preference (`preference_matrix`): σ(r − r') for a Bradley–Terry task, with the
  cycle term for a non-transitive one.

  Returns:
    A dict with the batch contract's `[num_pairs, L]` int32 arrays plus `prompt`, `chosen_index`,
    `rejected_index` (ints into the enumeration).
  """
  kx, ky, kl = jax.random.split(key, 3)
  x = np.asarray(jax.random.randint(kx, (num_pairs,), 0, task.num_prompts))
  logits = jnp.asarray(ref_logp_CxN)[x]
  ys = np.asarray(jax.random.categorical(ky, logits[:, None, :], axis=-1, shape=(num_pairs, 2)))
  r = task.rewards_CxN[x[:, None], ys]
  z = r[:, 0] - r[:, 1]
  b = task.cycle_tables_CxRxVxV
  if b is not None and np.any(b != 0):  # the general (non-transitive) preference; BT code path unchanged
    y0, y1 = task.responses_NxR[ys[:, 0]], task.responses_NxR[ys[:, 1]]
    z = z + b[x[:, None], np.arange(task.response_len)[None, :], y0, y1].sum(-1)
  p_first = 1.0 / (1.0 + np.exp(-z))
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


def pair_scores(task, pairs):
  """Both responses' quality scores for `make_pairs`'s pairs: the exact rewards r(x, y_w), r(x, y_l) (the
  scored-pair contract's `chosen_score_B`, `rejected_score_B`, float32 `[num_pairs]`; MMPO's margin reads them)."""
  x = np.asarray(pairs["prompt"])
  return {"chosen_score_B": task.rewards_CxN[x, pairs["chosen_index"]].astype(np.float32),
          "rejected_score_B": task.rewards_CxN[x, pairs["rejected_index"]].astype(np.float32)}


def make_rankings(task, ref_logp_CxN, num_prompts, num_responses, key):
  """Offline K-response data: x uniform, K responses y_1..y_K ~ π_ref(·|x) i.i.d., each scored by the exact
  reward r(x, y_k) (the oracle; a ranking-contract objective reads the scores, higher is better).

  Returns:
    A dict with the ranking contract's arrays (`prefjax.lm.train.RANKING_KEYS`): `tokens_BxKxL`,
    `loss_mask_BxKxL`, `attention_mask_BxKxL` int32 `[num_prompts, K, L]`, `scores_BxK` float32, plus
    `prompt` and `response_index` (ints into the enumeration).
  """
  if num_responses < 2:
    raise PrefjaxError(f"num_responses must be >= 2, got {num_responses}")
  kx, ky = jax.random.split(key)
  x = np.asarray(jax.random.randint(kx, (num_prompts,), 0, task.num_prompts))
  logits = jnp.asarray(ref_logp_CxN)[x]
  ys = np.asarray(jax.random.categorical(ky, logits[:, None, :], axis=-1, shape=(num_prompts, num_responses)))
  tokens = np.concatenate([np.broadcast_to(x[:, None, None], (num_prompts, num_responses, 1)),
                           task.responses_NxR[ys]], axis=2).astype(np.int32)
  mask = np.ones(tokens.shape, np.int32)
  mask[:, :, 0] = 0
  return {"tokens_BxKxL": tokens, "loss_mask_BxKxL": mask, "attention_mask_BxKxL": np.ones(tokens.shape, np.int32),
          "scores_BxK": task.rewards_CxN[x[:, None], ys].astype(np.float32), "prompt": x.astype(np.int32),
          "response_index": ys.astype(np.int32)}


def make_singles(task, ref_logp_CxN, num_examples, key):
  """Offline single-response data: x uniform, y ~ π_ref(·|x), each scored by the exact reward r(x, y) (the
  oracle; a single-response objective such as DRO regresses on it).

  Returns:
    A dict with the single-response contract's arrays (`prefjax.lm.data.SINGLE_KEYS`): `tokens_BxL`,
    `loss_mask_BxL`, `attention_mask_BxL` int32 `[num_examples, L]`, `prompt_id_B` int32 (= the prompt x, so
    a per-prompt value table has `task.num_prompts` entries), `reward_B` float32, `label_B` int32 (−1: a reward,
    no label), plus `prompt` and `response_index` (ints into the enumeration).
  """
  kx, ky = jax.random.split(key)
  x = np.asarray(jax.random.randint(kx, (num_examples,), 0, task.num_prompts))
  ys = np.asarray(jax.random.categorical(ky, jnp.asarray(ref_logp_CxN)[x], axis=-1))
  tokens = np.concatenate([x[:, None], task.responses_NxR[ys]], 1).astype(np.int32)
  mask = np.ones(tokens.shape, np.int32)
  mask[:, 0] = 0
  return {"tokens_BxL": tokens, "loss_mask_BxL": mask, "attention_mask_BxL": np.ones(tokens.shape, np.int32),
          "prompt_id_B": x.astype(np.int32), "reward_B": task.rewards_CxN[x, ys].astype(np.float32),
          "label_B": np.full((num_examples,), -1, np.int32), "prompt": x.astype(np.int32),
          "response_index": ys.astype(np.int32)}


def cycle_margins(task):
  """`[C, N, N]` S[x, y, y'] = Σ_t B[x, t, y_t, y'_t] (antisymmetric; zeros without cycles)."""
  c, n = task.num_prompts, task.num_responses
  b = task.cycle_tables_CxRxVxV
  if b is None:
    return np.zeros((c, n, n))
  y = task.responses_NxR
  out = np.zeros((c, n, n))
  for t in range(task.response_len):
    out += b[:, t][:, y[:, t][:, None], y[None, :, t]]
  return out


def preference_matrix(task):
  """`[C, N, N]` general preference p(y ≻ y' | x) = σ(r(x,y) − r(x,y') + Σ_t B[x, t, y_t, y'_t]) (float64).

  Bradley–Terry σ(r(x,y) − r(x,y')) exactly when the task has no cycles (`nontransitive_scale=0`).
  P + Pᵀ = 1 up to rounding (σ(z) + σ(−z) = 1; B antisymmetric).
  """
  r = task.rewards_CxN
  z = r[:, :, None] - r[:, None, :]
  b = task.cycle_tables_CxRxVxV
  if b is not None and np.any(b != 0):
    z = z + cycle_margins(task)
  return 1.0 / (1.0 + np.exp(-z))


def response_index(task, responses_BxR):
  """Index of each response in the enumeration `task.responses_NxR` (base-V digits, first token most
  significant, as `itertools.product`): Σ_t y_t V^{R−1−t}. Jit-able (no value checks under tracing).

  Args:
    task: the `SyntheticTask`.
    responses_BxR: `[..., R]` integer tokens in [0, V).

  Returns:
    `[...]` int32 indices in [0, N).
  """
  shape = jnp.shape(responses_BxR)
  if len(shape) < 1 or shape[-1] != task.response_len:
    raise PrefjaxError(f"response_index: responses must have shape [..., R] with R = {task.response_len}, "
                       f"got {shape}")
  if nash.is_concrete(responses_BxR):
    arr = np.asarray(responses_BxR)
    if arr.size and (arr.min() < 0 or arr.max() >= task.vocab_size):
      raise PrefjaxError(f"response_index: tokens must lie in [0, {task.vocab_size}), got min {arr.min()}, "
                         f"max {arr.max()}")
  powers = task.vocab_size ** np.arange(task.response_len - 1, -1, -1)
  powers = jnp.asarray(powers, jnp.int32).reshape((1,) * (len(shape) - 1) + (task.response_len,))
  return jnp.sum(jnp.asarray(responses_BxR, jnp.int32) * powers, axis=-1)


def _normalised(logp, shape, fn, name):
  lp = np.asarray(logp, np.float64)
  if lp.shape != shape:
    raise PrefjaxError(f"{fn}: {name} must be [num_prompts, num_responses] = {shape}, got {lp.shape}")
  return lp - np.logaddexp.reduce(lp, axis=-1, keepdims=True)  # renormalise float32 rounding


class NashEquilibrium(NamedTuple):
  """The synthetic game's β-regularised Nash equilibrium per prompt (float64 numpy).

  Attributes:
    logp_CxN: log π*_β(y|x).
    residual_C: ‖π − softmax(log π_ref + P π / β)‖_∞ per prompt (the solver's fixed-point residual).
  """
  logp_CxN: np.ndarray
  residual_C: np.ndarray


def nash_equilibrium(task, ref_logp_CxN, beta, *, tol=None, max_iter=1_000_000):
  """β-regularised Nash equilibrium π*_β ∝ π_ref exp(P π*_β / β) of every prompt's preference game.

  The game f_β(π1, π2) = π1ᵀ P π2 − β KL(π1 ‖ π_ref) + β KL(π2 ‖ π_ref) of Munos et al. (arXiv:2312.00886)
  over the N enumerated responses, P = `preference_matrix(task)[x]`, solved in float64 by
  `prefjax.games.nash.solve_regularised_nash` (policy extragradient to a residual tolerance; prompts are
  a batch of games, iterated together). The returned log-probs are one more best-response step
  log_softmax(log π_ref + P π / β) from the solver's policy (same point up to the residual, and no log 0).

  Args:
    task: the `SyntheticTask`.
    ref_logp_CxN: `[C, N]` log π_ref(y|x) (renormalised here).
    beta: β > 0 (scalar or `[C]`).
    tol: residual tolerance (default `nash.default_tolerance`, ≈ 32 ε (1 + 1/β) in float64).
    max_iter: iteration cap of the solver.

  Returns:
    `NashEquilibrium(logp_CxN, residual_C)`; the residual is that of the returned policy.
  """
  shape = (task.num_prompts, task.num_responses)
  lq = _normalised(ref_logp_CxN, shape, "nash_equilibrium", "ref_logp_CxN")
  nash.check_positive(beta, "beta", "nash_equilibrium")
  with jax.enable_x64(True):
    P = jnp.asarray(preference_matrix(task), jnp.float64)
    ref = jnp.asarray(lq, jnp.float64)
    b = jnp.asarray(beta, jnp.float64)
    sol = nash.solve_regularised_nash(P, ref, b, tol=tol, max_iter=max_iter)
    col = b if b.ndim == 0 else b[:, None]
    logp = jax.nn.log_softmax(ref + jnp.einsum("cnm,cm->cn", P, sol.policy) / col, axis=-1)
    residual = nash.nash_residual(jnp.exp(logp), P, ref, b)
    return NashEquilibrium(np.asarray(logp), np.asarray(residual))


class OnlineDPOFixedPoint(NamedTuple):
  """Stationary point of exact tabular online DPO (float64 numpy).

  Attributes:
    logp_CxN: log π̄(y|x).
    residual_C: max_y |Σ_y' π̄(y') [σ(β(ℓ_y − ℓ_y')) − P_yy']| per prompt.
    num_iters: iterations run.
  """
  logp_CxN: np.ndarray
  residual_C: np.ndarray
  num_iters: int


def _dpo_fixed_point_core(P, log_ref, beta, eta, tol, max_iter):
  def field(z):
    pi = jax.nn.softmax(log_ref + z / beta, axis=-1)
    d = jax.nn.sigmoid(z[:, :, None] - z[:, None, :]) - P
    return jnp.einsum("cnm,cm->cn", d, pi)

  def cond(carry):
    _, i, res = carry
    return jnp.any(res > tol) & (i < max_iter)

  def body(carry):
    z, i, _ = carry
    z = z - eta * field(z)
    return z, i + 1, jnp.max(jnp.abs(field(z)), axis=-1)

  z0 = jnp.zeros_like(log_ref)
  z, num_iters, res = jax.lax.while_loop(cond, body, (z0, jnp.asarray(0, jnp.int32),
                                                      jnp.max(jnp.abs(field(z0)), axis=-1)))
  return jax.nn.log_softmax(log_ref + z / beta, axis=-1), res, num_iters


_dpo_fixed_point_jit = jax.jit(_dpo_fixed_point_core, static_argnames=("max_iter",))


def online_dpo_fixed_point(task, ref_logp_CxN, beta, *, eta=1.0, tol=1e-10, max_iter=100_000):
  """Where exact online DPO settles on the task: its stationary point over the N enumerated responses.

  Online DPO (Guo et al. arXiv:2402.04792; Calandriello et al. arXiv:2403.08635 App. F) minimises
  E_{y,y'∼sg(π)}[P_yy' (−log σ(β h)) + P_y'y (−log σ(−β h))], h = ℓ(y) − ℓ(y'), ℓ = log π − log π_ref. With
  a tabular (full-support) policy its gradient vanishes iff, for every y,

    F_y = Σ_y' π(y') [σ(β(ℓ_y − ℓ_y')) − P_yy'] = 0,

  i.e. the Bradley–Terry model with reward βℓ reproduces the win rates against π itself. For a
  Bradley–Terry P = σ(r − r') the solution is βℓ = r + c, the RLHF optimum π_ref e^{r/β}; for a
  non-transitive P it is generally not the Nash equilibrium π*_β ∝ π_ref e^{Pπ*/β} (their App. F; the bandit
  version is `prefjax.games.experiments.online_dpo_loss`). Solved in float64 by the damped fixed-point
  iteration z ← z − η F(z) on z = βℓ from z = 0 (π = π_ref) until max_y |F_y| ≤ tol. Not guaranteed to
  converge for every (task, β, η): check `residual_C` (on the default non-transitive task with π_ref = μ it
  converges at β = 0.5 and 1 with η = 1; at β = 0.1 it does not with η = 2).

  Args:
    task: the `SyntheticTask`.
    ref_logp_CxN: `[C, N]` log π_ref.
    beta: β > 0.
    eta: damping η > 0.
    tol: residual tolerance.
    max_iter: iteration cap.

  Returns:
    `OnlineDPOFixedPoint(logp_CxN, residual_C, num_iters)`.
  """
  shape = (task.num_prompts, task.num_responses)
  lq = _normalised(ref_logp_CxN, shape, "online_dpo_fixed_point", "ref_logp_CxN")
  for name, v in (("beta", beta), ("eta", eta), ("tol", tol)):
    nash.check_positive(v, name, "online_dpo_fixed_point")
  with jax.enable_x64(True):
    logp, res, num_iters = _dpo_fixed_point_jit(jnp.asarray(preference_matrix(task), jnp.float64),
                                                jnp.asarray(lq, jnp.float64), jnp.float64(beta),
                                                jnp.float64(eta), jnp.float64(tol), int(max_iter))
    return OnlineDPOFixedPoint(np.asarray(logp), np.asarray(res), int(num_iters))


def win_rate_vs(task, policy_logp_CxN, other_logp_CxN):
  """Exact win rate E_x Σ_{y,y'} π(y|x) π'(y'|x) p(y ≻ y'|x) of π against π' (e.g. the previous iterate).

  Args:
    task: the `SyntheticTask`.
    policy_logp_CxN: `[C, N]` log π.
    other_logp_CxN: `[C, N]` log π'.

  Returns:
    float, in [0, 1]; ½ when π = π'.
  """
  shape = (task.num_prompts, task.num_responses)
  p = np.exp(_normalised(policy_logp_CxN, shape, "win_rate_vs", "policy_logp_CxN"))
  q = np.exp(_normalised(other_logp_CxN, shape, "win_rate_vs", "other_logp_CxN"))
  return float(np.mean(np.einsum("cn,cnm,cm->c", p, preference_matrix(task), q)))


def evaluate(task, policy_logp_CxN, ref_logp_CxN, *, beta=None):
  """Exact oracle metrics of π against π_ref under the task's (general) preference (float64, numpy).

  Args:
    task: the `SyntheticTask`.
    policy_logp_CxN: `[C, N]` log π(y|x).
    ref_logp_CxN: `[C, N]` log π_ref(y|x).
    beta: optional β > 0; adds the regularised game's duality gap.

  Returns:
    dict: reward (E_x E_{y∼π} r; the Bradley–Terry part only), win_rate (E_x p(π ≻ π_ref | x)),
    kl (E_x KL(π ‖ π_ref)), exploitability (E_x [max_y (P π)_y − ½] over the finite candidate set of all N
    responses: ≥ 0, zero only at a von Neumann winner), and, with `beta`, duality_gap
    (E_x 2β KL(π ‖ BR(π)) of the β-regularised game, `prefjax.games.nash.duality_gap`; zero only at π*_β).
  """
  shape = (task.num_prompts, task.num_responses)
  lp = _normalised(policy_logp_CxN, shape, "evaluate", "policy_logp_CxN")
  lq = _normalised(ref_logp_CxN, shape, "evaluate", "ref_logp_CxN")
  p, q = np.exp(lp), np.exp(lq)
  pref = preference_matrix(task)
  payoff = np.einsum("cnm,cm->cn", pref, p)  # (P π)_y
  out = {
      "reward": float(np.mean(np.sum(p * task.rewards_CxN, -1))),
      "win_rate": float(np.mean(np.einsum("cn,cnm,cm->c", p, pref, q))),
      "kl": float(np.mean(np.sum(p * (lp - lq), -1))),
      "exploitability": float(np.mean(np.max(payoff, -1) - 0.5)),
  }
  if beta is not None:
    nash.check_positive(beta, "beta", "evaluate")
    with jax.enable_x64(True):
      gap = nash.duality_gap(jnp.asarray(p), jnp.asarray(pref), jnp.asarray(lq), jnp.asarray(beta, jnp.float64))
      out["duality_gap"] = float(np.mean(np.asarray(gap)))
  return out


def optimum(task, ref_logp_CxN, beta, psi):
  """The ΨPO population optimum with μ = π_ref (psi: "logit" = DPO/RLHF, "identity" = IPO); `[C, N]` log-probs."""
  lq = np.asarray(ref_logp_CxN, np.float64)
  q = np.exp(lq - np.logaddexp.reduce(lq, axis=-1, keepdims=True))
  with jax.enable_x64(True):
    pi = psipo.psipo_optimum(jnp.asarray(preference_matrix(task)), jnp.asarray(q), jnp.asarray(q),
                             beta, psi=psi)
    return np.log(np.maximum(np.asarray(pi), 1e-300))

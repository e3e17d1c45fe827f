"""Preference oracles for sequences: one interface `prefer(prompts, a, b) -> P(a ≻ b | prompt)`.

Every oracle answers, for a batch of prompts and two batches of responses,

  oracle.prefer(prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT, responses_b_BxT, mask_b_BxT)
    -> float32 [B] probabilities p(a ≻ b | prompt),

with the layout of `prefjax.lm.sampling`: prompts left-padded (`prompt_mask_BxP` 0 on the left), responses
right-padded (mask 1 on the real tokens, EOS included, 0 after). Every implementation is a pytree whose
leaves are arrays (tables or parameters) and whose static parts (model configs) are pytree metadata, so an
oracle can be passed as an argument to a jitted training step (one compiled program per oracle structure)
or closed over; `prefer` is traceable (jit / vmap / grad).

- `SyntheticOracle(task)`: the synthetic task's exact preference (`prefjax.lm.synthetic.preference_matrix`,
  Bradley–Terry or non-transitive), p = σ(Σ_t θ[x,t,a_t] − θ[x,t,b_t] + B[x,t,a_t,b_t]).
- `RewardModelOracle(model_config, params)`: Bradley–Terry on a trained reward model, σ(r(x,a) − r(x,b))
  (`prefjax.lm.reward_model`).
- `PairwiseModelOracle(model_config, params)`: a model that reads both responses, antisymmetrised
  σ(f(x,a,b) − f(x,b,a)) so that p(a,b) + p(b,a) = 1 (`prefjax.lm.reward_model`).

Host-side helpers: `check_probabilities` (a clear error for NaN or values outside [0, 1]); traceable:
`bernoulli_labels`.
"""

from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.lm import reward_model as rm


class PreferenceOracle(Protocol):
  """Anything with a jit-traceable `prefer` returning P(a ≻ b | prompt)."""

  def prefer(self, prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT, responses_b_BxT,
             mask_b_BxT) -> jax.Array:
    """float32 `[B]` probabilities p(a ≻ b | prompt)."""


def _is_concrete(*xs):
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def check_inputs(fn, prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT, responses_b_BxT,
                 mask_b_BxT):
  """Shape checks (always) of `prefer`'s arguments; raises `PrefjaxError` naming `fn`. Returns (B, P, T)."""
  shapes = {"prompt_tokens_BxP": jnp.shape(prompt_tokens_BxP), "prompt_mask_BxP": jnp.shape(prompt_mask_BxP),
            "responses_a_BxT": jnp.shape(responses_a_BxT), "mask_a_BxT": jnp.shape(mask_a_BxT),
            "responses_b_BxT": jnp.shape(responses_b_BxT), "mask_b_BxT": jnp.shape(mask_b_BxT)}
  for name, shape in shapes.items():
    if len(shape) != 2:
      raise PrefjaxError(f"{fn}: {name} must be 2-D, got shape {shape}")
  b, p = shapes["prompt_tokens_BxP"]
  t = shapes["responses_a_BxT"][1]
  expected = {"prompt_mask_BxP": (b, p), "responses_a_BxT": (b, t), "mask_a_BxT": (b, t),
              "responses_b_BxT": (b, t), "mask_b_BxT": (b, t)}
  for name, want in expected.items():
    if shapes[name] != want:
      raise PrefjaxError(f"{fn}: {name} must have shape {want} (batch {b}, prompt length {p}, response "
                         f"length {t} from prompt_tokens_BxP and responses_a_BxT), got {shapes[name]}")
  if p < 1:
    raise PrefjaxError(f"{fn}: prompts must have at least one token, got prompt length {p}")
  return b, p, t


def check_probabilities(p_B, where):
  """Raises `PrefjaxError` naming `where` and the first offending rows if `p_B` has NaN or values outside [0, 1].

  Host side: a traced `p_B` (inside jit) is returned unchecked.

  Args:
    p_B: `[...]` probabilities (a concrete array).
    where: what produced them, for the message (e.g. "the preference oracle at step 12").

  Returns:
    `p_B`, unchanged.
  """
  if not _is_concrete(p_B):
    return p_B
  arr = np.asarray(p_B, np.float64)
  finite = np.nan_to_num(arr, nan=0.5)
  bad = np.isnan(arr) | (finite < 0.0) | (finite > 1.0)
  if np.any(bad):
    where_bad = np.argwhere(bad) if arr.ndim else np.zeros((1, 0), np.int64)
    def at(idx):
      return f"row {int(idx[0])}" if len(idx) == 1 else f"index {tuple(int(i) for i in idx)}"
    shown = ", ".join(f"{at(idx) if len(idx) else 'value'} = {float(arr[tuple(idx)])!r}" for idx in where_bad[:5])
    more = f" (and {len(where_bad) - 5} more)" if len(where_bad) > 5 else ""
    kinds = [k for k, m in (("NaN", np.isnan(arr)), ("< 0", finite < 0.0), ("> 1", finite > 1.0)) if np.any(m)]
    raise PrefjaxError(f"{where}: probabilities must lie in [0, 1]; {len(where_bad)} of {arr.size} values are "
                       f"{' / '.join(kinds)}: {shown}{more}")
  return p_B


def bernoulli_labels(key, p_B):
  """Sampled preference labels y ~ Bernoulli(p) (float32 0/1, 1: a ≻ b); traceable.

  Args:
    key: PRNG key.
    p_B: `[...]` probabilities.

  Returns:
    float32 labels of `p_B`'s shape; E[y] = p.
  """
  p_B = jnp.asarray(p_B)
  return (jax.random.uniform(key, p_B.shape) < p_B).astype(jnp.float32)


def _last_real_token(tokens_BxP, mask_BxP):
  """The last token with mask 1 of each row (the last column when the mask is all zeros)."""
  p = tokens_BxP.shape[1]
  last = p - 1 - jnp.argmax(jnp.asarray(mask_BxP)[:, ::-1] > 0, axis=1)
  return jnp.take_along_axis(jnp.asarray(tokens_BxP), last[:, None], axis=1)[:, 0]


@jax.tree_util.register_pytree_node_class
class SyntheticOracle:
  """The synthetic task's exact preference (Bradley–Terry or non-transitive) as an oracle.

  p(a ≻ b | x) = σ(Σ_t θ[x, t, a_t] − θ[x, t, b_t] + B[x, t, a_t, b_t]) (`prefjax.lm.synthetic`), computed
  from the per-token tables (no N×N matrix, so any V^R), in float32: equal to
  `synthetic.preference_matrix(task)[x, index(a), index(b)]` up to float32 rounding. The log-odds are
  exactly antisymmetric (B is, and the sum runs in the same order), so prefer(a, b) + prefer(b, a) = 1 up
  to one rounding of σ.

  The prompt x is the last real prompt token; the response is the first R = task.response_len tokens
  (the task's responses have exactly R tokens: generate them with `max_new_tokens = R` and no EOS; the
  response masks are not used). A pytree: its leaves are the float32 tables, so it can be an argument of
  a jitted function.

  Args:
    task: a `prefjax.lm.synthetic.SyntheticTask`.
  """

  def __init__(self, task):
    self.reward_table_CxRxV = jnp.asarray(task.reward_table_CxRxV, jnp.float32)
    cycles = task.cycle_tables_CxRxVxV
    if cycles is None:
      cycles = np.zeros(task.reward_table_CxRxV.shape + (task.vocab_size,))
    self.cycle_tables_CxRxVxV = jnp.asarray(cycles, jnp.float32)

  def tree_flatten(self):
    return (self.reward_table_CxRxV, self.cycle_tables_CxRxVxV), None

  @classmethod
  def tree_unflatten(cls, aux, children):
    del aux
    obj = object.__new__(cls)
    obj.reward_table_CxRxV, obj.cycle_tables_CxRxVxV = children
    return obj

  def logits(self, prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT, responses_b_BxT,
             mask_b_BxT):
    """float32 `[B]` log-odds that a ≻ b (see the class docstring)."""
    check_inputs("SyntheticOracle.prefer", prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT,
                 responses_b_BxT, mask_b_BxT)
    c, r, v = self.reward_table_CxRxV.shape
    t = jnp.shape(responses_a_BxT)[1]
    if t != r:
      raise PrefjaxError(f"SyntheticOracle.prefer: responses must have exactly R = {r} tokens (the task's "
                         f"response length), got {t}")
    x = _last_real_token(prompt_tokens_BxP, prompt_mask_BxP)
    ya = jnp.asarray(responses_a_BxT, jnp.int32)
    yb = jnp.asarray(responses_b_BxT, jnp.int32)
    if _is_concrete(x, ya, yb):
      for name, arr, hi in (("prompt", x, c), ("responses_a_BxT", ya, v), ("responses_b_BxT", yb, v)):
        arr = np.asarray(arr)
        if arr.size and (arr.min() < 0 or arr.max() >= hi):
          raise PrefjaxError(f"SyntheticOracle.prefer: {name} tokens must lie in [0, {hi}), got values in "
                             f"[{arr.min()}, {arr.max()}]")
    pos = jnp.arange(r)[None, :]
    xb = x[:, None]
    theta_a = self.reward_table_CxRxV[xb, pos, ya]  # [B, R]
    theta_b = self.reward_table_CxRxV[xb, pos, yb]
    cyc = self.cycle_tables_CxRxVxV[xb, pos, ya, yb]
    return jnp.sum((theta_a - theta_b) + cyc, axis=1)

  def prefer(self, prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT, responses_b_BxT,
             mask_b_BxT):
    """float32 `[B]` p(a ≻ b | prompt)."""
    return jax.nn.sigmoid(self.logits(prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT,
                                      responses_b_BxT, mask_b_BxT))


class _ModelOracle:
  """A transformer-backed oracle as a pytree: the parameters are its leaves, the config its static metadata."""

  def __init__(self, model_config, params):
    self.model_config = model_config
    self.params = params

  def tree_flatten(self):
    return (self.params,), self.model_config

  @classmethod
  def tree_unflatten(cls, aux, children):
    return cls(aux, children[0])


@jax.tree_util.register_pytree_node_class
class RewardModelOracle(_ModelOracle):
  """Bradley–Terry preferences of a reward model: p(a ≻ b | x) = σ(r(x, a) − r(x, b)).

  `r` is `prefjax.lm.reward_model.reward` (transformer trunk + scalar head at the last real token). Both
  responses are scored in one forward pass of batch 2B. A pytree: the parameters are its leaves, the
  `TransformerConfig` its static metadata.

  Args:
    model_config: the reward model's `TransformerConfig`.
    params: its parameters (`reward_model.init_reward_model`, `train_reward_model`, `load_reward_model`).
  """

  def rewards(self, prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT, responses_b_BxT,
              mask_b_BxT):
    """`(r_a [B], r_b [B])` float32 rewards."""
    b, _, _ = check_inputs("RewardModelOracle.prefer", prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT,
                           mask_a_BxT, responses_b_BxT, mask_b_BxT)
    two = lambda u, w: jnp.concatenate([jnp.asarray(u), jnp.asarray(w)], axis=0)
    r = rm.reward(self.model_config, self.params, two(prompt_tokens_BxP, prompt_tokens_BxP),
                  two(prompt_mask_BxP, prompt_mask_BxP), two(responses_a_BxT, responses_b_BxT),
                  two(mask_a_BxT, mask_b_BxT))
    return r[:b], r[b:]

  def prefer(self, prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT, responses_b_BxT,
             mask_b_BxT):
    """float32 `[B]` p(a ≻ b | prompt) = σ(r_a − r_b)."""
    r_a, r_b = self.rewards(prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT, responses_b_BxT,
                            mask_b_BxT)
    return jax.nn.sigmoid(r_a - r_b)


@jax.tree_util.register_pytree_node_class
class PairwiseModelOracle(_ModelOracle):
  """A pairwise preference model reading both responses, antisymmetrised: p = σ(f(x, a, b) − f(x, b, a)).

  `f` is `prefjax.lm.reward_model.pairwise_score` on `[prompt, a, SEP, b]`; the log-odds
  f(a, b) − f(b, a) change sign exactly when a and b are swapped, so p(a, b) + p(b, a) = 1 (up to the
  rounding of the two forward passes, which see the same rows). A pytree like `RewardModelOracle`.

  Args:
    model_config: the pairwise model's `TransformerConfig` (`reward_model.pairwise_config`).
    params: its parameters.
  """

  def logits(self, prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT, responses_b_BxT,
             mask_b_BxT):
    """float32 `[B]` antisymmetric log-odds f(a, b) − f(b, a)."""
    check_inputs("PairwiseModelOracle.prefer", prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT,
                 responses_b_BxT, mask_b_BxT)
    return rm.pairwise_logits(self.model_config, self.params, prompt_tokens_BxP, prompt_mask_BxP,
                              responses_a_BxT, mask_a_BxT, responses_b_BxT, mask_b_BxT)

  def prefer(self, prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT, responses_b_BxT,
             mask_b_BxT):
    """float32 `[B]` p(a ≻ b | prompt)."""
    return jax.nn.sigmoid(self.logits(prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT,
                                      responses_b_BxT, mask_b_BxT))

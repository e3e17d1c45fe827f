"""Learned preference models on the transformer: a Bradley–Terry reward model and a pairwise model.

Reward model (Ouyang et al. arXiv:2203.02155 §3.5; Stiennon et al. arXiv:2009.01325): the transformer trunk
of `prefjax.lm.model` (same `TransformerConfig`) and a scalar head on the final hidden state (after the
final norm) at the last real response token,

  r(x, y) = w · h_L(x, y)[last real token] + b,

trained on preference pairs by the Bradley–Terry likelihood −log σ(±(r(x, a) − r(x, b))) — prefjax's
`objectives.density.luce_loss` (Bradley–Terry with reward r is Luce with q ∝ e^r, arXiv:2311.14115), which
also takes soft labels (the oracle's probabilities). Its oracle is σ(r(x, a) − r(x, b))
(`prefjax.lm.oracles.RewardModelOracle`).

Pairwise preference model (a "pairwise RM" / preference model of Munos et al. arXiv:2312.00886 §7, Jiang et
al. arXiv:2306.02561): one sequence `[prompt, a, SEP, b]`, the separator a token id appended to the
vocabulary (`pairwise_config`: vocab_size + 1, SEP = vocab_size of the base config, learned like any other
embedding; positions count real tokens only, so the padding of a between a and SEP is invisible), and a
scalar head at the last real token gives f(x, a, b). The preference is antisymmetrised,

  p(a ≻ b | x) = σ(f(x, a, b) − f(x, b, a)),

so p(a, b) + p(b, a) = 1 by construction (both orders are run in one forward pass of batch 2B); trained by
`density.bernoulli_nll` on these log-odds (`prefjax.lm.oracles.PairwiseModelOracle`).

Layout (as `prefjax.lm.sampling`): prompts `[B, P]` left-padded, responses `[B, T]` right-padded, masks 1
on real tokens. A response with no real token is scored at the last real prompt token (reward model) or at
SEP (pairwise model).

Parameters: `{"trunk": <the Transformer's variables {"params": ...}, unboxed>, "head": {"w_D": [D], "b": []}}`.
Checkpoints: a directory with `config.json` (kind, `TransformerConfig` fields) and `params.npz` (one array per
parameter, named by its path); `load_reward_model` checks names and shapes against the config.
"""

import dataclasses
import functools
import json
import os
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from prefjax import jit_utils
from prefjax.errors import PrefjaxError
from prefjax.lm import model as lm_model
from prefjax.objectives import density

KINDS = ("reward", "pairwise")
CONFIG_FILE = "config.json"
PARAMS_FILE = "params.npz"
FORMAT = "prefjax-preference-model"


# ----------------------------------------------------------------------------------------------------
# Models.


def _init_head(config, key):
  d = config.d_model
  return {"w_D": jax.random.normal(key, (d,), jnp.float32) / np.sqrt(d), "b": jnp.zeros((), jnp.float32)}


def init_reward_model(model_config, key, *, trunk_params=None):
  """Initial reward-model parameters: a fresh (or given) trunk and a N(0, 1/D) scalar head.

  Args:
    model_config: the trunk's `TransformerConfig`.
    key: PRNG key.
    trunk_params: optional trunk variables to start from (e.g. the SFT policy's, as is common practice;
      boxed or not); their shapes must match `model_config`.

  Returns:
    `{"trunk": variables, "head": {"w_D", "b"}}` (plain arrays).
  """
  k_trunk, k_head = jax.random.split(key)
  if trunk_params is None:
    trunk = nn.unbox(lm_model.init_params(model_config, k_trunk))
  else:
    trunk = nn.unbox(trunk_params)
    _check_shapes(jax.eval_shape(lambda: nn.unbox(lm_model.init_params(model_config, k_trunk))), trunk,
                  "init_reward_model: trunk_params")
  return {"trunk": trunk, "head": _init_head(model_config, k_head)}


def pairwise_config(model_config, prompt_len, response_len):
  """The pairwise model's `TransformerConfig`: one extra token id (SEP = model_config.vocab_size) and room
  for `[prompt, a, SEP, b]` (max_len ≥ prompt_len + 2 response_len + 1)."""
  need = int(prompt_len) + 2 * int(response_len) + 1
  return dataclasses.replace(model_config, vocab_size=model_config.vocab_size + 1,
                             max_len=max(model_config.max_len, need))


def init_pairwise_model(pair_config, key):
  """Initial pairwise-model parameters (fresh trunk of `pair_config` from `pairwise_config`, N(0, 1/D) head)."""
  return init_reward_model(pair_config, key)


def _score_last(config, params, tokens_BxL, mask_BxL):
  """w · h[last real token] + b, float32 `[B]`."""
  _, hidden_BxLxD = lm_model.Transformer(config).apply(params["trunk"], tokens_BxL, attention_mask_BxT=mask_BxL,
                                                       return_hidden=True)
  length = tokens_BxL.shape[1]
  last_B = length - 1 - jnp.argmax(mask_BxL[:, ::-1] > 0, axis=1)
  h_BxD = jnp.take_along_axis(hidden_BxLxD, last_B[:, None, None], axis=1)[:, 0].astype(jnp.float32)
  head = params["head"]
  return h_BxD @ head["w_D"].astype(jnp.float32) + head["b"].astype(jnp.float32)


def _as_int(x):
  return jnp.asarray(x, jnp.int32)


def reward(model_config, params, prompt_tokens_BxP, prompt_mask_BxP, responses_BxT, mask_BxT):
  """Reward r(x, y): the scalar head on the final hidden state at the last real token of `[prompt, y]`.

  Args:
    model_config: the trunk's `TransformerConfig` (max_len ≥ P + T).
    params: reward-model parameters.
    prompt_tokens_BxP, prompt_mask_BxP: left-padded prompts.
    responses_BxT, mask_BxT: right-padded responses.

  Returns:
    float32 `[B]` rewards.
  """
  tokens = jnp.concatenate([_as_int(prompt_tokens_BxP), _as_int(responses_BxT)], axis=1)
  mask = jnp.concatenate([_as_int(prompt_mask_BxP), _as_int(mask_BxT)], axis=1)
  return _score_last(model_config, params, tokens, mask)


def _pair_tokens(pair_config, prompt_tokens_BxP, prompt_mask_BxP, first_BxT, mask_first_BxT, second_BxT,
                 mask_second_BxT):
  b = jnp.shape(prompt_tokens_BxP)[0]
  sep = jnp.full((b, 1), pair_config.vocab_size - 1, jnp.int32)
  one = jnp.ones((b, 1), jnp.int32)
  tokens = jnp.concatenate([_as_int(prompt_tokens_BxP), _as_int(first_BxT), sep, _as_int(second_BxT)], axis=1)
  mask = jnp.concatenate([_as_int(prompt_mask_BxP), _as_int(mask_first_BxT), one, _as_int(mask_second_BxT)],
                         axis=1)
  return tokens, mask


def pairwise_score(pair_config, params, prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT,
                   responses_b_BxT, mask_b_BxT):
  """f(x, a, b): the scalar head at the last real token of `[prompt, a, SEP, b]` (not antisymmetric).

  Args:
    pair_config: the pairwise model's `TransformerConfig` (`pairwise_config`; SEP = vocab_size − 1).
    params: pairwise-model parameters.
    prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT, responses_b_BxT, mask_b_BxT: the batch.

  Returns:
    float32 `[B]` scores.
  """
  tokens, mask = _pair_tokens(pair_config, prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT,
                              responses_b_BxT, mask_b_BxT)
  return _score_last(pair_config, params, tokens, mask)


def pairwise_logits(pair_config, params, prompt_tokens_BxP, prompt_mask_BxP, responses_a_BxT, mask_a_BxT,
                    responses_b_BxT, mask_b_BxT):
  """Antisymmetric log-odds f(x, a, b) − f(x, b, a) (both orders in one forward pass of batch 2B).

  Returns:
    float32 `[B]`; swapping a and b negates it, so σ of it gives p(a, b) + p(b, a) = 1.
  """
  b = jnp.shape(prompt_tokens_BxP)[0]
  two = lambda u, w: jnp.concatenate([_as_int(u), _as_int(w)], axis=0)
  f = pairwise_score(pair_config, params, two(prompt_tokens_BxP, prompt_tokens_BxP),
                     two(prompt_mask_BxP, prompt_mask_BxP), two(responses_a_BxT, responses_b_BxT),
                     two(mask_a_BxT, mask_b_BxT), two(responses_b_BxT, responses_a_BxT), two(mask_b_BxT, mask_a_BxT))
  return f[:b] - f[b:]


# ----------------------------------------------------------------------------------------------------
# Training.


class PreferenceData(NamedTuple):
  """Labelled preference pairs (arrays; `[B, P]` prompts left-padded, `[B, T]` responses right-padded).

  Attributes:
    prompt_tokens_BxP, prompt_mask_BxP: prompts.
    responses_a_BxT, mask_a_BxT: first responses.
    responses_b_BxT, mask_b_BxT: second responses.
    labels_B: P(a ≻ b) targets in [0, 1]: 0/1 labels or an oracle's probabilities.
  """
  prompt_tokens_BxP: np.ndarray
  prompt_mask_BxP: np.ndarray
  responses_a_BxT: np.ndarray
  mask_a_BxT: np.ndarray
  responses_b_BxT: np.ndarray
  mask_b_BxT: np.ndarray
  labels_B: np.ndarray


def preference_data_from_pairs(pairs, prompt_len=1):
  """`PreferenceData` from an offline batch (`prefjax.lm.synthetic.make_pairs`): a = chosen, b = rejected,
  label 1; the first `prompt_len` tokens of each sequence are the prompt, its attention mask the masks."""
  tok_c, tok_r = np.asarray(pairs["chosen_tokens_BxL"]), np.asarray(pairs["rejected_tokens_BxL"])
  att_c = np.asarray(pairs["chosen_attention_mask_BxL"])
  att_r = np.asarray(pairs["rejected_attention_mask_BxL"])
  if not np.array_equal(tok_c[:, :prompt_len], tok_r[:, :prompt_len]):
    raise PrefjaxError("preference_data_from_pairs: chosen and rejected sequences have different prompts")
  p = prompt_len
  return PreferenceData(tok_c[:, :p].astype(np.int32), att_c[:, :p].astype(np.int32),
                        tok_c[:, p:].astype(np.int32), att_c[:, p:].astype(np.int32),
                        tok_r[:, p:].astype(np.int32), att_r[:, p:].astype(np.int32),
                        np.ones(tok_c.shape[0], np.float32))


def _check_data(data, fn):
  if not isinstance(data, PreferenceData):
    raise PrefjaxError(f"{fn}: data must be a PreferenceData, got {type(data).__name__}")
  b, p = np.shape(data.prompt_tokens_BxP)
  t = np.shape(data.responses_a_BxT)[1] if np.ndim(data.responses_a_BxT) == 2 else -1
  want = {"prompt_mask_BxP": (b, p), "responses_a_BxT": (b, t), "mask_a_BxT": (b, t), "responses_b_BxT": (b, t),
          "mask_b_BxT": (b, t), "labels_B": (b,)}
  for name, shape in want.items():
    if tuple(np.shape(getattr(data, name))) != shape:
      raise PrefjaxError(f"{fn}: data.{name} must have shape {shape}, got {tuple(np.shape(getattr(data, name)))}")
  labels = np.asarray(data.labels_B, np.float64)
  if not np.all(np.isfinite(labels)) or labels.min() < 0 or labels.max() > 1:
    raise PrefjaxError(f"{fn}: data.labels_B must lie in [0, 1]")
  return b


def _pair_logits(kind, config, params, batch):
  if kind == "reward":
    two = lambda u, w: jnp.concatenate([u, w], axis=0)
    b = batch.labels_B.shape[0]
    r = reward(config, params, two(batch.prompt_tokens_BxP, batch.prompt_tokens_BxP),
               two(batch.prompt_mask_BxP, batch.prompt_mask_BxP), two(batch.responses_a_BxT, batch.responses_b_BxT),
               two(batch.mask_a_BxT, batch.mask_b_BxT))
    return r[:b], r[b:]
  return pairwise_logits(config, params, *batch[:6]), None


def preference_loss(kind, config, params, batch):
  """Mean preference NLL of a batch: Bradley–Terry (`density.luce_loss`) for kind "reward", the Bernoulli
  NLL of the antisymmetric log-odds (`density.bernoulli_nll`) for kind "pairwise"."""
  first, second = _pair_logits(kind, config, params, batch)
  labels = jnp.asarray(batch.labels_B, jnp.float32)
  if kind == "reward":
    return jnp.mean(density.luce_loss(first, second, labels=labels))
  return jnp.mean(density.bernoulli_nll(first, labels))


_FIT_STATIC = ("kind", "config", "num_steps", "batch_size")


@functools.partial(jax.jit, static_argnames=_FIT_STATIC)
def _fit(params, data, key, *, kind, config, num_steps, learning_rate, batch_size):
  tx = optax.adam(learning_rate)
  n = data.labels_B.shape[0]

  def body(carry, step_key):
    p, s = carry
    if batch_size >= n:
      batch = data
    else:
      idx = jax.random.randint(step_key, (batch_size,), 0, n)
      batch = jax.tree.map(lambda x: x[idx], data)
    value, g = jax.value_and_grad(lambda q: preference_loss(kind, config, q, batch))(p)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), value

  (params, _), losses = jax.lax.scan(body, (params, tx.init(params)), jax.random.split(key, num_steps))
  return params, losses


# `_fit` compiled at XLA optimisation level 0, once per argument shapes and static values (`fast_compile`).
_fit_fast = jit_utils.compile_fast(_fit, static_argnames=_FIT_STATIC)


def _train(kind, fn, config, params, data, key, num_steps, learning_rate, batch_size, fast_compile):
  n = _check_data(data, fn)
  if int(num_steps) < 1:
    raise PrefjaxError(f"{fn}: num_steps must be >= 1, got {num_steps}")
  if not np.isfinite(learning_rate) or learning_rate <= 0:
    raise PrefjaxError(f"{fn}: learning_rate must be > 0, got {learning_rate}")
  batch_size = n if batch_size is None else int(batch_size)
  if batch_size < 1:
    raise PrefjaxError(f"{fn}: batch_size must be >= 1, got {batch_size}")
  data = PreferenceData(*(jnp.asarray(x, jnp.float32 if i == 6 else jnp.int32) for i, x in enumerate(data)))
  args = (nn.unbox(params), data, key)
  dynamic = {"learning_rate": jnp.asarray(learning_rate, jnp.float32)}
  static = {"kind": kind, "config": config, "num_steps": int(num_steps), "batch_size": min(batch_size, n)}
  params, losses = (_fit_fast if fast_compile else _fit)(*args, **dynamic, **static)
  return params, np.asarray(losses)


def train_reward_model(model_config, params, data, key, *, num_steps=200, learning_rate=1e-3, batch_size=None,
                       fast_compile=False):
  """Bradley–Terry training of a reward model: Adam on mean `density.luce_loss(r(x,a), r(x,b), labels)`.

  One jitted `lax.scan` over `num_steps` steps; each step a minibatch of `batch_size` pairs drawn uniformly
  with replacement (default: the full batch every step).

  Args:
    model_config: the trunk's `TransformerConfig`.
    params: initial parameters (`init_reward_model`).
    data: `PreferenceData` (labels 0/1 or probabilities).
    key: PRNG key (minibatch draws).
    num_steps: optimiser steps.
    learning_rate: Adam's learning rate.
    batch_size: pairs per step (None: all).
    fast_compile: compile at XLA optimisation level 0 (`prefjax.jit_utils`): faster to compile, slower to
      run, same results up to rounding — for tests and quick runs.

  Returns:
    `(params, losses [num_steps])`: trained parameters and the loss before each step.
  """
  return _train("reward", "train_reward_model", model_config, params, data, key, num_steps, learning_rate,
                batch_size, fast_compile)


def train_pairwise_model(pair_config, params, data, key, *, num_steps=200, learning_rate=1e-3, batch_size=None,
                         fast_compile=False):
  """Trains the pairwise model: Adam on the mean `density.bernoulli_nll(f(a,b) − f(b,a), labels)`.

  Same loop and arguments as `train_reward_model` (`pair_config` from `pairwise_config`).
  """
  return _train("pairwise", "train_pairwise_model", pair_config, params, data, key, num_steps, learning_rate,
                batch_size, fast_compile)


# ----------------------------------------------------------------------------------------------------
# Checkpoints.


def _key_name(entry):
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _flat(tree):
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {"/".join(_key_name(k) for k in path): leaf for path, leaf in leaves}


def _check_shapes(expected_tree, tree, where):
  want = {k: tuple(v.shape) for k, v in _flat(expected_tree).items()}
  got = {k: tuple(np.shape(v)) for k, v in _flat(tree).items()}
  problems = [f"missing {k} {want[k]}" for k in sorted(set(want) - set(got))]
  problems += [f"unexpected {k} {got[k]}" for k in sorted(set(got) - set(want))]
  problems += [f"{k}: expected {want[k]}, got {got[k]}" for k in sorted(set(want) & set(got)) if want[k] != got[k]]
  if problems:
    shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
    raise PrefjaxError(f"{where}: parameters do not match the model config: {shown}")


def _config_dict(config):
  out = dataclasses.asdict(config)
  for name in ("dtype", "param_dtype"):
    out[name] = str(jnp.dtype(out[name]))
  return out


def save_reward_model(path, model_config, params, *, kind="reward"):
  """Writes a reward (or pairwise) model to directory `path`: config.json and params.npz.

  Args:
    path: directory (created).
    model_config: its `TransformerConfig`.
    params: its parameters.
    kind: "reward" or "pairwise".
  """
  if kind not in KINDS:
    raise PrefjaxError(f"save_reward_model: kind must be one of {KINDS}, got {kind!r}")
  params = nn.unbox(params)
  _check_shapes(_abstract_params(model_config), params, f"save_reward_model({path!r})")
  os.makedirs(path, exist_ok=True)
  arrays = {k: np.asarray(v) for k, v in _flat(params).items()}
  with open(os.path.join(path, PARAMS_FILE), "wb") as f:
    np.savez(f, **arrays)
  with open(os.path.join(path, CONFIG_FILE), "w") as f:
    json.dump({"format": FORMAT, "version": 1, "kind": kind, "model_config": _config_dict(model_config)}, f,
              indent=2)


def _abstract_params(config):
  return jax.eval_shape(lambda k: init_reward_model(config, k), jax.random.key(0))


def load_reward_model(path, *, kind="reward"):
  """Loads a model written by `save_reward_model`.

  Raises `PrefjaxError` naming the path when the directory, config.json or params.npz is missing or
  unreadable, when the stored kind is not `kind`, or when the parameters' names or shapes do not match the
  stored config (listing the differing arrays).

  Args:
    path: the directory.
    kind: the expected kind, "reward" or "pairwise" (None: either).

  Returns:
    `(model_config, params)`.
  """
  if not os.path.isdir(path):
    raise PrefjaxError(f"load_reward_model: no model checkpoint at {path!r} (directory does not exist)")
  files = {name: os.path.join(path, name) for name in (CONFIG_FILE, PARAMS_FILE)}
  for name, file in files.items():
    if not os.path.isfile(file):
      raise PrefjaxError(f"load_reward_model: {file!r} is missing (a checkpoint directory holds {CONFIG_FILE} "
                         f"and {PARAMS_FILE}, written by save_reward_model)")
  try:
    with open(files[CONFIG_FILE]) as f:
      meta = json.load(f)
    stored_kind = meta["kind"]
    model_config = lm_model.TransformerConfig(**meta["model_config"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise PrefjaxError(f"load_reward_model: {files[CONFIG_FILE]!r} is not a valid model config: {e}") from None
  if kind is not None and stored_kind != kind:
    raise PrefjaxError(f"load_reward_model: {path!r} holds a {stored_kind!r} model, expected {kind!r}")
  try:
    with np.load(files[PARAMS_FILE]) as data:
      arrays = {k: data[k] for k in data.files}
  except (OSError, ValueError) as e:
    raise PrefjaxError(f"load_reward_model: {files[PARAMS_FILE]!r} is not a readable .npz file: {e}") from None
  expected = _abstract_params(model_config)
  names = _flat(expected)
  _check_shapes(expected, arrays, f"load_reward_model({path!r})")
  leaves, treedef = jax.tree_util.tree_flatten(expected)
  del leaves
  params = jax.tree_util.tree_unflatten(
      treedef, [jnp.asarray(arrays[k], v.dtype) for k, v in names.items()])
  return model_config, params


def load_pairwise_model(path):
  """`load_reward_model(path, kind="pairwise")`."""
  return load_reward_model(path, kind="pairwise")

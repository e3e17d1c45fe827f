"""Online Elo ratings (Chatbot Arena's update) and the Elo scale for Bradley–Terry scores.

Elo with expected score E_a = 1 / (1 + base^{(R_b − R_a)/scale}) is Bradley–Terry on the rating scale
s = R · ln(base) / scale; the online update is one stochastic-gradient step per battle on the BT
log-likelihood, with step K · ln(base)/scale. With a small K-factor and many battles the ratings approach
the BT maximum-likelihood scores (Chiang et al. 2403.04132 §5), but they depend on the battle order.
"""

import functools
import math

import jax
import jax.numpy as jnp

from prefjax.errors import PrefjaxError
from prefjax.ranking import battles as battles_lib


@functools.partial(jax.jit, static_argnames=("num_models", "return_history"))
def _online_elo(model_a, model_b, outcome, num_models, k_factor, scale, base, init_rating,
                return_history):
  # Score of model_a in each battle: 1 (a wins), 0 (b wins), ½ (tie).
  score_a = jnp.where(outcome == battles_lib.A_WINS, 1.0,
                      jnp.where(outcome == battles_lib.B_WINS, 0.0, 0.5)).astype(k_factor.dtype)

  def step(ratings, battle):
    a, b, sa = battle
    expected_a = 1.0 / (1.0 + base**((ratings[b] - ratings[a]) / scale))
    delta = k_factor * (sa - expected_a)
    ratings = ratings.at[a].add(delta).at[b].add(-delta)
    return ratings, (ratings if return_history else None)

  init = jnp.full((num_models,), init_rating, k_factor.dtype)
  return jax.lax.scan(step, init, (model_a, model_b, score_a))


def online_elo(model_a, model_b, outcome, num_models, *, k_factor=4.0, scale=400.0, base=10.0,
               init_rating=1000.0, return_history=False):
  """Online Elo over battles in the given order, as Chatbot Arena's `compute_online_elo` (a `lax.scan`).

  For each battle: E_a = 1 / (1 + base^{(R_b − R_a)/scale}), S_a ∈ {1, 0, ½} (win, loss, tie),
  R_a ← R_a + K (S_a − E_a), R_b ← R_b + K ((1 − S_a) − (1 − E_a)) = R_b − K (S_a − E_a).

  Args:
    model_a: `[B]` int model indices.
    model_b: `[B]` int model indices.
    outcome: `[B]` outcome codes (`battles.A_WINS`, `B_WINS`, `TIE`).
    num_models: N.
    k_factor: K, the step size in rating points (Chatbot Arena: 4).
    scale: rating scale (400).
    base: logistic base (10).
    init_rating: every model's starting rating (1000).
    return_history: also return the `[B, N]` ratings after each battle.

  Returns:
    `[N]` final ratings, or `(ratings, history)` when `return_history`.
  """
  model_a = jnp.asarray(model_a, jnp.int32)
  model_b = jnp.asarray(model_b, jnp.int32)
  outcome = jnp.asarray(outcome, jnp.int32)
  if not model_a.ndim == model_b.ndim == outcome.ndim == 1 or not (
      model_a.shape == model_b.shape == outcome.shape):
    raise PrefjaxError(
        f"online_elo: model_a, model_b, outcome must all have shape [B], got {model_a.shape}, "
        f"{model_b.shape}, {outcome.shape}")
  for name, value in (("k_factor", k_factor), ("scale", scale), ("base", base)):
    if not battles_lib.is_tracer(value) and not float(value) > 0:
      raise PrefjaxError(f"online_elo: {name} must be > 0, got {value}")
  if not battles_lib.is_tracer(base) and float(base) == 1.0:
    raise PrefjaxError("online_elo: base must differ from 1")
  dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
  ratings, history = _online_elo(model_a, model_b, outcome, int(num_models),
                                 jnp.asarray(k_factor, dtype), jnp.asarray(scale, dtype),
                                 jnp.asarray(base, dtype), jnp.asarray(init_rating, dtype),
                                 bool(return_history))
  return (ratings, history) if return_history else ratings


def elo_from_battles(battles, **kwargs):
  """`online_elo` on a `Battles` table (keyword arguments as `online_elo`)."""
  return online_elo(battles.model_a, battles.model_b, battles.outcome, len(battles.model_names), **kwargs)


def elo_scale(scores, *, scale=400.0, base=10.0, init_rating=1000.0):
  """Bradley–Terry scores (natural-log strengths) on the Elo scale: R = init + scale/ln(base) · (s − s̄).

  Chatbot Arena reports its BT MLE this way (2403.04132 §5), so p(a ≻ b) = 1/(1 + base^{(R_b − R_a)/scale}).

  Args:
    scores: `[..., N]` scores with p(i ≻ j) = σ(s_i − s_j).
    scale: rating scale.
    base: logistic base.
    init_rating: the rating of the mean score.

  Returns:
    `[..., N]` ratings.
  """
  return _elo_scale(jnp.asarray(scores), scale / math.log(base), init_rating)


@jax.jit
def _elo_scale(scores, factor, init_rating):
  return init_rating + factor * (scores - jnp.mean(scores, axis=-1, keepdims=True))


def elo_to_scores(ratings, *, scale=400.0, base=10.0):
  """Inverse of `elo_scale` up to the shift: s = ln(base)/scale · (R − R̄)."""
  return _elo_scale(jnp.asarray(ratings), math.log(base) / scale, 0.0)

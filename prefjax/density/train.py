"""Training and scoring energy models on the 1-D grid (the density-estimation view, docs/theory.md §6).

- `make_sweep`: fine-tunes one energy MLP under many objective rows at once (vmapped), a host loop over
  compiled chunks of `record_every` steps that records the total variation to each row's target.
- `population_mixture_nll`: the exact population NLL of a mixture-of-annotators preference model under the
  true pair law (its excess risk, with no sampling noise).

Both are used by the `pbde_toy` / `pbde_misspecified` runners (`prefjax.runs.density`).
"""

import jax
import jax.numpy as jnp
import optax

from prefjax.density import grid as grid_lib
from prefjax.objectives import density as dens


def make_sweep(model, grid, loss_of, num_steps, lr, record_every, fast_compile=False, eval_x=None,
               progress=None):
  """vmap(train) over hyper-parameter rows `hp` [H, 3] and targets [H, G] from one initial params.

  `loss_of(logq [E], hp [3]) -> scalar` is the batch loss given the model's unnormalised log q at the
  evaluation points `eval_x` `[E]` (default: the whole grid). The objectives without a normaliser (DPO,
  geometric, IPO) only see log q at the pairs' points, so on a fine grid the caller passes the distinct pair
  points (fewer than the grid's) and each step evaluates the MLP there only: the same gradient, cheaper.
  Training runs as a host loop over chunks of `record_every` steps (one compiled chunk program), which
  records TV to the target on the full grid and loss, and calls `progress(chunk_index, tv [H], loss [H])`.

  Returns run(params0, hp, log_targets) -> (final params [H...], tv [H, R], loss [H, R]).
  """
  tx = optax.adam(optax.cosine_decay_schedule(lr, num_steps))
  num_records = num_steps // record_every
  eval_x = grid.x if eval_x is None else eval_x

  def loss_fn(p, hp):
    return loss_of(model.apply({"params": p}, eval_x), hp)

  def step(carry, _, hp):
    p, s = carry
    loss, g = jax.value_and_grad(loss_fn)(p, hp)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), loss

  def chunk(carry, hp, log_target):
    carry, losses = jax.lax.scan(lambda c, x: step(c, x, hp), carry, None, length=record_every)
    logq = grid_lib.normalise(model.apply({"params": carry[0]}, grid.x), grid.dx)
    return carry, grid_lib.total_variation(logq, log_target, grid.dx), losses[-1]

  init = jax.jit(jax.vmap(lambda p, _: (p, tx.init(p)), in_axes=(None, 0)))
  run_chunk = grid_lib.jit_maybe_fast(jax.vmap(chunk), fast_compile)

  def run(params0, hp, log_targets):
    carry = init(params0, hp)
    tvs, losses = [], []
    for r in range(num_records):
      carry, tv, loss = run_chunk(carry, hp, log_targets)
      tvs.append(tv)
      losses.append(loss)
      if progress is not None:
        progress(r, tv, loss)
    return carry[0], jnp.stack(tvs, axis=1), jnp.stack(losses, axis=1)

  return run


def population_mixture_nll(logq, mixture_logits, log_true, true_weights, pair_mass):
  """Expected NLL per pair under the true pair law, Σ_ij m_i m_j CE(P*(i ≻ j), P_θ(i ≻ j)), computed exactly.

  The population objective of the mixture likelihood: the true two-annotator probabilities P* in place of
  sampled labels and π_pre's mass m in place of sampled pairs, so the distance between a fit's value and the
  truth's (the entropy floor) is its excess risk with no sampling noise. Rows are mapped one at a time
  (memory O(G) per row, G² work).

  Args:
    logq: `[K, G]` model component log-densities on the grid.
    mixture_logits: `[K]` model mixture logits.
    log_true: `[K', G]` true annotator log-densities.
    true_weights: `[K']` true annotator weights.
    pair_mass: `[G]` probability of each grid point under the pair law (sums to 1).

  Returns:
    Scalar expected NLL.
  """
  true_weights = jnp.asarray(true_weights, log_true.dtype)

  def row(i):
    a = jnp.broadcast_to(logq[:, i][:, None], logq.shape)
    z = dens.mixture_preference_logits(a, logq, mixture_logits)
    p = grid_lib.mixture_probability(jnp.broadcast_to(log_true[:, i][:, None], log_true.shape), log_true,
                                     true_weights)
    return jnp.sum(pair_mass * (p * jax.nn.softplus(-z) + (1 - p) * jax.nn.softplus(z)))

  rows = jax.lax.map(row, jnp.arange(logq.shape[1]))
  return jnp.sum(pair_mass * rows)

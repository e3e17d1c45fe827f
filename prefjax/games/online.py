"""Online / self-play bandit trainer for preference games: parametric policies trained on the game losses.

docs/theory.md §4; the setting of EGPO's simulations (Zhou et al. arXiv:2503.08942, zhourunlong/EGPO
`simulations/run.py`). Each step the policy is updated with plain SGD on one of the game objectives of
`prefjax.objectives.nash` (registry `NASH_OBJECTIVES`: online IPO 1 / OMD, online IPO 2, Nash-MD,
Nash-MD-PG, EGPO), either exactly (all pairs of actions) or from samples of the current policy (the
preference model is queried for probabilities or Bernoulli labels). Every `record_every` steps the
duality gap of the current policy (`prefjax.games.nash.duality_gap`) is recorded inside the scan.

Policies (registry `POLICIES`):
- "tabular": logits θ ∈ R^N, θ_0 = the game's reference logits (π_0 = π_ref, as in EGPO).
- "neural": EGPO's MLP with a learned input vector: x ∈ R^D (N(0, 1)), `depth − 1` hidden layers
  Linear(D, D) + ReLU, an output Linear(D, N); Xavier-normal weights, zero biases (EGPO's
  `NeuralPolicy`, depth 3, D = 10). The reference policy is the network at initialisation (the game's
  `ref_logits` are ignored) and training starts there. Decision: EGPO's code shares the hidden and output
  layers across its batch of games (only the input vector is per game), coupling the games through the
  shared weights; here every game has its own network, so games are independent runs.

Tabular exact runs of "online_ipo_1", "egpo", "nash_md" and "online_ipo_2" use the closed-form gradients
of their losses (`TABULAR_GRADIENTS`, each equal to what autodiff computes through the loss; tested) instead
of autodiff, with P π as a matrix–vector product, and their sweeps scan over the batch of all games ×
learning rates (one `[B, N]` state, B = G·L, updated in place by a batched step inside one `lax.scan`)
rather than vmapping a per-game scan. Both choices are for speed on CPU (`benchmarks/game_throughput.py`;
A/B ratios measured back to back in one process, jax 0.10.2, 2 shared cores): for EGPO, N = 10 and 10 000
games in float32 this path is about 15× the earlier one (autodiff through the loss with P π as an
elementwise product and row sum) and 5× autodiff with a matvec. XLA CPU lowers the batched `dot` to a
fast kernel, while a multiply + row sum of length 10 is not vectorised well (3× on the autodiff path);
the closed form drops the log-softmaxes and the backward pass; and one flat batch axis is 2–3× a vmap over
a separate learning-rate axis (which turns the matvec into a transposed small matmul). These runs ignore
the key (they are deterministic), so a sweep computes them once and broadcasts over seeds.

A run is one pure function `train(key, P, ref_logits, beta, lr) -> OnlineResult`; `make_sweep` vmaps it
over games × seeds × learning rates under one `jit`, and `make_multi_sweep` compiles several algorithms /
modes into a single XLA program. Works in float32 and float64 (the dtype of the inputs; enable x64 for
float64).
"""

from typing import Dict, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prefjax.errors import PrefjaxError
from prefjax.games import nash
from prefjax.games import preferences
from prefjax.objectives import nash as nobj
from prefjax.objectives.registry import Registry

MODES = ("exact", "sampled")


class OnlineConfig(NamedTuple):
  """Static configuration of one online training run (shapes and step counts; swept scalars are arguments).

  Attributes:
    algorithm: a `NASH_OBJECTIVES` name ("online_ipo_1", "online_ipo_2", "nash_md", "nash_md_pg", "egpo").
    num_actions: N.
    num_steps: T updates (an EGPO update is one full extragradient step, two gradients).
    record_every: steps between duality-gap records (divides T); records at 0, k, 2k, …, T.
    mode: "exact" (all pairs) or "sampled" (`num_samples` draws per loss; EGPO resamples per half step).
    num_samples: samples per loss evaluation in sampled mode (EGPO: 100).
    labels: "probabilities" or "bernoulli" (sampled mode: what a preference query returns).
    policy: "tabular" or "neural".
    depth: MLP depth (number of Linear layers) for the neural policy (EGPO: 3).
    width: MLP width D for the neural policy (EGPO: 10).
    nash_md_convention: "omd" (η̃ = 4·lr/(βN)) or "egpo_code" (η̃ = 2·lr/(βN), EGPO's released code) for
      the mixture step of "nash_md" and "nash_md_pg" (`prefjax.objectives.nash.nash_md_mixture_eta`).
    closed_form: tabular exact runs of the algorithms in `TABULAR_GRADIENTS` use the closed-form gradient
      and the batched sweep (default); False forces autodiff through the loss and a vmapped per-game scan
      (the same maths, slower; for tests and the benchmark's comparison).
  """
  algorithm: str
  num_actions: int
  num_steps: int
  record_every: int
  mode: str = "exact"
  num_samples: int = 100
  labels: str = "probabilities"
  policy: str = "tabular"
  depth: int = 3
  width: int = 10
  nash_md_convention: str = "omd"
  closed_form: bool = True


class OnlineResult(NamedTuple):
  """Output of one run (R = T / record_every + 1 records).

  Attributes:
    steps: `[R]` int32 update counts of the records (0, k, …, T).
    gap: `[R]` duality gaps of π_θ at those steps.
    final_logits: `[N]` logits of the final policy.
  """
  steps: jax.Array
  gap: jax.Array
  final_logits: jax.Array


# ----------------------------------------------------------------------------------------------------
# Policies: init(key, ref_logits, config) -> params; apply(params) -> logits [N].


class Policy(NamedTuple):
  init: callable
  apply: callable


def _tabular_init(key, ref_logits, config):
  del key, config
  return ref_logits


def _tabular_apply(params):
  return params


def _neural_init(key, ref_logits, config):
  dtype = ref_logits.dtype
  d, n = config.width, config.num_actions
  keys = jax.random.split(key, config.depth + 1)

  def xavier(k, fan_in, fan_out):
    return jax.random.normal(k, (fan_in, fan_out), dtype) * jnp.sqrt(jnp.asarray(2.0 / (fan_in + fan_out), dtype))

  hidden = [(xavier(keys[i], d, d), jnp.zeros(d, dtype)) for i in range(config.depth - 1)]
  return {"input": jax.random.normal(keys[-1], (d,), dtype), "hidden": hidden,
          "out": (xavier(keys[-2], d, n), jnp.zeros(n, dtype))}


def _neural_apply(params):
  x = params["input"]
  for w, b in params["hidden"]:
    x = jax.nn.relu(x @ w + b)
  w, b = params["out"]
  return x @ w + b


POLICIES = Registry("policy")
POLICIES.register("tabular", Policy(_tabular_init, _tabular_apply))
POLICIES.register("neural", Policy(_neural_init, _neural_apply))


# ----------------------------------------------------------------------------------------------------
# Closed-form gradients of the exact losses for tabular logits.


def _center(x):
  return x - jnp.mean(x, axis=-1, keepdims=True)


def online_ipo_1_tabular_grad(logits, target_logits, ref_logits, P, beta):
  r"""∇_θ of the exact online-IPO-1 loss for tabular logits θ, in closed form (no autodiff).

  For L(θ; π') = (2/N) Σ_y (r_y − r̄)², r = ℓ_θ − Pπ'/β, ℓ_θ = log π_θ − log π_ref
  (`prefjax.objectives.nash.online_ipo_1_loss`, arXiv:2503.08942), ∂L/∂ℓ = (4/N)(r − r̄) sums to zero, so
  the softmax Jacobian (I − 1π_θᵀ)ᵀ leaves it unchanged and

    ∇_θ L = (4/N)(r − r̄),   r − r̄ = centre(θ − ref_logits − Pπ'/β)

  (the log-normalisers of π_θ and π_ref are constants that the centring removes, so no log-softmax is
  needed). This is exactly the gradient autodiff computes through the loss (tested).

  Args:
    logits: `[N]` tabular logits θ.
    target_logits: `[N]` logits of the (detached) target π'.
    ref_logits: `[N]` logits of π_ref.
    P: `[N, N]` preference matrix.
    beta: β > 0.

  Returns:
    `[N]` gradient.
  """
  n = logits.shape[-1]
  r = logits - ref_logits - (P @ jax.nn.softmax(target_logits)) / beta
  return (4.0 / n) * _center(r)


def online_ipo_2_tabular_grad(logits, ref_logits, P, beta):
  r"""∇_θ of the exact online-IPO-2 loss for tabular logits, in closed form (`online_ipo_2_loss`).

    ∇_θ L = 4 π ⊙ (ℓ − E_π ℓ − (Pπ − ½)/β),   π = π_θ,

  with ℓ − E_π ℓ = (θ − ref_logits) − E_π(θ − ref_logits) (normalisers cancel). Equal to autodiff (tested).

  Args:
    logits: `[N]` tabular logits θ.
    ref_logits: `[N]` logits of π_ref.
    P: `[N, N]` preference matrix.
    beta: β > 0.

  Returns:
    `[N]` gradient.
  """
  pi = jax.nn.softmax(logits)
  d = logits - ref_logits
  return 4.0 * pi * (d - jnp.sum(pi * d) - (P @ pi - 0.5) / beta)


def _ipo1_grad(logits, target, ref, P, beta, mix_eta):
  del mix_eta
  return online_ipo_1_tabular_grad(logits, target, ref, P, beta)


def _nash_md_grad(logits, target, ref, P, beta, mix_eta):
  del target
  return online_ipo_1_tabular_grad(logits, nobj.mixture_logits(logits, ref, beta, mix_eta), ref, P, beta)


def _ipo2_grad(logits, target, ref, P, beta, mix_eta):
  del target, mix_eta
  return online_ipo_2_tabular_grad(logits, ref, P, beta)


# algorithm → grad(logits, target_logits, ref_logits, P, beta, mix_eta) -> [N], the gradient of the
# registered exact loss (`prefjax.objectives.nash.NASH_OBJECTIVES[algorithm].exact`) for tabular logits.
TABULAR_GRADIENTS = {
    "online_ipo_1": _ipo1_grad,
    "omd": _ipo1_grad,
    "egpo": _ipo1_grad,
    "extragradient": _ipo1_grad,
    "nash_md": _nash_md_grad,
    "online_ipo_2": _ipo2_grad,
}


def uses_closed_form(config):
  """Whether runs of `config` use the closed-form tabular gradient (tabular policy, exact mode)."""
  return (config.closed_form and config.policy == "tabular" and config.mode == "exact"
          and config.algorithm in TABULAR_GRADIENTS)


def _closed_form_step(config):
  """`step(theta, P, ref_logits, beta, lr) -> theta'`: one plain-SGD update of one game's tabular logits.

  EGPO (extragradient): θ_{t+½} = θ_t − lr ∇L(θ_t; π_t), θ_{t+1} = θ_t − lr ∇L(θ_t; π_{t+½}), i.e.
  `prefjax.objectives.nash.egpo_step` with `optax.sgd(lr)`; the others: θ_{t+1} = θ_t − lr ∇L(θ_t).
  For the online-IPO-1-type losses (online IPO 1, EGPO, Nash-MD) the update
  θ − lr (4/N) centre(θ − ref − Pπ'/β) is evaluated as u + (a/β) centre(Pπ'), with a = 4·lr/N and the
  anchor u = θ − a centre(θ − ref) shared by EGPO's two half steps; EGPO's half step is left uncentred
  (only its softmax is used, which ignores a constant shift). Same maths as `TABULAR_GRADIENTS`, fewer
  operations per step.
  """
  algorithm = config.algorithm
  n = config.num_actions
  extragradient = nobj.get_game_objective(algorithm).extragradient
  grad = TABULAR_GRADIENTS[algorithm]
  ipo1_family = grad in (_ipo1_grad, _nash_md_grad)

  def step(theta, P, ref_logits, beta, lr):
    mix_eta = nobj.nash_md_mixture_eta(lr, beta, n, config.nash_md_convention)
    if not ipo1_family:
      return theta - lr * grad(theta, theta, ref_logits, P, beta, mix_eta)
    a = (4.0 / n) * lr
    u = theta - a * _center(theta - ref_logits)
    c = a / beta
    if grad is _nash_md_grad:
      target = nobj.mixture_logits(theta, ref_logits, beta, mix_eta)
    elif extragradient:
      target = u + c * (P @ jax.nn.softmax(theta))  # θ_{t+½} up to a constant.
    else:
      target = theta
    return u + c * _center(P @ jax.nn.softmax(target))

  return step


def _record_scan(config, step, gap, theta0):
  """Runs `step` T times from `theta0` under `lax.scan`, with `gap(theta)` at 0, k, 2k, …, T.

  Returns `(final theta, gaps [R, ...])`.
  """

  def record(theta, _):
    theta = jax.lax.fori_loop(0, config.record_every, lambda _, th: step(th), theta)
    return theta, gap(theta)

  theta, gaps = jax.lax.scan(record, theta0, None, length=config.num_steps // config.record_every)
  return theta, jnp.concatenate([gap(theta0)[None], gaps])


def _record_steps(config):
  num_records = config.num_steps // config.record_every
  return jnp.arange(num_records + 1, dtype=jnp.int32) * config.record_every


def _closed_form_train(config):
  step = _closed_form_step(config)

  def train(key, P, ref_logits, beta, lr):
    del key  # Deterministic.
    theta, gaps = _record_scan(
        config, lambda th: step(th, P, ref_logits, beta, lr),
        lambda th: nash.duality_gap(jax.nn.softmax(th), P, ref_logits, beta), ref_logits)
    return OnlineResult(steps=_record_steps(config), gap=gaps, final_logits=theta)

  return train


def _closed_form_sweep_fn(config):
  """The sweep of a closed-form run: one scan over the flat batch of games × learning rates, broadcast over seeds."""
  step = jax.vmap(_closed_form_step(config), in_axes=(0, 0, 0, None, 0))
  gap = jax.vmap(nash.duality_gap, in_axes=(0, 0, 0, None))

  def sweep(keys, P, ref_logits, beta, lrs):
    g, n = ref_logits.shape
    s, l = keys.shape[0], lrs.shape[0]
    # Flatten games × learning rates into one batch axis (game-major); no copy when L = 1.
    Pb = jnp.repeat(P, l, axis=0) if l > 1 else P
    refb = jnp.repeat(ref_logits, l, axis=0) if l > 1 else ref_logits
    lrb = jnp.tile(lrs, g)
    theta, gaps = _record_scan(config, lambda th: step(th, Pb, refb, beta, lrb),
                               lambda th: gap(jax.nn.softmax(th), Pb, refb, beta), refb)
    r = gaps.shape[0]
    gaps = jnp.broadcast_to(gaps.T.reshape(g, 1, l, r), (g, s, l, r))
    theta = jnp.broadcast_to(theta.reshape(g, 1, l, n), (g, s, l, n))
    steps = jnp.broadcast_to(_record_steps(config), (g, s, l, r))
    return OnlineResult(steps=steps, gap=gaps, final_logits=theta)

  return sweep


# ----------------------------------------------------------------------------------------------------
# The run.


def check_config(config):
  """Raises `PrefjaxError` naming the bad field of an `OnlineConfig`."""
  nobj.get_game_objective(config.algorithm)
  POLICIES.get(config.policy)
  if config.mode not in MODES:
    raise PrefjaxError(f"OnlineConfig.mode must be one of {MODES}, got {config.mode!r}")
  if config.labels not in nobj.LABELS:
    raise PrefjaxError(f"OnlineConfig.labels must be one of {nobj.LABELS}, got {config.labels!r}")
  if config.nash_md_convention not in nobj.NASH_MD_CONVENTIONS:
    raise PrefjaxError(f"OnlineConfig.nash_md_convention must be one of {nobj.NASH_MD_CONVENTIONS}, "
                       f"got {config.nash_md_convention!r}")
  for field in ("num_actions", "num_steps", "record_every", "num_samples", "width"):
    if int(getattr(config, field)) < 1:
      raise PrefjaxError(f"OnlineConfig.{field} must be >= 1, got {getattr(config, field)}")
  if config.depth < 1:
    raise PrefjaxError(f"OnlineConfig.depth must be >= 1, got {config.depth}")
  if config.num_steps % config.record_every:
    raise PrefjaxError(f"OnlineConfig.record_every={config.record_every} must divide "
                       f"num_steps={config.num_steps}")


def make_train(config):
  """Builds `train(key, P, ref_logits, beta, lr) -> OnlineResult` for one game, seed and learning rate.

  Tabular exact runs of the algorithms in `TABULAR_GRADIENTS` (unless `config.closed_form` is False) step
  with the closed-form gradient and ignore the key; all others differentiate the registered loss.

  Args:
    config: an `OnlineConfig` (static).

  Returns:
    A pure, jit/vmap-compatible function of `key`, `P` `[N, N]`, `ref_logits` `[N]`, `beta` `[]`, `lr` `[]`.
  """
  check_config(config)
  if uses_closed_form(config):
    return _closed_form_train(config)
  objective = nobj.get_game_objective(config.algorithm)
  policy = POLICIES.get(config.policy)
  n = config.num_actions

  def train(key, P, ref_logits, beta, lr):
    k_init, k_run = jax.random.split(key)
    params = policy.init(k_init, ref_logits, config)
    ref = jax.lax.stop_gradient(policy.apply(params))
    mix_eta = nobj.nash_md_mixture_eta(lr, beta, n, config.nash_md_convention)
    opt = optax.sgd(lr)

    def loss_fn(p, q, k):
      logits, target = policy.apply(p), policy.apply(q)
      if config.mode == "exact":
        return objective.exact(logits, target, ref, P, beta, mix_eta, k)
      return objective.sampled(logits, target, ref, P, beta, mix_eta, k, config.num_samples, config.labels)

    def step(carry, t):
      params, opt_state = carry
      k = jax.random.fold_in(k_run, t)
      if objective.extragradient:
        params, opt_state, _ = nobj.egpo_step(loss_fn, opt, params, opt_state, k)
      else:
        g = jax.grad(loss_fn)(params, params, k)
        updates, opt_state = opt.update(g, opt_state, params)
        params = optax.apply_updates(params, updates)
      return (params, opt_state), None

    def gap(params):
      return nash.duality_gap(jax.nn.softmax(policy.apply(params)), P, ref, beta)

    def record(carry, r):
      ts = r * config.record_every + jnp.arange(config.record_every)
      carry, _ = jax.lax.scan(step, carry, ts)
      return carry, gap(carry[0])

    carry = (params, opt.init(params))
    num_records = config.num_steps // config.record_every
    (params, _), gaps = jax.lax.scan(record, carry, jnp.arange(num_records))
    gaps = jnp.concatenate([gap(carry[0])[None], gaps])
    steps = jnp.arange(num_records + 1, dtype=jnp.int32) * config.record_every
    return OnlineResult(steps=steps, gap=gaps, final_logits=policy.apply(params))

  return train


def _sweep_fn(config):
  if uses_closed_form(config):
    check_config(config)
    return _closed_form_sweep_fn(config)
  train = make_train(config)
  over_lr = jax.vmap(train, in_axes=(None, None, None, None, 0))
  over_seed = jax.vmap(over_lr, in_axes=(0, None, None, None, None))
  return jax.vmap(over_seed, in_axes=(None, 0, 0, None, None))


def check_sweep_inputs(fn, P, ref_logits, beta, lrs, num_actions=None):
  """Validates a sweep's games and scalars; raises `PrefjaxError` naming the problem."""
  if jnp.ndim(P) != 3 or jnp.shape(P)[1] != jnp.shape(P)[2]:
    raise PrefjaxError(f"{fn}: P must have shape [G, N, N], got {jnp.shape(P)}")
  g, n = jnp.shape(P)[0], jnp.shape(P)[1]
  if num_actions is not None and n != num_actions:
    raise PrefjaxError(f"{fn}: P has {n} actions but the config says num_actions={num_actions}")
  if jnp.shape(ref_logits) != (g, n):
    raise PrefjaxError(f"{fn}: ref_logits must have shape [G, N] = [{g}, {n}] to match P, "
                       f"got {jnp.shape(ref_logits)}")
  if nash.is_concrete(P):
    preferences.validate(P, name=f"{fn}: P")
  if nash.is_concrete(ref_logits) and not np.all(np.isfinite(np.asarray(ref_logits))):
    raise PrefjaxError(f"{fn}: ref_logits has non-finite entries")
  if jnp.ndim(beta) != 0:
    raise PrefjaxError(f"{fn}: beta must be a scalar, got shape {jnp.shape(beta)}")
  nash.check_positive(beta, "beta", fn)
  if jnp.ndim(lrs) != 1:
    raise PrefjaxError(f"{fn}: lrs must be a vector [L], got shape {jnp.shape(lrs)}")
  nash.check_positive(lrs, "lrs", fn)


def make_sweep(config):
  """`jit(vmap games × vmap seeds × vmap learning rates)` of `make_train(config)`.

  Returns:
    `sweep(keys [S], P [G, N, N], ref_logits [G, N], beta [], lrs [L]) -> OnlineResult` with leading axes
    `[G, S, L]` (steps `[G, S, L, R]`, gap `[G, S, L, R]`, final_logits `[G, S, L, N]`).
  """
  fn = jax.jit(_sweep_fn(config))

  def sweep(keys, P, ref_logits, beta, lrs):
    check_sweep_inputs("online sweep", P, ref_logits, beta, lrs, config.num_actions)
    return fn(keys, P, ref_logits, beta, lrs)

  return sweep


def make_multi_sweep(configs: Dict[str, OnlineConfig]):
  """Several algorithms / modes in ONE jitted XLA program (one compilation instead of one per config).

  Args:
    configs: name → `OnlineConfig` (all with the same `num_actions`).

  Returns:
    `sweep(keys [S], P [G, N, N], ref_logits [G, N], beta [], lrs [L]) -> {name: OnlineResult [G, S, L, ...]}`.
    Every configuration sees the same keys (common random numbers across algorithms).
  """
  if not configs:
    raise PrefjaxError("make_multi_sweep: configs is empty")
  sizes = {c.num_actions for c in configs.values()}
  if len(sizes) != 1:
    raise PrefjaxError(f"make_multi_sweep: every config needs the same num_actions, got {sorted(sizes)}")
  num_actions = next(iter(sizes))
  fns = {name: _sweep_fn(c) for name, c in configs.items()}
  jitted = jax.jit(lambda *args: {name: f(*args) for name, f in fns.items()})

  def sweep(keys, P, ref_logits, beta, lrs):
    check_sweep_inputs("online sweep", P, ref_logits, beta, lrs, num_actions)
    return jitted(keys, P, ref_logits, beta, lrs)

  return sweep


def seed_keys(seed, num_seeds):
  """`[S]` PRNG keys for a sweep, split from `PRNGKey(seed)`."""
  return jax.random.split(jax.random.PRNGKey(int(seed)), int(num_seeds))

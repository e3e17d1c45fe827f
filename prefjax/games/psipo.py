"""Exact ΨPO / IPO / RLHF oracles for tabular (bandit) policies.

Azar et al., "A General Theoretical Paradigm to Understand Learning from Human Preferences"
(arXiv:2310.12036), docs/theory.md §1. For a finite action set of size N, a preference matrix
P[i, j] = p(y_i ≻ y_j), a behaviour (data) policy μ, a reference policy π_ref and a regularisation
strength τ (called β in the DPO literature; the same quantity), the ΨPO objective is

  J_Ψ(π) = E_{y∼π, y'∼μ}[Ψ(p(y ≻ y'))] − τ KL(π ‖ π_ref),

whose unique maximiser is π*(y) ∝ π_ref(y) exp(g_Ψ(y) / τ) with g_Ψ(y) = E_{y'∼μ} Ψ(p(y ≻ y')).
Ψ = identity is IPO; Ψ = logit with Bradley–Terry preferences is RLHF / DPO.

Conventions:
- Policies are probability vectors `[..., N]`; logits are `[..., N]` (policy = softmax(logits));
  preference matrices are `[..., N, N]`. Leading (batch) axes broadcast explicitly against each other;
  the regularisation strength `tau` / `beta` is a scalar (sweep it with `jax.vmap`).
- Every public function of `Ψ` takes either a name from `PSI` or a callable applied elementwise to P
  (under `jax.jit`, mark `psi` static: `jax.jit(psipo_optimum, static_argnames="psi")`).
- The jax functions are pure and jit/vmap-compatible. Value checks (P is a preference matrix, μ and π_ref
  are distributions, τ > 0, action ids in range) run only on concrete inputs; shape checks always run.
- `ipo_empirical_minimiser` is a host (numpy float64) oracle and is not traceable.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse import csgraph

from prefjax.errors import PrefjaxError
from prefjax.games import preferences
from prefjax.games import tabular


def identity(q):
  """Ψ(q) = q: IPO (Azar et al. arXiv:2310.12036, §5). Bounded, so the optimum is never deterministic."""
  return q


def logit(q):
  """Ψ(q) = log(q / (1 − q)): RLHF / DPO under Bradley–Terry (arXiv:2310.12036).

  Unbounded: logit(1) = +∞ and logit(0) = −∞, so deterministic preferences give g_Ψ = ±∞ and a
  deterministic ΨPO optimum whatever τ (see `psipo_optimum`).
  """
  q = jnp.asarray(q)
  return jnp.log(q) - jnp.log1p(-q)


def clipped_logit(eps):
  """Returns Ψ(q) = logit(clip(q, eps, 1 − eps)): a bounded logit that keeps optima stochastic.

  Args:
    eps: clipping level in (0, ½).

  Returns:
    A callable Ψ, usable wherever a Ψ name is accepted.
  """
  eps = float(eps)
  if not 0.0 < eps < 0.5:
    raise PrefjaxError(f"clipped_logit: eps must lie in (0, 0.5), got {eps}")

  def psi(q):
    return logit(jnp.clip(jnp.asarray(q), eps, 1.0 - eps))

  return psi


# Named Ψ functions. Any callable mapping preference probabilities elementwise is accepted too.
PSI = {
    "identity": identity,
    "logit": logit,
}


def resolve_psi(psi):
  """Returns the callable Ψ for a name in `PSI` or a callable; raises `PrefjaxError` otherwise."""
  if callable(psi):
    return psi
  if isinstance(psi, str):
    try:
      return PSI[psi]
    except KeyError:
      raise PrefjaxError(
          f"unknown psi {psi!r}; known names: {sorted(PSI)} (or pass a callable)") from None
  raise PrefjaxError(f"psi must be a name in {sorted(PSI)} or a callable, got {type(psi).__name__}")


# ----------------------------------------------------------------------------------------------------
# Input checks.


def _is_concrete(*xs):
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_scalar_positive(value, name, fn):
  if jnp.ndim(value) != 0:
    raise PrefjaxError(
        f"{fn}: {name} must be a scalar, got shape {jnp.shape(value)} (use jax.vmap to sweep it)")
  if _is_concrete(value):
    v = float(value)
    if not (np.isfinite(v) and v > 0):
      raise PrefjaxError(f"{fn}: {name} must be a finite number > 0, got {v}")


def _check_vector(x, name, fn, n=None):
  x = jnp.asarray(x)
  if x.ndim < 1:
    raise PrefjaxError(f"{fn}: {name} must have shape [..., N], got a scalar")
  if n is not None and x.shape[-1] != n:
    raise PrefjaxError(
        f"{fn}: {name} must have shape [..., {n}] to match N = {n} actions, got {x.shape}")
  return x


def _check_distribution(x, name, fn, n=None, atol=1e-5):
  x = _check_vector(x, name, fn, n)
  if _is_concrete(x):
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
      raise PrefjaxError(f"{fn}: {name} has non-finite entries")
    if arr.min() < 0:
      raise PrefjaxError(f"{fn}: {name} must be non-negative, got min {arr.min():.4g}")
    err = np.abs(arr.sum(axis=-1) - 1.0).max()
    if err > atol:
      raise PrefjaxError(f"{fn}: {name} must sum to 1 over its last axis, off by {err:.3g}")
  return x


def _check_finite(x, name, fn, n=None):
  x = _check_vector(x, name, fn, n)
  if _is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
    raise PrefjaxError(f"{fn}: {name} has non-finite entries")
  return x


def _check_preferences(P, fn):
  P = jnp.asarray(P)
  if P.ndim < 2 or P.shape[-1] != P.shape[-2]:
    raise PrefjaxError(f"{fn}: P must have shape [..., N, N], got {P.shape}")
  if _is_concrete(P):
    preferences.validate(P, name=f"{fn}: P")
  return P


def _broadcast(fn, *named):
  """Broadcasts the leading axes of (name, array, core_ndim) triples to one batch shape, explicitly."""
  try:
    batch = np.broadcast_shapes(*(a.shape[:a.ndim - k] for _, a, k in named))
  except ValueError:
    shapes = ", ".join(f"{name} {a.shape}" for name, a, _ in named)
    raise PrefjaxError(f"{fn}: leading (batch) axes do not broadcast: {shapes}") from None
  return tuple(jnp.broadcast_to(a, batch + a.shape[a.ndim - k:]) for _, a, k in named)


def _check_actions(chosen, rejected, num_actions, fn):
  chosen = chosen if hasattr(chosen, "dtype") else np.asarray(chosen)
  rejected = rejected if hasattr(rejected, "dtype") else np.asarray(rejected)
  for name, a in (("chosen", chosen), ("rejected", rejected)):
    if not jnp.issubdtype(a.dtype, jnp.integer):
      raise PrefjaxError(f"{fn}: {name} must hold integer action ids, got dtype {a.dtype}")
    if a.ndim != 1:
      raise PrefjaxError(f"{fn}: {name} must have shape [M] (one entry per pair), got {a.shape}")
  if chosen.shape != rejected.shape:
    raise PrefjaxError(
        f"{fn}: chosen and rejected must have the same shape, got {chosen.shape} and {rejected.shape}")
  if chosen.shape[0] == 0:
    raise PrefjaxError(f"{fn}: the dataset is empty (chosen and rejected have no pairs)")
  for name, a in (("chosen", chosen), ("rejected", rejected)):
    if _is_concrete(a):
      arr = np.asarray(a)
      if arr.min() < 0 or arr.max() >= num_actions:
        raise PrefjaxError(
            f"{fn}: {name} action ids must lie in [0, {num_actions}), got range "
            f"[{arr.min()}, {arr.max()}]")
  return chosen, rejected


def _host_logits(x, name, n, fn):
  arr = np.asarray(x, dtype=np.float64)
  if arr.shape != (n,):
    raise PrefjaxError(f"{fn}: {name} must have shape [{n}], got {arr.shape}")
  if not np.all(np.isfinite(arr)):
    raise PrefjaxError(f"{fn}: {name} has non-finite entries")
  return arr


def _check_weights(weights, num_pairs, fn):
  weights = jnp.asarray(weights)
  if weights.shape != (num_pairs,):
    raise PrefjaxError(f"{fn}: weights must have shape [{num_pairs}] (one per pair), got {weights.shape}")
  if _is_concrete(weights):
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or w.min() < 0:
      raise PrefjaxError(f"{fn}: weights must be finite and non-negative")
    if w.sum() <= 0:
      raise PrefjaxError(f"{fn}: weights must not all be zero")
  return weights


# ----------------------------------------------------------------------------------------------------
# Population ΨPO.


def psi_preference_against(P, mu, psi="identity"):
  """g_Ψ(y) = E_{y'∼μ} Ψ(p(y ≻ y')): each action's expected Ψ-preference against μ.

  Terms with μ(y') = 0 are dropped (so an infinite Ψ(p(y ≻ y')) outside supp(μ) does not give 0·∞).
  For Ψ = identity this is `tabular.preference_against(P, mu)` = (P μ)_y.

  Args:
    P: `[..., N, N]` preference matrix.
    mu: `[..., N]` behaviour policy.
    psi: a name in `PSI` or a callable applied elementwise to P.

  Returns:
    `[..., N]` values g_Ψ(y); ±∞ (or NaN when +∞ and −∞ meet in one row) for unbounded Ψ on
    deterministic preferences.
  """
  fn = "psi_preference_against"
  psi_fn = resolve_psi(psi)
  P = _check_preferences(P, fn)
  mu = _check_distribution(mu, "mu", fn, P.shape[-1])
  P, mu = _broadcast(fn, ("P", P, 2), ("mu", mu, 1))
  return _gain(P, mu, psi_fn, fn)


def _gain(P, mu, psi_fn, fn):
  psi_P = jnp.asarray(psi_fn(P))
  if psi_P.shape != P.shape:
    raise PrefjaxError(
        f"{fn}: psi must act elementwise on P (shape {P.shape}), but returned shape {psi_P.shape}")
  mu_row = mu[..., None, :]
  in_support = mu_row > 0
  return jnp.sum(jnp.where(in_support, mu_row * jnp.where(in_support, psi_P, 0.0), 0.0), axis=-1)


def psipo_objective(policy, P, mu, ref, tau, psi="identity"):
  """ΨPO objective E_{y∼π, y'∼μ}[Ψ(p(y ≻ y'))] − τ KL(π ‖ π_ref) (arXiv:2310.12036).

  With Ψ = identity this is IPO's p(π ≻ μ) − τ KL(π ‖ π_ref); with Ψ = logit and Bradley–Terry
  preferences p(y ≻ y') = σ(r(y) − r(y')) it is the RLHF objective E_π r − τ KL up to a constant.
  Its maximum over π is τ log Σ_y π_ref(y) exp(g_Ψ(y)/τ), attained at `psipo_optimum`.

  Args:
    policy: `[..., N]` policy π (probabilities; use `jax.nn.softmax(logits)` for logits).
    P: `[..., N, N]` preference matrix.
    mu: `[..., N]` behaviour policy μ (the opponent y' is drawn from).
    ref: `[..., N]` reference policy π_ref.
    tau: scalar regularisation strength τ > 0 (β in the DPO literature).
    psi: a name in `PSI` or a callable applied elementwise to P (non-decreasing on [0, 1] in the paper).

  Returns:
    `[...]` objective values (leading axes of the inputs broadcast).
  """
  fn = "psipo_objective"
  psi_fn = resolve_psi(psi)
  P = _check_preferences(P, fn)
  n = P.shape[-1]
  policy = _check_distribution(policy, "policy", fn, n)
  mu = _check_distribution(mu, "mu", fn, n)
  ref = _check_distribution(ref, "ref", fn, n)
  _check_scalar_positive(tau, "tau", fn)
  policy, P, mu, ref = _broadcast(
      fn, ("policy", policy, 1), ("P", P, 2), ("mu", mu, 1), ("ref", ref, 1))
  g = _gain(P, mu, psi_fn, fn)
  expected = jnp.sum(jnp.where(policy > 0, policy * jnp.where(policy > 0, g, 0.0), 0.0), axis=-1)
  return expected - tau * tabular.kl(policy, ref)


def _optimum_logits(g, ref, tau):
  """log π_ref + g/τ, with the ±∞ conventions of `psipo_optimum` (−∞ outside supp(π_ref))."""
  in_ref = ref > 0
  log_ref = jnp.where(in_ref, jnp.log(jnp.where(in_ref, ref, 1.0)), -jnp.inf)
  logits = log_ref + jnp.where(in_ref, g / tau, 0.0)
  top = in_ref & (g == jnp.inf)
  any_top = jnp.any(top, axis=-1, keepdims=True)
  return jnp.where(any_top, jnp.where(top, log_ref, -jnp.inf), logits)


def psipo_optimum(P, mu, ref, tau, psi="identity"):
  """Closed-form ΨPO optimum π*(y) ∝ π_ref(y) exp(E_{y'∼μ} Ψ(p(y ≻ y')) / τ) (arXiv:2310.12036).

  Unique maximiser of `psipo_objective` over the simplex (the objective is strictly concave in π).
  Ψ = identity gives the IPO optimum, which also minimises `ipo_population_loss` when supp(μ) is full.

  Unbounded Ψ (e.g. "logit") on deterministic preferences gives infinite g_Ψ: the optimum is then
  deterministic. Convention: if some actions in supp(π_ref) have g_Ψ = +∞, π* is π_ref restricted to
  them and renormalised (every other action, finite, −∞ or NaN, gets 0); otherwise actions with
  g_Ψ = −∞ get probability 0. An action whose g_Ψ is NaN (a +∞ and a −∞ term met in its expectation,
  e.g. logit for the middle action of a deterministic total order) makes the objective undefined: the
  result is NaN unless some action has g_Ψ = +∞. Use `clipped_logit(eps)` for a finite version.

  Args:
    P: `[..., N, N]` preference matrix.
    mu: `[..., N]` behaviour policy μ.
    ref: `[..., N]` reference policy π_ref (zeros allowed; π* is 0 there).
    tau: scalar regularisation strength τ > 0 (β in the DPO literature).
    psi: a name in `PSI` or a callable applied elementwise to P.

  Returns:
    `[..., N]` optimal policy (probabilities).
  """
  fn = "psipo_optimum"
  psi_fn = resolve_psi(psi)
  P = _check_preferences(P, fn)
  n = P.shape[-1]
  mu = _check_distribution(mu, "mu", fn, n)
  ref = _check_distribution(ref, "ref", fn, n)
  _check_scalar_positive(tau, "tau", fn)
  P, mu, ref = _broadcast(fn, ("P", P, 2), ("mu", mu, 1), ("ref", ref, 1))
  g = _gain(P, mu, psi_fn, fn)
  return jax.nn.softmax(_optimum_logits(g, ref, tau), axis=-1)


def rlhf_optimum(rewards, ref, beta):
  """KL-regularised reward maximiser argmax_π E_π r − β KL(π ‖ π_ref) = softmax(log π_ref + r/β).

  The RLHF / DPO optimum (Rafailov et al. arXiv:2305.18290, Eq. 4). It equals `psipo_optimum` with
  Ψ = logit and P = `preferences.bradley_terry(rewards)` for any μ, since then
  g_Ψ(y) = r(y) − E_μ r (arXiv:2310.12036).

  Args:
    rewards: `[..., N]` finite rewards r(y).
    ref: `[..., N]` reference policy π_ref (zeros allowed).
    beta: scalar regularisation strength β > 0 (τ in the IPO literature).

  Returns:
    `[..., N]` optimal policy (probabilities).
  """
  fn = "rlhf_optimum"
  rewards = _check_finite(rewards, "rewards", fn)
  ref = _check_distribution(ref, "ref", fn, rewards.shape[-1])
  _check_scalar_positive(beta, "beta", fn)
  rewards, ref = _broadcast(fn, ("rewards", rewards, 1), ("ref", ref, 1))
  return jax.nn.softmax(_optimum_logits(rewards, ref, beta), axis=-1)


# ----------------------------------------------------------------------------------------------------
# IPO losses.


def ipo_population_loss(logits, P, mu, ref_logits, tau):
  """IPO population loss E_{y,y'∼μ}[(h_π(y, y') − (p(y ≻ μ) − p(y' ≻ μ))/τ)²] (arXiv:2310.12036, §5).

  h_π(y, y') = log(π(y)π_ref(y') / (π(y')π_ref(y))) depends on logit differences only. The minimiser is
  unique (up to a logit shift) and equals `psipo_optimum(P, mu, ref, tau, "identity")` when
  supp(μ) = all actions; when μ misses actions their logits are unconstrained (infinitely many minimisers).

  Args:
    logits: `[..., N]` policy logits θ (π = softmax(θ)).
    P: `[..., N, N]` preference matrix.
    mu: `[..., N]` behaviour policy μ.
    ref_logits: `[..., N]` finite reference logits (π_ref = softmax(ref_logits)).
    tau: scalar regularisation strength τ > 0.

  Returns:
    `[...]` losses.
  """
  fn = "ipo_population_loss"
  P = _check_preferences(P, fn)
  n = P.shape[-1]
  logits = _check_vector(logits, "logits", fn, n)
  ref_logits = _check_finite(ref_logits, "ref_logits", fn, n)
  mu = _check_distribution(mu, "mu", fn, n)
  _check_scalar_positive(tau, "tau", fn)
  logits, P, mu, ref_logits = _broadcast(
      fn, ("logits", logits, 1), ("P", P, 2), ("mu", mu, 1), ("ref_logits", ref_logits, 1))
  log_ratio = logits - ref_logits
  h = log_ratio[..., :, None] - log_ratio[..., None, :]
  p_vs_mu = tabular.preference_against(P, mu)
  target = (p_vs_mu[..., :, None] - p_vs_mu[..., None, :]) / tau
  return jnp.einsum("...i,...ij,...j->...", mu, jnp.square(h - target), mu)


def ipo_empirical_loss(logits, chosen, rejected, ref_logits, tau, weights=None):
  """Sampled IPO loss: mean over pairs of (h_π(y_w, y_l) − 1/(2τ))² (arXiv:2310.12036, Eq. 17).

  h_π(y_w, y_l) = (θ_w − θ_ref,w) − (θ_l − θ_ref,l) for softmax policies (the normaliser cancels).
  With `weights`, the mean is weighted: Σ_i w_i (h_i − 1/(2τ))² / Σ_i w_i (a pair repeated k times is the
  same as weight k). Under `jit`, out-of-range action ids are not checked (jnp indexing clamps them).

  Args:
    logits: `[..., N]` policy logits θ.
    chosen: `[M]` integer ids of the preferred actions y_w.
    rejected: `[M]` integer ids of the dispreferred actions y_l.
    ref_logits: `[..., N]` finite reference logits.
    tau: scalar regularisation strength τ > 0.
    weights: optional `[M]` non-negative pair weights, not all zero.

  Returns:
    `[...]` losses.
  """
  fn = "ipo_empirical_loss"
  logits = _check_vector(logits, "logits", fn)
  n = logits.shape[-1]
  ref_logits = _check_finite(ref_logits, "ref_logits", fn, n)
  chosen, rejected = _check_actions(chosen, rejected, n, fn)
  _check_scalar_positive(tau, "tau", fn)
  logits, ref_logits = _broadcast(fn, ("logits", logits, 1), ("ref_logits", ref_logits, 1))
  log_ratio = logits - ref_logits
  h = jnp.take(log_ratio, chosen, axis=-1) - jnp.take(log_ratio, rejected, axis=-1)
  sq = jnp.square(h - 0.5 / tau)
  if weights is None:
    return jnp.mean(sq, axis=-1)
  weights = _check_weights(weights, chosen.shape[0], fn)
  weights = jnp.reshape(weights, (1,) * (sq.ndim - 1) + weights.shape)
  return jnp.sum(weights * sq, axis=-1) / jnp.sum(weights, axis=-1)


def ipo_empirical_minimiser(chosen, rejected, num_actions, tau, ref_logits=None, init_logits=None,
                            weights=None):
  """Exact minimiser of `ipo_empirical_loss` on a finite pair dataset, as gradient descent finds it.

  The sampled IPO loss (arXiv:2310.12036, Eq. 17) is linear least squares in the logits θ:
  Σ_i w_i ((Aθ)_i − c_i)² with row A_i = e_{w_i} − e_{l_i} and c_i = (A θ_ref)_i + 1/(2τ). Its minimisers
  form an affine set (θ is determined up to one shift per connected component of the comparison graph,
  and not at all on actions absent from the data). Gradient descent from θ₀ moves only inside
  θ₀ + row(A) and converges to the least-squares solution closest to θ₀:
  θ* = θ₀ + pinv(√W A)(√W (c − Aθ₀)). This function returns that solution, so:
  - actions absent from the data (or only in zero-weight pairs) keep their initial logits;
  - on each connected component of the comparison graph the mean logit stays at its initial value.
  It is computed from the weighted graph Laplacian L = Aᵀ W A, solved per connected component with
  the component's mean fixed (L + 11ᵀ/|C| is positive definite there). Host numpy float64; not traceable.
  A pair with y_w = y_l is allowed and contributes a constant (no gradient).

  docs/theory.md §1 oracles (uniform π_ref): {(a,b)} → π*(a) = σ(1/(2τ)); {(a,b),(b,c),(a,c)} →
  π* ∝ (e^{2/(3τ)}, e^{1/(3τ)}, 1); {(a,b),(b,c)} → π* ∝ (e^{1/τ}, e^{1/(2τ)}, 1); a 3-cycle → uniform.

  Args:
    chosen: `[M]` integer ids of the preferred actions.
    rejected: `[M]` integer ids of the dispreferred actions.
    num_actions: N.
    tau: regularisation strength τ > 0.
    ref_logits: optional `[N]` finite reference logits (default zeros: uniform π_ref).
    init_logits: optional `[N]` finite initial logits θ₀ (default `ref_logits`).
    weights: optional `[M]` non-negative pair weights, not all zero (default ones).

  Returns:
    `[N]` numpy float64 logits θ*; the policy is softmax(θ*).
  """
  fn = "ipo_empirical_minimiser"
  if isinstance(num_actions, bool) or not isinstance(num_actions, (int, np.integer)) or num_actions < 1:
    raise PrefjaxError(f"{fn}: num_actions must be a positive integer, got {num_actions!r}")
  n = int(num_actions)
  if any(isinstance(x, jax.core.Tracer) for x in (chosen, rejected, tau, ref_logits, init_logits, weights)):
    raise PrefjaxError(f"{fn}: is a host (numpy) oracle and cannot be traced by jit/vmap/grad")
  chosen = np.asarray(chosen)
  rejected = np.asarray(rejected)
  _check_actions(chosen, rejected, n, fn)
  _check_scalar_positive(tau, "tau", fn)
  chosen = chosen.astype(np.int64)
  rejected = rejected.astype(np.int64)
  m = chosen.shape[0]
  ref = np.zeros(n) if ref_logits is None else _host_logits(ref_logits, "ref_logits", n, fn)
  init = ref.copy() if init_logits is None else _host_logits(init_logits, "init_logits", n, fn)
  if weights is None:
    w = np.ones(m)
  else:
    w = np.asarray(weights, dtype=np.float64)
    _check_weights(w, m, fn)

  # Residual of the least-squares problem at θ₀, per pair: c − Aθ₀.
  residual = (ref[chosen] - ref[rejected]) + 0.5 / float(tau) - (init[chosen] - init[rejected])
  keep = (w > 0) & (chosen != rejected)
  cw, rw, ww, res = chosen[keep], rejected[keep], w[keep], residual[keep]
  # Laplacian L = Aᵀ W A and right-hand side Aᵀ W (c − Aθ₀).
  lap = np.zeros((n, n))
  np.add.at(lap, (cw, cw), ww)
  np.add.at(lap, (rw, rw), ww)
  np.add.at(lap, (cw, rw), -ww)
  np.add.at(lap, (rw, cw), -ww)
  rhs = np.bincount(cw, weights=ww * res, minlength=n) - np.bincount(rw, weights=ww * res, minlength=n)
  adjacency = coo_matrix((np.ones(cw.shape[0]), (cw, rw)), shape=(n, n))
  num_components, labels = csgraph.connected_components(adjacency, directed=False)
  delta = np.zeros(n)
  for c in range(num_components):
    idx = np.flatnonzero(labels == c)
    if idx.size == 1:
      continue  # An isolated action: no data, zero gradient, logit unchanged.
    sub = lap[np.ix_(idx, idx)] + 1.0 / idx.size
    delta[idx] = np.linalg.solve(sub, rhs[idx])
  return init + delta

"""Preference objectives as density estimators (Dumoulin et al., arXiv 2311.14115; docs/theory.md §6).

Every objective here is a pure function of (log-)densities evaluated at the two items of each comparison,
`[B]` arrays, and the outcome `labels` `[B]` (1: a ≻ b, 0: b ≻ a, fractional values are soft labels); it
returns per-example losses `[B]` (the caller reduces). "log q" may be unnormalised (a negative energy): every
objective below depends on log q only through differences log q(a) − log q(b), in which the normaliser
cancels, except SLiC's regulariser, which takes normalised log-densities.

The family (2311.14115, "preference behaviour"): a model q predicts
  p(a ≻ b) = σ(f(a) log q(a) + g(a) − f(b) log q(b) − g(b)).
Maximum likelihood on Luce-distributed outcomes p*(a ≻ b) = σ(log p*(a) − log p*(b)) makes
f log q + g = log p* + const on the support of the pairs, which gives the implied optima:
  Luce / Bradley–Terry (f = 1, g = 0):                    q ∝ p*;
  DPO (f = β, g = −β log π_pre):                           π ∝ π_pre p*^{1/β};
  "geometric" (f = 1/α, g = (1 − 1/α) log π_pre):          π ∝ π_pre^{1−α} p*^α;
  IPO (squared loss on the margin, not a likelihood):      π ∝ π_pre exp(p(y ≻ μ)/τ), μ the pair distribution.
`dpo_optimum`, `geometric_optimum`, `ipo_optimum` and `luce_optimum` compute them on a discrete support.

Registry: `DENSITY_LOSSES` maps a name to a loss with the uniform signature
  loss(logp_a, logp_b, logpre_a, logpre_b, labels, **hparams) -> [B];
`density_loss(name, ...)` looks one up. Names: luce (alias bradley_terry, reward), dpo (alias sigmoid),
geometric, ipo, slic (alias hinge). Multi-annotator mixtures have their own functions
(`mixture_preference_logits`, `mixture_loss`): their inputs carry a component axis.

Non-finite inputs: NaN / ±inf log-densities or labels are not checked by default (the losses are then NaN
or infinite). `density_loss(..., check_finite=True)` and `mixture_loss(..., check_finite=True)` check their
array inputs: eagerly a `PrefjaxError` naming the argument and the first bad index, under `jit` a
`jax.experimental.checkify` check (docs/objectives_checks.md).
"""

from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from prefjax.errors import PrefjaxError
from prefjax.objectives import _checks
from prefjax.objectives import spec
from prefjax.objectives.registry import Registry


def _check_same_shape(**arrays):
  shapes = {k: jnp.shape(v) for k, v in arrays.items()}
  first = next(iter(shapes.values()))
  if any(s != first for s in shapes.values()):
    raise PrefjaxError(f"inputs must have the same shape, got {shapes}")


def _check_positive(name, value):
  """Rejects a concrete non-positive hyper-parameter; traced values pass (validate concrete values only)."""
  try:
    v = float(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return
  if not v > 0:
    raise PrefjaxError(f"{name} must be > 0, got {v}")


def bernoulli_nll(logits, labels):
  """−[y log σ(z) + (1 − y) log σ(−z)] = y softplus(−z) + (1 − y) softplus(z), per example.

  Args:
    logits: `[B]` z, the log-odds that a ≻ b.
    labels: `[B]` y ∈ [0, 1] (1: a preferred).

  Returns:
    `[B]` negative log-likelihoods.
  """
  _check_same_shape(logits=logits, labels=labels)
  labels = jnp.asarray(labels, jnp.result_type(logits, float))
  return labels * jax.nn.softplus(-logits) + (1.0 - labels) * jax.nn.softplus(logits)


def preference_logits(logq_a, logq_b, *, f_a=1.0, f_b=1.0, g_a=0.0, g_b=0.0):
  """The preference-behaviour family's log-odds (2311.14115): f(a) log q(a) + g(a) − f(b) log q(b) − g(b).

  Args:
    logq_a, logq_b: `[B]` model log-densities (unnormalised allowed when f(a) = f(b)).
    f_a, f_b, g_a, g_b: `[B]` arrays or scalars, the family's f and g at a and b.

  Returns:
    `[B]` log-odds that a ≻ b.
  """
  _check_same_shape(logq_a=logq_a, logq_b=logq_b)
  return (f_a * logq_a + g_a) - (f_b * logq_b + g_b)


def preference_behaviour_loss(logq_a, logq_b, labels, *, f_a=1.0, f_b=1.0, g_a=0.0, g_b=0.0):
  """Negative log-likelihood of outcomes under the preference-behaviour family (see `preference_logits`)."""
  return bernoulli_nll(preference_logits(logq_a, logq_b, f_a=f_a, f_b=f_b, g_a=g_a, g_b=g_b), labels)


def luce_loss(logp_a, logp_b, logpre_a=None, logpre_b=None, labels=None):
  """Luce choice / Bradley–Terry likelihood: −log σ(±(log q(a) − log q(b))) (2311.14115; Bradley–Terry
  with reward r is Luce with q ∝ e^r). Its population optimum on Luce data is q ∝ p* (`luce_optimum`).

  Args:
    logp_a, logp_b: `[B]` model log-densities (or rewards) at a and b.
    logpre_a, logpre_b: unused (uniform registry signature).
    labels: `[B]` outcomes, 1 when a ≻ b.

  Returns:
    `[B]` losses.
  """
  del logpre_a, logpre_b
  return bernoulli_nll(preference_logits(logp_a, logp_b), labels)


def dpo_logits(logp_a, logp_b, logpre_a, logpre_b, *, beta):
  """DPO's log-odds β[(log π(a) − log π_pre(a)) − (log π(b) − log π_pre(b))] (2305.18290, Eq. 7)."""
  _check_same_shape(logp_a=logp_a, logp_b=logp_b, logpre_a=logpre_a, logpre_b=logpre_b)
  return beta * ((logp_a - logpre_a) - (logp_b - logpre_b))


def dpo_loss(logp_a, logp_b, logpre_a, logpre_b, labels, *, beta):
  """DPO on densities: Bernoulli NLL of `dpo_logits` (family member f = β, g = −β log π_pre).

  Implied optimum on Luce data (2311.14115): π ∝ π_pre p*^{1/β} (`dpo_optimum`); on data labelled by the DPO
  rule with the same β, σ(β(ℓ*(a) − ℓ*(b))), it recovers p* itself.

  Args:
    logp_a, logp_b: `[B]` policy log-densities (unnormalised allowed).
    logpre_a, logpre_b: `[B]` reference (pretrained) log-densities.
    labels: `[B]` outcomes, 1 when a ≻ b.
    beta: scalar β > 0.

  Returns:
    `[B]` losses.
  """
  _check_positive("beta", beta)
  return bernoulli_nll(dpo_logits(logp_a, logp_b, logpre_a, logpre_b, beta=beta), labels)


def geometric_logits(logp_a, logp_b, logpre_a, logpre_b, *, alpha):
  """The "geometric averaging" log-odds α⁻¹(ℓ(a) − ℓ(b)) + log π_pre(a) − log π_pre(b), ℓ = log π − log π_pre.

  This is the family with f = 1/α and g = (1 − 1/α) log π_pre (2311.14115, the official notebook's
  geometric-averaging PBDE).
  """
  _check_same_shape(logp_a=logp_a, logp_b=logp_b, logpre_a=logpre_a, logpre_b=logpre_b)
  return ((logp_a - logpre_a) - (logp_b - logpre_b)) / alpha + (logpre_a - logpre_b)


def geometric_loss(logp_a, logp_b, logpre_a, logpre_b, labels, *, alpha):
  """Bernoulli NLL of `geometric_logits`; implied optimum on Luce data π ∝ π_pre^{1−α} p*^α.

  Args:
    logp_a, logp_b, logpre_a, logpre_b: `[B]` policy and reference log-densities.
    labels: `[B]` outcomes, 1 when a ≻ b.
    alpha: scalar α > 0 (α = 1 is the Luce likelihood, the model recovers p*).

  Returns:
    `[B]` losses.
  """
  _check_positive("alpha", alpha)
  return bernoulli_nll(geometric_logits(logp_a, logp_b, logpre_a, logpre_b, alpha=alpha), labels)


def ipo_loss(logp_a, logp_b, logpre_a, logpre_b, labels, *, beta):
  """IPO on densities (2310.12036, Eq. 17): (h − 1/(2τ))² with h the winner-minus-loser log-ratio margin.

  With d = ℓ(a) − ℓ(b) and a label y (soft labels allowed), the loss is
  y (d − 1/(2τ))² + (1 − y)(−d − 1/(2τ))², which equals (d − (2y − 1)/(2τ))² up to a constant in d. Its
  population minimiser with pairs a, b ∼ μ is π ∝ π_pre exp(p(y ≻ μ)/τ) (`ipo_optimum`, docs/theory.md §1).

  Args:
    logp_a, logp_b, logpre_a, logpre_b: `[B]` policy and reference log-densities.
    labels: `[B]` outcomes, 1 when a ≻ b.
    beta: scalar τ > 0 (one name for β/τ; docs/theory.md §0).

  Returns:
    `[B]` losses.
  """
  _check_positive("beta", beta)
  d = (logp_a - logpre_a) - (logp_b - logpre_b)
  _check_same_shape(margin=d, labels=labels)
  y = jnp.asarray(labels, jnp.result_type(d, float))
  target = 0.5 / beta
  return y * (d - target) ** 2 + (1.0 - y) * (-d - target) ** 2


def slic_loss(logp_a, logp_b, logpre_a=None, logpre_b=None, labels=None, *, delta):
  """SLiC-HF's calibration hinge on densities (2305.10425; 2311.14115's notebook, "SLiC-HF-direct").

  loss = max(0, δ − (log π(w) − log π(l))), w the winner: no reference inside the hinge (the notebook's form;
  the regulariser towards π_pre is `slic_regulariser`, added by the caller with weight λ).

  Args:
    logp_a, logp_b: `[B]` policy log-densities.
    logpre_a, logpre_b: unused (uniform registry signature).
    labels: `[B]` outcomes, 1 when a ≻ b (soft labels weight the two hinges).
    delta: scalar margin δ ≥ 0.

  Returns:
    `[B]` losses.
  """
  del logpre_a, logpre_b
  _check_same_shape(logp_a=logp_a, logp_b=logp_b, labels=labels)
  d = logp_a - logp_b
  y = jnp.asarray(labels, jnp.result_type(d, float))
  return y * jax.nn.relu(delta - d) + (1.0 - y) * jax.nn.relu(delta + d)


def slic_regulariser(logp_normalised, weights):
  """SLiC's pull towards the pretrained model: −E_{x∼π_pre} log π(x) as −Σ_x w(x) log π(x).

  Args:
    logp_normalised: `[N]` normalised policy log-densities at support points x.
    weights: `[N]` π_pre's probability mass at the points (quadrature weights included; sum to 1), or the
      uniform weights 1/N of N samples from π_pre.

  Returns:
    Scalar cross-entropy.
  """
  _check_same_shape(logp=logp_normalised, weights=weights)
  return -jnp.sum(weights * logp_normalised)


def mixture_preference_logits(logq_a, logq_b, mixture_logits):
  """Log-odds of a multi-annotator mixture: p(a ≻ b) = Σ_i w_i σ(log q_i(a) − log q_i(b)), w = softmax.

  Computed stably as log Σ_i w_i σ(Δ_i) − log Σ_i w_i σ(−Δ_i) (2311.14115's hidden-annotator model).

  Args:
    logq_a, logq_b: `[K, B]` component log-densities (unnormalised allowed) at a and b.
    mixture_logits: `[K]` unnormalised log mixture weights.

  Returns:
    `[B]` log-odds that a ≻ b.
  """
  _check_same_shape(logq_a=logq_a, logq_b=logq_b)
  if jnp.ndim(logq_a) != 2 or jnp.shape(mixture_logits) != (jnp.shape(logq_a)[0],):
    raise PrefjaxError(
        f"logq_a/logq_b must be [K, B] and mixture_logits [K], got {jnp.shape(logq_a)} and "
        f"{jnp.shape(mixture_logits)}")
  delta = logq_a - logq_b
  log_w = jax.nn.log_softmax(mixture_logits)[:, None]
  return logsumexp(log_w - jax.nn.softplus(-delta), axis=0) - logsumexp(log_w - jax.nn.softplus(delta), axis=0)


def mixture_loss(logq_a, logq_b, mixture_logits, labels, *, check_finite=False):
  """Negative log-likelihood of outcomes under the annotator mixture (mixture weights learned jointly).

  Args:
    logq_a, logq_b: `[K, B]` component log-densities.
    mixture_logits: `[K]` log mixture weights (softmax-normalised inside).
    labels: `[B]` outcomes, 1 when a ≻ b.
    check_finite: opt-in NaN / ±inf check of the array inputs (default off; see the module docstring).

  Returns:
    `[B]` losses.
  """
  _checks.check_finite("mixture_loss", check_finite, {"logq_a": logq_a, "logq_b": logq_b,
                                                      "mixture_logits": mixture_logits, "labels": labels})
  return bernoulli_nll(mixture_preference_logits(logq_a, logq_b, mixture_logits), labels)


# ----------------------------------------------------------------------------------------------------
# Registry.
# ----------------------------------------------------------------------------------------------------

DENSITY_LOSSES: Registry[Callable] = Registry("density objective")
DENSITY_LOSSES.register("luce", luce_loss)
DENSITY_LOSSES.alias("bradley_terry", "luce")
DENSITY_LOSSES.alias("reward", "luce")
DENSITY_LOSSES.register("dpo", dpo_loss)
DENSITY_LOSSES.alias("sigmoid", "dpo")
DENSITY_LOSSES.register("geometric", geometric_loss)
DENSITY_LOSSES.register("ipo", ipo_loss)
DENSITY_LOSSES.register("slic", slic_loss)
DENSITY_LOSSES.alias("hinge", "slic")


def density_loss(name, logp_a, logp_b, logpre_a, logpre_b, labels, *, check_finite=False, **hparams):
  """Looks up `name` in `DENSITY_LOSSES` and returns its per-example losses `[B]`.

  `check_finite=True` first checks the array inputs for NaN / ±inf (see the module docstring).
  """
  loss = DENSITY_LOSSES.get(name)
  _checks.check_finite(f"density objective {name!r}", check_finite, {
      "logp_a": logp_a, "logp_b": logp_b, "logpre_a": logpre_a, "logpre_b": logpre_b, "labels": labels})
  return loss(logp_a, logp_b, logpre_a, logpre_b, labels, **hparams)


# ----------------------------------------------------------------------------------------------------
# Implied optima on a discrete support (log-densities w.r.t. the support's weights `log_dx`).
# ----------------------------------------------------------------------------------------------------


def _normalise(log_unnorm, log_weights):
  return log_unnorm - logsumexp(log_unnorm + log_weights)


def luce_optimum(log_pstar, log_weights=0.0):
  """Luce/Bradley–Terry MLE on Luce data: q = p* (normalised with point weights exp(log_weights))."""
  return _normalise(jnp.asarray(log_pstar), log_weights)


def dpo_optimum(log_pre, log_pstar, beta, log_weights=0.0):
  """DPO's implied optimum on Luce data: log π = log π_pre + log p*/β − log Z (2311.14115)."""
  return _normalise(log_pre + log_pstar / beta, log_weights)


def geometric_optimum(log_pre, log_pstar, alpha, log_weights=0.0):
  """The geometric objective's optimum on Luce data: log π = (1 − α) log π_pre + α log p* − log Z."""
  return _normalise((1.0 - alpha) * log_pre + alpha * log_pstar, log_weights)


def ipo_optimum(log_pre, log_pstar, beta, log_mu=None, log_weights=0.0):
  """IPO's population minimiser on Luce data with pairs a, b ∼ μ: π ∝ π_pre exp(p(y ≻ μ)/τ).

  p(y ≻ μ) = Σ_x μ(x) w(x) σ(log p*(y) − log p*(x)); μ defaults to π_pre (pairs drawn from the pretrained
  model, as in the paper's experiments). Unique where μ > 0 on the whole support (docs/theory.md §1).
  """
  log_mu = log_pre if log_mu is None else log_mu
  mu = jnp.exp(_normalise(log_mu, log_weights) + log_weights)
  # p(y ≻ μ) row by row in batches (memory O(batch × N) instead of the N × N matrix: 17 GB at N = 2¹⁶).
  win = jax.lax.map(lambda ly: jnp.sum(jax.nn.sigmoid(ly - log_pstar) * mu), log_pstar,
                    batch_size=min(int(log_pstar.shape[0]), 512))
  return _normalise(log_pre + win / beta, log_weights)


# The objective index (`prefjax.objectives.spec`): density objectives are trained by the density-estimation
# runners on labelled sample pairs (`prefjax.density`); names shared with the pairwise family are reached as
# "density:dpo" and so on.
for _name, _aliases, _display, _arxiv, _formula in (
    ("luce", ("bradley_terry", "reward"), "Luce / Bradley–Terry", "2311.14115",
     "Bernoulli NLL of σ(log p(a) − log p(b)); optimum p ∝ p*"),
    ("dpo", ("sigmoid",), "DPO (density)", "2305.18290",
     "Bernoulli NLL of σ(β(log p/p_pre)(a) − β(log p/p_pre)(b)); optimum ∝ p_pre p*^{1/β}"),
    ("geometric", (), "Geometric", "2311.14115", "optimum ∝ p_pre^{1−α} p*^α"),
    ("ipo", (), "IPO (density)", "2310.12036", "squared regression of the log-ratio margin on the label"),
    ("slic", ("hinge",), "SLiC (density)", "2305.10425", "hinge on the log-likelihood margin with margin δ")):
  spec.declare(spec.Objective(
      _name, "density", "density", aliases=_aliases, display_name=_display, arxiv=_arxiv, formula=_formula,
      verified="tests/test_density.py: the implied optima on a discrete support"))
del _name, _aliases, _display, _arxiv, _formula

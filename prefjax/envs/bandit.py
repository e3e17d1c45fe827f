"""Preference bandits: pure, gymnax-style samplers of (chosen, rejected) pairs with explicit keys.

Two data sources share one interface, `sample(key, params, batch_size) -> Pairs`:

- `PairDataset`: a fixed, finite dataset of labelled pairs, sampled uniformly with replacement (the IPO
  paper's offline bandit, Azar et al. 2310.12036 §5.4).
- `PreferenceBandit`: pairs y, y' drawn from a behaviour policy μ, labelled by a Bernoulli draw with
  probability P[y, y'] (online data from any preference matrix: Bradley–Terry, Thurstone, cyclic, mixtures).

Both are contextual: the instance has a leading context axis X (X = 1 for a plain bandit) and each sampled
pair carries its context index, so a policy can be tabular `[X, N]` logits or a function of context
features. The environment objects are immutable and hold only static sizes; the problem instance lives in
a params NamedTuple, so runs vmap over instances as well as seeds (docs/design.md §3).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.games import preferences


class Pairs(NamedTuple):
  """A batch of labelled pairs: `context`, `chosen`, `rejected`, each int32 `[B]`."""
  context: jax.Array
  chosen: jax.Array
  rejected: jax.Array


class DatasetParams(NamedTuple):
  """A fixed pair dataset: `context`, `chosen`, `rejected` int32 `[M]`."""
  context: jax.Array
  chosen: jax.Array
  rejected: jax.Array


class BanditParams(NamedTuple):
  """A preference bandit: `P` `[X, N, N]` preferences, `behaviour` `[X, N]` μ, `context_probs` `[X]`."""
  P: jax.Array
  behaviour: jax.Array
  context_probs: jax.Array


class PairDataset:
  """Samples mini-batches uniformly with replacement from a fixed dataset of (chosen, rejected) pairs."""

  def __init__(self, num_actions, num_contexts=1):
    self.num_actions = int(num_actions)
    self.num_contexts = int(num_contexts)

  def make_params(self, pairs, contexts=None):
    """Builds `DatasetParams` from `pairs`, a sequence of (chosen, rejected) action ids.

    Args:
      pairs: `[M, 2]` integers, each row (chosen, rejected); a list of tuples is fine.
      contexts: optional `[M]` context ids (default all 0).

    Returns:
      `DatasetParams`.
    """
    arr = np.asarray(pairs)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
      raise PrefjaxError(f"pairs must have shape [M, 2] with M >= 1 (chosen, rejected), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
      raise PrefjaxError(f"pairs must be integer action ids, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= self.num_actions:
      raise PrefjaxError(
          f"pairs contain action ids outside [0, {self.num_actions}): min {arr.min()}, max {arr.max()}")
    same = np.nonzero(arr[:, 0] == arr[:, 1])[0]
    if same.size:
      raise PrefjaxError(f"pairs compare an action with itself at rows {same[:10].tolist()}")
    ctx = np.zeros(arr.shape[0], np.int32) if contexts is None else np.asarray(contexts)
    if ctx.shape != (arr.shape[0],):
      raise PrefjaxError(f"contexts must have shape [{arr.shape[0]}], got {ctx.shape}")
    if ctx.min() < 0 or ctx.max() >= self.num_contexts:
      raise PrefjaxError(f"contexts must lie in [0, {self.num_contexts})")
    return DatasetParams(context=jnp.asarray(ctx, jnp.int32), chosen=jnp.asarray(arr[:, 0], jnp.int32),
                         rejected=jnp.asarray(arr[:, 1], jnp.int32))

  def sample(self, key, params, batch_size):
    """Draws `batch_size` rows uniformly with replacement. Returns `Pairs` with `[batch_size]` arrays."""
    idx = jax.random.randint(key, (batch_size,), 0, params.chosen.shape[0])
    return Pairs(params.context[idx], params.chosen[idx], params.rejected[idx])

  def rows(self, params):
    """Every row of the dataset as `Pairs` `[M]` (for count-weighted batches, see `BatchCounts`)."""
    return Pairs(params.context, params.chosen, params.rejected)


class BatchCounts(NamedTuple):
  """Exact sampler of how often each of M rows appears in a batch of B drawn uniformly with replacement.

  A per-example loss averaged over such a batch depends on the batch only through these counts, which follow
  Multinomial(B; 1/M, …, 1/M). Enumerating the C = binom(B + M − 1, M − 1) possible count vectors and drawing
  one of them with Walker's alias method costs one uniform 32-bit word per batch instead of B draws
  (random-number generation dominates small bandit runs on CPU). The word's top b = ⌈log₂ C⌉ bits pick one of
  2^b equally likely columns; its other 32 − b bits, compared with the column's threshold, pick the column's
  own outcome or its alias. Thresholds are rounded to 32 − b bits: each column's split is off by at most
  2^−(33−b) of the column's 2^−b, and an outcome meets at most 2^b columns, so its probability is off by at most
  2^−(33−b) (3e-8 for C ≤ 256) from the multinomial law.

  Each column stores its two count vectors packed into one integer (⌈log₂(B + 1)⌉ bits a row) when they fit
  in 31 bits, so a draw is three table reads and a few shifts; otherwise it stores outcome indices into
  `counts`.

  Attributes:
    counts: `[C, M]` int32, every count vector.
    accept: `[2^b]` uint32, a word's low bits below this keep the column's own outcome.
    own: `[2^b]` int32, the column's own outcome (packed counts, or an index into `counts`).
    alias: `[2^b]` int32, the outcome taken otherwise (same encoding).
    column_bits: b.
    count_bits: bits per packed count, or 0 when outcomes are indices.
  """
  counts: np.ndarray
  accept: np.ndarray
  own: np.ndarray
  alias: np.ndarray
  column_bits: int
  count_bits: int

  @classmethod
  def build(cls, num_rows, batch_size, max_outcomes=256):
    """The sampler for M = `num_rows`, B = `batch_size`; None when there are more than `max_outcomes`."""
    if math.comb(batch_size + num_rows - 1, num_rows - 1) > max_outcomes:
      return None
    counts = np.asarray(list(_compositions(batch_size, num_rows)), np.int64)
    log_pmf = (math.lgamma(batch_size + 1) - np.sum([[math.lgamma(c + 1) for c in row] for row in counts], 1)
               - batch_size * math.log(num_rows))
    pmf = np.exp(log_pmf)
    pmf /= pmf.sum()
    column_bits = max(1, math.ceil(math.log2(len(pmf))))
    accept, alias = _alias_table(pmf, 2**column_bits)
    low_bits = 32 - column_bits
    accept = np.minimum(np.round(accept * 2.0**low_bits), 2.0**low_bits).astype(np.uint32)
    own = np.minimum(np.arange(2**column_bits), len(pmf) - 1)  # Padding columns always take their alias.
    count_bits = max(1, math.ceil(math.log2(batch_size + 1)))
    if num_rows * count_bits <= 31:
      packed = (counts << (count_bits * np.arange(num_rows))[None, :]).sum(1)
      own, alias = packed[own], packed[alias]
    else:
      count_bits = 0
    return cls(counts=counts.astype(np.int32), accept=accept, own=own.astype(np.int32),
               alias=alias.astype(np.int32), column_bits=column_bits, count_bits=count_bits)

  def sample(self, bits):
    """Count vectors `[..., M]` (int32) for uniform uint32 words `bits` `[...]`."""
    low_bits = 32 - self.column_bits
    column = (bits >> low_bits).astype(jnp.int32)
    low = bits & jnp.uint32(2**low_bits - 1)
    code = jnp.where(low < jnp.asarray(self.accept)[column], jnp.asarray(self.own)[column],
                     jnp.asarray(self.alias)[column])
    if not self.count_bits:
      return jnp.asarray(self.counts)[code]
    num_rows = self.counts.shape[1]
    shifts = (self.count_bits * jnp.arange(num_rows, dtype=jnp.int32)).reshape((1,) * code.ndim + (-1,))
    return (code[..., None] >> shifts) & (2**self.count_bits - 1)


def _alias_table(pmf, num_columns):
  """Vose's alias method over `num_columns` ≥ len(pmf) equally likely columns (padding has probability 0).

  Returns (accept [num_columns] in [0, 1], alias [num_columns]): column i keeps outcome i with probability
  accept[i] and gives alias[i] otherwise, so that each outcome's total probability is pmf.
  """
  scaled = np.zeros(num_columns)
  scaled[:len(pmf)] = pmf * num_columns
  accept = np.ones(num_columns)
  alias = np.arange(num_columns)
  small = [i for i in range(num_columns) if scaled[i] < 1.0]
  large = [i for i in range(num_columns) if scaled[i] >= 1.0]
  while small and large:
    s, l = small.pop(), large.pop()
    accept[s], alias[s] = scaled[s], l
    scaled[l] -= 1.0 - scaled[s]
    (small if scaled[l] < 1.0 else large).append(l)
  for i in small + large:  # Leftovers are 1 up to rounding.
    accept[i], alias[i] = 1.0, i
  return accept, alias


def _compositions(total, parts):
  """Every tuple of `parts` non-negative integers summing to `total` (lexicographic order)."""
  if parts == 1:
    yield (total,)
    return
  for first in range(total + 1):
    for rest in _compositions(total - first, parts - 1):
      yield (first,) + rest


class PreferenceBandit:
  """Online preference bandit: y, y' ∼ μ(·|x) i.i.d., label ∼ Bernoulli(P[x, y, y'])."""

  def __init__(self, num_actions, num_contexts=1):
    self.num_actions = int(num_actions)
    self.num_contexts = int(num_contexts)

  def make_params(self, P, behaviour=None, context_probs=None):
    """Builds `BanditParams`, validating P (P + Pᵀ = 1, entries in [0, 1]) and the distributions.

    Args:
      P: `[N, N]` or `[X, N, N]` preference matrix (a 2-D matrix gets a context axis of size 1).
      behaviour: `[N]` or `[X, N]` behaviour policy μ (default uniform).
      context_probs: `[X]` context distribution (default uniform).

    Returns:
      `BanditParams` with a context axis.
    """
    P = preferences.validate(P)
    if P.ndim == 2:
      P = P[None]
    if P.shape != (self.num_contexts, self.num_actions, self.num_actions):
      raise PrefjaxError(
          f"P must have shape [{self.num_contexts}, {self.num_actions}, {self.num_actions}], got {P.shape}")
    x, n = self.num_contexts, self.num_actions
    mu = np.full((x, n), 1.0 / n) if behaviour is None else np.asarray(behaviour, np.float64)
    if mu.ndim == 1:
      mu = np.broadcast_to(mu, (x, n))
    _check_distribution(mu, (x, n), "behaviour")
    rho = np.full((x,), 1.0 / x) if context_probs is None else np.asarray(context_probs, np.float64)
    _check_distribution(rho, (x,), "context_probs")
    return BanditParams(P=jnp.asarray(P, jnp.float32), behaviour=jnp.asarray(mu, jnp.float32),
                        context_probs=jnp.asarray(rho, jnp.float32))

  def sample(self, key, params, batch_size):
    """Samples contexts, two actions from μ and a Bernoulli label; returns winner/loser as `Pairs`."""
    k_ctx, k_a, k_b, k_label = jax.random.split(key, 4)
    ctx = jax.random.categorical(k_ctx, jnp.log(params.context_probs), shape=(batch_size,))
    log_mu = jnp.log(params.behaviour[ctx])
    a = jax.random.categorical(k_a, log_mu, axis=-1)
    b = jax.random.categorical(k_b, log_mu, axis=-1)
    a_wins = jax.random.bernoulli(k_label, params.P[ctx, a, b])
    chosen = jnp.where(a_wins, a, b).astype(jnp.int32)
    rejected = jnp.where(a_wins, b, a).astype(jnp.int32)
    return Pairs(ctx.astype(jnp.int32), chosen, rejected)


def _check_distribution(p, shape, name):
  if p.shape != shape:
    raise PrefjaxError(f"{name} must have shape {list(shape)}, got {list(p.shape)}")
  if np.any(p < 0) or np.any(np.abs(p.sum(-1) - 1.0) > 1e-5):
    raise PrefjaxError(f"{name} must be a probability distribution (non-negative, summing to 1)")


# Named datasets of the IPO paper (Azar et al. 2310.12036 §5.4) over actions a = 0, b = 1, c = 2.
NAMED_DATASETS = {
    # D1: the total order a ≻ b ≻ c, each pair observed once.
    "d1": ((0, 1), (1, 2), (0, 2)),
    # (a, c) never observed. The paper prints {(a, b), (b, a)}, which moves nothing; its text's intent,
    # "(a, c) never observed", is {(a, b), (b, c)} (docs/theory.md §1).
    "unobserved": ((0, 1), (1, 2)),
    # A preference cycle: every pairwise loss keeps the uniform policy.
    "cycle": ((0, 1), (1, 2), (2, 0)),
}


def named_dataset(name):
  """Returns the pairs of a named dataset (`d1`, `unobserved`, `cycle`) as a tuple of (chosen, rejected)."""
  if name not in NAMED_DATASETS:
    raise PrefjaxError(f"unknown dataset {name!r}; known: {sorted(NAMED_DATASETS)}")
  return NAMED_DATASETS[name]

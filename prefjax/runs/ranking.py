"""The `arena_ranking` experiment: how many votes each ranking method needs (Chatbot Arena, K-Sort Arena).

The figure is drawn by `prefjax.plotting.ranking`; the old path `prefjax.ranking.experiments` re-exports this
module.

Simulated arenas (`prefjax.ranking.simulate`) with N models, transitive (c = 0) and with an intransitive
component (c > 0). For each number of votes V and each repeated simulation (a fresh arena and fresh votes,
all simulations `vmap`ped in one compiled program per V), we rank the models with

- "bt_mle": Bradley–Terry maximum likelihood on V pairwise battles (Chatbot Arena 2403.04132 §5);
- "elo": online Elo over the same battles (Chatbot Arena's K-factor 4 by default);
- "borda": Borda count of the empirical win-rate matrix of the same battles (unplayed pairs count ½);
- "pl_kwise": Plackett–Luce maximum likelihood on V K-wise rankings (K-Sort Arena's model);
- "bt_kwise_pairs": Bradley–Terry on the C(K, 2) pairwise outcomes implied by the same V rankings;

and score each ranking by Kendall's τ to the truth: the skill order for transitive arenas; the Borda order
of the true preference matrix for intransitive ones (the target BT converges to under uniform pairs;
τ to the skill order is reported too).

How a K-wise vote is counted. The primary accounting is one vote per human judgement: a K-wise ranking is
one vote, as K-Sort Arena counts it (one user, one comparison screen). Because a full ranking of K items is
K − 1 successive "best of the rest" choices (the Plackett–Luce likelihood has K − 1 factors) and implies
C(K, 2) pairwise outcomes, the summary also reports the votes needed when a ranking is charged K − 1 votes
("per_choice") or C(K, 2) votes ("per_pair"). K-Sort Arena's claim (K-wise needs fewer votes) is the
per-vote statement; under the per-choice accounting it is a statement about information per choice.

Interval coverage: at V = `coverage_votes` pairwise battles, percentile-bootstrap intervals of the BT
scores (`bootstrap_scores`, Chatbot Arena's procedure) are checked against the population BT projection
(`simulate.population_bradley_terry`; the centred skills when c = 0) for every model and simulation.

Writes: config.json; metrics.jsonl (one line per setting × method × V: mean τ and its 95% t-interval);
arrays.npz: `votes` [V], `tau` [S, M, V, R] (settings × methods × votes × simulations), `tau_skills`
[S, M, V, R] (τ to the skill order), `coverage` [S, R, N] (1 if the interval covers), `ci_width` [S, R, N];
summary.json; figure.png (τ bands clipped to τ's range [−1, 1]; coverage with Wilson 95% intervals, inside
[0, 1]); status.json. The config is checked completely first (`validate_arena_ranking`: nothing is written
for a bad one), a finished run of the same config is returned without rerunning, and SIGTERM/SIGINT stop
between vote counts (`prefjax.workdir.experiment`, `prefjax.preemption`).
"""

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from prefjax import config_checks as cc
from prefjax import intervals
from prefjax import jit_utils
from prefjax import preemption
from prefjax import workdir as workdir_lib
from prefjax.errors import PrefjaxError
from prefjax.plotting.ranking import plot_arena_ranking
from prefjax.ranking import aggregate
from prefjax.ranking import battles as battles_lib
from prefjax.ranking import elo as elo_lib
from prefjax.ranking import models
from prefjax.ranking import simulate

METHODS = ("bt_mle", "elo", "borda", "pl_kwise", "bt_kwise_pairs")
# Votes charged per K-wise ranking under each accounting (see the module docstring).
ACCOUNTINGS = {"per_vote": lambda k: 1, "per_choice": lambda k: k - 1, "per_pair": lambda k: k * (k - 1) // 2}


def _scores(k_pair, k_rank, arena, num_votes, num_models, k, l2, elo_k):
  """`[M, N]` scores of every method (order of `METHODS`) from fresh pairwise battles and K-wise rankings."""
  a, b, o = simulate.sample_battles(k_pair, arena, num_votes)
  counts = battles_lib.count_battles(a, b, o, num_models, arena.skills.dtype)
  rankings = simulate.sample_rankings(k_rank, arena, num_votes, k)
  pairs = models.rankings_to_counts(rankings, num_models, arena.skills.dtype)
  # Both BT fits (pairwise battles, pairs implied by the rankings) share one compiled Newton solve.
  stacked = jax.tree.map(lambda x, y: jnp.stack([x, y]), counts, pairs)
  bt, bt_pairs = jax.vmap(lambda c: models.fit_bradley_terry(c, l2=l2).scores)(stacked)
  elo = elo_lib.online_elo(a, b, o, num_models, k_factor=elo_k)
  borda = aggregate.borda_count(aggregate.empirical_preferences(counts))
  pl = models.fit_plackett_luce(rankings, num_models, l2=l2).scores
  return jnp.stack([bt, elo, borda, pl, bt_pairs])


@functools.partial(jax.jit, static_argnames=("num_models", "num_votes", "k", "dim"))
def _simulate(key, intransitivity, *, num_models, num_votes, k, dim, skill_scale, l2, elo_k):
  """One simulation: τ of every method to the Borda truth and to the skills, `[M]` each."""
  k_arena, k_pair, k_rank = jax.random.split(key, 3)
  arena = simulate.make_arena(k_arena, num_models, skill_scale=skill_scale, intransitivity=intransitivity,
                              dim=dim)
  est = _scores(k_pair, k_rank, arena, num_votes, num_models, k, l2, elo_k)  # [M, N]
  truth = simulate.borda_truth(arena)
  tau = simulate.kendall_tau(est, jnp.broadcast_to(truth[None], est.shape))
  tau_skills = simulate.kendall_tau(est, jnp.broadcast_to(arena.skills[None], est.shape))
  return tau, tau_skills


@functools.partial(jax.jit, static_argnames=("num_models", "num_votes", "dim", "num_rounds"))
def _coverage(key, intransitivity, *, num_models, num_votes, dim, skill_scale, num_rounds, ci):
  k_arena, k_pair, k_boot = jax.random.split(key, 3)
  arena = simulate.make_arena(k_arena, num_models, skill_scale=skill_scale, intransitivity=intransitivity,
                              dim=dim)
  a, b, o = simulate.sample_battles(k_pair, arena, num_votes)
  boot = models.bootstrap_scores(k_boot, a, b, o, num_models, num_rounds, ci=ci)
  target = simulate.population_bradley_terry(arena)
  covered = (boot.lower <= target) & (target <= boot.upper)
  return covered, boot.upper - boot.lower


def _compiled(fn, *args, fast_compile=False):
  """Calls `jax.jit(fn)(*args)`, compiled at XLA optimisation level 0 when `fast_compile` (short runs)."""
  return jit_utils.jit(fn, fast_compile)(*args)


def validate_arena_ranking(config):
  """Checks every field `run_arena_ranking` reads; raises a one-line `PrefjaxError` naming the field."""
  n = cc.integer(config, "num_models")
  if n < 3:
    raise PrefjaxError(f"config.num_models must be >= 3, got {config.num_models}")
  k = cc.integer(config, "k")
  if not 2 <= k <= n:
    raise PrefjaxError(f"config.k must lie in [2, num_models = {n}], got {k}")
  votes = cc.get(config, "votes")
  ok = isinstance(votes, (list, tuple)) and votes and all(
      cc._is_number(v) and math.isfinite(v) and int(v) == v and v >= 1 for v in votes)
  if not ok or any(b <= a for a, b in zip(votes, votes[1:])):
    raise PrefjaxError(f"config.votes must be increasing positive integers, got {votes!r}")
  cs = cc.numbers_list(config, "intransitivity", low=0)
  names = ["transitive" if c == 0 else f"intransitive_c{c:g}" for c in cs]
  if len(set(names)) != len(names):
    raise PrefjaxError(f"config.intransitivity repeats a value: {list(cs)}")
  sims = cc.integer(config, "num_simulations")
  if sims < 2:
    raise PrefjaxError(f"config.num_simulations must be >= 2, got {config.num_simulations}")
  cc.number(config, "l2", low=0)
  cc.number(config, "ci", low=0, high=1, low_open=True, high_open=True)
  cc.positive_int(config, "dim", "coverage_votes")
  cc.integer(config, "bootstrap_rounds", low=2)
  cc.positive(config, "skill_scale", "elo_k_factor")
  cc.number(config, "tau_target", low=-1, high=1, low_open=True)
  cc.integer(config, "seed")
  cc.boolean(config, "figure", "fast_compile")


def votes_to_reach(votes, tau_mean, target):
  """Smallest V at which the mean τ reaches `target`, interpolating linearly in log V; None if never.

  Args:
    votes: `[V]` increasing vote counts.
    tau_mean: `[V]` mean τ at each count.
    target: τ level.

  Returns:
    A float or None.
  """
  votes = np.asarray(votes, np.float64)
  tau_mean = np.asarray(tau_mean, np.float64)
  above = np.flatnonzero(tau_mean >= target)
  if not above.size:
    return None
  i = int(above[0])
  if i == 0:
    return float(votes[0])
  t0, t1 = tau_mean[i - 1], tau_mean[i]
  frac = (target - t0) / (t1 - t0)
  return float(np.exp(np.log(votes[i - 1]) + frac * (np.log(votes[i]) - np.log(votes[i - 1]))))


@workdir_lib.experiment(validate=validate_arena_ranking)
def run_arena_ranking(config, wd):
  """Runs the arena experiment (see the module docstring) and writes the workdir.

  Called as `run_arena_ranking(config, workdir, *, overwrite=False, command=None)`.
  """
  t_start = time.time()
  votes = [int(v) for v in config.votes]
  cs = jnp.asarray(config.intransitivity, jnp.float32)
  settings = ["transitive" if float(c) == 0 else f"intransitive_c{float(c):g}" for c in config.intransitivity]
  key = jax.random.PRNGKey(config.seed)
  k_sim, k_cov = jax.random.split(key)
  sim_keys = jax.random.split(k_sim, config.num_simulations)
  tau = np.zeros((len(settings), len(METHODS), len(votes), config.num_simulations))
  tau_skills = np.zeros_like(tau)
  for v_idx, v in enumerate(votes):
    if v_idx:  # SIGTERM/SIGINT: stop between vote counts (one compiled program each).
      preemption.check(f"after {v_idx} of {len(votes)} vote counts")
    t0 = time.time()
    fn = functools.partial(_simulate, num_models=config.num_models, num_votes=v, k=config.k, dim=config.dim,
                           skill_scale=config.skill_scale, l2=config.l2, elo_k=config.elo_k_factor)
    # The same keys for every setting and V: common random numbers sharpen the comparisons.
    t, ts = _compiled(jax.vmap(jax.vmap(fn, in_axes=(0, None)), in_axes=(None, 0)), sim_keys, cs,
                      fast_compile=config.fast_compile)  # [S, R, M] each
    tau[:, :, v_idx] = np.moveaxis(np.asarray(t), 2, 1)
    tau_skills[:, :, v_idx] = np.moveaxis(np.asarray(ts), 2, 1)
    print(f"[{v_idx + 1}/{len(votes)}] V = {v}: {len(settings)} settings x {config.num_simulations} simulations in "
          f"{time.time() - t0:.1f}s", flush=True)

  curves, metrics = {}, []
  for s_idx, setting in enumerate(settings):
    for m_idx, method in enumerate(METHODS):
      mean, half = intervals.t_interval(tau[s_idx, m_idx], axis=1)
      curves[(setting, method)] = mean
      for v_idx, v in enumerate(votes):
        rec = {"setting": setting, "method": method, "votes": v, "tau_mean": mean[v_idx],
               "tau_ci95_half": half[v_idx], "tau_skills_mean": tau_skills[s_idx, m_idx, v_idx].mean()}
        metrics.append(rec)
        wd.append_metrics(rec)

  # Bootstrap coverage at V = coverage_votes.
  preemption.check("after the vote counts, before the bootstrap coverage")
  t0 = time.time()
  cov_keys = jax.random.split(k_cov, config.num_simulations)
  cov_fn = functools.partial(_coverage, num_models=config.num_models, num_votes=int(config.coverage_votes),
                             dim=config.dim, skill_scale=config.skill_scale,
                             num_rounds=int(config.bootstrap_rounds), ci=config.ci)
  covered, width = _compiled(jax.vmap(jax.vmap(cov_fn, in_axes=(0, None)), in_axes=(None, 0)), cov_keys, cs,
                             fast_compile=config.fast_compile)
  covered = np.asarray(covered, np.float64)  # [S, R, N]
  width = np.asarray(width, np.float64)
  print(f"bootstrap coverage: {config.bootstrap_rounds} rounds x {config.num_simulations} simulations in "
        f"{time.time() - t0:.1f}s", flush=True)

  k = int(config.k)
  summary = {"experiment": "arena_ranking", "num_models": int(config.num_models), "k": k, "votes": votes,
             "tau_target": float(config.tau_target), "settings": {}, "seconds": None}
  for s_idx, setting in enumerate(settings):
    entry = {"intransitivity": float(config.intransitivity[s_idx]), "tau_final": {}, "votes_to_target": {}}
    for m_idx, method in enumerate(METHODS):
      mean = curves[(setting, method)]
      entry["tau_final"][method] = float(mean[-1])
      entry[f"tau_curve_{method}"] = mean.tolist()
      kwise = method in ("pl_kwise", "bt_kwise_pairs")
      for acc, charge in ACCOUNTINGS.items():
        if not kwise and acc != "per_vote":
          continue
        scaled = np.asarray(votes) * (charge(k) if kwise else 1)
        entry["votes_to_target"][f"{method}/{acc}"] = votes_to_reach(scaled, mean, config.tau_target)
    n_cells = covered[s_idx].size
    cov = covered[s_idx].mean()
    se = math.sqrt(cov * (1 - cov) / n_cells) if 0 < cov < 1 else 0.0
    entry["bootstrap"] = {"votes": int(config.coverage_votes), "rounds": int(config.bootstrap_rounds),
                          "ci": float(config.ci), "coverage": float(cov), "coverage_se": se,
                          "num_intervals": int(n_cells), "mean_width": float(width[s_idx].mean())}
    # The K-Sort Arena claim at equal votes: PL's τ minus BT's at every V (mean over simulations, paired).
    diff = tau[s_idx, METHODS.index("pl_kwise")] - tau[s_idx, METHODS.index("bt_mle")]
    d_mean, d_half = intervals.t_interval(diff, axis=1)
    entry["pl_minus_bt_tau"] = {"mean": d_mean.tolist(), "ci95_half": d_half.tolist()}
    entry["kwise_needs_fewer_votes"] = bool(np.all(d_mean - d_half > 0))
    summary["settings"][setting] = entry
  summary["seconds"] = time.time() - t_start
  wd.write_arrays({"votes": np.asarray(votes), "tau": tau, "tau_skills": tau_skills, "coverage": covered,
                   "ci_width": width, "intransitivity": np.asarray(config.intransitivity)})
  wd.write_summary(summary)
  if config.figure:
    plot_arena_ranking(wd.file("figure.png"), votes, settings, tau, k, summary, METHODS)
  print(f"arena_ranking done in {summary['seconds']:.1f}s", flush=True)
  return summary

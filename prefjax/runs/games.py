"""Runners of the preference-game experiments (docs/theory.md §4), registered in `prefjax.runners`.

Their figures are drawn by `prefjax.plotting.games`; the old path `prefjax.games.experiments` re-exports this
module.

Each `run_*(config, workdir, *, overwrite=False, command=None) -> summary` writes config.json, status.json,
metrics.jsonl, arrays.npz, summary.json and a figure.png into the workdir (array names and shapes are listed
in each runner's docstring) under the workdir contract (`prefjax.workdir.experiment`): its `validate_*`
checks every config field first and raises a one-line `PrefjaxError` naming the field before anything is
written; a finished run of the same config is returned without rerunning; SIGTERM/SIGINT stop the run at the
next boundary between its compiled calls (`prefjax.preemption`).

- `run_egpo` ("egpo"; configs egpo_tabular, egpo_neural): duality gap vs updates for online IPO 1/2, Nash-MD,
  Nash-MD-PG and EGPO, exact and sampled, on EGPO's random games or a user's instance file.
- `run_nash_md_rate` ("nash_md_rate"): KL(π*_β ‖ π_T) of Nash-MD with η_t = 2/(β(t+2)) against 8/(β²(T+1)).
- `run_selfplay_cycles` ("selfplay_cycles"): multiplicative weights / exact SPPO last vs average iterate;
  soft vs hard SPPO win rates; SPIN vs α-SPIN vs fictitious play.
- `run_online_dpo_vs_ipo` ("online_dpo_vs_ipo"): online DPO settles away from the NE, online IPO reaches it.
- `run_annotator_flip` ("annotator_flip"): Munos et al. §3.2's Bradley–Terry flip vs the smooth Nash solution.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from prefjax import config_checks as cc
from prefjax import preemption
from prefjax import workdir as workdir_lib
from prefjax.errors import PrefjaxError
from prefjax.games import dynamics
from prefjax.games import instances
from prefjax.games import nash
from prefjax.games import online
from prefjax.games import preferences
from prefjax.games import tabular
from prefjax.objectives import nash as nobj
from prefjax.objectives.nash import online_dpo_loss
from prefjax.plotting.games import plot_annotator_flip
from prefjax.plotting.games import plot_egpo
from prefjax.plotting.games import plot_nash_md_rate
from prefjax.plotting.games import plot_online_dpo_vs_ipo
from prefjax.plotting.games import plot_selfplay_cycles
from prefjax.runs import _common


def _positive(config, field):
  """A number, or a non-empty list of numbers, each finite and > 0 ("config.betas must be > 0, got ...")."""
  values = cc.get(config, field)
  if isinstance(values, (tuple, list)):
    cc.numbers_list(config, field)  # Numbers (a one-line error naming the entry otherwise), non-empty.
  else:
    cc.number(config, field)
  for v in (values if isinstance(values, (tuple, list)) else (values,)):
    if not np.isfinite(v) or v <= 0:
      raise PrefjaxError(f"config.{field} must be > 0, got {values}")


def _distinct_keys(config, field):
  """The values of list `field` are distinct once formatted (they name arrays, e.g. `kl__beta0.1`)."""
  keys = [_fmt(v) for v in cc.get(config, field)]
  if len(set(keys)) != len(keys):
    raise PrefjaxError(f"config.{field} repeats a value: {list(cc.get(config, field))}")


def _check_games(config, min_actions=2):
  """The game fields `_games` reads: an instance file (loaded and checked), or num_games/num_actions/game_seed.

  Returns the number of actions N.
  """
  path = cc.string(config, "instance_file")
  if path:
    try:
      P, _ = load_instances(path)
    except PrefjaxError as e:
      raise PrefjaxError(f"config.instance_file: {e}") from None
    if P.shape[-1] < min_actions:
      raise PrefjaxError(f"config.instance_file: the games have {P.shape[-1]} actions; at least {min_actions} "
                         f"are needed")
    return int(P.shape[-1])
  cc.integer(config, "num_games", low=1)
  cc.integer(config, "game_seed")
  return cc.integer(config, "num_actions", low=min_actions)


def _whole_numbers(config, field, low=1):
  """A non-empty list of whole numbers ≥ low; returns them as ints."""
  xs = cc.numbers_list(config, field, low=low)
  bad = [x for x in xs if x != int(x)]
  if bad:
    raise PrefjaxError(f"config.{field} must be whole numbers, got {list(cc.get(config, field))}")
  return [int(x) for x in xs]


def _unique_names(config, field, known=None):
  items = cc.names(config, field, known)
  if len(set(items)) != len(items):
    raise PrefjaxError(f"config.{field} names an entry twice: {items}")
  return items


def _fmt(x):
  return f"{x:g}"


# ----------------------------------------------------------------------------------------------------
# Instances.


def load_instances(path):
  """Loads a user's game instances from an `.npz` file with `P` `[G, N, N]` and `ref_logits` `[G, N]`.

  Raises `PrefjaxError` naming the file and the problem (missing file or array, wrong shapes, P not a
  preference matrix, non-finite logits).

  Returns:
    `(P [G, N, N], ref_logits [G, N])` float64 numpy arrays.
  """
  if not os.path.exists(path):
    raise PrefjaxError(f"instance file {path!r} does not exist")
  try:
    data = np.load(path)
  except Exception as e:  # pylint: disable=broad-except
    raise PrefjaxError(f"instance file {path!r} is not a readable .npz file: {e}") from None
  missing = [k for k in ("P", "ref_logits") if k not in data.files]
  if missing:
    raise PrefjaxError(f"instance file {path!r} lacks array(s) {missing} (needs P [G, N, N] and "
                       f"ref_logits [G, N]; has {sorted(data.files)})")
  P = np.asarray(data["P"], np.float64)
  ref = np.asarray(data["ref_logits"], np.float64)
  if P.ndim != 3 or P.shape[1] != P.shape[2]:
    raise PrefjaxError(f"instance file {path!r}: P must have shape [G, N, N], got {P.shape}")
  if ref.shape != P.shape[:2]:
    raise PrefjaxError(f"instance file {path!r}: ref_logits must have shape [G, N] = {list(P.shape[:2])}, "
                       f"got {list(ref.shape)}")
  preferences.validate(P, name=f"instance file {path!r}: P")
  if not np.all(np.isfinite(ref)):
    raise PrefjaxError(f"instance file {path!r}: ref_logits has non-finite entries")
  return P, ref


def _games(config, dtype):
  if config.instance_file:
    P, ref = load_instances(config.instance_file)
    return jnp.asarray(P, dtype), jnp.asarray(ref, dtype)
  return instances.egpo_games(jax.random.PRNGKey(config.game_seed), config.num_games, config.num_actions,
                              dtype=dtype)


# ----------------------------------------------------------------------------------------------------
# EGPO's experiment.


def validate_egpo(config):
  """Checks every field `run_egpo` reads; raises a one-line `PrefjaxError` naming the field."""
  cc.string(config, "name")
  n = _check_games(config)
  for field in ("betas", "iterations", "lrs"):
    values = cc.get(config, field)
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
      raise PrefjaxError(f"config.{field} must be a list, got {values!r}")
  if not (len(config.betas) == len(config.iterations) == len(config.lrs)) or not config.betas:
    raise PrefjaxError(f"config.betas, config.iterations and config.lrs must be non-empty and of equal "
                       f"length, got {len(config.betas)}, {len(config.iterations)}, {len(config.lrs)}")
  _positive(config, "betas")
  _distinct_keys(config, "betas")
  _positive(config, "lrs")
  iterations = _whole_numbers(config, "iterations")
  modes = _unique_names(config, "modes", online.MODES)
  algorithms = cc.get(config, "algorithms")
  if isinstance(algorithms, (list, tuple)):
    for i, a in enumerate(algorithms):
      try:
        nobj.get_game_objective(a)
      except PrefjaxError as e:
        raise PrefjaxError(f"config.algorithms[{i}]: {e}") from None
  algorithms = _unique_names(config, "algorithms")
  cc.positive_int(config, "num_seeds", "num_records", "num_samples", "depth", "width")
  for iters in iterations:
    if iters % int(config.num_records):
      raise PrefjaxError(f"config.num_records={config.num_records} must divide every iteration count "
                         f"(config.iterations), got {iters}")
  cc.choice(config, "policy", online.POLICIES.names())
  cc.choice(config, "labels", nobj.LABELS)
  cc.choice(config, "nash_md_convention", nobj.NASH_MD_CONVENTIONS)
  cc.integer(config, "seed")
  cc.boolean(config, "float64", "figure")
  for iters in iterations:
    for a in algorithms:
      for m in modes:
        online.check_config(_online_config(config, a, m, n, iters))


def _online_config(config, algorithm, mode, n, iters):
  return online.OnlineConfig(
      algorithm, n, iters, iters // int(config.num_records), mode=mode, num_samples=int(config.num_samples),
      labels=config.labels, policy=config.policy, depth=int(config.depth), width=int(config.width),
      nash_md_convention=config.nash_md_convention)


@workdir_lib.experiment(validate=validate_egpo)
def run_egpo(config, wd):
  """EGPO's simulations (Zhou et al. arXiv:2503.08942; docs/theory.md §4): duality gap vs updates.

  For every setting i (β_i, T_i iterations, learning rate lr_i) it trains, with plain SGD from π_0 = π_ref,
  every algorithm of `config.algorithms` in every mode of `config.modes` ("exact", "sampled") on all games
  and seeds — one jitted XLA program per setting (`online.make_multi_sweep`) — and records the duality gap
  every T_i / num_records updates.

  Writes:
  - arrays.npz: `steps__beta{β}` `[R+1]` (update counts 0 … T) and `gap__beta{β}__{algorithm}__{mode}`
    `[G, S, R+1]` (duality gap per game, seed and record); `P` `[G, N, N]` and `ref_logits` `[G, N]`
    (tabular) — the instances used.
  - metrics.jsonl: one line per (β, algorithm, mode, record) with the median and max gap over games × seeds.
  - summary.json: per setting and run, the final gap's max / median over games (seed-mean per game), and
    `headline`: EGPO exact's max final gap and online IPO 1 exact's median final gap per β.
  - figure.png: one panel per β, the median gap over games × seeds vs updates on a log scale
    (exact dashed, sampled solid).
  """
  t_start = time.time()
  algorithms, modes = cc.names(config, "algorithms"), cc.names(config, "modes")
  with jax.enable_x64(bool(config.float64)):
    dtype = jnp.float64 if config.float64 else jnp.float32
    P, ref = _games(config, dtype)
    n = P.shape[-1]
    arrays = {"P": np.asarray(P), "ref_logits": np.asarray(ref)}
    summary = {"name": config.name, "policy": config.policy, "num_games": int(P.shape[0]), "num_actions": int(n),
               "settings": [], "headline": {}}
    keys = online.seed_keys(config.seed, config.num_seeds)
    num_settings = len(config.betas)
    for i, (beta, iters, lr) in enumerate(zip(config.betas, config.iterations, config.lrs)):
      if i:  # SIGTERM/SIGINT: stop between settings (each is one compiled program).
        preemption.check(f"after {i} of {num_settings} settings (β)")
      iters = int(iters)
      configs = {f"{a}__{m}": _online_config(config, a, m, n, iters) for a in algorithms for m in modes}
      t0 = time.time()
      out = online.make_multi_sweep(configs)(keys, P, ref, jnp.asarray(beta, dtype), jnp.asarray([lr], dtype))
      out = jax.device_get(out)
      print(f"[{i + 1}/{num_settings}] beta={beta}: {len(configs)} runs x {P.shape[0]} games x "
            f"{config.num_seeds} seeds x {iters} updates in {time.time() - t0:.1f} s", flush=True)
      steps = np.asarray(next(iter(out.values())).steps[0, 0, 0])
      arrays[f"steps__beta{_fmt(beta)}"] = steps
      setting = {"beta": beta, "iterations": iters, "lr": lr, "runs": {}}
      for name, res in out.items():
        gap = np.asarray(res.gap[:, :, 0, :])  # [G, S, R+1]
        arrays[f"gap__beta{_fmt(beta)}__{name}"] = gap
        for r, step in enumerate(steps):
          wd.append_metrics({"beta": beta, "run": name, "step": int(step),
                             "gap_median": float(np.median(gap[:, :, r])), "gap_max": float(np.max(gap[:, :, r]))})
        final = gap[:, :, -1].mean(axis=1)
        setting["runs"][name] = {"final_gap_max": float(final.max()), "final_gap_median": float(np.median(final)),
                                 "final_gap_per_game": final.tolist()}
      summary["settings"].append(setting)
      head = {}
      if "egpo__exact" in setting["runs"]:
        head["egpo_exact_final_gap_max"] = setting["runs"]["egpo__exact"]["final_gap_max"]
      if "online_ipo_1__exact" in setting["runs"]:
        head["online_ipo_1_exact_final_gap_median"] = setting["runs"]["online_ipo_1__exact"]["final_gap_median"]
      summary["headline"][f"beta={_fmt(beta)}"] = head
  wd.write_arrays(arrays)
  if config.figure:
    plot_egpo(wd, summary, arrays)
  return _common.finish(wd, summary, t_start)


# ----------------------------------------------------------------------------------------------------
# Nash-MD's rate.


def validate_nash_md_rate(config):
  """Checks every field `run_nash_md_rate` reads; raises a one-line `PrefjaxError` naming the field."""
  cc.string(config, "name")
  _check_games(config)
  _positive(config, "betas")
  _distinct_keys(config, "betas")
  cc.integer(config, "num_steps")
  cc.integer(config, "record_every")
  if config.num_steps < 1 or config.record_every < 1 or config.num_steps % config.record_every:
    raise PrefjaxError(f"config.record_every must be a positive divisor of config.num_steps, got "
                       f"{config.record_every}, {config.num_steps}")
  cc.boolean(config, "figure")


@workdir_lib.experiment(validate=validate_nash_md_rate)
def run_nash_md_rate(config, wd):
  """Nash-MD with η_t = 2/(β(t+2)) against Munos et al.'s bound KL(π*_β ‖ π_T) ≤ 8/(β²(T+1)) (Thm. 1).

  Policy-space Nash-MD (`dynamics.run_dynamics("nash_md_decay")`) on EGPO's random games (or an instance
  file) for every β of `config.betas`, the KL to the float64-solved equilibrium recorded every
  `record_every` steps.

  Writes arrays.npz: `steps` `[R]`, `kl__beta{β}` `[G, R]`, `bound__beta{β}` `[R]`; summary.json: per β the
  max over games and records of KL / bound and `under_bound` (KL ≤ bound at every recorded T on every game).
  """
  t_start = time.time()
  summary = {"name": config.name, "betas": {}}
  arrays = {}
  with jax.enable_x64(True):
    P, ref = _games(config, jnp.float64)
    for i, beta in enumerate(config.betas):
      if i:
        preemption.check(f"after {i} of {len(config.betas)} betas")
      t0 = time.time()
      ne = nash.solve_regularised_nash(P, ref, beta).policy
      run = jax.vmap(lambda p, r: dynamics.run_dynamics("nash_md_decay", p, r, beta, 1.0, config.num_steps,
                                                        config.record_every))
      res = run(P, ref)
      kl = np.asarray(tabular.kl(ne[:, None, :], res.policies))  # [G, R]
      steps = np.asarray(res.steps[0])
      bound = 8.0 / (beta**2 * (steps + 1.0))
      arrays["steps"] = steps
      arrays[f"kl__beta{_fmt(beta)}"] = kl
      arrays[f"bound__beta{_fmt(beta)}"] = bound
      ratio = float(np.max(kl / bound[None, :]))
      summary["betas"][_fmt(beta)] = {"max_kl_over_bound": ratio, "under_bound": bool(ratio <= 1.0),
                                      "final_kl_max": float(kl[:, -1].max())}
      for r, step in enumerate(steps):
        wd.append_metrics({"beta": beta, "step": int(step), "kl_max": float(kl[:, r].max()),
                           "bound": float(bound[r])})
      print(f"[{i + 1}/{len(config.betas)}] beta={beta}: max KL/bound = {ratio:.3g} "
            f"({time.time() - t0:.1f} s)", flush=True)
  wd.write_arrays(arrays)
  if config.figure:
    plot_nash_md_rate(wd, config, arrays)
  return _common.finish(wd, summary, t_start)


# ----------------------------------------------------------------------------------------------------
# Self-play cycles.


def _sppo_iterations(P, ref_logits, beta, key, *, outer, inner, lr, k, prompts, selection):
  """Tabular SPPO: each iteration minimises `sppo_loss_sampled` from π_t by `inner` SGD steps."""

  def iteration(theta, key_t):
    prev = theta

    def sgd(th, key_s):
      g = jax.grad(nobj.sppo_loss_sampled)(th, prev, P, beta, key_s, k, prompts, selection)
      return th - lr * g, None

    theta, _ = jax.lax.scan(sgd, theta, jax.random.split(key_t, inner))
    return theta, jax.nn.softmax(theta)

  _, pis = jax.lax.scan(iteration, ref_logits, jax.random.split(key, outer))
  return pis


def validate_selfplay_cycles(config):
  """Checks every field `run_selfplay_cycles` reads; raises a one-line `PrefjaxError` naming the field."""
  cc.string(config, "name")
  cc.integer(config, "num_actions", low=2)
  cc.integer(config, "game_seed")
  cc.integer(config, "seed")
  cc.positive(config, "beta", "eta", "sppo_beta", "sppo_lr", "spin_eta")
  cc.positive_int(config, "num_steps", "record_every", "sppo_iterations", "sppo_inner_steps", "history")
  cc.divides(config, "record_every", "num_steps")
  cc.integer(config, "sppo_k", low=2)
  cc.number(config, "alpha", low=0, high=1)
  cc.boolean(config, "figure")


@workdir_lib.experiment(validate=validate_selfplay_cycles)
def run_selfplay_cycles(config, wd):
  """Self-play dynamics: last vs average iterates, soft vs hard SPPO win rates, SPIN vs α-SPIN vs FP.

  - Multiplicative weights (exact SPPO, `dynamics` "mwu") on the cyclic game (`preferences.cyclic(3, 1)`,
    rock–paper–scissors) and on EGPO random games: unregularised exploitability of the last and the average
    iterate (the average approaches the von Neumann winner; the last iterate cycles).
  - Tabular SPPO with K sampled responses and the official best/worst soft win rates vs `sppo_hard`
    (P̂ ∈ {1, 0}): exploitability of the iterates.
  - SPIN, α-SPIN (history `config.history`) and fictitious play (`dynamics` "spin", "alpha_spin",
    "fictitious_play"): total variation to the data distribution / duality gap.

  Writes arrays.npz: `mwu__{game}__exploit_last` / `__exploit_avg` `[R]`, `sppo__{soft|hard}__exploit`
  `[outer]`, `spin__{name}__tv` `[R]`, `fp__gap` `[R]`, `steps` `[R]`; summary.json with the final values.
  """
  t_start = time.time()
  summary = {"name": config.name, "mwu": {}, "sppo": {}, "spin": {}}
  arrays = {}
  # Nine compiled phases: MWU on two games, SPPO soft and hard, four SPIN variants, fictitious play.
  num_phases, phase = 9, [0]

  def progress(what, t0):
    phase[0] += 1
    print(f"[{phase[0]}/{num_phases}] {what} ({time.time() - t0:.1f} s)", flush=True)
    preemption.check(f"after {phase[0]} of {num_phases} self-play phases")

  print(f"selfplay_cycles: {config.num_steps} steps (MWU, SPIN, FP), SPPO {config.sppo_iterations} x "
        f"{config.sppo_inner_steps} steps, {num_phases} phases", flush=True)
  with jax.enable_x64(True):
    T, rec = config.num_steps, config.record_every
    games = {"cyclic": preferences.cyclic(3, 1.0, dtype=jnp.float64)}
    P_rand, ref_rand = instances.egpo_games(jax.random.PRNGKey(config.game_seed), 1, config.num_actions,
                                            dtype=jnp.float64)
    games["random"] = P_rand[0]
    for gname, P in games.items():
      t0 = time.time()
      n = P.shape[0]
      init = jnp.asarray(np.linspace(0.0, 1.0, n))  # a non-equilibrium start
      res = dynamics.run_dynamics("mwu", P, jnp.zeros(n), config.beta, config.eta, T, rec, init_logits=init)
      last = np.asarray(nash.exploitability(res.policies, P))
      avg = np.asarray(nash.exploitability(res.avg_policies, P))
      arrays["steps"] = np.asarray(res.steps)
      arrays[f"mwu__{gname}__exploit_last"] = last
      arrays[f"mwu__{gname}__exploit_avg"] = avg
      summary["mwu"][gname] = {"final_exploit_last": float(last[-1]), "final_exploit_avg": float(avg[-1]),
                               "max_exploit_last_second_half": float(last[len(last) // 2:].max())}
      progress(f"MWU on the {gname} game: exploitability last {last[-1]:.3g}, average {avg[-1]:.3g}", t0)
    key = jax.random.PRNGKey(config.seed)
    P = games["random"]
    n = P.shape[0]
    for sel, label in (("best_worst", "soft"), ("hard", "hard")):
      t0 = time.time()
      pis = _sppo_iterations(P, jnp.zeros(n), config.sppo_beta, key, outer=config.sppo_iterations,
                             inner=config.sppo_inner_steps, lr=config.sppo_lr, k=config.sppo_k, prompts=8,
                             selection=sel)
      ex = np.asarray(nash.exploitability(pis, P))
      arrays[f"sppo__{label}__exploit"] = ex
      summary["sppo"][label] = {"final_exploit": float(ex[-1]), "min_exploit": float(ex.min())}
      progress(f"SPPO ({label} win rates): final exploitability {ex[-1]:.3g}", t0)
    data = ref_rand[0]
    init = jnp.zeros(n)
    for name, kw in (("spin", {}), ("alpha_spin", {"alpha": config.alpha}),
                     ("spin_history", {"history": config.history}),
                     ("alpha_spin_history", {"alpha": config.alpha, "history": config.history})):
      dyn = "alpha_spin" if "alpha" in kw else "spin"
      t0 = time.time()
      res = dynamics.run_dynamics(dyn, P, ref_rand[0] * 0.0, config.beta, config.spin_eta, T, rec,
                                  data_logits=data, init_logits=init, **kw)
      tv = 0.5 * np.abs(np.asarray(res.policies) - np.asarray(jax.nn.softmax(data))[None]).sum(-1)
      arrays[f"spin__{name}__tv"] = tv
      summary["spin"][name] = {"final_tv_to_data": float(tv[-1])}
      progress(f"{name}: final TV to p_data {tv[-1]:.3g}", t0)
    t0 = time.time()
    res = dynamics.run_dynamics("fictitious_play", P, jnp.zeros(n), config.beta, 1.0, T, rec)
    arrays["fp__gap"] = np.asarray(res.gap)
    summary["fictitious_play_final_gap"] = float(res.gap[-1])
    progress(f"fictitious play: final gap {float(res.gap[-1]):.3g}", t0)
  for r, step in enumerate(arrays["steps"]):
    wd.append_metrics({"step": int(step), **{k: float(v[r]) for k, v in arrays.items()
                                             if k.startswith(("mwu", "spin", "fp"))}})
  wd.write_arrays(arrays)
  if config.figure:
    plot_selfplay_cycles(wd, config, arrays, games)
  return _common.finish(wd, summary, t_start)


# ----------------------------------------------------------------------------------------------------
# Online DPO vs online IPO.


def validate_online_dpo_vs_ipo(config):
  """Checks every field `run_online_dpo_vs_ipo` reads; raises a one-line `PrefjaxError` naming the field."""
  cc.string(config, "name")
  _check_games(config)
  _positive(config, "beta")
  _positive(config, "lr")
  cc.positive_int(config, "num_steps", "record_every")
  if config.num_steps % config.record_every:
    raise PrefjaxError("config.record_every must divide config.num_steps")
  cc.boolean(config, "figure")


@workdir_lib.experiment(validate=validate_online_dpo_vs_ipo)
def run_online_dpo_vs_ipo(config, wd):
  """On a non-Bradley–Terry game, online DPO settles away from the NE while online IPO reaches it.

  Plain SGD on tabular logits (from π_ref) with the exact online DPO loss (`online_dpo_loss`) and the exact
  online IPO loss (`prefjax.objectives.nash.online_ipo_2_loss`) on EGPO random games (float64).

  Writes arrays.npz: `steps` `[R]`, `gap__{dpo|ipo}` `[G, R]`, `tv_to_ne__{dpo|ipo}` `[G, R]`; summary.json
  with final gaps and total-variation distances to π*_β (max and median over games).
  """
  t_start = time.time()
  T, rec = config.num_steps, config.record_every
  summary = {"name": config.name, "runs": {}}
  arrays = {}
  with jax.enable_x64(True):
    P, ref = _games(config, jnp.float64)
    beta, lr = config.beta, config.lr
    ne = nash.solve_regularised_nash(P, ref, beta).policy
    losses = {"dpo": online_dpo_loss, "ipo": nobj.online_ipo_2_loss}

    @jax.jit
    def run_all(P, ref):
      out = {}
      for name, loss in losses.items():

        def one(p, r, loss=loss):
          def rec_fn(theta, _):
            theta, _ = jax.lax.scan(lambda th, _: (th - lr * jax.grad(loss)(th, r, p, beta), None), theta, None,
                                    length=rec)
            return theta, jax.nn.softmax(theta)
          return jax.lax.scan(rec_fn, r, None, length=T // rec)[1]

        out[name] = jax.vmap(one)(P, ref)
      return out

    print(f"online DPO and IPO: {P.shape[0]} games x {T} SGD steps (one compiled program)", flush=True)
    t0 = time.time()
    pis = jax.block_until_ready(run_all(P, ref))
    print(f"  trained in {time.time() - t0:.1f} s", flush=True)
    preemption.check("after training, before writing the results")
    arrays["steps"] = np.arange(1, T // rec + 1) * rec
    for name, pi in pis.items():
      gap = np.asarray(nash.duality_gap(pi, P[:, None], ref[:, None], beta))
      tv = 0.5 * np.abs(np.asarray(pi) - np.asarray(ne)[:, None]).sum(-1)
      arrays[f"gap__{name}"] = gap
      arrays[f"tv_to_ne__{name}"] = tv
      summary["runs"][name] = {"final_gap_max": float(gap[:, -1].max()), "final_gap_median": float(np.median(gap[:, -1])),
                               "final_tv_to_ne_median": float(np.median(tv[:, -1])),
                               "final_tv_to_ne_max": float(tv[:, -1].max())}
      print(f"online {name}: final gap median {np.median(gap[:, -1]):.3g}", flush=True)
  for r, step in enumerate(arrays["steps"]):
    wd.append_metrics({"step": int(step), **{f"{n}_gap_median": float(np.median(arrays[f'gap__{n}'][:, r]))
                                             for n in losses}})
  wd.write_arrays(arrays)
  if config.figure:
    plot_online_dpo_vs_ipo(wd, arrays, losses)
  return _common.finish(wd, summary, t_start)


# ----------------------------------------------------------------------------------------------------
# Munos et al.'s annotator flip.


def validate_annotator_flip(config):
  """Checks every field `run_annotator_flip` reads; raises a one-line `PrefjaxError` naming the field."""
  cc.string(config, "name")
  _positive(config, "beta")
  eps = cc.numbers_list(config, "eps", low=-2.0 / 3.0, high=1.0 / 3.0)
  if len(eps) < 2:
    raise PrefjaxError("config.eps needs at least two values")
  if any(b <= a for a, b in zip(eps, eps[1:])):
    raise PrefjaxError(f"config.eps must be strictly increasing (the jumps are between neighbours), got "
                       f"{list(config.eps)}")
  cc.boolean(config, "figure")


@workdir_lib.experiment(validate=validate_annotator_flip)
def run_annotator_flip(config, wd):
  """Munos et al. arXiv:2312.00886 §3.2: the BT optimum flips as ε crosses 0; the Nash solution moves smoothly.

  For each ε of `config.eps`: the population of `instances.munos_annotators(ε)`, its Bradley–Terry
  (RLHF, β → 0) optimum, the unregularised Nash equilibrium by LP (`nash.solve_nash_lp`) and the regularised
  one at `config.beta` (`nash.solve_regularised_nash`, uniform π_ref).

  Writes arrays.npz: `eps` `[E]`, `bt_policy`, `nash_lp`, `nash_claimed`, `nash_regularised` `[E, 3]`;
  summary.json: the max deviation of the LP solution from (1/3 + ε/2, 1/3 + ε/2, 1/3 − ε), whether the BT
  optimum flips between ε < 0 and ε > 0, and the largest jump of each policy between neighbouring ε.
  """
  t_start = time.time()
  eps = np.asarray(config.eps, np.float64)
  rows = {"bt_policy": [], "nash_lp": [], "nash_claimed": [], "nash_regularised": []}
  with jax.enable_x64(True):
    for i, e in enumerate(eps):
      if i:
        preemption.check(f"after {i} of {eps.size} values of eps")
      ex = instances.munos_annotators(float(e), dtype=jnp.float64)
      rows["bt_policy"].append(np.asarray(ex.bt_policy))
      rows["nash_lp"].append(nash.solve_nash_lp(np.asarray(ex.P)))
      rows["nash_claimed"].append(np.asarray(ex.nash))
      rows["nash_regularised"].append(np.asarray(nash.solve_regularised_nash(ex.P, jnp.zeros(3), config.beta).policy))
      wd.append_metrics({"eps": float(e), **{k: v[-1].tolist() for k, v in rows.items()}})
  arrays = {"eps": eps, **{k: np.stack(v) for k, v in rows.items()}}
  wd.write_arrays(arrays)
  jump = lambda a: float(np.abs(np.diff(a, axis=0)).max())
  neg, pos = eps < 0, eps > 0
  bt = arrays["bt_policy"]
  summary = {
      "name": config.name,
      "nash_lp_max_deviation_from_claimed": float(np.abs(arrays["nash_lp"] - arrays["nash_claimed"]).max()),
      "bt_flips": bool(neg.any() and pos.any() and np.all(bt[neg].argmax(-1) == 1) and np.all(bt[pos].argmax(-1) == 0)),
      "max_jump": {k: jump(v) for k, v in arrays.items() if k != "eps"},
      "eps_step": float(np.abs(np.diff(eps)).max()),
  }
  if config.figure:
    plot_annotator_flip(wd, config, eps, bt, arrays)
  _common.finish(wd, summary, t_start)
  print(f"BT flips: {summary['bt_flips']}; LP vs claimed Nash: {summary['nash_lp_max_deviation_from_claimed']:.2g}",
        flush=True)
  return summary

"""The `objective_benchmark` experiment: every registered objective on one contextual bandit, exact metrics.

`run_objective_benchmark(config, workdir)` trains every objective of `config.objectives` on the same datasets of
one contextual preference bandit with the library part of `prefjax.bandit.objective_benchmark` (one adapter per
data contract, `make_train`, `make_sweep`: all objectives in one XLA program), and writes the workdir that
module's docstring describes: metrics.jsonl, arrays.npz, summary.json with the label-noise and ranked-data
verdicts (`label_noise_verdict`, `ranked_data_verdict`, read from paired per-seed differences: `compare`),
table.md (`format_table`) and figure.png (`prefjax.plotting.benchmark.plot_benchmark`).

The old path `prefjax.bandit.objective_benchmark` still resolves every name of this module.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from prefjax import config_checks as cc
from prefjax import intervals
from prefjax import preemption
from prefjax import workdir as workdir_lib
from prefjax.bandit import contextual
from prefjax.bandit import train as train_lib
from prefjax.bandit.objective_benchmark import FAMILIES
from prefjax.bandit.objective_benchmark import MAIN
from prefjax.bandit.objective_benchmark import METRICS
from prefjax.bandit.objective_benchmark import NOISE
from prefjax.bandit.objective_benchmark import PROMPTS
from prefjax.bandit.objective_benchmark import BenchConfig
from prefjax.bandit.objective_benchmark import BenchHParams
from prefjax.bandit.objective_benchmark import list_benchmark_objectives
from prefjax.bandit.objective_benchmark import make_sweep
from prefjax.bandit.objective_benchmark import make_train
from prefjax.bandit.objective_benchmark import resolve_objective
from prefjax.errors import PrefjaxError
from prefjax.objectives.pairwise import PAIRWISE_REGISTRY
from prefjax.plotting.benchmark import plot_benchmark
from prefjax.runs import _common


def _settings(config):
  """The grid [(kind, noise, num_prompts)] of the main run and both sweeps (deduplicated, kinds merged)."""
  grid = {}
  grid.setdefault((float(config.main_noise), int(config.num_prompts)), []).append(MAIN)
  for eps in config.label_noise_levels:
    grid.setdefault((float(eps), int(config.num_prompts)), []).append(NOISE)
  for m in config.prompt_counts:
    grid.setdefault((0.0, int(m)), []).append(PROMPTS)
  return [(kinds, noise, m) for (noise, m), kinds in sorted(grid.items())]


def _noise_rate(config, field, value):
  ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
  if not ok or not 0.0 <= float(value) < 0.5:
    raise PrefjaxError(f"config.{field}: label-noise rates must lie in [0, 0.5), got {value!r}")


def validate_objective_benchmark(config):
  """Checks every field `run_objective_benchmark` reads; raises a one-line `PrefjaxError` naming the field.

  Beyond types and ranges: every objective resolves to a family and builds its loss with its options (no
  compilation), label smoothing is given only to objectives that read it and lies in their range, the
  prompt counts fit the datasets, K fits the bandit, and record_every divides num_steps.
  """
  cc.string(config, "name")
  # The bandit.
  cc.integer(config, "env_seed")
  cc.integer(config, "num_contexts", low=1)
  num_responses = cc.integer(config, "num_responses", low=2)
  cc.integer(config, "context_dim", low=1)
  cc.choice(config, "reward_kind", contextual.REWARD_KINDS)
  cc.positive(config, "reward_scale")
  cc.number(config, "ref_scale", low=0)
  cc.integer(config, "num_annotators", low=1)
  # The data.
  num_prompts = cc.integer(config, "num_prompts", low=1)
  k = cc.integer(config, "responses_per_prompt")
  if not 2 <= k <= num_responses:
    raise PrefjaxError(f"K mismatch: config.responses_per_prompt = {k} must lie in "
                       f"[2, num_responses = {num_responses}]")
  cc.number(config, "score_noise", low=0)
  cc.choice(config, "listwise_labels", ("ranks", "scores"))
  # The policy and its training.
  cc.choice(config, "policy", contextual.POLICY_KINDS)
  cc.positive_int(config, "hidden")
  cc.positive(config, "beta", "lr")
  cc.choice(config, "optimizer", train_lib.OPTIMIZERS)
  cc.positive_int(config, "num_steps", "batch_size", "record_every", "num_seeds")
  cc.divides(config, "record_every", "num_steps")
  cc.integer(config, "seed")
  cc.boolean(config, "fast_compile", "figure")
  # The sweeps.
  _noise_rate(config, "main_noise", cc.get(config, "main_noise"))
  levels = cc.get(config, "label_noise_levels")
  if isinstance(levels, (str, bytes)) or not isinstance(levels, (list, tuple)):
    raise PrefjaxError(f"config.label_noise_levels must be a list of numbers like (0.0, 0.2), got {levels!r}")
  for i, eps in enumerate(levels):
    _noise_rate(config, f"label_noise_levels[{i}]", eps)
  counts = cc.get(config, "prompt_counts")
  if isinstance(counts, (str, bytes)) or not isinstance(counts, (list, tuple)):
    raise PrefjaxError(f"config.prompt_counts must be a list of whole numbers like (8, 32), got {counts!r}")
  for i, m in enumerate(counts):
    whole = isinstance(m, (int, float, np.integer, np.floating)) and not isinstance(m, bool) and float(m) == int(m)
    if not whole or not 1 <= int(m) <= num_prompts:
      raise PrefjaxError(f"config.prompt_counts entries must lie in [1, num_prompts = {num_prompts}], "
                         f"got {m!r} (config.prompt_counts[{i}])")
  cc.names(config, "robust_objectives", non_empty=False)
  cc.string(config, "baseline_objective", non_empty=True)
  cc.number(config, "target_gain", low=0, high=1, low_open=True)
  # The objectives: names, families, options and label smoothing.
  cc.names(config, "exclude_objectives", non_empty=False)
  if not hasattr(config.objective_settings, "get"):
    raise PrefjaxError(f"config.objective_settings must be a dict, got {config.objective_settings!r}")
  try:
    objective_list = _objective_list(config)
  except PrefjaxError as e:
    raise PrefjaxError(str(e) if str(e).startswith("config.") else f"config.objectives: {e}") from None
  for label, family, name, options, eps in objective_list:
    try:
      FAMILIES.get(family).make_loss(name, options)
    except PrefjaxError as e:
      raise PrefjaxError(f"config.objectives: {label!r}: {e} (config.objective_settings.{label})") from None
    except TypeError as e:
      raise PrefjaxError(f"config.objectives: {label!r}: bad option in config.objective_settings.{label}: "
                         f"{e}") from None
    try:
      hash(options)
    except TypeError:
      raise PrefjaxError(f"config.objective_settings.{label}: options must be numbers or names, got "
                         f"{dict(options)}") from None
    if family == "pairwise" and eps not in (0, 0.0, "noise"):
      allowed = PAIRWISE_REGISTRY.get(name).label_smoothing
      if not (np.isfinite(float(eps)) and allowed.contains(float(eps))):
        raise PrefjaxError(f"config.objective_settings.{label}.label_smoothing must lie in {allowed} for "
                           f"{name!r}, got {eps!r}")


def _objective_list(config):
  """[(label, family, name, options, label_smoothing)] of `config.objectives` ('all' expands)."""
  labels = []
  for entry in cc.names(config, "objectives"):
    if entry == "all":
      labels += [n for n in list_benchmark_objectives() if n not in tuple(config.exclude_objectives)]
    elif entry.endswith(":all"):
      family = entry[:-4]
      FAMILIES.get(family)
      labels += [n for n in FAMILIES.get(family).names() if n not in tuple(config.exclude_objectives)]
    else:
      labels.append(entry)
  if not labels:
    raise PrefjaxError("config.objectives selects no objective")
  if len(set(labels)) != len(labels):
    raise PrefjaxError(f"config.objectives names an objective twice: {labels}")
  out = []
  for label in labels:
    settings = config.objective_settings.get(label, {})
    if not hasattr(settings, "items"):
      raise PrefjaxError(f"config.objective_settings.{label} must be a dict of settings, got {settings!r}")
    settings = dict(settings.to_dict() if hasattr(settings, "to_dict") else settings)
    objective = settings.pop("objective", label)
    if not isinstance(objective, str):
      raise PrefjaxError(f"config.objective_settings.{label}.objective must be an objective name, got "
                         f"{objective!r}")
    family, name = resolve_objective(objective)
    eps = settings.pop("label_smoothing", 0.0)
    if eps != "noise" and (not isinstance(eps, (int, float)) or isinstance(eps, bool)):
      raise PrefjaxError(f"objective_settings[{label!r}].label_smoothing must be a number or 'noise'")
    if family == "listwise":
      settings.setdefault("labels", config.listwise_labels)
    fam = FAMILIES.get(family)
    if eps not in (0, 0.0) and not fam.uses_label_smoothing(name):
      raise PrefjaxError(f"objective {label!r} does not use label smoothing, got {eps!r}")
    out.append((label, family, name, tuple(sorted(settings.items())), eps))
  return out


def _hparams(config, settings, eps):
  noise = np.asarray([s[1] for s in settings], np.float32)
  smoothing = noise if eps == "noise" else np.full_like(noise, float(eps))
  n = len(settings)
  return BenchHParams(beta=jnp.full((n,), config.beta, jnp.float32), lr=jnp.full((n,), config.lr, jnp.float32),
                      label_smoothing=jnp.asarray(smoothing), noise=jnp.asarray(noise),
                      num_prompts=jnp.asarray([s[2] for s in settings], jnp.int32))


def make_env(config):
  """The benchmark's bandit from `config` (its own seed, so every run of a config sees the same bandit)."""
  return contextual.make_params(
      jax.random.PRNGKey(config.env_seed), num_contexts=config.num_contexts,
      num_responses=config.num_responses, context_dim=config.context_dim, reward_kind=config.reward_kind,
      reward_scale=config.reward_scale, ref_scale=config.ref_scale, num_annotators=config.num_annotators)


def _frontier(params, betas):
  evs = [contextual.evaluate(contextual.optimal_logits(params, b), params, b) for b in betas]
  return np.asarray([float(e.kl) for e in evs]), np.asarray([float(e.reward) for e in evs])


def _stats(x):
  mean, half = intervals.t_interval(np.asarray(x, np.float64), axis=0)
  return {"mean": float(mean), "ci95": None if not np.isfinite(half) else float(half)}


@workdir_lib.experiment(validate=validate_objective_benchmark)
def run_objective_benchmark(config, wd):
  """Runs the benchmark described by `config` and writes the workdir (see the module docstring).

  Called as `run_objective_benchmark(config, workdir, *, overwrite=False, command=None)`
  (`prefjax.workdir.experiment`: validated first, a finished run of the same config is returned as it is).
  """
  t_start = time.time()
  objective_list = _objective_list(config)
  settings = _settings(config)
  params = make_env(config)
  bench = BenchConfig(num_prompts=config.num_prompts, k=config.responses_per_prompt,
                      score_noise=config.score_noise, policy=config.policy, hidden=config.hidden,
                      num_steps=config.num_steps, batch_size=config.batch_size,
                      record_every=config.record_every, optimizer=config.optimizer)
  trains = [make_train(FAMILIES.get(family).make_loss(name, options), bench)
            for _, family, name, options, _ in objective_list]
  hparams = [_hparams(config, settings, eps) for *_, eps in objective_list]
  keys = jax.random.split(jax.random.PRNGKey(config.seed), config.num_seeds)
  print(f"objective_benchmark: {len(trains)} objectives x {len(settings)} settings x {config.num_seeds} seeds "
        f"x {config.num_steps} steps", flush=True)
  t0 = time.time()
  outputs = make_sweep(trains, fast_compile=config.fast_compile)(keys, hparams, params)
  outputs = jax.tree.map(np.asarray, outputs)
  train_seconds = time.time() - t0
  print(f"trained (compile + run) in {train_seconds:.1f}s", flush=True)
  preemption.check("after training, before writing the results")

  frontier_betas = np.geomspace(config.beta / 8, config.beta * 64, 25)
  f_kl, f_reward = _frontier(params, frontier_betas)
  arrays = {"steps": outputs[0]["step"][0, 0], "settings_noise": np.asarray([s[1] for s in settings]),
            "settings_prompts": np.asarray([s[2] for s in settings]), "frontier_beta": frontier_betas,
            "frontier_kl": f_kl, "frontier_reward": f_reward}
  for (label, *_), out in zip(objective_list, outputs):
    for m in METRICS:
      arrays[f"{label}__{m}"] = out[m]
    for h, (kinds, noise, prompts) in enumerate(settings):
      for r, step in enumerate(arrays["steps"]):
        wd.append_metrics({"objective": label, "noise": noise, "num_prompts": prompts, "step": int(step),
                           **{m: float(out[m][h, :, r].mean()) for m in METRICS}})
  wd.write_arrays(arrays)

  ref_eval = contextual.evaluate(params.ref_logits, params, config.beta)
  opt_eval = contextual.evaluate(contextual.optimal_logits(params, config.beta), params, config.beta)
  summary = {
      "experiment": config.name, "beta": config.beta, "num_seeds": config.num_seeds,
      "num_steps": config.num_steps, "policy": config.policy,
      "reference": {k: float(v) for k, v in ref_eval._asdict().items()},
      "optimum": {k: float(v) for k, v in opt_eval._asdict().items()},
      "settings": [{"kinds": k, "noise": n, "num_prompts": m} for k, n, m in settings],
      "objectives": [], "train_seconds": train_seconds,
  }
  main = next(h for h, s in enumerate(settings) if MAIN in s[0])
  for (label, family, name, options, eps), out in zip(objective_list, outputs):
    entry = {"objective": label, "family": family, "name": name, "data": FAMILIES.get(family).data_format,
             "options": dict(options), "label_smoothing": eps}
    entry.update({m: _stats(out[m][main, :, -1]) for m in METRICS})
    entry[NOISE] = [{"noise": s[1], **{m: _stats(out[m][h, :, -1]) for m in ("reward", "win_rate", "tv_to_optimum")},
                     # Every objective sees the same datasets per seed: verdicts compare seeds pairwise.
                     "reward_per_seed": [float(v) for v in out["reward"][h, :, -1]]}
                    for h, s in enumerate(settings) if NOISE in s[0]]
    entry[PROMPTS] = [{"num_prompts": s[2], **{m: _stats(out[m][h, :, -1]) for m in ("reward", "tv_to_optimum")}}
                      for h, s in enumerate(settings) if PROMPTS in s[0]]
    summary["objectives"].append(entry)
  summary["label_noise_verdict"] = label_noise_verdict(summary, config)
  summary["ranked_data_verdict"] = ranked_data_verdict(summary, config)
  _common.finish(wd, summary, t_start)
  wd.write_text("table.md", format_table(summary))
  if config.figure:
    plot_benchmark(wd)
  _common.finish(wd, summary, t_start)  # Again, with the figure's time.
  print(f"objective_benchmark done in {summary['seconds']:.1f}s", flush=True)
  return summary


def _gain(reward, summary):
  """Fraction of π*_β's reward gain over π_ref that a policy's reward achieves."""
  ref, opt = summary["reference"]["reward"], summary["optimum"]["reward"]
  return (reward - ref) / (opt - ref)


WIN, LOSS, TIE, UNDETERMINED = "wins", "loses", "no significant difference", "undetermined"


def compare(a_seeds=None, b_seeds=None, a_stats=None, b_stats=None, level=0.95):
  """Whether A beats B in seed-mean oracle reward, respecting the intervals; returns (verdict, difference).

  With per-seed values of both (the same datasets and seeds: a paired design), the verdict reads the
  Student-t `level` interval of the per-seed difference A − B: WIN when it lies above 0, LOSS below 0, TIE
  ("no significant difference") when it contains 0. Without them (a summary written before the per-seed
  values were stored) the two `{"mean", "ci95"}` intervals must separate for a WIN or LOSS. UNDETERMINED when
  there is no interval (one seed). `difference` is `{"mean", "half_width", "level"}`: the seed-mean
  difference and the half-width of its `level` interval (None without per-seed values).
  """
  if a_seeds is not None and b_seeds is not None and len(a_seeds) == len(b_seeds):
    d = np.asarray(a_seeds, np.float64) - np.asarray(b_seeds, np.float64)
    mean, half = intervals.t_interval(d, axis=0, level=level)
    diff = {"mean": float(mean), "half_width": None if not np.isfinite(half) else float(half), "level": level}
    if diff["half_width"] is None:
      return UNDETERMINED, diff
    if mean - half > 0:
      return WIN, diff
    if mean + half < 0:
      return LOSS, diff
    return TIE, diff
  if a_stats is None or b_stats is None or a_stats.get("ci95") is None or b_stats.get("ci95") is None:
    return UNDETERMINED, None
  if a_stats["mean"] - a_stats["ci95"] > b_stats["mean"] + b_stats["ci95"]:
    return WIN, None
  if a_stats["mean"] + a_stats["ci95"] < b_stats["mean"] - b_stats["ci95"]:
    return LOSS, None
  return TIE, None


def label_noise_verdict(summary, config):
  """At the highest noise: the best robust objective (by seed-mean oracle reward) vs the baseline (DPO).

  The verdict (`compare`) reads the interval of the paired per-seed difference at family-wise level 95% over
  the robust objectives compared (Bonferroni: each interval at 1 − 0.05/m, since the best of m is selected):
  "wins" only when that interval lies above 0, "no significant difference" when it contains 0.
  """
  by_label = {e["objective"]: e for e in summary["objectives"]}
  levels = [float(e) for e in config.label_noise_levels]
  if not levels or config.baseline_objective not in by_label:
    return None
  robust = [r for r in config.robust_objectives if r in by_label and r != config.baseline_objective]
  if not robust:
    return None
  top = max(levels)
  at = lambda label: next(x for x in by_label[label][NOISE] if x["noise"] == top)
  base = at(config.baseline_objective)
  level = 1 - 0.05 / len(robust)
  verdicts = {}
  for r in robust:
    v, d = compare(at(r).get("reward_per_seed"), base.get("reward_per_seed"), at(r)["reward"], base["reward"],
                   level=level)
    verdicts[r] = {"verdict": v, "difference": d}
  best = max(robust, key=lambda r: at(r)["reward"]["mean"])
  ranking = sorted(by_label, key=lambda l: -at(l)["reward"]["mean"])
  return {"noise": top, "baseline": config.baseline_objective, "baseline_reward": _plain(base["reward"]),
          "best_robust": best, "best_robust_reward": _plain(at(best)["reward"]),
          "difference": verdicts[best]["difference"], "verdict": verdicts[best]["verdict"],
          "family_wise_level": 0.95, "num_compared": len(robust),
          "robust_beats_baseline": verdicts[best]["verdict"] == WIN,
          "robust_verdicts": {r: v["verdict"] for r, v in verdicts.items()},
          "robust_rewards": {r: at(r)["reward"]["mean"] for r in robust},
          "ranking_by_reward": ranking}


def _plain(stats):
  return {"mean": stats["mean"], "ci95": stats["ci95"]}


def _needed(entry, summary, target):
  """Prompts needed to reach `target` gain: (by the seed mean, optimistic low, conservative high), None = never.

  The low end is the first P whose upper 95% bound reaches the target, the high end the first P whose lower
  bound does (None when no interval: one seed).
  """
  rows = sorted(entry[PROMPTS], key=lambda x: x["num_prompts"])
  first = lambda ok: next((x["num_prompts"] for x in rows if ok(x)), None)
  by_mean = first(lambda x: _gain(x["reward"]["mean"], summary) >= target)
  if any(x["reward"]["ci95"] is None for x in rows):
    return by_mean, None, None
  low = first(lambda x: _gain(x["reward"]["mean"] + x["reward"]["ci95"], summary) >= target)
  high = first(lambda x: _gain(x["reward"]["mean"] - x["reward"]["ci95"], summary) >= target)
  return by_mean, low, high


def ranked_data_verdict(summary, config):
  """Prompts each objective needs to reach `target_gain` of π*'s reward gain; listwise vs the baseline.

  A listwise objective needs "fewer" prompts than the baseline only when the ranges the 95% intervals allow
  separate (its conservative count below the baseline's optimistic one; never reaching the target counts as
  more than every P), "more" in the mirror case, otherwise "no significant difference" ("undetermined" with
  one seed).
  """
  if not config.prompt_counts:
    return None
  needed, ranges = {}, {}
  for e in summary["objectives"]:
    by_mean, low, high = _needed(e, summary, config.target_gain)
    needed[e["objective"]] = by_mean
    ranges[e["objective"]] = [low, high]
  big = 10 * max(config.prompt_counts)
  inf = lambda v: big if v is None else v
  base = ranges.get(config.baseline_objective)
  verdicts = {}
  for e in summary["objectives"]:
    if e["family"] != "listwise":
      continue
    low, high = ranges[e["objective"]]
    if base is None or any(x["reward"]["ci95"] is None for x in e[PROMPTS]):
      verdicts[e["objective"]] = UNDETERMINED
    elif inf(high) < inf(base[0]):
      verdicts[e["objective"]] = "fewer"
    elif inf(base[1]) < inf(low):
      verdicts[e["objective"]] = "more"
    else:
      verdicts[e["objective"]] = TIE
  return {"target_gain": config.target_gain, "prompts_needed": needed, "prompts_needed_range": ranges,
          "baseline": config.baseline_objective, "listwise_vs_baseline": verdicts,
          "listwise_fewer_than_baseline": {k: v == "fewer" for k, v in verdicts.items()}}


# ----------------------------------------------------------------------------------------------------
# The table (read back from the workdir; the figure is `prefjax.plotting.benchmark.plot_benchmark`).
# ----------------------------------------------------------------------------------------------------


def _fmt(s):
  if s["ci95"] is None:
    return f"{s['mean']:.3f}"
  return f"{s['mean']:.3f} ± {s['ci95']:.3f}"


def format_table(summary):
  """Markdown: the main setting's metrics per objective (seed mean ± 95% CI), then both sweeps."""
  lines = [f"β = {summary['beta']:g}, policy = {summary['policy']}, {summary['num_seeds']} seeds. "
           f"π_ref: reward {summary['reference']['reward']:.3f}; π*_β: reward {summary['optimum']['reward']:.3f}, "
           f"KL {summary['optimum']['kl']:.3f}, win rate {summary['optimum']['win_rate']:.3f}.", "",
           "| objective | family | data | oracle reward | KL(π‖π_ref) | win rate vs π_ref | TV to π* | FSD violation |",
           "|---|---|---|---|---|---|---|---|"]
  for e in sorted(summary["objectives"], key=lambda e: -e["reward"]["mean"]):
    lines.append(f"| {e['objective']} | {e['family']} | {e['data']} | {_fmt(e['reward'])} | {_fmt(e['kl'])} | "
                 f"{_fmt(e['win_rate'])} | {_fmt(e['tv_to_optimum'])} | {_fmt(e['fsd_violation'])} |")
  noise = summary["objectives"][0][NOISE]
  if noise:
    levels = [x["noise"] for x in noise]
    lines += ["", "Label-noise sweep: oracle reward (seed mean) at flip rate ε", "",
              "| objective | " + " | ".join(f"ε = {n:g}" for n in levels) + " |",
              "|---|" + "---|" * len(levels)]
    for e in summary["objectives"]:
      lines.append(f"| {e['objective']} | " + " | ".join(f"{x['reward']['mean']:.3f}" for x in e[NOISE]) + " |")
    v = summary.get("label_noise_verdict")
    if v:
      lines += ["", _noise_verdict_line(summary, v)]
  prompts = summary["objectives"][0][PROMPTS]
  if prompts:
    counts = [x["num_prompts"] for x in prompts]
    lines += ["", "Ranked-data sweep: oracle reward (seed mean) with P prompts", "",
              "| objective | " + " | ".join(f"P = {m}" for m in counts) + " |", "|---|" + "---|" * len(counts)]
    for e in summary["objectives"]:
      lines.append(f"| {e['objective']} | " + " | ".join(f"{x['reward']['mean']:.3f}" for x in e[PROMPTS]) + " |")
    v = summary.get("ranked_data_verdict")
    if v:
      most = max(counts)
      show = lambda n: f">{most}" if n is None else str(n)
      ranges = v.get("prompts_needed_range", {})
      def needed(k, n):
        low, high = ranges.get(k) or (None, None)
        return f"{k} {show(n)}" + ("" if low is None and high is None else f" [{show(low)}–{show(high)}]")

      lines += ["", f"Prompts needed to reach {v['target_gain']:.0%} of π*'s reward gain (seed mean; in brackets "
                f"the range the 95% intervals allow): "
                + ", ".join(needed(k, n) for k, n in v["prompts_needed"].items()) + "."]
      verdicts = v.get("listwise_vs_baseline")
      if verdicts:
        lines.append(f"Listwise vs {v['baseline']}: " + ", ".join(
            f"{k} needs {w} prompts" if w in ("fewer", "more") else f"{k}: {w}" for k, w in verdicts.items())
                     + ".")
  return "\n".join(lines) + "\n"


def _noise_verdict_line(summary, v):
  """The label-noise verdict sentence of table.md (old summaries: the verdict from the two intervals)."""
  verdict = v.get("verdict")
  diff = v.get("difference")
  if verdict is None:  # A summary written before the verdict read the intervals.
    verdict, diff = compare(a_stats=v["best_robust_reward"], b_stats=v["baseline_reward"])
  if diff is not None and diff.get("half_width") is not None:
    how = (f"paired difference over seeds {diff['mean']:+.3f} ± {diff['half_width']:.3f} "
           f"({v.get('family_wise_level', 0.95):.0%} family-wise over {v.get('num_compared', 1)} robust "
           f"objective(s): each at {diff['level']:.2%})")
  else:
    how = "the two 95% intervals" + (" overlap" if verdict == TIE else "")
  said = {WIN: "robust wins", LOSS: "robust loses", TIE: "no significant difference",
          UNDETERMINED: "undetermined (one seed: no interval)"}[verdict]
  return (f"At ε = {v['noise']:g}: best robust objective {v['best_robust']} ({_fmt(v['best_robust_reward'])}) "
          f"vs {v['baseline']} ({_fmt(v['baseline_reward'])}); {how}: {said}.")

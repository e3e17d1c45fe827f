"""The offline/online pairwise bandit experiment: objectives × data sources × β × seeds, with exact optima.

`run_bandit_sweep(config, workdir)` trains a tabular softmax policy with each configured pairwise objective
on each data source (named pair datasets such as the IPO paper's D1, and optionally a Bradley–Terry bandit
sampled online from a uniform behaviour policy), sweeping β (τ in the IPO paper) × seeds in one jitted call
per (source, objective). It writes to the workdir:

- config.json — the experiment's config;
- metrics.jsonl — one line per (source, objective, β, recorded step): seed-mean loss, KL and policy;
- arrays.npz — `steps` [R], `betas` [H], and for each run `{source}__{objective}__policy` [H, S, R, N]
  (π(y) per β, seed, recorded step and action) and `{source}__{objective}__kl` [H, S, R];
- summary.json — per (source, objective, β): the seed-mean final policy (each seed's policy averaged over the
  last `tail_fraction` of the run) with its 95% t-interval over seeds, the same for the last iterate, KL to
  π_ref, the closed-form optima (IPO/ΨPO with Ψ = identity; RLHF = DPO's target under Bradley–Terry) where they
  exist, total-variation distances to them, and whether the policy collapsed to a deterministic one;
- table.md (when `config.write_table`) and figure.png (when `config.figure`; `prefjax.plotting.bandit`);
- status.json — where the run is (the workdir contract of `prefjax.workdir`: `validate_bandit_sweep` checks
  the whole config before anything is written; a finished run of the same config is not rerun).

The old path `prefjax.bandit.runs` re-exports this module.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.bandit import train as train_lib
from prefjax import config_checks as cc
from prefjax import intervals
from prefjax import objectives as objectives_lib
from prefjax import preemption
from prefjax import workdir as workdir_lib
from prefjax.envs import bandit as bandit_lib
from prefjax.errors import PrefjaxError
from prefjax.games import preferences
from prefjax.games import psipo
from prefjax.objectives import spec
from prefjax.objectives.pairwise import PAIRWISE_REGISTRY
from prefjax.plotting.bandit import plot_bandit_sweep

# A policy whose largest probability exceeds this is reported as collapsed (deterministic).
COLLAPSE_THRESHOLD = 0.999
BRADLEY_TERRY = "bradley_terry"


def _sources(config):
  """Yields (name, env, env_params, pairs or None, P or None, behaviour or None)."""
  n = int(config.num_actions)
  for name in cc.names(config, "datasets", bandit_lib.NAMED_DATASETS, non_empty=False):
    env = bandit_lib.PairDataset(n)
    pairs = bandit_lib.named_dataset(name)
    yield name, env, env.make_params(pairs), np.asarray(pairs), None, None
  rewards = tuple(float(r) for r in config.bradley_terry_rewards)
  if rewards:
    env = bandit_lib.PreferenceBandit(n)
    P = np.asarray(preferences.bradley_terry(jnp.asarray(rewards, jnp.float32)), np.float64)
    behaviour = np.full(n, 1.0 / n)
    yield BRADLEY_TERRY, env, env.make_params(P, behaviour), None, P, behaviour


def _optima(config, beta, pairs, P, behaviour):
  """Closed-form optima for one source and β: {'ipo': π or None, 'rlhf': π or None}."""
  n = config.num_actions
  ref = np.full(n, 1.0 / n)
  if pairs is not None:
    logits = psipo.ipo_empirical_minimiser(pairs[:, 0], pairs[:, 1], n, beta)
    w = np.exp(logits - logits.max())
    return {"ipo": (w / w.sum()).tolist(), "rlhf": None}
  rewards = np.asarray(config.bradley_terry_rewards, np.float64)
  return {
      "ipo": np.asarray(psipo.psipo_optimum(P, behaviour, ref, beta, psi="identity")).tolist(),
      "rlhf": np.asarray(psipo.rlhf_optimum(rewards, ref, beta)).tolist(),
  }




def _objective_settings(config, label):
  """(objective name, label smoothing, static kwargs) of entry `label` of `config.objectives`.

  `config.objective_settings[label]` may name the registered objective (`objective`, default: the label
  itself), its label smoothing, and any static keyword argument of `pairwise_loss` (divergence, alpha, ...).
  """
  settings = config.objective_settings.get(label, {})
  settings = dict(settings.to_dict() if hasattr(settings, "to_dict") else settings)
  objective = settings.pop("objective", label)
  if "label_smoothing" in settings:
    label_smoothing = float(settings.pop("label_smoothing"))
  elif isinstance(objective, str) and objective in PAIRWISE_REGISTRY and (
      PAIRWISE_REGISTRY.get(objective).label_smoothing is None):
    label_smoothing = 0.0  # The default ε applies to the objectives that read one.
  else:
    label_smoothing = float(config.label_smoothing)
  return objective, label_smoothing, tuple(sorted(settings.items()))


def _labels(config):
  return cc.names(config, "objectives")


def _check_objective(config, i, label):
  """Raises a one-line `PrefjaxError` naming the field when entry `label` of config.objectives cannot train.

  The objective's registered name, its label smoothing (range per objective) and static keyword arguments are
  checked by one eager call of `pairwise_loss` on a one-pair batch (no compilation).
  """
  settings = config.objective_settings.get(label, {})
  if not hasattr(settings, "items"):
    raise PrefjaxError(f"config.objective_settings.{label} must be a dict of settings, got {settings!r}")
  where = f"config.objectives[{i}] = {label!r}"
  if label in config.objective_settings:
    where += f" (config.objective_settings.{label})"
  try:
    objective, label_smoothing, kwargs = _objective_settings(config, label)
  except (TypeError, ValueError) as e:
    raise PrefjaxError(f"{where}: label_smoothing must be a number: {e}") from None
  if not isinstance(objective, str):
    raise PrefjaxError(f"{where}: objective must be a registered objective name, got {objective!r}")
  one = jnp.zeros((1,), jnp.float32)
  try:
    objectives_lib.pairwise_loss(objective, one, one, one, one, beta=1.0, label_smoothing=label_smoothing,
                                 chosen_lengths=one + 1, rejected_lengths=one + 1, **dict(kwargs))
  except PrefjaxError as e:
    raise PrefjaxError(f"{where}: {e}") from None
  except TypeError as e:  # An option the objective does not take.
    raise PrefjaxError(f"{where}: bad option in config.objective_settings: {e}") from None
  try:
    hash(kwargs)
  except TypeError:
    raise PrefjaxError(f"{where}: options must be numbers or names (hashable), got {dict(kwargs)}") from None


def validate_bandit_sweep(config):
  """Checks every field `run_bandit_sweep` reads; raises a one-line `PrefjaxError` naming the field."""
  cc.string(config, "name")
  n = cc.integer(config, "num_actions", low=2)
  datasets = cc.names(config, "datasets", bandit_lib.NAMED_DATASETS, non_empty=False)
  if len(set(datasets)) != len(datasets):
    raise PrefjaxError(f"config.datasets names a dataset twice: {datasets}")
  for name in datasets:
    top = max(max(pair) for pair in bandit_lib.named_dataset(name))
    if top >= n:
      raise PrefjaxError(f"config.datasets: dataset {name!r} uses actions 0..{top} but config.num_actions = {n}")
  rewards = cc.numbers_list(config, "bradley_terry_rewards", non_empty=False)
  if rewards and len(rewards) != n:
    raise PrefjaxError(
        f"config.bradley_terry_rewards has {len(rewards)} entries but config.num_actions = {n}")
  if not datasets and not rewards:
    raise PrefjaxError("config.datasets is empty and config.bradley_terry_rewards too: give a data source")
  labels = _labels(config)
  if len(set(labels)) != len(labels):
    raise PrefjaxError(f"config.objectives names an objective twice: {labels}")
  if not hasattr(config.objective_settings, "get"):
    raise PrefjaxError(f"config.objective_settings must be a dict, got {config.objective_settings!r}")
  cc.number(config, "label_smoothing", low=0, high=1, high_open=True)
  for i, label in enumerate(labels):
    _check_objective(config, i, label)
  cc.positive_list(config, "betas")
  cc.positive(config, "lr")
  cc.choice(config, "optimizer", train_lib.OPTIMIZERS)
  cc.positive_int(config, "num_steps", "batch_size", "record_every", "num_seeds")
  cc.divides(config, "record_every", "num_steps")
  cc.number(config, "tail_fraction", low=0, high=1, low_open=True)
  cc.integer(config, "seed")
  cc.boolean(config, "fast_compile", "write_table", "figure")
  drawn = cc.names(config, "figure_objectives", non_empty=False)
  missing = [o for o in drawn if o not in labels]
  if missing:
    raise PrefjaxError(f"config.figure_objectives: {missing} not among config.objectives {labels}")


@workdir_lib.experiment(validate=validate_bandit_sweep)
def run_bandit_sweep(config, wd):
  """Runs the sweep described by `config` and writes the workdir (see the module docstring).

  Called as `run_bandit_sweep(config, workdir, *, overwrite=False, command=None)` (`prefjax.workdir.experiment`:
  the config is validated, the workdir opened, and a finished run of the same config returned as it is).
  """
  betas = np.asarray(config.betas, np.float32)
  n = int(config.num_actions)
  ref_logits = jnp.zeros((1, n), jnp.float32)  # Uniform π_ref; the policy starts there (θ₀ = θ_ref = 0).
  keys = jax.random.split(jax.random.PRNGKey(config.seed), config.num_seeds)
  arrays, runs = {"betas": betas}, []
  t_start = time.time()
  sources = list(_sources(config))
  labels = _labels(config)
  settings = [_objective_settings(config, label) for label in labels]
  for i, (source, env, env_params, pairs, P, behaviour) in enumerate(sources):
    if i:  # SIGTERM/SIGINT: stop between sources (each is one compiled call).
      preemption.check(f"after {i} of {len(sources)} data sources")
    t0 = time.time()
    optima = [_optima(config, float(b), pairs, P, behaviour) for b in betas]
    trains = [train_lib.make_train(train_lib.TrainConfig(
        objective=objective, num_steps=config.num_steps, batch_size=config.batch_size,
        record_every=config.record_every, optimizer=config.optimizer, objective_kwargs=kwargs), env)
              for objective, _, kwargs in settings]
    hparams = [train_lib.make_hparams(betas, config.lr, label_smoothing) for _, label_smoothing, _ in settings]
    # Every objective of this source in one compiled program.
    sweep = train_lib.make_sweep(trains, fast_compile=config.fast_compile)
    outputs = sweep(keys, hparams, env_params, ref_logits)
    for label, (objective, label_smoothing, kwargs), (_, metrics) in zip(labels, settings, outputs):
      policy = np.asarray(metrics.policy[:, :, :, 0, :])  # [H, S, R, N] (one context).
      kl = np.asarray(metrics.kl)
      loss = np.asarray(metrics.loss)
      steps = np.asarray(metrics.step[0, 0])
      arrays["steps"] = steps
      arrays[f"{source}__{label}__policy"] = policy
      arrays[f"{source}__{label}__kl"] = kl
      for h in range(len(betas)):
        for r, step in enumerate(steps):
          wd.append_metrics({"source": source, "objective": label, "beta": float(config.betas[h]),
                             "step": int(step), "loss": float(loss[h, :, r].mean()),
                             "kl": float(kl[h, :, r].mean()), "policy": policy[h, :, r].mean(0)})
        runs.append(_summarise(source, label, objective, float(config.betas[h]), policy[h], kl[h, :, -1],
                               optima[h], label_smoothing, kwargs, config.tail_fraction))
    wd.write_arrays(arrays)
    print(f"[{i + 1}/{len(sources)}] {source}: {len(labels)} objective(s) x {len(betas)} beta(s) x "
          f"{config.num_seeds} seed(s) x {config.num_steps} steps in {time.time() - t0:.1f}s", flush=True)
  summary = {"experiment": config.name, "num_seeds": config.num_seeds, "num_steps": config.num_steps,
             "seconds": time.time() - t_start, "runs": runs}
  wd.write_summary(summary)
  if config.write_table:
    wd.write_text("table.md", format_table(summary))
  if config.figure:
    plot_bandit_sweep(wd.path, objectives=tuple(cc.names(config, "figure_objectives", non_empty=False)) or None,
                      out=wd.file("figure.png"))
  return summary


def _t_interval(x):
  mean, half = intervals.t_interval(x, axis=0)
  return mean, mean - half, mean + half


def _summarise(source, label, objective, beta, policy, final_kl, optima, label_smoothing, kwargs,
               tail_fraction):
  """Summary entry of one (source, objective, β) from its policies `[S, R, N]` (seeds, records, actions).

  The final policy of a seed is its policy averaged over the last `tail_fraction` of the recorded steps
  (tail averaging): with a constant learning rate, mini-batch noise keeps each seed's last iterate jittering
  around its limit (±5e-3 in π for IPO on D1 with Adam 0.01), and the tail average estimates that limit.
  The last iterate's statistics are reported too.
  """
  num_records = policy.shape[1] - 1  # Record 0 is the initial policy.
  tail = max(1, int(round(tail_fraction * num_records)))
  mean, low, high = _t_interval(policy[:, -tail:].mean(1))
  last_mean, last_low, last_high = _t_interval(policy[:, -1])
  entry = {
      "source": source, "objective": label, "loss": objective, "beta": beta,
      "label_smoothing": label_smoothing, "objective_kwargs": dict(kwargs),
      "final_policy_mean": mean, "final_policy_ci95_low": low, "final_policy_ci95_high": high,
      "tail_records": tail,
      "last_iterate_mean": last_mean, "last_iterate_ci95_low": last_low, "last_iterate_ci95_high": last_high,
      "kl_to_ref": float(final_kl.mean()),
      "collapsed": bool(mean.max() > COLLAPSE_THRESHOLD),
      "ipo_optimum": optima["ipo"], "rlhf_optimum": optima["rlhf"],
  }
  for kind in ("ipo", "rlhf"):
    target = optima[kind]
    entry[f"tv_to_{kind}_optimum"] = (None if target is None
                                      else float(0.5 * np.abs(mean - np.asarray(target)).sum()))
  # The closed form the objective's population optimum is declared to equal (none with extra switches).
  own = spec.optimum_kind(objective, label_smoothing) if not kwargs else None
  entry["optimum"] = optima[own] if own else None
  entry["max_abs_error_to_optimum"] = (
      None if entry["optimum"] is None else float(np.abs(mean - np.asarray(entry["optimum"])).max()))
  return entry


def format_table(summary):
  """A Markdown table of the summary's runs: final policy, KL, distances to the optima, collapse."""

  def fmt(x):
    return "—" if x is None else f"{x:.3f}"

  lines = ["| source | objective | β | final π (seed mean) | KL(π‖π_ref) | TV to IPO/ΨPO optimum "
           "| TV to RLHF optimum | collapsed |", "|---|---|---|---|---|---|---|---|"]
  for r in summary["runs"]:
    pi = ", ".join(f"{p:.3f}" for p in np.asarray(r["final_policy_mean"]))
    lines.append(f"| {r['source']} | {r['objective']} | {r['beta']:g} | ({pi}) | {r['kl_to_ref']:.3f} | "
                 f"{fmt(r['tv_to_ipo_optimum'])} | {fmt(r['tv_to_rlhf_optimum'])} | "
                 f"{'yes' if r['collapsed'] else 'no'} |")
  return "\n".join(lines) + "\n"


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
- table.md (when `config.write_table`) and figure.png (when `config.figure`).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from prefjax.bandit import train as train_lib
from prefjax.envs import bandit as bandit_lib
from prefjax.envs import preferences
from prefjax.errors import PrefjaxError
from prefjax import intervals
from prefjax.games import psipo
from prefjax import workdir as workdir_lib

# A policy whose largest probability exceeds this is reported as collapsed (deterministic).
COLLAPSE_THRESHOLD = 0.999
BRADLEY_TERRY = "bradley_terry"


def _sources(config):
  """Yields (name, env, env_params, pairs or None, P or None, behaviour or None)."""
  n = config.num_actions
  for name in config.datasets:
    env = bandit_lib.PairDataset(n)
    pairs = bandit_lib.named_dataset(name)
    yield name, env, env.make_params(pairs), np.asarray(pairs), None, None
  rewards = tuple(config.bradley_terry_rewards)
  if rewards:
    if len(rewards) != n:
      raise PrefjaxError(
          f"config.bradley_terry_rewards has {len(rewards)} entries but config.num_actions = {n}")
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


# The closed form each objective's population optimum is known to equal (others: none known).
OWN_OPTIMUM = {"ipo": "ipo", "sigmoid": "rlhf", "dpo": "rlhf"}


def _objective_settings(config, label):
  """(objective name, label smoothing, static kwargs) of entry `label` of `config.objectives`.

  `config.objective_settings[label]` may name the registered objective (`objective`, default: the label
  itself), its label smoothing, and any static keyword argument of `pairwise_loss` (divergence, alpha, ...).
  """
  settings = config.objective_settings.get(label, {})
  settings = dict(settings.to_dict() if hasattr(settings, "to_dict") else settings)
  objective = settings.pop("objective", label)
  label_smoothing = float(settings.pop("label_smoothing", config.label_smoothing))
  return objective, label_smoothing, tuple(sorted(settings.items()))


def run_bandit_sweep(config, workdir):
  """Runs the sweep described by `config` and writes the workdir (see the module docstring)."""
  wd = workdir_lib.Workdir(workdir)
  wd.write_config(config)
  betas = np.asarray(config.betas, np.float32)
  if betas.ndim != 1 or betas.size == 0 or np.any(betas <= 0):
    raise PrefjaxError(f"config.betas must be a non-empty list of positive numbers, got {config.betas}")
  n = config.num_actions
  ref_logits = jnp.zeros((1, n), jnp.float32)  # Uniform π_ref; the policy starts there (θ₀ = θ_ref = 0).
  keys = jax.random.split(jax.random.PRNGKey(config.seed), config.num_seeds)
  arrays, runs = {"betas": betas}, []
  t_start = time.time()
  sources = list(_sources(config))
  settings = [_objective_settings(config, label) for label in config.objectives]
  for i, (source, env, env_params, pairs, P, behaviour) in enumerate(sources):
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
    for label, (objective, label_smoothing, kwargs), (_, metrics) in zip(config.objectives, settings, outputs):
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
    print(f"[{i + 1}/{len(sources)}] {source}: {len(config.objectives)} objective(s) x {len(betas)} beta(s) x "
          f"{config.num_seeds} seed(s) x {config.num_steps} steps in {time.time() - t0:.1f}s", flush=True)
  summary = {"experiment": config.name, "num_seeds": config.num_seeds, "num_steps": config.num_steps,
             "seconds": time.time() - t_start, "runs": runs}
  wd.write_summary(summary)
  if config.write_table:
    wd.write_text("table.md", format_table(summary))
  if config.figure:
    from prefjax import plotting  # pylint: disable=g-import-not-at-top  (matplotlib only when drawing)
    plotting.plot_bandit_sweep(wd.path, objectives=tuple(config.figure_objectives) or None)
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
  own = OWN_OPTIMUM.get(objective) if label_smoothing == 0 and not kwargs else None
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


r"""Experiment runners `lm_nash_synthetic` and `lm_sppo_synthetic`: online and self-play training of a transformer.

Both use the synthetic LM task (`prefjax.lm.synthetic`: one-token prompts, responses of R tokens over V,
N = V^R responses enumerated exactly), π_ref trained by SFT on the task's known distribution μ
(`synthetic.sft_steps`; 0, as in the `:quick` variants, takes the freshly initialised, near-uniform
transformer as π_ref and skips the SFT's compilation), the task's
exact preference as the oracle (`prefjax.lm.oracles.SyntheticOracle`), and `prefjax.lm.online.train_online`
for each algorithm from π_ref. Every `eval_every` steps the policy is evaluated exactly over all N responses
per prompt (float64, mean over prompts):

- win_rate: p(π ≻ π_ref); win_rate_vs_prev: p(π ≻ the previous evaluation's policy) (½ at step 0);
- kl: KL(π ‖ π_ref); reward: E_{y∼π} r (the task's Bradley–Terry part);
- exploitability: max_y (Pπ)_y − ½ over the finite candidate set (all N responses);
- duality_gap: the β-regularised gap 2β KL(π ‖ BR(π)) (`prefjax.games.nash.duality_gap`; 0 only at π*_β);
- kl_to_ne: KL(π ‖ π*_β), π*_β the β-regularised Nash equilibrium (`games.nash.solve_regularised_nash`,
  float64, residual reported in summary.json).

`run_lm_nash_synthetic(config, workdir)`: a non-transitive preference (`nontransitive_scale` > 0); online
DPO vs online IPO vs EGPO (vs Nash-MD, …: `config.algorithms`). Claim (Calandriello et al. arXiv:2403.08635
App. F, at sequence level; the bandit run `online_dpo_vs_ipo`): online IPO's and EGPO's duality gaps fall
close to 0 while online DPO's stays clearly above. summary.json: per algorithm the final and minimum gaps,
exploitability, KL, win rates; `claim_holds` = every Nash algorithm's final gap ≤ `claim_ratio` × online
DPO's final gap.

`run_lm_sppo_synthetic(config, workdir)`: a transitive (Bradley–Terry) preference; SPPO with the previous
iterate refreshed every `iteration_steps`; claim (Wu et al. arXiv:2405.00675): the exact win rate against
π_ref rises iteration after iteration. summary.json: `win_rate_per_iteration` (the evaluation at the end of
each iteration, iteration 0 = π_ref) and `claim_holds` = strictly increasing and the last ≥ 0.5 +
`claim_margin`.

Workdir: config.json; summary.json; metrics.jsonl (every logged record of every algorithm, with an
"algorithm" field); `<algorithm>/` (its own metrics.jsonl and checkpoints/: a rerun resumes it);
figure.png; arrays.npz with, per algorithm a, the E evaluations (step 0 included):
`a__step` [E] int, `a__win_rate`, `a__win_rate_vs_prev`, `a__kl`, `a__reward`, `a__exploitability`,
`a__duality_gap`, `a__kl_to_ne` [E] float64; plus `nash_logp` [C, N] (log π*_β) and `ref_logp` [C, N].

The figure is drawn by `prefjax.plotting.lm` (`plot_lm_online`); the old path `prefjax.lm.online_experiments`
re-exports this module.
"""

import json
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prefjax import config_checks as cc
from prefjax import sharding as shd
from prefjax import workdir as workdir_lib
from prefjax.errors import PrefjaxError
from prefjax.games import nash as game_nash
from prefjax.lm import model as lm_model
from prefjax.lm import online
from prefjax.lm import oracles
from prefjax.lm import synthetic as syn
from prefjax.plotting.lm import plot_lm_online
from prefjax.runs import lm_offline

EVAL_KEYS = ("win_rate", "win_rate_vs_prev", "kl", "reward", "exploitability", "duality_gap", "kl_to_ne")


def _algorithms(config):
  names = [n.strip() for n in str(config.algorithms).split(",") if n.strip()]
  if not names:
    raise PrefjaxError("config.algorithms is empty: give online algorithms, comma-separated")
  unknown = [n for n in names if n not in online.ALGORITHMS]
  if unknown:
    raise PrefjaxError(f"config.algorithms: unknown {unknown}; known: {sorted(online.ALGORITHMS)}")
  return names


def _validate_common(config):
  """The fields both runners read: the synthetic task, the model, the mesh and each algorithm's config."""
  names = _algorithms(config)
  cc.positive(config, "beta", "online.learning_rate")
  cc.positive_int(config, "online.batch_size", "online.num_steps", "online.log_every", "online.num_samples",
                  "online.iteration_steps")
  cc.non_negative_int(config, "online.warmup_steps", "online.eval_every", "online.checkpoint_every", "seed")
  lm_offline.validate_synthetic_model(config)
  cc.number(config, "synthetic.nontransitive_scale", low=0)
  lm_offline.validate_mesh(config)
  for name in names:
    _online_config(config, name)  # OnlineConfig checks each algorithm's fields.
  return names


def validate_lm_nash_synthetic(config):
  """Checks every field `run_lm_nash_synthetic` reads (a one-line `PrefjaxError` naming the field)."""
  names = _validate_common(config)
  if "online_dpo" not in names:
    raise PrefjaxError("config.algorithms must include online_dpo (the claim compares against it)")
  cc.positive(config, "synthetic.nontransitive_scale", "claim_ratio")


def validate_lm_sppo_synthetic(config):
  """Checks every field `run_lm_sppo_synthetic` reads (a one-line `PrefjaxError` naming the field)."""
  names = _validate_common(config)
  if "sppo" not in names:
    raise PrefjaxError("config.algorithms must include sppo (the claim is about SPPO's iterations)")
  o = config.online
  if int(o.num_steps) % int(o.iteration_steps) or int(o.eval_every) != int(o.iteration_steps):
    raise PrefjaxError(f"config.online.num_steps ({o.num_steps}) must be a multiple of iteration_steps "
                       f"({o.iteration_steps}), and eval_every ({o.eval_every}) equal to it (one evaluation "
                       f"per SPPO iteration)")
  cc.number(config, "claim_margin", low=0, high=0.5)


def _online_config(config, algorithm, task=None):
  o = config.online
  return online.OnlineConfig(
      algorithm=algorithm, beta=float(config.beta), mixture_weight=float(o.mixture_weight),
      num_samples=int(o.num_samples), iteration_steps=int(o.iteration_steps), labels=str(o.labels),
      max_new_tokens=int(config.synthetic.response_len) if task is None else task.response_len,
      batch_size=int(o.batch_size), num_steps=int(o.num_steps),
      learning_rate=float(o.learning_rate), schedule=str(o.schedule), warmup_steps=int(o.warmup_steps),
      min_lr_ratio=float(o.min_lr_ratio), grad_clip=float(o.grad_clip), log_every=int(o.log_every),
      eval_every=int(o.eval_every), checkpoint_every=int(o.checkpoint_every), seed=int(config.seed),
      spin_lambda=float(o.get("spin_lambda", online.OnlineConfig.spin_lambda)),
      spin_alpha=float(o.get("spin_alpha", online.OnlineConfig.spin_alpha)),
      # The history applies to the SPIN opponents only (OnlineConfig rejects it for the other algorithms).
      spin_history=(int(o.get("spin_history", online.OnlineConfig.spin_history))
                    if algorithm in ("spin", "alpha_spin") else 1))


class ExactEvaluator:
  """Exact evaluation of a policy on the synthetic task over all N responses (float64, numpy).

  Args:
    task: the `SyntheticTask`.
    ref_logp_CxN: log π_ref.
    beta: β of the regularised game.
  """

  def __init__(self, task, ref_logp_CxN, beta):
    self.task, self.beta = task, float(beta)
    self.P = np.asarray(syn.preference_matrix(task), np.float64)
    self.ref = _normalise(ref_logp_CxN)
    with jax.enable_x64(True):
      sol = game_nash.solve_regularised_nash(jnp.asarray(self.P), jnp.asarray(self.ref), self.beta)
      self.nash_logp = np.log(np.maximum(np.asarray(sol.policy, np.float64), 1e-300))
      self.nash_residual = float(np.max(np.asarray(sol.residual)))

  def win_rate(self, logp_a, logp_b):
    pa, pb = np.exp(_normalise(logp_a)), np.exp(_normalise(logp_b))
    return float(np.mean(np.einsum("cn,cnm,cm->c", pa, self.P, pb)))

  def __call__(self, logp_CxN, prev_logp_CxN=None):
    lp = _normalise(logp_CxN)
    pi = np.exp(lp)
    with jax.enable_x64(True):
      gap = np.asarray(game_nash.duality_gap(jnp.asarray(pi), jnp.asarray(self.P), jnp.asarray(self.ref),
                                             self.beta))
      expl = np.asarray(game_nash.exploitability(jnp.asarray(pi), jnp.asarray(self.P)))
    return {
        "win_rate": self.win_rate(lp, self.ref),
        "win_rate_vs_prev": 0.5 if prev_logp_CxN is None else self.win_rate(lp, prev_logp_CxN),
        "kl": float(np.mean(np.sum(pi * (lp - self.ref), -1))),
        "reward": float(np.mean(np.sum(pi * self.task.rewards_CxN, -1))),
        "exploitability": float(np.mean(expl)),
        "duality_gap": float(np.mean(gap)),
        "kl_to_ne": float(np.mean(np.sum(pi * (lp - self.nash_logp), -1))),
    }


def _normalise(logp):
  lp = np.asarray(logp, np.float64)
  return lp - np.logaddexp.reduce(lp, axis=-1, keepdims=True)


class _EvalFn:
  """`eval_fn(params, step)` for `train_online`; keeps each evaluation's log π in an npz so that the
  win rate against the previous evaluation survives a resume."""

  def __init__(self, logp_fn, evaluator, path):
    self.logp_fn, self.evaluator, self.path = logp_fn, evaluator, path

  def _stored(self):
    if not os.path.exists(self.path):
      return {}
    with np.load(self.path) as data:
      return {int(k): data[k] for k in data.files}

  def __call__(self, params, step):
    logp = np.asarray(self.logp_fn(params), np.float64)
    stored = {k: v for k, v in self._stored().items() if k < step}
    prev = stored[max(stored)] if stored else None
    stored[step] = logp
    tmp = self.path + ".tmp.npz"
    np.savez(tmp, **{str(k): v for k, v in stored.items()})
    os.replace(tmp, self.path)
    return self.evaluator(logp, prev)


def _setup(config, nontransitive_scale):
  s = config.synthetic
  task = syn.make_task(seed=int(s.seed), num_prompts=int(s.num_prompts), vocab_size=int(s.vocab_size),
                       response_len=int(s.response_len), sft_scale=float(s.sft_scale),
                       reward_scale=float(s.reward_scale), nontransitive_scale=float(nontransitive_scale))
  m = config.model
  model_config = syn.model_config(task, d_model=int(m.d_model), num_layers=int(m.num_layers),
                                  num_heads=int(m.num_heads), d_ff=int(m.d_ff), style=str(m.style))
  key = jax.random.key(int(config.seed))
  logp_fn = jax.jit(syn.make_policy_logp(task, model_config))
  if int(s.sft_steps) > 0:
    print(f"SFT of π_ref on the known distribution ({int(s.sft_steps)} steps)", flush=True)
    ref_params, _ = syn.train_reference(task, model_config, key, num_steps=int(s.sft_steps),
                                        learning_rate=float(s.sft_learning_rate))
  else:  # :quick: π_ref is the freshly initialised (near-uniform) transformer; saves the SFT's compilation.
    print("π_ref = the initial transformer (sft_steps = 0)", flush=True)
    ref_params = nn.unbox(lm_model.init_params(model_config, key))
  ref_logp = np.asarray(logp_fn(ref_params), np.float64)
  mu = np.exp(np.asarray(task.sft_logp_CxN, np.float64))
  sft_kl = float(np.mean(np.sum(mu * (np.log(mu) - _normalise(ref_logp)), -1)))  # KL(μ ‖ π_ref)
  c = task.num_prompts
  reps = -(-int(config.online.batch_size) // c) * 4
  x = np.tile(np.arange(c, dtype=np.int32), reps)[:, None]
  prompts = online.PromptArrays({"prompt_tokens_BxP": x, "prompt_mask_BxP": np.ones_like(x)})
  return task, model_config, ref_params, sft_kl, logp_fn, ref_logp, prompts


def _mesh(config):
  m = config.mesh
  return shd.make_mesh(data=int(m.data), fsdp=int(m.fsdp), tensor=int(m.tensor))


def _train_all(config, wd, names, task, model_config, ref_params, logp_fn, evaluator, prompts, data_fn=None):
  oracle = oracles.SyntheticOracle(task)
  arrays, all_records = {}, []
  for name in names:
    print(f"== {name} ==", flush=True)
    sub = wd.subdir(name)
    cfg = _online_config(config, name, task)
    eval_fn = _EvalFn(logp_fn, evaluator, sub.file("eval_logps.npz"))
    online.train_online(model_config, cfg, prompts, oracle, sub, init_params=ref_params, data_fn=data_fn,
                        eval_fn=eval_fn, mesh=_mesh(config), extra_config={"algorithm": name},
                        fast_compile=bool(config.fast_compile), verbose=bool(config.verbose))
    records = _read_jsonl(sub.file("metrics.jsonl"))
    all_records += [{"algorithm": name, **r} for r in records]
    evals = [r for r in records if "eval/duality_gap" in r]
    arrays[f"{name}__step"] = np.array([r["step"] for r in evals], np.int64)
    for k in EVAL_KEYS:
      arrays[f"{name}__{k}"] = np.array([r[f"eval/{k}"] for r in evals], np.float64)
  wd.write_metrics(all_records)
  return arrays


def _final(arrays, name):
  out = {k: float(arrays[f"{name}__{k}"][-1]) for k in EVAL_KEYS}
  out["min_duality_gap"] = float(arrays[f"{name}__duality_gap"].min())
  out["steps"] = int(arrays[f"{name}__step"][-1])
  return out


@workdir_lib.experiment(validate=validate_lm_nash_synthetic, resumable=True)
def run_lm_nash_synthetic(config, wd):
  """Online DPO vs online IPO vs EGPO on a non-transitive synthetic preference; returns the summary dict.

  Resumable: a rerun with the same config and workdir continues each algorithm from its latest checkpoint.
  """
  t0 = time.time()
  names = _algorithms(config)
  task, model_config, ref_params, sft_kl, logp_fn, ref_logp, prompts = _setup(
      config, config.synthetic.nontransitive_scale)
  evaluator = ExactEvaluator(task, ref_logp, config.beta)
  reference = evaluator(ref_logp)
  arrays = _train_all(config, wd, names, task, model_config, ref_params, logp_fn, evaluator, prompts)
  arrays["nash_logp"], arrays["ref_logp"] = evaluator.nash_logp, evaluator.ref
  wd.write_arrays(arrays)
  runs = {name: _final(arrays, name) for name in names}
  dpo_gap = runs["online_dpo"]["duality_gap"]
  nash_algs = [n for n in names if n != "online_dpo"]
  ratio = float(config.claim_ratio)
  summary = {
      "name": config.name, "beta": float(config.beta), "num_responses": task.num_responses,
      "reference": {**reference, "sft_kl": sft_kl},
      "nash_equilibrium": {**evaluator(evaluator.nash_logp), "residual": evaluator.nash_residual},
      "runs": runs,
      "claim": (f"final duality gap of {', '.join(nash_algs)} <= {ratio} x online DPO's "
                f"({dpo_gap:.4g})"),
      "claim_holds": bool(nash_algs) and all(runs[n]["duality_gap"] <= ratio * dpo_gap for n in nash_algs),
  }
  for name, r in runs.items():
    print(f"{name}: gap {r['duality_gap']:.4g} (min {r['min_duality_gap']:.4g}) exploitability "
          f"{r['exploitability']:.4f} KL {r['kl']:.3f} KL to NE {r['kl_to_ne']:.4f} win rate {r['win_rate']:.3f}",
          flush=True)
  print(f"π_ref gap {reference['duality_gap']:.4g}; claim holds: {summary['claim_holds']}", flush=True)
  if config.figure:
    summary["figure"] = plot_lm_online(wd, names, arrays, "duality_gap", "β-regularised duality gap", log=True,
                                ref=reference["duality_gap"])
  summary["seconds"] = time.time() - t0
  wd.write_summary(summary)
  return summary


def _sft_data_fn(task):
  """SPIN's data sampler: responses drawn exactly from the task's SFT distribution μ(·|x)."""
  logits = jnp.asarray(task.sft_logits_CxRxV, jnp.float32)

  def data_fn(key, prompt_tokens_BxP, prompt_mask_BxP):
    del prompt_mask_BxP
    x = prompt_tokens_BxP[:, -1]
    y = jax.random.categorical(key, logits[x])  # [B, R]
    return y.astype(jnp.int32), jnp.ones_like(y, jnp.int32)

  return data_fn


def _spin_fixed_point_kls(task, ref_logp_CxN, cfg, path):
  """KL(π* ‖ π) per iteration for a SPIN / α-SPIN run, π* the tabular dynamics' fixed point.

  The exact (α-)SPIN iteration over tabular policies (`prefjax.games.dynamics.spin_step`, any history h)
  stops where the opponent equals the iterate: log π* = (α log π_ref + η log μ)/(α + η) + c with η = 1/λ
  (α = 0, SPIN: π* = μ, the data distribution). Returns the KL averaged over prompts for each stored
  evaluation (one per iteration; step 0 is π_ref) and those evaluations' steps.
  """
  alpha = cfg.spin_alpha if cfg.algorithm == "alpha_spin" else 0.0
  eta = 1.0 / cfg.spin_lambda
  star = _normalise((alpha * _normalise(ref_logp_CxN) + eta * _normalise(task.sft_logp_CxN)) / (alpha + eta))
  with np.load(path) as data:
    steps = sorted(int(k) for k in data.files)
    kls = [float(np.mean(np.sum(np.exp(star) * (star - _normalise(data[str(k)])), axis=-1))) for k in steps]
  return {"spin_history": cfg.spin_history, "kl_to_fixed_point_per_iteration": kls, "kl_to_fixed_point_steps": steps,
          "fixed_point": "π* ∝ exp((α log π_ref + η log μ)/(α + η)), η = 1/λ (μ for SPIN)"}


@workdir_lib.experiment(validate=validate_lm_sppo_synthetic, resumable=True)
def run_lm_sppo_synthetic(config, wd):
  """SPPO iterations on a transitive (Bradley–Terry) synthetic task; returns the summary dict.

  Resumable: a rerun with the same config and workdir continues each algorithm from its latest checkpoint.
  """
  t0 = time.time()
  names = _algorithms(config)
  task, model_config, ref_params, sft_kl, logp_fn, ref_logp, prompts = _setup(
      config, config.synthetic.nontransitive_scale)
  evaluator = ExactEvaluator(task, ref_logp, config.beta)
  reference = evaluator(ref_logp)
  arrays = _train_all(config, wd, names, task, model_config, ref_params, logp_fn, evaluator, prompts,
                      data_fn=_sft_data_fn(task))
  arrays["nash_logp"], arrays["ref_logp"] = evaluator.nash_logp, evaluator.ref
  wd.write_arrays(arrays)
  runs = {name: _final(arrays, name) for name in names}
  for name in names:
    if name in ("spin", "alpha_spin"):
      cfg = _online_config(config, name, task)
      runs[name].update(_spin_fixed_point_kls(task, evaluator.ref, cfg,
                                               os.path.join(wd.path, name, "eval_logps.npz")))
  per_iter = [float(w) for w in arrays["sppo__win_rate"]]
  margin = float(config.claim_margin)
  summary = {
      "name": config.name, "beta": float(config.beta), "num_responses": task.num_responses,
      "reference": {**reference, "sft_kl": sft_kl}, "runs": runs,
      "win_rate_per_iteration": per_iter,
      "win_rate_vs_prev_per_iteration": [float(w) for w in arrays["sppo__win_rate_vs_prev"]],
      "claim": f"SPPO's exact win rate against π_ref increases every iteration and ends >= {0.5 + margin}",
      "claim_holds": bool(all(b > a for a, b in zip(per_iter, per_iter[1:])) and per_iter[-1] >= 0.5 + margin),
  }
  print("SPPO win rate vs π_ref per iteration: " + ", ".join(f"{w:.3f}" for w in per_iter), flush=True)
  for name, r in runs.items():
    if "kl_to_fixed_point_per_iteration" in r:
      print(f"{name} (history {r['spin_history']}) KL(π* ‖ π) per iteration: "
            + ", ".join(f"{k:.4f}" for k in r["kl_to_fixed_point_per_iteration"]), flush=True)
  print(f"claim holds: {summary['claim_holds']}", flush=True)
  if config.figure:
    fixed = {n: (f"{n} (history {r['spin_history']})", r["kl_to_fixed_point_steps"],
                 r["kl_to_fixed_point_per_iteration"]) for n, r in runs.items() if "kl_to_fixed_point_steps" in r}
    summary["figure"] = plot_lm_online(wd, names, arrays, "win_rate", "exact win rate against π_ref", log=False,
                                ref=0.5, extra=("KL(π* ‖ π), π* the SPIN fixed point", fixed) if fixed else None)
  summary["seconds"] = time.time() - t0
  wd.write_summary(summary)
  return summary


def _read_jsonl(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]

"""Experiment runner `lm_offline`: offline preference training of a transformer, one run per objective.

`run_lm_offline(config, workdir)` (registered in `prefjax.runners` as "lm_offline"):
- `config.task = "synthetic"` (experiments/configs/lm_dpo_synthetic.py): builds the synthetic task
  (`prefjax.lm.synthetic`), trains π_ref by SFT on the known distribution, samples offline data from π_ref
  in each objective's data contract (pairs labelled by the Bradley–Terry oracle, with both responses' exact
  rewards as scores for scored pairs; K responses per prompt, or single responses, with their exact rewards), then trains each objective of `config.objective`
  (comma-separated declared names) from π_ref with exact oracle evaluation (reward, win rate against π_ref,
  KL(π ‖ π_ref)) every `eval_every` steps, and compares with the declared closed-form optimum, if any (DPO:
  Ψ = logit, IPO: identity, DRO: the RLHF optimum).
- `config.task = "jsonl"` (experiments/configs/lm_pretrained.py): a local Hugging Face checkpoint and JSONL in
  the objectives' contract (`prefjax.lm.data.PreferenceDataset`, `MultiResponseDataset` or
  `SingleResponseDataset`) through `prefjax.lm.hf_import.import_hf`;
  summary.json holds the model style, the data report (kept / dropped by reason / truncated rows) and
  each objective's last logged metrics.

Workdir:
- config.json; metrics.jsonl (every logged step of every objective, with an "objective" field; TRL's
  names, see `prefjax.lm.train`); summary.json; lm_curves.png (synthetic);
- `<objective>/`: that objective's own metrics.jsonl, checkpoints/ and reference_logps.npz (a rerun with
  the same workdir resumes each objective from its latest checkpoint);
- arrays.npz (synthetic): `<objective>__step` [E] int, `<objective>__reward` [E], `<objective>__win_rate`
  [E], `<objective>__kl` [E] (exact oracle metrics at the E evaluation steps, step 0 included).

The figure is drawn by `prefjax.plotting.lm`; the old path `prefjax.lm.experiments` re-exports this module.
"""

import dataclasses
import json
import os
import time

import jax
import numpy as np

from prefjax import config_checks as cc
from prefjax import sharding as shd
from prefjax import workdir as workdir_lib
from prefjax.errors import PrefjaxError
from prefjax.objectives import spec
from prefjax.lm import synthetic as syn
from prefjax.lm import train as lm_train
from prefjax.plotting.lm import plot_lm_curves

def _objectives(config):
  names = [n.strip() for n in str(config.objective).split(",") if n.strip()]
  if not names:
    raise PrefjaxError("config.objective is empty: give registered objective names, comma-separated")
  return names


def validate_mesh(config):
  """config.mesh.{data, fsdp, tensor}: each >= 1, or -1 for every remaining device."""
  for field in ("data", "fsdp", "tensor"):
    if cc.integer(config, f"mesh.{field}", low=-1) == 0:
      raise PrefjaxError(f"config.mesh.{field} must be >= 1 (or -1: every remaining device), got 0")


def validate_synthetic_model(config):
  """The synthetic task's and the small transformer's fields every synthetic LM runner reads."""
  cc.positive_int(config, "synthetic.num_prompts", "synthetic.response_len", "model.d_model",
                  "model.num_layers", "model.num_heads", "model.d_ff")
  cc.integer(config, "synthetic.vocab_size", low=2)
  cc.non_negative_int(config, "synthetic.seed", "synthetic.sft_steps")
  cc.number(config, "synthetic.sft_scale", low=0)
  cc.number(config, "synthetic.reward_scale", low=0)
  if int(config.synthetic.sft_steps) > 0:
    cc.positive(config, "synthetic.sft_learning_rate")
  cc.choice(config, "model.style", ("gpt2", "llama"))
  if config.model.d_model % config.model.num_heads:
    raise PrefjaxError(f"config.model.d_model={config.model.d_model} must be a multiple of "
                       f"config.model.num_heads={config.model.num_heads}")


def validate_lm_offline(config):
  """Checks every field `run_lm_offline` reads (a one-line `PrefjaxError` naming the field)."""
  cc.choice(config, "task", TASKS)
  cc.positive_int(config, "batch_size", "grad_accum", "num_steps", "log_every")
  cc.non_negative_int(config, "warmup_steps", "eval_every", "checkpoint_every", "seed")
  cc.positive(config, "beta", "learning_rate")
  cc.number(config, "label_smoothing", low=0, high=0.5)
  cc.number(config, "grad_clip", low=0)
  cc.number(config, "weight_decay", low=0)
  if "pack_segments" in config:
    cc.non_negative_int(config, "pack_segments")
  validate_mesh(config)
  for name in _objectives(config):
    _train_config(config, name)  # TrainConfig checks the objective's name and hyper-parameters.
  if config.task == "synthetic":
    validate_synthetic_model(config)
    cc.positive_int(config, "synthetic.num_pairs")
    if "num_responses" in config.synthetic:
      cc.integer(config, "synthetic.num_responses", low=2)
  else:
    for field in ("model_dir", "train_path"):
      if not config.get(field):
        raise PrefjaxError(f"config.{field} is required for task 'jsonl'")
    if not os.path.isdir(config.model_dir):
      raise PrefjaxError(f"config.model_dir={config.model_dir!r} is not a folder (a local Hugging Face "
                         f"checkpoint: config.json + *.safetensors)")
    if not os.path.isfile(config.train_path):
      raise PrefjaxError(f"config.train_path={config.train_path!r} does not exist (preference JSONL)")
    cc.positive_int(config, "max_length")


def _train_config(config, objective):
  # The reference cache holds pairs (scored or not): objectives on K responses per prompt or on single responses
  # score the reference live.
  reference = "live" if lm_train.contract_of(objective) not in lm_train.PAIR_CONTRACTS else str(config.reference)
  return lm_train.TrainConfig(
      objective=objective, beta=float(config.beta), label_smoothing=float(config.label_smoothing),
      length_normalize=bool(config.length_normalize), reduction=str(config.reduction),
      batch_size=int(config.batch_size), grad_accum=int(config.grad_accum),
      num_steps=int(config.num_steps), learning_rate=float(config.learning_rate),
      schedule=str(config.schedule), warmup_steps=int(config.warmup_steps),
      grad_clip=float(config.grad_clip), weight_decay=float(config.weight_decay),
      reference=reference, log_every=int(config.log_every),
      eval_every=int(config.eval_every), checkpoint_every=int(config.checkpoint_every),
      seed=int(config.seed),
      # Packed rows (prefjax.lm.data pack_segments); configs without the field train unpacked.
      pack_segments=int(config.get("pack_segments", 0)),
      # The value table's learning rate (objectives that learn V(x), DRO); configs without it: the default.
      value_learning_rate=float(config.get("value_learning_rate", lm_train.TrainConfig.value_learning_rate)))


def _mesh(config):
  m = config.mesh
  return shd.make_mesh(data=int(m.data), fsdp=int(m.fsdp), tensor=int(m.tensor))


@workdir_lib.experiment(validate=validate_lm_offline, resumable=True)
def run_lm_offline(config, workdir):
  """Runs the experiment described by `config` into `workdir`; returns the summary dict.

  Resumable: a rerun with the same config and workdir continues each objective from its latest checkpoint.
  """
  return TASKS[config.task](config, workdir)


def _run_synthetic(config, wd):
  t0 = time.time()
  names = _objectives(config)
  train_cfgs = {name: _train_config(config, name) for name in names}  # validates names early
  s = config.synthetic
  task = syn.make_task(seed=int(s.seed), num_prompts=int(s.num_prompts), vocab_size=int(s.vocab_size),
                       response_len=int(s.response_len), sft_scale=float(s.sft_scale),
                       reward_scale=float(s.reward_scale))
  m = config.model
  model_config = syn.model_config(task, d_model=int(m.d_model), num_layers=int(m.num_layers),
                                  num_heads=int(m.num_heads), d_ff=int(m.d_ff), style=str(m.style))
  key_sft, key_pairs = jax.random.split(jax.random.key(int(config.seed)))
  print(f"SFT of π_ref on the known distribution ({int(s.sft_steps)} steps)", flush=True)
  ref_params, sft_kl = syn.train_reference(task, model_config, key_sft, num_steps=int(s.sft_steps),
                                           learning_rate=float(s.sft_learning_rate))
  logp_fn = jax.jit(syn.make_policy_logp(task, model_config))
  ref_logp = np.asarray(logp_fn(ref_params))
  pairs = syn.make_pairs(task, ref_logp, int(s.num_pairs), key_pairs)
  datasets = {"pair": lm_train.PairArrays(pairs)}
  contracts = {name: lm_train.contract_of(name) for name in names}
  if "ranking" in contracts.values():
    # K responses per prompt from π_ref, scored by the exact reward; as many responses in all as the pairs hold.
    k = int(s.get("num_responses", 4))
    datasets["ranking"] = lm_train.RankingArrays(syn.make_rankings(
        task, ref_logp, max(2 * int(s.num_pairs) // k, int(config.batch_size)), k, jax.random.fold_in(key_pairs, 1)))
  if "scored_pair" in contracts.values():  # the same pairs with both responses' exact rewards as their scores
    datasets["scored_pair"] = lm_train.PairArrays({**pairs, **syn.pair_scores(task, pairs)})
  if "single" in contracts.values():
    # One response per example from π_ref with its exact reward; as many responses as the pairs hold.
    datasets["single"] = lm_train.SingleArrays(syn.make_singles(task, ref_logp, 2 * int(s.num_pairs),
                                                                jax.random.fold_in(key_pairs, 2)),
                                               num_prompts=task.num_prompts)
  eval_fn = lambda params: syn.evaluate(task, logp_fn(params), ref_logp)
  reference = syn.evaluate(task, ref_logp, ref_logp)
  mesh = _mesh(config)

  summary = {"name": config.name, "task": "synthetic", "reference": {**reference, "sft_kl": sft_kl},
             "num_pairs": int(s.num_pairs), "beta": float(config.beta), "objectives": {}}
  arrays, all_records = {}, []
  for name in names:
    print(f"== {name} ==", flush=True)
    lm_train.train(model_config, train_cfgs[name], datasets[contracts[name]], wd.subdir(name), init_params=ref_params,
                   eval_fn=eval_fn, mesh=mesh, extra_config={"objective": name})
    records = _read_jsonl(os.path.join(wd.path, name, "metrics.jsonl"))
    all_records += [{"objective": name, **r} for r in records]
    evals = [r for r in records if "eval/win_rate" in r]
    for k in ("reward", "win_rate", "kl"):
      arrays[f"{name}__{k}"] = np.array([r[f"eval/{k}"] for r in evals], np.float64)
    arrays[f"{name}__step"] = np.array([r["step"] for r in evals], np.int64)
    final = evals[-1]
    last_train = [r for r in records if "loss" in r][-1]
    entry = {"reward": final["eval/reward"], "win_rate": final["eval/win_rate"], "kl": final["eval/kl"],
             "max_kl": float(arrays[f"{name}__kl"].max()), "steps": int(final["step"]),
             "final_loss": last_train["loss"], "final_accuracy": last_train.get("rewards/accuracies"),
             "contract": contracts[name]}
    psi = spec.optimum_psi(name, float(config.label_smoothing))  # the declared closed form, if any
    if psi is not None:
      opt = syn.evaluate(task, syn.optimum(task, ref_logp, float(config.beta), psi), ref_logp)
      entry["optimum"] = {"psi": psi, **opt}
    summary["objectives"][name] = entry
    print(f"{name}: win rate {entry['win_rate']:.3f} KL {entry['kl']:.3f} reward {entry['reward']:.3f}"
          + (f" (optimum: win rate {entry['optimum']['win_rate']:.3f} KL {entry['optimum']['kl']:.3f})"
             if psi else ""), flush=True)
  wd.write_metrics(all_records)
  wd.write_arrays(arrays)
  summary["seconds"] = time.time() - t0
  wd.write_summary(summary)
  if config.figure:
    summary["figure"] = plot_lm_curves(wd.path, wd.file("lm_curves.png"))
    wd.write_summary(summary)
  return summary


def _run_jsonl(config, wd):
  """Pretrained checkpoint + JSONL preference data (GPU/TPU scale); see experiments/configs/lm_pretrained.py."""
  from prefjax.lm import data as lm_data  # pylint: disable=g-import-not-at-top
  from prefjax.lm import hf_import  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  shd.initialize_distributed()
  model_config, params = hf_import.import_hf(config.model_dir, dtype=str(config.model.dtype))
  # The attention kernel is not part of the checkpoint: "cudnn" (flash attention) on NVIDIA GPUs.
  model_config = dataclasses.replace(model_config,
                                     attention_impl=str(config.model.get("attention_impl", "einsum")))
  if int(config.max_length) > model_config.max_len:
    raise PrefjaxError(f"config.max_length={config.max_length} exceeds the model's context "
                       f"{model_config.max_len}")
  # The JSONL row format follows the objectives' data contract: prompt/chosen/rejected pairs (with
  # chosen_score/rejected_score for scored-pair objectives),
  # prompt/responses/scores rows for objectives on K responses per prompt, or prompt/completion/label-or-reward
  # rows for single-response objectives (one contract per run).
  names = _objectives(config)
  # Scored pairs are pairs with two more fields: pair and scored-pair objectives share a file.
  contracts = {"pair" if lm_train.contract_of(n) in lm_train.PAIR_CONTRACTS else lm_train.contract_of(n)
               for n in names}
  if len(contracts) > 1:
    raise PrefjaxError(f"config.objective mixes data contracts {sorted(contracts)}: one JSONL file holds one "
                       f"row format; run them separately")
  loader = {"ranking": lm_data.MultiResponseDataset, "single": lm_data.SingleResponseDataset}.get(
      contracts.pop(), lm_data.PreferenceDataset)
  dataset = loader.from_jsonl(config.train_path, tokenizer=config.tokenizer or config.model_dir,
                              max_length=int(config.max_length))
  lm_data.check_vocab(dataset.tokenizer, model_config.vocab_size)  # else ids would be clamped silently
  report = dataset.report.to_dict()
  if not dataset.report.num_dropped:  # A report with drops was already logged as a warning by the loader.
    print(f"data: {dataset.report}", flush=True)
  summary = {"name": config.name, "task": "jsonl", "model": model_config.style,
             "data": report, "objectives": {}}
  for name in names:
    print(f"== {name} ==", flush=True)
    result = lm_train.train(model_config, _train_config(config, name), dataset, wd.subdir(name),
                            init_params=params, mesh=_mesh(config), extra_config={"objective": name})
    # From the objective's metrics.jsonl, so a rerun of a finished run (resumed, nothing left to do) still
    # reports its last logged step.
    records = _read_jsonl(os.path.join(wd.path, name, "metrics.jsonl"))
    last = [r for r in records if "loss" in r]
    summary["objectives"][name] = {**(last[-1] if last else {}), "resumed_from": result.resumed_from}
  summary["seconds"] = time.time() - t0
  wd.write_summary(summary)
  return summary


TASKS = {"synthetic": _run_synthetic, "jsonl": _run_jsonl}


def _read_jsonl(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]

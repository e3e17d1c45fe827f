r"""Offline preference training of a pretrained model (local Hugging Face checkpoint) on preference JSONL.

Command (GPU/TPU; one process per host, `jax.distributed.initialize()` is called for multi-host jobs):
  python -m experiments.main --config=experiments/configs/lm_pretrained.py --workdir=runs/lm_pretrained \
      --config.model_dir=/path/to/hf_model --config.train_path=/path/to/prefs.jsonl \
      [--config.objective=ipo --config.mesh.fsdp=8 --config.model.dtype=bfloat16]

The model directory holds config.json + *.safetensors (Llama or GPT-2 architecture, prefjax.lm.hf_import) and
its tokenizer.json (used unless `tokenizer` is set; "byte" for the byte-level tokenizer). The JSONL rows
follow the objectives' data contract (strings or chat-message lists; prefjax.lm.data): {"prompt", "chosen",
"rejected"} for pair objectives (DPO, IPO, ...), {"prompt", "responses", "scores"} for objectives on K
responses per prompt (InfoNCA, LiPO-λ, ...), {"prompt", "completion", "label" (true/false) or "reward"} for
single-response objectives (DRO); one contract per run. Each objective in
`objective` trains from the pretrained weights into `<workdir>/<objective>/` and resumes from its latest
checkpoint when rerun (e.g. after preemption; SIGTERM saves a checkpoint first).

Smoke test on this CPU (a tiny random GPT-2 or Llama written by `transformers` save_pretrained, or by
`prefjax.lm.hf_import.export_hf` as tests/test_lm_experiments.py does, plus a tokenizer.json and a 13-row
JSONL; about 1-2 minutes on the loaded 2-core machine, mostly compilation):
  python -m experiments.main --config=experiments/configs/lm_pretrained.py:quick --workdir=/tmp/lm_pre \
      --config.model_dir=/tmp/tiny_gpt2 --config.train_path=/tmp/prefs.jsonl --config.num_steps=4
(`--config.tokenizer=byte` when the directory has no tokenizer.json; the model's vocabulary must then
have at least 259 ids.) Step 1 logs loss = log 2 and rewards = 0 exactly (policy = reference).

Runtime: depends on the model; on an H100 a 350M model at sequence length 1 024 runs well under a second
per 16-pair step in bf16. `:quick` shrinks the run (16 steps) for a smoke test on a tiny local checkpoint.

Expected result: rewards/margins and rewards/accuracies rise from 0 and 0.5 (TRL's metrics in
metrics.jsonl); loss starts at log 2 for sigmoid.
"""

import ml_collections

from experiments.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.experiment = "lm_offline"
  c.name = "lm_pretrained"
  c.task = "jsonl"
  c.model_dir = ""  # Local Hugging Face directory (config.json + safetensors); required.
  c.train_path = ""  # Preference JSONL; required.
  c.tokenizer = ""  # Empty: the model directory's tokenizer.json; "byte" for the byte tokenizer.
  c.max_length = 1024  # Prompt + response tokens (prompt-first truncation in prefjax.lm.data).
  c.objective = "sigmoid"  # Comma-separated registered objectives.
  c.beta = 0.1  # TRL's default β.
  c.label_smoothing = 0.0
  c.length_normalize = False
  c.reduction = "sum"
  c.batch_size = 64  # Pairs per optimiser step (TRL-style global batch).
  c.grad_accum = 4  # Micro-batches of 16 pairs keep activations within one GPU's memory.
  c.num_steps = 1000
  c.learning_rate = 5e-7  # TRL's DPO default order of magnitude for full fine-tuning.
  c.schedule = "cosine"
  c.warmup_steps = 100
  c.grad_clip = 1.0
  c.weight_decay = 0.0
  c.reference = "precomputed"  # One reference pass over the data, cached in the workdir.
  c.log_every = 10
  c.eval_every = 0
  c.checkpoint_every = 200
  c.seed = 0
  # Pairs packed per row (0: one pair per row). S > 0 packs up to S short pairs into each max_length row
  # (segment-aware attention, loss averaged over real pairs): fewer padding tokens per pair when pairs are
  # much shorter than max_length; batch_size then counts rows.
  c.pack_segments = 0
  c.figure = False
  c.model = ml_collections.ConfigDict({"dtype": "bfloat16"})  # bf16 compute, fp32 params and log-probs.
  # TransformerConfig.attention_impl: "einsum" (explicit scores), "xla", or "cudnn" (cuDNN flash attention on
  # an NVIDIA GPU; bf16/fp16 only, so not with the float32 of :quick).
  c.model.attention_impl = "einsum"
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  if arg.quick:
    c.num_steps = 16
    c.batch_size = 4
    c.grad_accum = 1
    c.max_length = 128
    c.warmup_steps = 2
    c.checkpoint_every = 8
    c.model.dtype = "float32"
  return c

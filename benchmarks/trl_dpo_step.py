"""Hugging Face TRL's DPOTrainer step time on the `lm_step.py` preset shape: the baseline prefjax compares to.

  python benchmarks/trl_dpo_step.py                  # gpt2-small-512: GPT-2 small, 2 pairs x 512 tokens
  python benchmarks/trl_dpo_step.py --num_layers=2 --vocab_size=1000 --seq_len=64 --steps=2   # smoke test

Optional dependencies (not prefjax's): torch, transformers, trl, datasets. Install them in a separate
virtual environment so that prefjax's own environment is unchanged, e.g.

  python3 -m venv /tmp/trlvenv && /tmp/trlvenv/bin/pip install torch trl transformers datasets
  /tmp/trlvenv/bin/python benchmarks/trl_dpo_step.py

Without them the script prints a message and exits 0.

What it times: `trl.DPOTrainer.train()` on a randomly initialised `GPT2LMHeadModel` (config only, nothing
downloaded: 12 layers, d_model 768, 12 heads, vocabulary 50 257, tied embeddings, as `lm_step.py
--preset=gpt2-small-512`), fp32 on CPU, sigmoid loss with β = 0.1, AdamW, global-norm clipping at 1.0, a
live reference model (a copy of the policy, `precompute_ref_log_probs=False`), `per_device_train_batch_size`
= 2 preference pairs per optimiser step, every prompt + response exactly `seq_len` tokens (a quarter prompt;
no padding), as in `lm_step.py`. The data are random token ids written as words of an in-memory word-level
tokenizer ("t0" … "t50255" and GPT-2's end-of-text token), so TRL's own tokenisation and collation run
unchanged. A `TrainerCallback` takes the wall time between `on_step_begin` and `on_step_end` of each
optimiser step (forward + backward of the policy on chosen and rejected together, the reference's forward,
the optimiser step); the first `--warmup` steps are dropped. It prints

  tokens_per_second: <n>   chosen + rejected tokens per optimiser step / median step time
  step_seconds: <s>        median over the timed steps
  load_average: <1-min>    os.getloadavg() at the end (the machine's load moves CPU timings a lot)
"""

import argparse
import os
import statistics
import sys
import time


def _missing():
  missing = []
  for name in ("torch", "transformers", "trl", "datasets", "tokenizers"):
    try:
      __import__(name)
    except ImportError:
      missing.append(name)
  return missing


def _tokenizer(vocab_size):
  """A word-level fast tokenizer: word "t<i>" is id i for i < vocab_size - 1; the last id is end-of-text."""
  from tokenizers import Tokenizer, models, pre_tokenizers  # pylint: disable=g-import-not-at-top
  from transformers import PreTrainedTokenizerFast  # pylint: disable=g-import-not-at-top
  eos = "<|endoftext|>"
  vocab = {f"t{i}": i for i in range(vocab_size - 1)}
  vocab[eos] = vocab_size - 1
  tok = Tokenizer(models.WordLevel(vocab, unk_token=eos))
  tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=eos, unk_token=eos)
  return fast


def _dataset(num_rows, seq_len, vocab_size, seed):
  """Rows of prompt / chosen / rejected text: seq_len // 4 prompt words, the rest response words + EOS."""
  import datasets  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  prompt_len = seq_len // 4
  response_len = seq_len - prompt_len - 1  # TRL appends the end-of-text token
  words = lambda n: " ".join(f"t{i}" for i in rng.integers(0, vocab_size - 1, n))
  rows = {"prompt": [], "chosen": [], "rejected": []}
  for _ in range(num_rows):
    rows["prompt"].append(words(prompt_len))
    rows["chosen"].append(" " + words(response_len))
    rows["rejected"].append(" " + words(response_len))
  return datasets.Dataset.from_dict(rows)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_layers", type=int, default=12)
  parser.add_argument("--d_model", type=int, default=768)
  parser.add_argument("--num_heads", type=int, default=12)
  parser.add_argument("--vocab_size", type=int, default=50257)
  parser.add_argument("--seq_len", type=int, default=512)
  parser.add_argument("--pairs", type=int, default=2, help="preference pairs per optimiser step")
  parser.add_argument("--steps", type=int, default=3, help="timed optimiser steps")
  parser.add_argument("--warmup", type=int, default=1, help="untimed first steps")
  parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
  parser.add_argument("--output_dir", default=None, help="TRL's output_dir (default: a temp dir)")
  args = parser.parse_args(argv)
  missing = _missing()
  if missing:
    print(f"trl_dpo_step: skipped: {', '.join(missing)} not installed (optional; see the docstring)")
    return 0

  import copy  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  import trl  # pylint: disable=g-import-not-at-top

  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  config = transformers.GPT2Config(
      vocab_size=args.vocab_size, n_positions=args.seq_len, n_embd=args.d_model, n_layer=args.num_layers,
      n_head=args.num_heads, bos_token_id=args.vocab_size - 1, eos_token_id=args.vocab_size - 1,
      tie_word_embeddings=True)
  model = transformers.GPT2LMHeadModel(config).float()
  ref_model = copy.deepcopy(model)
  tokenizer = _tokenizer(args.vocab_size)
  total = args.warmup + args.steps
  dataset = _dataset(args.pairs * total, args.seq_len, args.vocab_size, seed=0)

  times = []

  class StepTimer(transformers.TrainerCallback):

    def on_step_begin(self, *unused_args, **unused_kwargs):
      self.t0 = time.perf_counter()

    def on_step_end(self, *unused_args, **unused_kwargs):
      times.append(time.perf_counter() - self.t0)
      print(f"step {len(times)}: {times[-1]:.2f} s", flush=True)

  with tempfile.TemporaryDirectory() as tmp:
    dpo_args = trl.DPOConfig(
        output_dir=args.output_dir or tmp, per_device_train_batch_size=args.pairs,
        gradient_accumulation_steps=1, max_steps=total, learning_rate=1e-5, beta=0.1,
        loss_type=["sigmoid"], max_length=args.seq_len, precompute_ref_log_probs=False, use_cpu=True,
        bf16=False, fp16=False, logging_steps=1, report_to=[], save_strategy="no",
        dataloader_num_workers=0, max_grad_norm=1.0, seed=0, disable_tqdm=True)
    trainer = trl.DPOTrainer(model=model, ref_model=ref_model, args=dpo_args, train_dataset=dataset,
                             processing_class=tokenizer, callbacks=[StepTimer()])
    batch = next(iter(trainer.get_train_dataloader()))
    if tuple(batch["input_ids"].shape) != (2 * args.pairs, args.seq_len):
      raise SystemExit(f"trl_dpo_step: unexpected batch shape {tuple(batch['input_ids'].shape)}, "
                       f"wanted {(2 * args.pairs, args.seq_len)}")
    trainer.train()
  timed = times[args.warmup:]
  if not timed:
    raise SystemExit("trl_dpo_step: no timed step (raise --steps)")
  sec = statistics.median(timed)
  n_tokens = 2 * args.pairs * args.seq_len
  print(f"== TRL {trl.__version__} DPOTrainer, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}; GPT-2 {args.num_layers} layers, d_model {args.d_model}, "
        f"vocab {args.vocab_size}, {args.pairs} pairs x {args.seq_len} tokens, live reference, fp32 CPU")
  print(f"tokens_per_second: {n_tokens / sec:.1f}")
  print(f"step_seconds: {sec:.3f}")
  print(f"load_average: {os.getloadavg()[0]:.2f}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))

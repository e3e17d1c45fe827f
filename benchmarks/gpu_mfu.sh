#!/bin/bash
# The GPU MFU check in one device call: MFU of the DPO step (live and precomputed reference) for the
# 374M-parameter Llama-style preset at sequence length 1 024 in bf16 (einsum attention, then cuDNN flash
# attention), plus the gpt2-small-512 preset in fp32 for comparison with the CPU numbers. Run from the
# repository root on a machine with a CUDA jax, flax, optax and orbax (the lent GPU machines have them):
#   bash benchmarks/gpu_mfu.sh            # writes the outputs to $OUT (or ./gpu_mfu_out)
# Takes about 4-7 minutes (two compilations per preset and mode, 5 timed steps each).
set -o pipefail
export PYTHONUNBUFFERED=1
out="${OUT:-gpu_mfu_out}"
mkdir -p "$out"
python3 -m pip install -q --no-deps --no-build-isolation -e . > "$out/pip.txt" 2>&1 \
  || python3 -m pip install -q --no-deps -e . >> "$out/pip.txt" 2>&1 || { cat "$out/pip.txt"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$out/gpu.txt"
python3 benchmarks/lm_step.py --preset=llama-374m-1024 --steps=5 2>&1 | tee "$out/llama_374m_1024.txt"
# The same with cuDNN's flash attention (TransformerConfig.attention_impl="cudnn"): no T × T scores in memory.
python3 benchmarks/lm_step.py --preset=llama-374m-1024 --steps=5 --attention_impl=cudnn 2>&1 \
  | tee "$out/llama_374m_1024_cudnn.txt"
python3 benchmarks/lm_step.py --preset=gpt2-small-512 --steps=5 --modes=live 2>&1 | tee "$out/gpt2_small_512.txt"

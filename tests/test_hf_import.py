"""Tests for prefjax.lm.hf_import: Hugging Face Llama / GPT-2 checkpoints in and out.

Three independent answers: (1) a float64 numpy re-implementation of the Hugging Face Llama and GPT-2
forward passes that reads the checkpoint's tensors by their HF names (runs wherever `safetensors` is
installed); (2) `transformers` itself (runs only when `torch` and `transformers` are installed; skipped
with the reason otherwise, as in CI); (3) exact export -> import round trips.
"""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax.errors import PrefjaxError
from prefjax.lm import hf_import
from prefjax.lm.model import init_params
from prefjax.lm.model import Transformer
from prefjax.lm.model import TransformerConfig

safetensors_numpy = pytest.importorskip(
    "safetensors.numpy", reason="safetensors not installed (pip install 'prefjax[lm]')")

_TOKENS = np.random.default_rng(0).integers(0, 61, (2, 11))
_LOGIT_ATOL = 1e-4  # the acceptance tolerance (fp32 model vs a float64 or torch fp32 reference)


def _config(**kw):
  base = dict(vocab_size=61, d_model=32, num_layers=2, num_heads=4, d_ff=40, max_len=16, init_std=0.3)
  base.update(kw)
  return TransformerConfig(**base)


def _random_variables(config, seed):
  """Every parameter ~ N(0, 0.3²) (norm scales 1 + N(0, 0.2²)), drawn in numpy: no per-shape compile."""
  shapes = nn.unbox(jax.eval_shape(lambda: init_params(config, jax.random.key(0))))
  rng = np.random.default_rng(seed)
  def draw(path, x):
    base = 1.0 if jax.tree_util.keystr(path).endswith("['scale']") else 0.0
    return jnp.asarray(base + 0.3 * rng.standard_normal(x.shape), jnp.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes)


# ----- float64 numpy re-implementations of the HF forward passes (by HF tensor names) -----

def _rms(x, w, eps):
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * w


def _ln(x, w, b, eps):
  mu = x.mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def _attend(q, k, v):
  """q [B,L,H,dh], k/v [B,L,H,dh] -> [B,L,H·dh], causal."""
  b, length, h, dh = q.shape
  s = np.einsum("blhd,bmhd->bhlm", q, k) / np.sqrt(dh)
  s = np.where(np.tril(np.ones((length, length), bool)), s, -np.inf)
  p = np.exp(s - s.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return np.einsum("bhlm,bmhd->blhd", p, v).reshape(b, length, h * dh)


def _np_llama(t, hf, tokens):
  t = {k: v.astype(np.float64) for k, v in t.items()}
  d, h, kv = hf["hidden_size"], hf["num_attention_heads"], hf["num_key_value_heads"]
  dh, eps = d // h, hf["rms_norm_eps"]
  theta = hf["rope_parameters"]["rope_theta"] if "rope_parameters" in hf else hf["rope_theta"]
  b, length = tokens.shape
  ang = np.arange(length)[:, None] * theta ** (-np.arange(0, dh, 2) / dh)[None, :]
  cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None, :]
  sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None, :]

  def rot(x):  # HF rotate_half: x * cos + rotate_half(x) * sin
    return x * cos + np.concatenate([-x[..., dh // 2:], x[..., :dh // 2]], -1) * sin

  x = t["model.embed_tokens.weight"][tokens]
  for i in range(hf["num_hidden_layers"]):
    p = f"model.layers.{i}."
    y = _rms(x, t[p + "input_layernorm.weight"], eps)
    q = rot((y @ t[p + "self_attn.q_proj.weight"].T).reshape(b, length, h, dh))
    k = rot((y @ t[p + "self_attn.k_proj.weight"].T).reshape(b, length, kv, dh))
    v = (y @ t[p + "self_attn.v_proj.weight"].T).reshape(b, length, kv, dh)
    k, v = np.repeat(k, h // kv, axis=2), np.repeat(v, h // kv, axis=2)  # HF repeat_kv
    x = x + _attend(q, k, v) @ t[p + "self_attn.o_proj.weight"].T
    y = _rms(x, t[p + "post_attention_layernorm.weight"], eps)
    g = y @ t[p + "mlp.gate_proj.weight"].T
    x = x + ((g / (1 + np.exp(-g))) * (y @ t[p + "mlp.up_proj.weight"].T)) @ t[
        p + "mlp.down_proj.weight"].T
  x = _rms(x, t["model.norm.weight"], eps)
  head = t["model.embed_tokens.weight"] if hf["tie_word_embeddings"] else t["lm_head.weight"]
  return x @ head.T


def _np_gpt2(t, hf, tokens):
  t = {k: v.astype(np.float64) for k, v in t.items()}
  d, h, eps = hf["n_embd"], hf["n_head"], hf["layer_norm_epsilon"]
  b, length = tokens.shape
  x = t["transformer.wte.weight"][tokens] + t["transformer.wpe.weight"][np.arange(length)]
  for i in range(hf["n_layer"]):
    p = f"transformer.h.{i}."
    y = _ln(x, t[p + "ln_1.weight"], t[p + "ln_1.bias"], eps)
    qkv = y @ t[p + "attn.c_attn.weight"] + t[p + "attn.c_attn.bias"]
    q, k, v = (qkv[..., j * d:(j + 1) * d].reshape(b, length, h, d // h) for j in range(3))
    x = x + _attend(q, k, v) @ t[p + "attn.c_proj.weight"] + t[p + "attn.c_proj.bias"]
    y = _ln(x, t[p + "ln_2.weight"], t[p + "ln_2.bias"], eps)
    u = y @ t[p + "mlp.c_fc.weight"] + t[p + "mlp.c_fc.bias"]
    u = 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u ** 3)))  # gelu_new
    x = x + u @ t[p + "mlp.c_proj.weight"] + t[p + "mlp.c_proj.bias"]
  x = _ln(x, t["transformer.ln_f.weight"], t["transformer.ln_f.bias"], eps)
  head = t["transformer.wte.weight"] if hf["tie_word_embeddings"] else t["lm_head.weight"]
  return x @ head.T


_NP_FORWARD = {"llama": _np_llama, "gpt2": _np_gpt2}

# The transformers test below covers untied Llama and tied GPT-2; these cover the other two.
_CASES = {
    "llama_gqa_tied": dict(style="llama", num_kv_heads=2, tie_embeddings=True, rope_theta=500.0,
                           norm_eps=1e-5),
    "gpt2_untied": dict(style="gpt2", tie_embeddings=False, norm_eps=1e-3),
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_export_matches_numpy_hf_forward_and_round_trips(case, tmp_path):
  config = _config(**_CASES[case])
  variables = _random_variables(config, seed=len(case))
  assert variables["params"]["final_norm"]["scale"].std() > 0.1  # norms are not left at 1
  path = hf_import.export_hf(tmp_path / case, config, variables)
  with open(os.path.join(path, "config.json")) as f:
    hf = json.load(f)
  tensors = safetensors_numpy.load_file(os.path.join(path, "model.safetensors"))
  ours = np.asarray(Transformer(config).apply(variables, jnp.asarray(_TOKENS, jnp.int32)))
  ref = _NP_FORWARD[config.style](tensors, hf, _TOKENS)
  assert np.abs(ref).max() > 1.0  # logits of a non-trivial scale
  np.testing.assert_allclose(ours, ref, atol=_LOGIT_ATOL, rtol=0)
  # export -> import is exact, config included.
  config2, variables2 = hf_import.import_hf(path)
  assert config2 == config
  assert jax.tree.structure(variables2) == jax.tree.structure(variables)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(variables2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_import_export_of_a_checkpoint_is_byte_identical_in_tensors(tmp_path):
  config = _config(style="llama", num_kv_heads=2)
  src = hf_import.export_hf(tmp_path / "a", config, _random_variables(config, 3))
  _, variables = hf_import.import_hf(src)
  dst = hf_import.export_hf(tmp_path / "b", config, variables)
  a = safetensors_numpy.load_file(os.path.join(src, "model.safetensors"))
  b = safetensors_numpy.load_file(os.path.join(dst, "model.safetensors"))
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def _exported(tmp_path, **kw):
  config = _config(**kw)
  return config, hf_import.export_hf(tmp_path / "ckpt", config, _random_variables(config, 0))


def _edit_config(path, **changes):
  p = os.path.join(path, "config.json")
  with open(p) as f:
    hf = json.load(f)
  for k, v in changes.items():
    if v is None:
      hf.pop(k, None)
    else:
      hf[k] = v
  with open(p, "w") as f:
    json.dump(hf, f)


def test_missing_files_are_clear_errors(tmp_path):
  with pytest.raises(PrefjaxError, match="does not exist"):
    hf_import.import_hf(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(PrefjaxError, match="config.json"):
    hf_import.import_hf(tmp_path / "empty")
  _, path = _exported(tmp_path, style="llama")
  os.remove(os.path.join(path, "model.safetensors"))
  with pytest.raises(PrefjaxError, match="no \\*.safetensors"):
    hf_import.import_hf(path)


def test_checkpoint_of_a_different_shape_is_a_clear_error(tmp_path):
  config, path = _exported(tmp_path, style="llama", num_kv_heads=2)
  assert hf_import.import_hf(path, max_len=4096)[0].max_len == 4096  # Llama: any context length
  other = _config(style="llama", num_kv_heads=2, d_model=64)
  with pytest.raises(PrefjaxError, match="different model shape.*d_model"):
    hf_import.import_hf(path, expected_config=other)
  # config.json that disagrees with the tensors: the tensor is named.
  _edit_config(path, intermediate_size=config.d_ff + 8)
  with pytest.raises(PrefjaxError, match="gate_proj.weight' has shape"):
    hf_import.import_hf(path)


@pytest.mark.parametrize("style,changes,match", [
    ("llama", dict(attention_bias=True), "attention_bias"),
    ("llama", dict(mlp_bias=True), "mlp_bias"),
    ("llama", dict(head_dim=16), "head_dim"),
    ("llama", dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}),
     "llama3"),
    ("llama", dict(hidden_act="gelu"), "hidden_act"),
    ("gpt2", dict(activation_function="gelu"), "activation_function"),
    ("gpt2", dict(scale_attn_by_inverse_layer_idx=True), "inverse_layer_idx"),
    ("llama", dict(model_type="mixtral", architectures=["MixtralForCausalLM"]), "unsupported"),
])
def test_unrepresentable_architecture_details_are_refused(tmp_path, style, changes, match):
  _, path = _exported(tmp_path, style=style)
  _edit_config(path, **changes)
  with pytest.raises(PrefjaxError, match=match):
    hf_import.import_hf(path)


def test_unused_or_inconsistent_tensors_are_an_error(tmp_path):
  _, path = _exported(tmp_path, style="llama", tie_embeddings=False)
  _edit_config(path, tie_word_embeddings=True)  # lm_head.weight would be silently ignored
  with pytest.raises(PrefjaxError, match="'lm_head.weight' differs from the token embedding"):
    hf_import.import_hf(path)
  # A tied checkpoint that also stores the (equal) head imports; an extra tensor does not.
  file = os.path.join(path, "model.safetensors")
  tensors = safetensors_numpy.load_file(file)
  tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
  safetensors_numpy.save_file(tensors, file)
  config, _ = hf_import.import_hf(path)
  assert config.tie_embeddings
  tensors["model.layers.0.self_attn.q_proj.bias"] = np.zeros(32, np.float32)
  safetensors_numpy.save_file(tensors, file)
  with pytest.raises(PrefjaxError, match="no place for.*q_proj.bias"):
    hf_import.import_hf(path)


def test_bfloat16_params_and_bfloat16_files(tmp_path):
  config, path = _exported(tmp_path, style="gpt2")
  _, v32 = hf_import.import_hf(path)
  config16, v16 = hf_import.import_hf(path, dtype="bfloat16", param_dtype="bfloat16")
  assert config16.param_dtype == jnp.bfloat16
  for a, b in zip(jax.tree.leaves(v32), jax.tree.leaves(v16)):
    assert b.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(a.astype(jnp.bfloat16)), np.asarray(b))
  # A checkpoint stored in bfloat16 (as most released ones are) imports to the same bf16 values.
  path16 = hf_import.export_hf(tmp_path / "bf16", config, v32, dtype="bfloat16")
  _, v = hf_import.import_hf(path16)
  for a, b in zip(jax.tree.leaves(v16), jax.tree.leaves(v)):
    assert b.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(a.astype(jnp.float32)), np.asarray(b))


def test_sharded_and_unprefixed_checkpoints(tmp_path):
  """An index.json with two shards, and GPT-2 tensor names without "transformer." (the hub's gpt2)."""
  config, path = _exported(tmp_path, style="gpt2")
  _, want = hf_import.import_hf(path)
  tensors = safetensors_numpy.load_file(os.path.join(path, "model.safetensors"))
  os.remove(os.path.join(path, "model.safetensors"))
  names = sorted(tensors)
  shards = {"model-00001-of-00002.safetensors": names[:7], "model-00002-of-00002.safetensors": names[7:]}
  weight_map = {}
  for fname, keys in shards.items():
    safetensors_numpy.save_file({k.removeprefix("transformer."): tensors[k] for k in keys},
                                os.path.join(path, fname), metadata={"format": "pt"})
    weight_map.update({k.removeprefix("transformer."): fname for k in keys})
  with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": weight_map}, f)
  got_config, got = hf_import.import_hf(path)
  assert got_config == config
  with pytest.raises(PrefjaxError, match="max_len can only be overridden for Llama"):
    hf_import.import_hf(path, max_len=8)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----- against transformers (skipped where torch / transformers are not installed) -----

def _hf_model_pairs():
  torch = pytest.importorskip(
      "torch", reason="torch not installed: the transformers logits comparison is skipped")
  transformers = pytest.importorskip(
      "transformers", reason="transformers not installed: the logits comparison is skipped")
  return torch, transformers


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_logits_match_transformers(arch, tmp_path):
  torch, transformers = _hf_model_pairs()
  torch.manual_seed(0)
  if arch == "llama":
    hf_config = transformers.LlamaConfig(
        vocab_size=61, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16, rope_theta=500.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1)
    model = transformers.LlamaForCausalLM(hf_config)
  else:
    hf_config = transformers.GPT2Config(
        vocab_size=61, n_embd=32, n_layer=2, n_head=4, n_positions=16, layer_norm_epsilon=1e-3,
        bos_token_id=0, eos_token_id=1)
    model = transformers.GPT2LMHeadModel(hf_config)
  model.eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      base = 1.0 if name.endswith(("norm.weight", "ln_1.weight", "ln_2.weight", "ln_f.weight")) else 0.0
      p.copy_(base + 0.3 * torch.randn_like(p))
    ref = model(torch.tensor(_TOKENS)).logits.numpy()
  model.save_pretrained(tmp_path / "hf", safe_serialization=True)
  config, variables = hf_import.import_hf(tmp_path / "hf")
  assert config.style == arch
  ours = np.asarray(Transformer(config).apply(variables, jnp.asarray(_TOKENS, jnp.int32)))
  assert np.abs(ref).max() > 1.0
  np.testing.assert_allclose(ours, ref, atol=_LOGIT_ATOL, rtol=0)
  # Export back: transformers loads it and gives the same logits; the tensors are unchanged.
  out = hf_import.export_hf(tmp_path / "back", config, variables)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  with torch.no_grad():
    np.testing.assert_array_equal(reloaded(torch.tensor(_TOKENS)).logits.numpy(), ref)
  original = safetensors_numpy.load_file(os.path.join(tmp_path / "hf", "model.safetensors"))
  exported = safetensors_numpy.load_file(os.path.join(out, "model.safetensors"))
  for k, v in exported.items():
    np.testing.assert_array_equal(v, original[k])

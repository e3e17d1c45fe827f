"""Pretrained weights: Llama-architecture and GPT-2 checkpoints from a local Hugging Face directory.

`import_hf(path)` reads `config.json` and the safetensors weights (`model.safetensors`, or the shards
named by `model.safetensors.index.json`) from a local directory (no network, no torch) and returns a
`TransformerConfig` and the `{"params": ...}` tree of `prefjax.lm.model.Transformer`. `export_hf` writes
a config and params back in the same format (`config.json` + `model.safetensors`), loadable by
`transformers`' `LlamaForCausalLM` / `GPT2LMHeadModel.from_pretrained` and by `import_hf` again.

Layout conversions (torch `nn.Linear` stores [out, in]; GPT-2's `Conv1D` stores [in, out]):
  Llama  q_proj [H·Dh, D] -> query [D, H, Dh];  k_proj / v_proj [K·Dh, D] -> key / value [D, K, Dh];
         o_proj [D, H·Dh] -> out [H, Dh, D];  gate_proj / up_proj [F, D] -> gate / up [D, F];
         down_proj [D, F] -> down [F, D];  lm_head [V, D] -> head [D, V];  embed_tokens [V, D] -> embed.
         HF stores q/k already permuted for the rotate-half RoPE layout that `model.rope` uses.
  GPT-2  c_attn [D, 3D] -> query, key, value [D, H, Dh] (columns q | k | v, heads contiguous);
         c_attn bias [3D] -> query_bias, key_bias, value_bias [H, Dh];  c_proj [D, D] -> out [H, Dh, D];
         c_fc [D, F] -> wi;  mlp.c_proj [F, D] -> wo;  wte -> embed;  wpe -> position_embed.
All conversions are transposes and reshapes, so import ∘ export is the identity bit for bit.

What `prefjax.lm.model` cannot represent is refused with a clear error, never approximated:
  Llama: `attention_bias` or `mlp_bias` true (the llama style has no biases), `head_dim` different from
  hidden_size / num_attention_heads, `rope_scaling` / a `rope_type` other than "default" (Llama 3.1's
  "llama3" frequency scaling, linear, dynamic, YaRN), a `hidden_act` other than silu.
  GPT-2: an `activation_function` other than the tanh-approximated GELU ("gelu_new",
  "gelu_pytorch_tanh"), `scale_attn_by_inverse_layer_idx`, `scale_attn_weights` false, cross-attention.
Supported details: GQA (num_key_value_heads), rope_theta (either top-level or in transformers 5's
`rope_parameters`), rms_norm_eps / layer_norm_epsilon, tied or untied embeddings (a tied checkpoint
that still stores `lm_head.weight` is accepted when it equals the embedding), any Llama max length,
bfloat16/float16 files, sharded files (`model.safetensors.index.json`), GPT-2 names with or without
the "transformer." prefix. Tensors the model has no place for are an error, never silently dropped.
"""

import json
import os

import jax
import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.lm.model import init_params
from prefjax.lm.model import TransformerConfig

# Buffers some checkpoints carry that are not parameters (GPT-2's causal mask, Llama's RoPE table).
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")
_GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")


def _read_config(path):
  config_path = os.path.join(path, "config.json")
  if not os.path.isdir(path):
    raise PrefjaxError(f"import_hf: checkpoint directory {path!r} does not exist")
  if not os.path.isfile(config_path):
    raise PrefjaxError(f"import_hf: {config_path!r} does not exist (a Hugging Face model directory "
                       f"has config.json and *.safetensors)")
  try:
    with open(config_path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise PrefjaxError(f"import_hf: {config_path!r} is not valid JSON: {e}") from e


def _model_type(hf):
  model_type = hf.get("model_type")
  archs = hf.get("architectures") or []
  if model_type in _CONVERTERS:
    return model_type
  for arch, name in (("LlamaForCausalLM", "llama"), ("GPT2LMHeadModel", "gpt2")):
    if arch in archs:
      return name
  raise PrefjaxError(f"import_hf: unsupported model_type {model_type!r} (architectures {archs}); "
                     f"supported: {sorted(_CONVERTERS)}")


def _require(cond, message):
  if not cond:
    raise PrefjaxError(f"import_hf: {message}")


def _rope_theta(hf):
  params = hf.get("rope_parameters") or {}
  scaling = hf.get("rope_scaling")
  rope_type = params.get("rope_type", params.get("type", "default"))
  if scaling:
    rope_type = scaling.get("rope_type", scaling.get("type", rope_type))
  _require(rope_type == "default",
           f"RoPE type {rope_type!r} (rope_scaling / rope_parameters) is not supported by "
           f"prefjax.lm.model (only plain RoPE with a base frequency)")
  return float(params.get("rope_theta", hf.get("rope_theta", 10_000.0)))


def _llama_config(hf, **overrides):
  d, h = hf["hidden_size"], hf["num_attention_heads"]
  _require(hf.get("hidden_act", "silu") == "silu",
           f"Llama hidden_act {hf.get('hidden_act')!r}: only 'silu' (SwiGLU) is supported")
  _require(not hf.get("attention_bias", False),
           "Llama attention_bias=true: the llama style of prefjax.lm.model has no attention biases")
  _require(not hf.get("mlp_bias", False),
           "Llama mlp_bias=true: the llama style of prefjax.lm.model has no MLP biases")
  head_dim = hf.get("head_dim")
  _require(head_dim in (None, d // h),
           f"Llama head_dim={head_dim} != hidden_size / num_attention_heads = {d // h}: "
           f"prefjax.lm.model derives the head dim from d_model")
  overrides.setdefault("max_len", hf.get("max_position_embeddings", 2048))
  return dict(vocab_size=hf["vocab_size"], d_model=d, num_layers=hf["num_hidden_layers"],
              num_heads=h, d_ff=hf["intermediate_size"],
              num_kv_heads=hf.get("num_key_value_heads") or h, style="llama",
              rope_theta=_rope_theta(hf), norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
              tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
              init_std=float(hf.get("initializer_range", 0.02)), **overrides)


def _gpt2_config(hf, **overrides):
  act = hf.get("activation_function", "gelu_new")
  _require(act in _GPT2_ACTIVATIONS,
           f"GPT-2 activation_function {act!r}: prefjax.lm.model uses the tanh-approximated GELU "
           f"({', '.join(_GPT2_ACTIVATIONS)})")
  _require(hf.get("scale_attn_weights", True),
           "GPT-2 scale_attn_weights=false is not supported (prefjax divides by sqrt(head_dim))")
  _require(not hf.get("scale_attn_by_inverse_layer_idx", False),
           "GPT-2 scale_attn_by_inverse_layer_idx=true is not supported")
  _require(not hf.get("add_cross_attention", False), "GPT-2 cross-attention is not supported")
  d = hf["n_embd"]
  return dict(vocab_size=hf["vocab_size"], d_model=d, num_layers=hf["n_layer"],
              num_heads=hf["n_head"], d_ff=hf.get("n_inner") or 4 * d, max_len=hf["n_positions"],
              style="gpt2", norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
              tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
              init_std=float(hf.get("initializer_range", 0.02)), **overrides)


def hf_config_to_config(hf, *, dtype="float32", param_dtype="float32", max_len=None):
  """`TransformerConfig` from a Hugging Face config dict (llama or gpt2).

  Args:
    hf: the parsed config.json.
    dtype: compute dtype of the returned config.
    param_dtype: storage dtype of the parameters.
    max_len: override of the longest sequence (Llama only; GPT-2's is its position table's size).

  Returns:
    `(TransformerConfig, model_type)`.
  """
  model_type = _model_type(hf)
  overrides = dict(dtype=dtype, param_dtype=param_dtype)
  if max_len is not None:
    _require(model_type == "llama", "max_len can only be overridden for Llama (GPT-2's position "
                                    "table fixes it)")
    overrides["max_len"] = max_len
  try:
    kwargs = _CONVERTERS[model_type][0](hf, **overrides)
  except KeyError as e:
    raise PrefjaxError(f"import_hf: config.json of a {model_type} model lacks {e}") from e
  return TransformerConfig(**kwargs), model_type


class _Tensors:
  """Lazy access to the safetensors of a directory, with shape checks and a record of what was used."""

  def __init__(self, path):
    try:
      from safetensors import safe_open  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise PrefjaxError("import_hf needs the `safetensors` package: pip install 'prefjax[lm]'") from e
    index_path = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index_path):
      with open(index_path, encoding="utf-8") as f:
        weight_map = json.load(f)["weight_map"]
      files = sorted(set(weight_map.values()))
    else:
      files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
      if not files:
        raise PrefjaxError(f"import_hf: no *.safetensors file in {path!r} (PyTorch .bin checkpoints "
                           f"are not read: convert them with save_pretrained(safe_serialization=True))")
    self.handles = {}
    self.where = {}
    for name in files:
      full = os.path.join(path, name)
      if not os.path.isfile(full):
        raise PrefjaxError(f"import_hf: weight file {full!r} (named by the index) does not exist")
      handle = safe_open(full, framework="numpy")
      self.handles[name] = handle
      for key in handle.keys():
        self.where[key] = name
    self.used = set()
    self.path = path

  def get(self, key, shape):
    if key not in self.where:
      raise PrefjaxError(f"import_hf: tensor {key!r} is missing from the checkpoint in {self.path!r}")
    handle = self.handles[self.where[key]]
    actual = tuple(handle.get_slice(key).get_shape())
    if actual != tuple(shape):
      raise PrefjaxError(f"import_hf: tensor {key!r} has shape {actual}, but config.json implies "
                         f"{tuple(shape)} (a checkpoint of a different model shape?)")
    self.used.add(key)
    if handle.get_slice(key).get_dtype() in ("BF16", "F8_E4M3", "F8_E5M2"):
      from safetensors import safe_open  # pylint: disable=g-import-not-at-top
      with safe_open(os.path.join(self.path, self.where[key]), framework="flax") as f:
        return np.asarray(f.get_tensor(key).astype(np.float32))
    return handle.get_tensor(key)

  def check_tied_head(self, key, embed):
    """A tied model whose file still stores the head: accepted only if it equals the embedding."""
    if key in self.where:
      head = self.get(key, embed.shape)
      if not np.array_equal(head, embed):
        raise PrefjaxError(f"import_hf: tie_word_embeddings is true but {key!r} differs from the "
                           f"token embedding; set tie_word_embeddings=false in config.json to keep it")

  def check_all_used(self):
    left = sorted(k for k in self.where if k not in self.used and not k.endswith(_IGNORED_SUFFIXES))
    if left:
      raise PrefjaxError(f"import_hf: the checkpoint has tensors prefjax.lm.model has no place for: "
                         f"{left[:10]}{' ...' if len(left) > 10 else ''}")


def _llama_import(t, cfg):
  d, h, k, dh, f, v = (cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.d_ff,
                       cfg.vocab_size)
  p = {"embed": t.get("model.embed_tokens.weight", (v, d)),
       "final_norm": {"scale": t.get("model.norm.weight", (d,))}}
  if cfg.tie_embeddings:
    t.check_tied_head("lm_head.weight", p["embed"])
  else:
    p["head"] = t.get("lm_head.weight", (v, d)).T
  for i in range(cfg.num_layers):
    pre = f"model.layers.{i}."
    p[f"layer_{i}"] = {
        "attention_norm": {"scale": t.get(pre + "input_layernorm.weight", (d,))},
        "mlp_norm": {"scale": t.get(pre + "post_attention_layernorm.weight", (d,))},
        "attention": {
            "query": t.get(pre + "self_attn.q_proj.weight", (h * dh, d)).T.reshape(d, h, dh),
            "key": t.get(pre + "self_attn.k_proj.weight", (k * dh, d)).T.reshape(d, k, dh),
            "value": t.get(pre + "self_attn.v_proj.weight", (k * dh, d)).T.reshape(d, k, dh),
            "out": t.get(pre + "self_attn.o_proj.weight", (d, h * dh)).T.reshape(h, dh, d),
        },
        "mlp": {
            "gate": t.get(pre + "mlp.gate_proj.weight", (f, d)).T,
            "up": t.get(pre + "mlp.up_proj.weight", (f, d)).T,
            "down": t.get(pre + "mlp.down_proj.weight", (d, f)).T,
        },
    }
  return p


def _llama_export(p, cfg):
  d, h, k, dh = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  out = {"model.embed_tokens.weight": p["embed"], "model.norm.weight": p["final_norm"]["scale"]}
  if not cfg.tie_embeddings:
    out["lm_head.weight"] = p["head"].T
  for i in range(cfg.num_layers):
    pre, layer = f"model.layers.{i}.", p[f"layer_{i}"]
    att, mlp = layer["attention"], layer["mlp"]
    out.update({
        pre + "input_layernorm.weight": layer["attention_norm"]["scale"],
        pre + "post_attention_layernorm.weight": layer["mlp_norm"]["scale"],
        pre + "self_attn.q_proj.weight": att["query"].reshape(d, h * dh).T,
        pre + "self_attn.k_proj.weight": att["key"].reshape(d, k * dh).T,
        pre + "self_attn.v_proj.weight": att["value"].reshape(d, k * dh).T,
        pre + "self_attn.o_proj.weight": att["out"].reshape(h * dh, d).T,
        pre + "mlp.gate_proj.weight": mlp["gate"].T,
        pre + "mlp.up_proj.weight": mlp["up"].T,
        pre + "mlp.down_proj.weight": mlp["down"].T,
    })
  return out


def _llama_hf_config(cfg):
  return {
      "architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
      "intermediate_size": cfg.d_ff, "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads,
      "head_dim": cfg.head_dim, "max_position_embeddings": cfg.max_len, "hidden_act": "silu",
      "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta,
      "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
      "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": cfg.tie_embeddings,
      "initializer_range": cfg.init_std,
  }


def _gpt2_prefix(t):
  return "transformer." if "transformer.wte.weight" in t.where else ""


def _gpt2_import(t, cfg):
  d, h, dh, f, v = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.d_ff, cfg.vocab_size
  pre = _gpt2_prefix(t)
  p = {"embed": t.get(pre + "wte.weight", (v, d)),
       "position_embed": t.get(pre + "wpe.weight", (cfg.max_len, d)),
       "final_norm": {"scale": t.get(pre + "ln_f.weight", (d,)),
                      "bias": t.get(pre + "ln_f.bias", (d,))}}
  if cfg.tie_embeddings:
    t.check_tied_head("lm_head.weight", p["embed"])
  else:
    p["head"] = t.get("lm_head.weight", (v, d)).T
  for i in range(cfg.num_layers):
    lp = f"{pre}h.{i}."
    w_qkv = t.get(lp + "attn.c_attn.weight", (d, 3 * d))
    b_qkv = t.get(lp + "attn.c_attn.bias", (3 * d,))
    wq, wk, wv = (w_qkv[:, j * d:(j + 1) * d].reshape(d, h, dh) for j in range(3))
    bq, bk, bv = (b_qkv[j * d:(j + 1) * d].reshape(h, dh) for j in range(3))
    p[f"layer_{i}"] = {
        "attention_norm": {"scale": t.get(lp + "ln_1.weight", (d,)),
                           "bias": t.get(lp + "ln_1.bias", (d,))},
        "mlp_norm": {"scale": t.get(lp + "ln_2.weight", (d,)),
                     "bias": t.get(lp + "ln_2.bias", (d,))},
        "attention": {
            "query": wq, "key": wk, "value": wv,
            "query_bias": bq, "key_bias": bk, "value_bias": bv,
            "out": t.get(lp + "attn.c_proj.weight", (d, d)).reshape(h, dh, d),
            "out_bias": t.get(lp + "attn.c_proj.bias", (d,)),
        },
        "mlp": {
            "wi": t.get(lp + "mlp.c_fc.weight", (d, f)),
            "bi": t.get(lp + "mlp.c_fc.bias", (f,)),
            "wo": t.get(lp + "mlp.c_proj.weight", (f, d)),
            "bo": t.get(lp + "mlp.c_proj.bias", (d,)),
        },
    }
  return p


def _gpt2_export(p, cfg):
  d = cfg.d_model
  pre = "transformer."
  out = {pre + "wte.weight": p["embed"], pre + "wpe.weight": p["position_embed"],
         pre + "ln_f.weight": p["final_norm"]["scale"], pre + "ln_f.bias": p["final_norm"]["bias"]}
  if not cfg.tie_embeddings:
    out["lm_head.weight"] = p["head"].T
  for i in range(cfg.num_layers):
    lp, layer = f"{pre}h.{i}.", p[f"layer_{i}"]
    att, mlp = layer["attention"], layer["mlp"]
    out.update({
        lp + "ln_1.weight": layer["attention_norm"]["scale"],
        lp + "ln_1.bias": layer["attention_norm"]["bias"],
        lp + "ln_2.weight": layer["mlp_norm"]["scale"],
        lp + "ln_2.bias": layer["mlp_norm"]["bias"],
        lp + "attn.c_attn.weight": np.concatenate(
            [att[n].reshape(d, d) for n in ("query", "key", "value")], axis=1),
        lp + "attn.c_attn.bias": np.concatenate(
            [att[n].reshape(d) for n in ("query_bias", "key_bias", "value_bias")]),
        lp + "attn.c_proj.weight": att["out"].reshape(d, d),
        lp + "attn.c_proj.bias": att["out_bias"],
        lp + "mlp.c_fc.weight": mlp["wi"], lp + "mlp.c_fc.bias": mlp["bi"],
        lp + "mlp.c_proj.weight": mlp["wo"], lp + "mlp.c_proj.bias": mlp["bo"],
    })
  return out


def _gpt2_hf_config(cfg):
  return {
      "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
      "vocab_size": cfg.vocab_size, "n_embd": cfg.d_model, "n_layer": cfg.num_layers,
      "n_head": cfg.num_heads, "n_inner": cfg.d_ff, "n_positions": cfg.max_len,
      "activation_function": "gelu_new", "layer_norm_epsilon": cfg.norm_eps,
      "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
      "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": cfg.init_std,
      "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0,
  }


# model_type -> (hf config -> TransformerConfig kwargs, import, export, TransformerConfig -> hf config)
_CONVERTERS = {
    "llama": (_llama_config, _llama_import, _llama_export, _llama_hf_config),
    "gpt2": (_gpt2_config, _gpt2_import, _gpt2_export, _gpt2_hf_config),
}
_STYLE_TO_TYPE = {"llama": "llama", "gpt2": "gpt2"}

# Fields that fix parameter shapes (compared against `expected_config`).
_SHAPE_FIELDS = ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads", "d_ff", "style",
                 "tie_embeddings")


def _check_tree(config, params):
  """Guards against drift between this converter and the model's parameter names and shapes."""
  expected = jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
  expected = jax.tree.map(lambda x: (tuple(x.shape)), _unbox(expected)["params"])
  got = jax.tree.map(lambda x: tuple(x.shape), params)
  if jax.tree.structure(expected) != jax.tree.structure(got) or expected != got:
    raise PrefjaxError("hf_import: converted parameters do not match prefjax.lm.model's tree "
                       f"(model changed?); expected {expected}, got {got}")


def _unbox(tree):
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  return nn.unbox(tree)


def import_hf(path, *, dtype="float32", param_dtype="float32", max_len=None, expected_config=None):
  """Imports a local Hugging Face Llama or GPT-2 checkpoint (config.json + safetensors).

  Args:
    path: the model directory (as written by `save_pretrained`).
    dtype: compute dtype of the returned config ("float32" or "bfloat16").
    param_dtype: dtype the weights are stored in after import.
    max_len: Llama only: override `max_position_embeddings` as the model's `max_len`.
    expected_config: optional `TransformerConfig` the checkpoint must match in shape (vocab_size,
      d_model, num_layers, num_heads, num_kv_heads, d_ff, style, tie_embeddings); a mismatch raises.

  Returns:
    `(config, variables)`: a `TransformerConfig` and `{"params": ...}` of host (numpy) arrays in
    `param_dtype`, for `Transformer(config).apply` or for `jax.device_put(variables, shardings)`
    straight onto a mesh (nothing is placed on a device here, so a large model is never gathered
    on one accelerator).

  Raises:
    PrefjaxError: missing files, an unsupported architecture detail (see the module docstring), a
      tensor whose shape disagrees with config.json, tensors left unused, or `expected_config` differs.
  """
  path = os.fspath(path)
  hf = _read_config(path)
  config, model_type = hf_config_to_config(hf, dtype=dtype, param_dtype=param_dtype, max_len=max_len)
  if expected_config is not None:
    diffs = [f"{k}: checkpoint {getattr(config, k)!r} vs expected {getattr(expected_config, k)!r}"
             for k in _SHAPE_FIELDS if getattr(config, k) != getattr(expected_config, k)]
    if diffs:
      raise PrefjaxError(f"import_hf: the checkpoint in {path!r} has a different model shape: "
                         + "; ".join(diffs))
  tensors = _Tensors(path)
  params = _CONVERTERS[model_type][1](tensors, config)
  tensors.check_all_used()
  _check_tree(config, params)
  params = jax.tree.map(lambda x: np.ascontiguousarray(x, dtype=config.param_dtype), params)
  return config, {"params": params}


def export_hf(path, config, variables, *, dtype=None, extra_config=None):
  """Writes `config.json` and `model.safetensors` in the Hugging Face layout of the config's style.

  Args:
    path: output directory (created if needed; existing files of the same name are replaced).
    config: the `TransformerConfig` ("llama" style exports as LlamaForCausalLM, "gpt2" as
      GPT2LMHeadModel).
    variables: `{"params": ...}` (boxed or not) or the params tree itself.
    dtype: dtype of the written tensors (default: each parameter's own dtype); bfloat16 needs the
      `ml_dtypes`-aware safetensors flax writer and is written through it.
    extra_config: optional entries added to config.json (e.g. {"bos_token_id": 1, "eos_token_id": 2}
      for the tokenizer in use; by default both are null).

  Returns:
    The directory path.
  """
  try:
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise PrefjaxError("export_hf needs the `safetensors` package: pip install 'prefjax[lm]'") from e
  model_type = _STYLE_TO_TYPE[config.style]
  variables = _unbox(variables)
  params = variables["params"] if "params" in variables else variables
  _check_tree(config, params)
  params = jax.tree.map(np.asarray, params)
  tensors = _CONVERTERS[model_type][2](params, config)
  out_dtype = None if dtype is None else jax.numpy.dtype(dtype)
  tensors = {k: np.ascontiguousarray(v if out_dtype is None else v.astype(out_dtype))
             for k, v in tensors.items()}
  os.makedirs(path, exist_ok=True)
  hf = _CONVERTERS[model_type][3](config)
  hf.update({"bos_token_id": None, "eos_token_id": None, "pad_token_id": None})
  hf.update(extra_config or {})
  dtypes = {str(v.dtype) for v in tensors.values()}
  hf["torch_dtype"] = hf["dtype"] = dtypes.pop() if len(dtypes) == 1 else "float32"
  with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
    json.dump(hf, f, indent=2, sort_keys=True)
  if any(v.dtype.name == "bfloat16" for v in tensors.values()):
    from safetensors.flax import save_file as save_flax  # pylint: disable=g-import-not-at-top
    save_flax({k: jax.numpy.asarray(v) for k, v in tensors.items()},
              os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
  else:
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
  return path

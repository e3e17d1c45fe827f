"""Tokenizers for the LM side: an embedded byte-level tokenizer and any `tokenizer.json` (HF `tokenizers`).

Both expose the same small interface, which `prefjax.lm.data` uses:

  vocab_size: int             number of ids (the model's `vocab_size` must be at least this)
  bos_id, eos_id, pad_id: int special ids (BOS starts every prompt, EOS ends every response, PAD fills)
  encode(text) -> list[int]   text to ids, WITHOUT special tokens (the data pipeline adds BOS/EOS)
  decode(ids) -> str          ids to text; special ids are skipped

`ByteTokenizer` is the default: ids 0..255 are the UTF-8 bytes, then BOS = 256, EOS = 257, PAD = 258
(vocab_size 259). It needs no file and round-trips any string exactly.

`HFTokenizer` wraps `tokenizers.Tokenizer.from_file` (the `lm` extra: `pip install tokenizers`). Special
tokens come from the arguments, else from a `tokenizer_config.json` beside the file (its `bos_token`,
`eos_token`, `pad_token`), else from common names ("<s>", "<|begin_of_text|>", "<|endoftext|>", ...).
Without a BOS token the EOS id starts prompts (GPT-2's convention); without a PAD token EOS pads (padding
is masked out of attention and loss, so its id never matters).

Chat templates: when that `tokenizer_config.json` has a `chat_template` (the Jinja template of
Hugging Face chat models), `HFTokenizer.chat_template` is a callable `(messages, add_generation_prompt)
-> str` rendering it (needs `jinja2`); `prefjax.lm.data` uses it by default. A leading BOS token string
and, for a finished conversation (no generation prompt), a final EOS token string (followed at most by
whitespace) are removed from the rendering, since the data pipeline adds the BOS and EOS ids itself.
"""

import json
import os

from prefjax.errors import PrefjaxError


class ByteTokenizer:
  """UTF-8 bytes as ids 0..255 plus BOS = 256, EOS = 257, PAD = 258."""

  chat_template = None  # data.default_chat_template is used
  bos_id = 256
  eos_id = 257
  pad_id = 258
  vocab_size = 259
  name = "byte"

  def encode(self, text):
    """Ids of the UTF-8 bytes of `text` (no special tokens)."""
    if not isinstance(text, str):
      raise PrefjaxError(f"ByteTokenizer.encode: expected a string, got {type(text).__name__}")
    return list(text.encode("utf-8"))

  def decode(self, ids):
    """Text of the byte ids (special ids skipped; invalid UTF-8 replaced by U+FFFD)."""
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise PrefjaxError(f"ByteTokenizer.decode: ids must be in [0, {self.vocab_size}), got {bad[:5]}")
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

  def __repr__(self):
    return "ByteTokenizer()"


_BOS_NAMES = ("<s>", "<|begin_of_text|>", "<bos>", "[BOS]", "<|startoftext|>", "<|endoftext|>")
_EOS_NAMES = ("</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "[EOS]", "<|eot_id|>", "<|im_end|>")
_PAD_NAMES = ("<pad>", "[PAD]", "<|pad|>", "<|finetune_right_pad_id|>")


def _token_string(value):
  """A special token in tokenizer_config.json: a string or an AddedToken dict {"content": ...}."""
  if isinstance(value, dict):
    return value.get("content")
  return value if isinstance(value, str) else None


class HFTokenizer:
  """A `tokenizer.json` loaded with the `tokenizers` package.

  Attributes:
    path: the tokenizer.json file.
    vocab_size: vocabulary size including added tokens.
    bos_id, eos_id, pad_id: special ids (see the module docstring for how they are found).
  """

  def __init__(self, path, *, bos_token=None, eos_token=None, pad_token=None):
    """Loads a tokenizer.

    Args:
      path: a `tokenizer.json` file, or a directory containing one (a Hugging Face model directory).
      bos_token, eos_token, pad_token: optional token strings overriding the defaults.

    Raises:
      PrefjaxError: the file does not exist or cannot be parsed, the `tokenizers` package is missing,
        or a named special token is not in the vocabulary.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
      path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(path):
      raise PrefjaxError(f"HFTokenizer: tokenizer file {path!r} does not exist (give a tokenizer.json "
                         f"file or a directory containing one, or 'byte' for the byte tokenizer)")
    try:
      import tokenizers  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise PrefjaxError("HFTokenizer needs the `tokenizers` package: pip install 'prefjax[lm]' "
                         "(or pip install tokenizers)") from e
    try:
      self._tok = tokenizers.Tokenizer.from_file(path)
    except Exception as e:  # the Rust side raises a plain Exception
      raise PrefjaxError(f"HFTokenizer: cannot parse tokenizer file {path!r}: {e}") from e
    self.path = path
    self.name = path
    self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))

    config = {}
    config_path = os.path.join(os.path.dirname(path), "tokenizer_config.json")
    if os.path.isfile(config_path):
      try:
        with open(config_path, encoding="utf-8") as f:
          config = json.load(f)
      except (OSError, json.JSONDecodeError) as e:
        raise PrefjaxError(f"HFTokenizer: cannot read {config_path!r}: {e}") from e

    def resolve(kind, given, names):
      if given is not None:
        idx = self._tok.token_to_id(given)
        if idx is None:
          raise PrefjaxError(f"HFTokenizer: {kind}_token {given!r} is not in the vocabulary of {path!r}")
        return int(idx)
      configured = _token_string(config.get(f"{kind}_token"))
      for name in ((configured,) if configured else ()) + names:
        idx = self._tok.token_to_id(name)
        if idx is not None:
          return int(idx)
      return None

    eos = resolve("eos", eos_token, _EOS_NAMES)
    if eos is None:
      raise PrefjaxError(f"HFTokenizer: no EOS token found in {path!r}; pass eos_token= (tried "
                         f"{list(_EOS_NAMES)})")
    bos = resolve("bos", bos_token, _BOS_NAMES)
    pad = resolve("pad", pad_token, _PAD_NAMES)
    self.eos_id = eos
    self.bos_id = eos if bos is None else bos
    self.pad_id = eos if pad is None else pad
    self.chat_template = None
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
      named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
      template = named.get("default")
    if isinstance(template, str):
      self.chat_template = _jinja_template(
          template, self._tok.id_to_token(self.bos_id) if bos is not None else "",
          self._tok.id_to_token(self.eos_id), config_path)

  def encode(self, text):
    """Ids of `text` without special tokens (the tokenizer's post-processor is not applied)."""
    if not isinstance(text, str):
      raise PrefjaxError(f"HFTokenizer.encode: expected a string, got {type(text).__name__}")
    return list(self._tok.encode(text, add_special_tokens=False).ids)

  def decode(self, ids):
    """Text of `ids`, special tokens skipped."""
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

  def __repr__(self):
    return f"HFTokenizer({self.path!r})"


def _jinja_template(source, bos_token, eos_token, where):
  """A `(messages, add_generation_prompt) -> str` renderer of a Hugging Face Jinja chat template."""
  try:
    import jinja2  # pylint: disable=g-import-not-at-top
    from jinja2 import sandbox  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise PrefjaxError(f"HFTokenizer: {where} has a chat_template, which needs `jinja2` "
                       f"(pip install jinja2), or pass chat_template= to the dataset") from e

  def raise_exception(message):
    raise PrefjaxError(f"chat template of {where}: {message}")

  env = sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
  env.globals["raise_exception"] = raise_exception
  try:
    compiled = env.from_string(source)
  except jinja2.TemplateError as e:
    raise PrefjaxError(f"HFTokenizer: cannot compile the chat_template of {where}: {e}") from e

  def render(messages, add_generation_prompt=False):
    text = compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                           bos_token=bos_token, eos_token=eos_token)
    if bos_token and text.startswith(bos_token):
      text = text[len(bos_token):]
    if not add_generation_prompt and eos_token and text.rstrip().endswith(eos_token):
      text = text.rstrip()[:-len(eos_token)]
    return text

  return render


def load_tokenizer(spec="byte", **kwargs):
  """A tokenizer from a spec: "byte" (the embedded default) or a path to a tokenizer.json / model dir.

  Args:
    spec: "byte", a tokenizer object (returned as is), or a path.
    **kwargs: `HFTokenizer` options (bos_token, eos_token, pad_token).

  Returns:
    `ByteTokenizer` or `HFTokenizer`.
  """
  if spec is None or (isinstance(spec, str) and spec == "byte"):
    return ByteTokenizer()
  if hasattr(spec, "encode") and hasattr(spec, "eos_id"):
    return spec
  if not isinstance(spec, (str, os.PathLike)):
    raise PrefjaxError(f"load_tokenizer: expected 'byte' or a path to a tokenizer.json, got {spec!r}")
  return HFTokenizer(spec, **kwargs)

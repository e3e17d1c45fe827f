"""Tests for prefjax.lm.tokenizer: the byte tokenizer and tokenizer.json files via `tokenizers`."""

import json

import pytest

from prefjax.errors import PrefjaxError
from prefjax.lm import tokenizer as tokenizer_lib

_TEXTS = ["", "hello world", "naïve café — 你好 🙂", "line\nbreak\ttab \x00 nul"]


@pytest.mark.parametrize("text", _TEXTS)
def test_byte_tokenizer_round_trips_and_matches_utf8(text):
  tok = tokenizer_lib.ByteTokenizer()
  ids = tok.encode(text)
  assert ids == list(text.encode("utf-8"))
  assert tok.decode(ids) == text
  assert tok.decode([tok.bos_id] + ids + [tok.eos_id, tok.pad_id, tok.pad_id]) == text


def test_byte_tokenizer_specials_and_errors():
  tok = tokenizer_lib.load_tokenizer("byte")
  assert isinstance(tok, tokenizer_lib.ByteTokenizer)
  specials = {tok.bos_id, tok.eos_id, tok.pad_id}
  assert len(specials) == 3 and min(specials) >= 256 and max(specials) < tok.vocab_size == 259
  with pytest.raises(PrefjaxError, match="expected a string"):
    tok.encode(b"bytes")
  with pytest.raises(PrefjaxError, match="ids must be in"):
    tok.decode([259])


def _write_tokenizer(path, specials=("<s>", "</s>", "<pad>")):
  """A tiny BPE tokenizer.json trained on a few sentences (no download)."""
  tokenizers = pytest.importorskip("tokenizers", reason="tokenizers not installed (prefjax[lm])")
  tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=["<unk>", *specials],
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(["the cat sat on the mat", "the dog ate the cat food"] * 10, trainer)
  tok.save(str(path))
  return tok


def test_hf_tokenizer_matches_tokenizers_and_finds_specials(tmp_path):
  raw = _write_tokenizer(tmp_path / "tokenizer.json")
  for spec in (tmp_path / "tokenizer.json", str(tmp_path)):  # the file or its directory
    tok = tokenizer_lib.load_tokenizer(spec)
    assert isinstance(tok, tokenizer_lib.HFTokenizer)
    assert tok.vocab_size == raw.get_vocab_size(with_added_tokens=True)
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == tuple(
        raw.token_to_id(t) for t in ("<s>", "</s>", "<pad>"))
    text = "the cat ate the dog food"
    assert tok.encode(text) == raw.encode(text, add_special_tokens=False).ids
    assert tok.decode([tok.bos_id] + tok.encode(text) + [tok.eos_id]) == text


def test_hf_tokenizer_special_tokens_from_config_and_arguments(tmp_path):
  raw = _write_tokenizer(tmp_path / "tokenizer.json", specials=("[A]", "[B]", "[C]"))
  with pytest.raises(PrefjaxError, match="no EOS token"):
    tokenizer_lib.load_tokenizer(tmp_path)
  with open(tmp_path / "tokenizer_config.json", "w") as f:
    json.dump({"eos_token": {"content": "[B]"}, "bos_token": "[A]"}, f)
  tok = tokenizer_lib.load_tokenizer(tmp_path)
  assert (tok.bos_id, tok.eos_id) == (raw.token_to_id("[A]"), raw.token_to_id("[B]"))
  assert tok.pad_id == tok.eos_id  # no pad token: EOS pads (masked out anyway)
  tok = tokenizer_lib.load_tokenizer(tmp_path, pad_token="[C]", eos_token="[A]")
  assert (tok.pad_id, tok.eos_id) == (raw.token_to_id("[C]"), raw.token_to_id("[A]"))
  with pytest.raises(PrefjaxError, match="not in the vocabulary"):
    tokenizer_lib.load_tokenizer(tmp_path, bos_token="<nope>")


def test_missing_or_broken_tokenizer_file_is_a_clear_error(tmp_path):
  with pytest.raises(PrefjaxError, match="tokenizer file .*nope.json.* does not exist"):
    tokenizer_lib.load_tokenizer(tmp_path / "nope.json")
  with pytest.raises(PrefjaxError, match="does not exist"):
    tokenizer_lib.load_tokenizer(tmp_path)  # a directory without tokenizer.json
  pytest.importorskip("tokenizers", reason="tokenizers not installed (prefjax[lm])")
  (tmp_path / "tokenizer.json").write_text("{not json")
  with pytest.raises(PrefjaxError, match="cannot parse"):
    tokenizer_lib.load_tokenizer(tmp_path / "tokenizer.json")
  with pytest.raises(PrefjaxError, match="expected 'byte' or a path"):
    tokenizer_lib.load_tokenizer(3)


_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start|>{{ m['role'] }}\n{{ m['content'] }}"
             "<|end|>{% endfor %}{% if add_generation_prompt %}<|start|>assistant\n{% endif %}")


def test_hf_chat_template_renders_and_drives_the_data_pipeline(tmp_path):
  pytest.importorskip("jinja2", reason="jinja2 not installed: HF chat templates are skipped")
  from prefjax.lm import data  # pylint: disable=g-import-not-at-top
  raw = _write_tokenizer(tmp_path / "tokenizer.json", specials=("<s>", "<|end|>", "<|start|>"))
  with open(tmp_path / "tokenizer_config.json", "w") as f:
    json.dump({"bos_token": "<s>", "eos_token": "<|end|>", "chat_template": _TEMPLATE}, f)
  tok = tokenizer_lib.load_tokenizer(tmp_path)
  msgs = [{"role": "user", "content": "the cat"}]
  # BOS string dropped (the pipeline adds the id); the final EOS string of a finished conversation too.
  assert tok.chat_template(msgs, True) == "<|start|>user\nthe cat<|end|><|start|>assistant\n"
  assert tok.chat_template(msgs + [{"role": "assistant", "content": "sat"}], False) == (
      "<|start|>user\nthe cat<|end|><|start|>assistant\nsat")
  ds = data.PreferenceDataset.from_rows(
      [{"prompt": msgs, "chosen": [{"role": "assistant", "content": "sat"}],
        "rejected": [{"role": "assistant", "content": "ate"}]}], tokenizer=tok, max_length=32)
  end, start = raw.token_to_id("<|end|>"), raw.token_to_id("<|start|>")
  assert ds.prompts[0][0] == raw.token_to_id("<s>") and start in ds.prompts[0].tolist()
  assert ds.chosen[0].tolist() == raw.encode("sat", add_special_tokens=False).ids + [end]
  assert ds.chosen[0].tolist().count(end) == 1  # one end-of-turn token, not two
  with open(tmp_path / "tokenizer_config.json", "w") as f:
    json.dump({"eos_token": "<|end|>", "chat_template": "{% if %}"}, f)
  with pytest.raises(PrefjaxError, match="cannot compile the chat_template"):
    tokenizer_lib.load_tokenizer(tmp_path)

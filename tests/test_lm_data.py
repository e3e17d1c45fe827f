"""Tests for prefjax.lm.data: JSONL preference data, validation, truncation, batching, iterator state."""

import json
import logging

import numpy as np
import pytest

from prefjax.errors import PrefjaxError
from prefjax.lm import data
from prefjax.lm.tokenizer import ByteTokenizer

_TOK = ByteTokenizer()
BOS, EOS, PAD = _TOK.bos_id, _TOK.eos_id, _TOK.pad_id


def _write(path, rows):
  """Writes rows (dicts, or raw strings written as they are) as JSONL; returns the path as str."""
  with open(path, "w", encoding="utf-8") as f:
    for r in rows:
      f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
  return str(path)


def _expected_row(prompt_ids, response_ids, length):
  """Independent layout: tokens, loss mask and attention mask of one padded row."""
  toks = list(prompt_ids) + list(response_ids)
  pad = length - len(toks)
  return (np.array(toks + [PAD] * pad), np.array([0] * len(prompt_ids) + [1] * len(response_ids)
                                                 + [0] * pad),
          np.array([1] * len(toks) + [0] * pad))


def _bytes(s):
  return list(s.encode("utf-8"))


def test_pairwise_batch_layout_and_masks(tmp_path):
  rows = [{"prompt": "Q: 2+2?", "chosen": " 4", "rejected": " five"},
          {"prompt": "héllo", "chosen": "wörld", "rejected": "there"}]
  ds = data.PreferenceDataset.from_jsonl(_write(tmp_path / "p.jsonl", rows), max_length=24)
  batch = ds.collate([1, 0])
  assert sorted(batch) == sorted(data.PAIR_KEYS)
  for k, v in batch.items():
    assert v.dtype == np.int32 and v.shape == (2, 24), k
  for b, row in zip((0, 1), (rows[1], rows[0])):
    prompt = [BOS] + _bytes(row["prompt"])
    for side in ("chosen", "rejected"):
      t, l, a = _expected_row(prompt, _bytes(row[side]) + [EOS], 24)
      np.testing.assert_array_equal(batch[f"{side}_tokens_BxL"][b], t)
      np.testing.assert_array_equal(batch[f"{side}_loss_mask_BxL"][b], l)
      np.testing.assert_array_equal(batch[f"{side}_attention_mask_BxL"][b], a)
      # The loss mask selects exactly the response + EOS, never a prompt token.
      scored = batch[f"{side}_tokens_BxL"][b][batch[f"{side}_loss_mask_BxL"][b] == 1]
      assert _TOK.decode(scored) == row[side] and scored[-1] == EOS
  assert not batch["chosen_loss_mask_BxL"][:, 0].any()


def test_batches_feed_sequence_logps():
  jnp = pytest.importorskip("jax.numpy")
  from prefjax.lm.logprobs import sequence_logps  # pylint: disable=g-import-not-at-top
  ds = data.PreferenceDataset.from_rows(
      [{"prompt": "ab", "chosen": "cd", "rejected": "efg"}], max_length=10)
  batch = next(ds.iterator(2, seed=0))
  logits = np.random.default_rng(0).normal(size=(2, 10, _TOK.vocab_size)).astype(np.float32)
  out = sequence_logps(jnp.asarray(logits), batch["rejected_tokens_BxL"],
                       batch["rejected_loss_mask_BxL"])
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  toks = batch["rejected_tokens_BxL"][0]
  manual = sum(logp[0, t - 1, toks[t]] for t in range(3, 7))  # "efg" + EOS at columns 3..6
  np.testing.assert_allclose(out.logps[0], manual, rtol=1e-5)
  np.testing.assert_array_equal(out.counts, [4, 4])


def test_round_trip_through_jsonl_and_decode(tmp_path):
  rng = np.random.default_rng(1)
  alphabet = list("abc xyz—é🙂\n")
  rows = [{"prompt": "".join(rng.choice(alphabet, 5)), "chosen": "C" + "".join(rng.choice(alphabet, 7)),
           "rejected": "R" + "".join(rng.choice(alphabet, 3))} for _ in range(7)]
  ds = data.PreferenceDataset.from_jsonl(_write(tmp_path / "r.jsonl", rows), max_length=64)
  assert len(ds) == 7 and ds.report.kept == 7 and ds.report.num_dropped == 0
  for i, row in enumerate(rows):
    assert ds.prompts[i][0] == BOS and _TOK.decode(ds.prompts[i]) == row["prompt"]
    assert ds.chosen[i][-1] == EOS and _TOK.decode(ds.chosen[i]) == row["chosen"]
    assert _TOK.decode(ds.rejected[i]) == row["rejected"]
  assert ds.where[3] == f"{tmp_path / 'r.jsonl'}:4"


def test_hf_tokenizer_dataset_uses_its_ids(tmp_path):
  tokenizers = pytest.importorskip("tokenizers", reason="tokenizers not installed (prefjax[lm])")
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(
      {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "c": 5}, unk_token="<unk>"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok.save(str(tmp_path / "tokenizer.json"))
  ds = data.PreferenceDataset.from_rows([{"prompt": "a b", "chosen": "c", "rejected": "a a"}],
                                        tokenizer=str(tmp_path / "tokenizer.json"), max_length=8)
  batch = ds.collate([0])
  # No pad token: EOS (2) pads; BOS is <s> (1).
  np.testing.assert_array_equal(batch["chosen_tokens_BxL"][0], [1, 3, 4, 5, 2, 2, 2, 2])
  np.testing.assert_array_equal(batch["rejected_loss_mask_BxL"][0], [0, 0, 0, 1, 1, 1, 0, 0])
  data.check_vocab(ds.tokenizer, 6)
  with pytest.raises(PrefjaxError, match="vocab_size is 5"):
    data.check_vocab(ds.tokenizer, 5)
  with pytest.raises(PrefjaxError, match="does not exist"):
    data.PreferenceDataset.from_rows([], tokenizer=str(tmp_path / "missing.json"))


def test_chat_message_layouts_agree():
  q = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi?"}]
  a, b = {"role": "assistant", "content": "hello"}, {"role": "assistant", "content": "go away"}
  layouts = [
      {"prompt": q, "chosen": [a], "rejected": [b]},  # TRL conversational
      {"prompt": q, "chosen": q + [a], "rejected": q + [b]},  # whole conversations (UltraFeedback)
      {"chosen": q + [a], "rejected": q + [b]},  # implicit prompt: the shared message prefix
  ]
  ds = data.PreferenceDataset.from_rows(layouts, max_length=128)
  prompt_text = "<|system|>\nbe brief\n<|user|>\nhi?\n<|assistant|>\n"
  for i in range(3):
    assert _TOK.decode(ds.prompts[i]) == prompt_text
    assert _TOK.decode(ds.chosen[i]) == "hello\n"
    assert _TOK.decode(ds.rejected[i]) == "go away\n"
  # A string prompt with message-list responses: the prompt is one user message.
  ds = data.PreferenceDataset.from_rows(
      [{"prompt": "hi?", "chosen": [{"role": "user", "content": "hi?"}, a], "rejected": [b]}],
      max_length=128)
  assert _TOK.decode(ds.prompts[0]) == "<|user|>\nhi?\n<|assistant|>\n"
  assert _TOK.decode(ds.chosen[0]) == "hello\n" and _TOK.decode(ds.rejected[0]) == "go away\n"
  # Implicit prompt when one conversation extends the other: every response keeps a message.
  u2 = {"role": "user", "content": "more"}
  ds = data.PreferenceDataset.from_rows([{"chosen": q + [a], "rejected": q + [a, u2, b]}],
                                        max_length=128)
  assert _TOK.decode(ds.prompts[0]) == prompt_text and _TOK.decode(ds.chosen[0]) == "hello\n"
  assert _TOK.decode(ds.rejected[0]) == "hello\n<|user|>\nmore\n<|assistant|>\ngo away\n"


def test_custom_chat_template():
  def template(messages, add_generation_prompt):
    text = "".join(f"[{m['role'].upper()}] {m['content']} " for m in messages)
    return text + "[ASSISTANT] " if add_generation_prompt else text
  ds = data.PreferenceDataset.from_rows(
      [{"prompt": [{"role": "user", "content": "x"}], "chosen": [{"role": "assistant", "content": "y"}],
        "rejected": [{"role": "assistant", "content": "z"}]}], max_length=64, chat_template=template)
  assert _TOK.decode(ds.prompts[0]) == "[USER] x [ASSISTANT] "
  assert _TOK.decode(ds.chosen[0]) == "y "
  # Empty content is an empty response even when the template renders it as non-blank text.
  ds = data.PreferenceDataset.from_rows(
      [{"prompt": "x", "chosen": [{"role": "assistant", "content": " "}], "rejected": "z"},
       {"prompt": "x", "chosen": "y", "rejected": "z"}], max_length=64, chat_template=template)
  assert ds.report.dropped == {"empty_chosen": 1}

  def bad(messages, add_generation_prompt):
    return ("G" if add_generation_prompt else "") + "".join(m["content"] for m in messages)
  with pytest.raises(PrefjaxError, match="<memory>:1.*chat template"):
    data.PreferenceDataset.from_rows(
        [{"prompt": [{"role": "user", "content": "x"}],
          "chosen": [{"role": "assistant", "content": "y"}],
          "rejected": [{"role": "assistant", "content": "z"}]}], chat_template=bad)


def test_prompt_first_truncation_cuts_exactly_what_the_policy_says():
  prompt, short, long = "abcdefghi", "xyz", "uvwxyzuvw"  # 10, 4 and 10 tokens with BOS / EOS
  # L = 16, P = 6: R = 10, the prompt keeps max(P, L - R) = 6 tokens: BOS + its last 5 bytes.
  ds = data.PreferenceDataset.from_rows([{"prompt": prompt, "chosen": short, "rejected": long}],
                                        max_length=16, max_prompt_length=6)
  np.testing.assert_array_equal(ds.prompts[0], [BOS] + _bytes("efghi"))
  np.testing.assert_array_equal(ds.rejected[0], _bytes(long) + [EOS])
  assert (ds.report.truncated_prompts, ds.report.truncated_responses) == (1, 0)
  # P = 8: the prompt keeps 8 tokens, leaving 8 for responses: the long one loses its last 2 (EOS).
  ds = data.PreferenceDataset.from_rows([{"prompt": prompt, "chosen": short, "rejected": long}],
                                        max_length=16, max_prompt_length=8)
  np.testing.assert_array_equal(ds.prompts[0], [BOS] + _bytes("cdefghi"))
  np.testing.assert_array_equal(ds.chosen[0], _bytes(short) + [EOS])
  np.testing.assert_array_equal(ds.rejected[0], _bytes(long)[:8])
  assert (ds.report.truncated_prompts, ds.report.truncated_responses) == (1, 1)
  batch = ds.collate([0])
  assert batch["rejected_attention_mask_BxL"][0].all()  # exactly L tokens
  # A short prompt is not cut below its length; only the response is.
  ds = data.PreferenceDataset.from_rows([{"prompt": "ab", "chosen": "x" * 30, "rejected": "y"}],
                                        max_length=16, max_prompt_length=8)
  np.testing.assert_array_equal(ds.prompts[0], [BOS] + _bytes("ab"))
  assert len(ds.chosen[0]) == 13 and ds.report.truncated_prompts == 0
  # Responses identical after truncation are dropped and counted.
  ds = data.PreferenceDataset.from_rows(
      [{"prompt": "p", "chosen": "same prefix A", "rejected": "same prefix B"},
       {"prompt": "p", "chosen": "a", "rejected": "b"}], max_length=8)
  assert ds.report.dropped == {"identical_after_truncation": 1} and len(ds) == 1


def test_drops_are_counted_reported_and_logged(tmp_path, caplog):
  rows = [
      {"prompt": "p", "chosen": "good", "rejected": "bad"},
      {"prompt": "p", "chosen": "", "rejected": "bad"},
      {"prompt": "p", "chosen": "good", "rejected": "  \n"},
      {"prompt": "p", "chosen": "same", "rejected": "same"},
      {"prompt": "x" * 40, "chosen": "good", "rejected": "bad"},
      {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": ""}],
       "rejected": [{"role": "assistant", "content": "b"}]},
      {"prompt": "p", "chosen": "fine", "rejected": "also fine"},
  ]
  path = _write(tmp_path / "d.jsonl", rows[:4] + [""] + rows[4:])  # a blank line is skipped
  with caplog.at_level(logging.WARNING, logger="prefjax.lm.data"):
    ds = data.PreferenceDataset.from_jsonl(path, max_length=32)
  r = ds.report
  assert (r.rows, r.kept, len(ds)) == (7, 2, 2)
  assert r.dropped == {"empty_chosen": 2, "empty_rejected": 1, "identical": 1, "prompt_too_long": 1}
  assert r.dropped_lines["empty_chosen"] == [f"{path}:2", f"{path}:7"]
  assert r.dropped_lines["prompt_too_long"] == [f"{path}:6"]
  assert "5 dropped" in str(r) and "prompt_too_long" in caplog.text
  json.dumps(r.to_dict())  # serialisable for summary.json
  # long_prompt="truncate" keeps the long prompt, cut by rule 2 to max(P, L - R) = 32 - 5 tokens.
  ds = data.PreferenceDataset.from_jsonl(path, max_length=32, long_prompt="truncate")
  assert "prompt_too_long" not in ds.report.dropped and len(ds) == 3
  np.testing.assert_array_equal(ds.prompts[1], [BOS] + _bytes("x" * 26))
  with pytest.raises(PrefjaxError, match="no usable rows"):
    data.PreferenceDataset.from_rows([rows[1], rows[3]])


@pytest.mark.parametrize("line,match", [
    ('{"prompt": "p", "chosen": "a"', "invalid JSON"),
    ('["p", "a", "b"]', "must be a JSON object"),
    ('{"prompt": "p", "rejected": "b"}', "missing field 'chosen'"),
    ('{"prompt": "p", "chosen": 3, "rejected": "b"}', "'chosen' must be a string or a list"),
    ('{"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"}', r"'prompt'\[0\] must be"),
    ('{"chosen": "a", "rejected": "b"}', "missing field 'prompt'"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, match):
  good = {"prompt": "p", "chosen": "a", "rejected": "b"}
  path = _write(tmp_path / "m.jsonl", [good, good, line, good])
  with pytest.raises(PrefjaxError, match=f"m.jsonl:3: .*{match}"):
    data.PreferenceDataset.from_jsonl(path, max_length=16)
  ds = data.PreferenceDataset.from_jsonl(path, max_length=16, on_malformed="drop")
  assert ds.report.dropped == {"malformed": 1} and ds.report.dropped_lines["malformed"] == [
      f"{path}:3"] and len(ds) == 3


def test_scored_pairs_load_collate_and_iterate_in_step(tmp_path):
  rows = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "chosen_score": 5 - i / 4,
           "rejected_score": -i} for i in range(6)]
  rows[2]["chosen"] = " "  # dropped (empty_chosen): the scores of the rows after it stay with their rows
  path = _write(tmp_path / "s.jsonl", rows)
  ds = data.PreferenceDataset.from_jsonl(path, max_length=12)
  kept = [0, 1, 3, 4, 5]
  assert ds.has_scores and len(ds) == 5 and ds.report.dropped == {"empty_chosen": 1}
  assert ds.chosen_scores.dtype == np.float32 and ds.rejected_scores.dtype == np.float32
  np.testing.assert_array_equal(ds.chosen_scores, np.float32([5 - i / 4 for i in kept]))
  np.testing.assert_array_equal(ds.rejected_scores, np.float32([-i for i in kept]))
  batch = ds.collate([3, 0, 4])
  assert sorted(batch) == sorted(data.PAIR_KEYS + data.SCORE_KEYS)
  for k in data.SCORE_KEYS:
    assert batch[k].dtype == np.float32 and batch[k].shape == (3,), k
  np.testing.assert_array_equal(batch["chosen_score_B"], np.float32([4, 5, 3.75]))  # rows 4, 0 and 5 of the file
  np.testing.assert_array_equal(batch["rejected_score_B"], np.float32([-4, 0, -5]))
  # Shuffled batches (and the in-order evaluation batches) carry each pair's own scores.
  for batch in [next(ds.iterator(3, seed=s)) for s in range(3)] + list(ds.batches(2)):
    ids = _ids(batch)
    np.testing.assert_array_equal(batch["chosen_score_B"], np.float32([5 - i / 4 for i in ids]))
    np.testing.assert_array_equal(batch["rejected_score_B"], np.float32([-i for i in ids]))
  # Packed batches leave the scores out.
  assert sorted(next(ds.iterator(2, seed=0, pack_segments=2))) == sorted(data.PACKED_KEYS)
  # Without scores: no score keys.
  plain = _dataset(4)
  assert not plain.has_scores and plain.chosen_scores is None and plain.rejected_scores is None
  assert sorted(plain.collate([0, 1])) == sorted(data.PAIR_KEYS)
  assert sorted(next(plain.iterator(2))) == sorted(data.PAIR_KEYS)
  # The first KEPT row decides: an unscored row dropped for another reason does not make the file unscored.
  ds = data.PreferenceDataset.from_rows([{"prompt": "p", "chosen": "", "rejected": "b"}] + rows[:2], max_length=12)
  assert ds.has_scores and ds.report.dropped == {"empty_chosen": 1}
  np.testing.assert_array_equal(ds.chosen_scores, np.float32([5, 4.75]))


_SCORED = {"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": 2, "rejected_score": 1.5}
_UNSCORED = {"prompt": "p", "chosen": "a", "rejected": "b"}


@pytest.mark.parametrize("good,line,match", [
    (_SCORED, '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": 1}',
     "field 'chosen_score' without 'rejected_score'"),
    (_SCORED, '{"prompt": "p", "chosen": "a", "rejected": "b", "rejected_score": 1}',
     "field 'rejected_score' without 'chosen_score'"),
    (_SCORED, '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": true, "rejected_score": 1}',
     r"field 'chosen_score' must be a finite number \(not a boolean\), got bool"),
    (_SCORED, '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": 1, "rejected_score": "1.0"}',
     "field 'rejected_score' must be a finite number .*got str"),
    (_SCORED, '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": 1, "rejected_score": null}',
     "field 'rejected_score' must be a finite number .*got NoneType"),
    (_SCORED, '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": NaN, "rejected_score": 1}',
     "field 'chosen_score' must be a finite number"),
    (_SCORED, '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": 1, "rejected_score": Infinity}',
     "field 'rejected_score' must be a finite number"),
    (_SCORED, '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": -Infinity, "rejected_score": 1}',
     "field 'chosen_score' must be a finite number"),
    (_SCORED, '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": 1e300, "rejected_score": 1}',
     "field 'chosen_score' must be a finite number \\(within float32 range: chosen_score_B is float32\\)"),
    (_SCORED, '{"prompt": "p", "chosen": "a", "rejected": "b"}',
     r"fields 'chosen_score' and 'rejected_score' missing, but the first kept row \(.*m.jsonl:1\) has them"),
    (_UNSCORED, '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": 1, "rejected_score": 0}',
     r"fields 'chosen_score' and 'rejected_score' present, but the first kept row \(.*m.jsonl:1\) has no scores"),
])
def test_malformed_scores_name_file_line_and_field(tmp_path, good, line, match):
  path = _write(tmp_path / "m.jsonl", [good, good, line, good])
  with pytest.raises(PrefjaxError, match=f"m.jsonl:3: malformed preference row: {match}"):
    data.PreferenceDataset.from_jsonl(path, max_length=16)
  ds = data.PreferenceDataset.from_jsonl(path, max_length=16, on_malformed="drop")
  assert ds.report.dropped == {"malformed": 1} and ds.report.dropped_lines["malformed"] == [f"{path}:3"]
  assert len(ds) == 3 and ds.has_scores == (good is _SCORED)
  if ds.has_scores:
    np.testing.assert_array_equal(ds.chosen_scores, np.float32([2, 2, 2]))
    np.testing.assert_array_equal(ds.rejected_scores, np.float32([1.5, 1.5, 1.5]))
    assert sorted(ds.collate([0])) == sorted(data.PAIR_KEYS + data.SCORE_KEYS)


def test_bad_options_and_missing_file(tmp_path):
  with pytest.raises(PrefjaxError, match="does not exist"):
    data.PreferenceDataset.from_jsonl(tmp_path / "none.jsonl")
  row = [{"prompt": "p", "chosen": "a", "rejected": "b"}]
  for kwargs, match in ((dict(max_length=1), "max_length"),
                        (dict(max_length=8, max_prompt_length=8), "max_prompt_length"),
                        (dict(on_malformed="skip"), "on_malformed"),
                        (dict(long_prompt="cut"), "long_prompt")):
    with pytest.raises(PrefjaxError, match=match):
      data.PreferenceDataset.from_rows(row, **kwargs)


def _dataset(n=10):
  return data.PreferenceDataset.from_rows(
      [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(n)], max_length=12)


def _ids(batch):
  """The example indices of a batch (decoded from the prompt "p<i>")."""
  prompt_BxL = (batch["chosen_attention_mask_BxL"] == 1) & (batch["chosen_loss_mask_BxL"] == 0)
  return [int(_TOK.decode(row[m])[1:]) for row, m in zip(batch["chosen_tokens_BxL"], prompt_BxL)]


def test_shuffling_is_deterministic_and_each_epoch_a_permutation():
  ds = _dataset(10)
  take = lambda it, k: [_ids(next(it)) for _ in range(k)]
  a, b = take(ds.iterator(4, seed=3), 5), take(ds.iterator(4, seed=3), 5)
  assert a == b
  assert take(ds.iterator(4, seed=4), 5) != a
  stream = sum(a, [])  # 20 examples = 2 epochs, batches spanning the epoch boundary
  assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
  assert stream[:10] != stream[10:]
  assert stream[:10] == data.epoch_permutation(10, 3, 0).tolist()
  assert sum(take(ds.iterator(5, shuffle=False), 2), []) == list(range(10))


def test_iterator_state_resume_gives_the_same_following_batches():
  ds = _dataset(7)
  it = ds.iterator(3, seed=11)
  for _ in range(4):
    next(it)
  state = json.loads(json.dumps(it.state()))  # through JSON, as in a checkpoint
  assert all(isinstance(v, int) for v in state.values())
  following = [next(it) for _ in range(5)]
  resumed = ds.iterator(3, seed=11, state=state)
  for want in following:
    got = next(resumed)
    for k in data.PAIR_KEYS:
      np.testing.assert_array_equal(got[k], want[k])
  with pytest.raises(PrefjaxError, match="for 7 examples, this dataset has 10"):
    _dataset(10).iterator(3, seed=11, state=state)
  with pytest.raises(PrefjaxError, match="seed=11"):
    ds.iterator(3, seed=12, state=state)
  with pytest.raises(PrefjaxError, match="lacks"):
    ds.iterator(3, seed=11, state={"epoch": 0})


def test_num_epochs_and_eval_batches():
  ds = _dataset(7)
  it = ds.iterator(3, seed=0, num_epochs=2)
  batches = list(it)
  assert len(batches) == 4 and it.skipped_at_end == 2  # 14 examples: 4 batches of 3, 2 left
  evals = list(ds.batches(3))
  assert [len(b["chosen_tokens_BxL"]) for b in evals] == [3, 3, 1]
  assert sum((_ids(b) for b in evals), []) == list(range(7))


def test_multi_response_rows(tmp_path):
  rows = [{"prompt": "q", "responses": ["a", "bb", "ccc"], "scores": [0.5, 1, -2]},
          {"prompt": "q", "responses": ["a", "", "c"], "scores": [0, 0, 0]},
          {"prompt": "q", "responses": ["a", "a", "a"], "scores": [1, 2, 3]},
          {"prompt": [{"role": "user", "content": "hi"}],
           "responses": [[{"role": "assistant", "content": "x"}], "y", "z"], "scores": [3, 2, 1]}]
  ds = data.MultiResponseDataset.from_jsonl(_write(tmp_path / "k.jsonl", rows), max_length=40)
  assert ds.num_responses == 3 and len(ds) == 2
  assert ds.report.dropped == {"empty_response": 1, "identical": 1}
  batch = ds.collate([0, 1])
  assert batch["tokens_BxKxL"].shape == (2, 3, 40) and batch["tokens_BxKxL"].dtype == np.int32
  np.testing.assert_array_equal(batch["scores_BxK"], np.float32([[0.5, 1, -2], [3, 2, 1]]))
  for j, resp in enumerate(["a", "bb", "ccc"]):
    t, l, a = _expected_row([BOS] + _bytes("q"), _bytes(resp) + [EOS], 40)
    np.testing.assert_array_equal(batch["tokens_BxKxL"][0, j], t)
    np.testing.assert_array_equal(batch["loss_mask_BxKxL"][0, j], l)
    np.testing.assert_array_equal(batch["attention_mask_BxKxL"][0, j], a)
  assert _TOK.decode(batch["tokens_BxKxL"][1, 0][batch["loss_mask_BxKxL"][1, 0] == 1]) == "x\n"
  it = ds.iterator(2, seed=0)
  next(it)
  state = it.state()
  want = next(it)
  np.testing.assert_array_equal(next(ds.iterator(2, seed=0, state=state))["scores_BxK"],
                                want["scores_BxK"])


@pytest.mark.parametrize("row,match", [
    ({"prompt": "q", "responses": ["a", "b"], "scores": [1, 2]}, "2 responses, but the dataset has K = 3"),
    ({"prompt": "q", "responses": ["a", "b", "c"], "scores": [1, 2]}, "3 finite numbers"),
    ({"prompt": "q", "responses": ["a", "b", "c"], "scores": [1, float("nan"), 2]}, "finite"),
    ({"prompt": "q", "responses": "abc", "scores": [1, 2, 3]}, "at least 2 responses"),
])
def test_multi_response_malformed(tmp_path, row, match):
  good = {"prompt": "q", "responses": ["a", "b", "c"], "scores": [1, 2, 3]}
  path = _write(tmp_path / "k.jsonl", [good, row])
  with pytest.raises(PrefjaxError, match=f"k.jsonl:2: .*{match}"):
    data.MultiResponseDataset.from_jsonl(path)


def test_packing_layout_state_and_segment_sums():
  rows = [{"prompt": f"p{i}", "chosen": "c" * (1 + i % 4), "rejected": "r" * (1 + (i * 3) % 5)}
          for i in range(9)]
  ds = data.PreferenceDataset.from_rows(rows, max_length=20)
  it = ds.iterator(2, seed=5, pack_segments=3)
  batches = [next(it) for _ in range(4)]
  stream = np.concatenate([data.epoch_permutation(9, 5, e) for e in range(4)]).tolist()
  position = 0
  for batch in batches:
    seen = []
    assert sorted(batch) == sorted(data.PACKED_KEYS)
    for b in range(2):
      for side in ("chosen", "rejected"):
        seg = batch[f"{side}_segment_ids_BxL"][b]
        n = batch["num_pairs_B"][b]
        assert 1 <= n <= 3 and seg.max() == n
        np.testing.assert_array_equal(seg > 0, batch[f"{side}_attention_mask_BxL"][b] == 1)
        for s in range(1, n + 1):
          m = seg == s
          toks, loss = batch[f"{side}_tokens_BxL"][b][m], batch[f"{side}_loss_mask_BxL"][b][m]
          np.testing.assert_array_equal(batch[f"{side}_positions_BxL"][b][m], np.arange(m.sum()))
          i = int(_TOK.decode(toks[loss == 0])[1:])  # the segment's prompt names its example
          if side == "chosen":
            seen.append(i)
          assert toks[0] == BOS and _TOK.decode(toks[loss == 1]) == rows[i][side]
    # Each batch packs the next consecutive examples of the unpacked iterator's stream.
    assert len(seen) == batch["num_pairs_B"].sum()
    assert sorted(seen) == sorted(stream[position:position + len(seen)])
    position += len(seen)
  assert max(b["num_pairs_B"].max() for b in batches) >= 2  # rows really hold several pairs
  # Resuming gives the same packed batches.
  it = ds.iterator(2, seed=5, pack_segments=3)
  next(it)
  state = it.state()
  want = next(it)
  got = next(ds.iterator(2, seed=5, pack_segments=3, state=state))
  for k in data.PACKED_KEYS:
    np.testing.assert_array_equal(got[k], want[k])
  with pytest.raises(PrefjaxError, match="pack_segments"):
    ds.iterator(2, seed=5, state=state)
  # segment_sums == a loop over segments.
  vals = np.random.default_rng(0).normal(size=want["chosen_tokens_BxL"].shape)
  sums = data.segment_sums(vals, want["chosen_loss_mask_BxL"], want["chosen_segment_ids_BxL"], 3)
  for b in range(2):
    for s in range(3):
      m = (want["chosen_segment_ids_BxL"][b] == s + 1) & (want["chosen_loss_mask_BxL"][b] == 1)
      np.testing.assert_allclose(sums[b, s], vals[b][m].sum())


def _single_rows():
  return [{"prompt": "Q1", "completion": "good", "label": True},
          {"prompt": "Q2", "completion": "bad", "label": False},
          {"prompt": "Q1", "completion": "meh", "reward": -0.25},
          {"prompt": "Q3", "completion": "ok", "reward": 2},
          {"prompt": "Q2", "completion": "fine", "reward": 0.5}]


def test_single_response_rows_layout_prompt_ids_rewards_and_labels(tmp_path):
  rows = _single_rows()
  path = _write(tmp_path / "s.jsonl", rows)
  ds = data.SingleResponseDataset.from_jsonl(path, max_length=16)
  assert len(ds) == 5 and ds.report.kept == 5 and ds.report.num_dropped == 0 and ds.where[2] == f"{path}:3"
  # Prompt ids: shared by rows with the same prompt, distinct otherwise, in order of first appearance.
  np.testing.assert_array_equal(ds.prompt_ids, [0, 1, 0, 2, 1])
  assert ds.num_prompts == 3
  np.testing.assert_array_equal(ds.rewards, np.float32([1, 0, -0.25, 2, 0.5]))
  np.testing.assert_array_equal(ds.labels, [1, 0, -1, -1, -1])
  batch = ds.collate([3, 0, 2, 1])
  assert sorted(batch) == sorted(data.SINGLE_KEYS)
  for k in data.SINGLE_KEYS[:3]:
    assert batch[k].dtype == np.int32 and batch[k].shape == (4, 16), k
  assert batch["prompt_id_B"].dtype == np.int32 and batch["label_B"].dtype == np.int32
  assert batch["reward_B"].dtype == np.float32
  np.testing.assert_array_equal(batch["prompt_id_B"], [2, 0, 0, 1])
  np.testing.assert_array_equal(batch["reward_B"], np.float32([2, 1, -0.25, 0]))
  np.testing.assert_array_equal(batch["label_B"], [-1, 1, -1, 0])
  for b, i in enumerate([3, 0, 2, 1]):
    t, l, a = _expected_row([BOS] + _bytes(rows[i]["prompt"]), _bytes(rows[i]["completion"]) + [EOS], 16)
    np.testing.assert_array_equal(batch["tokens_BxL"][b], t)
    np.testing.assert_array_equal(batch["loss_mask_BxL"][b], l)
    np.testing.assert_array_equal(batch["attention_mask_BxL"][b], a)
  assert not batch["loss_mask_BxL"][:, 0].any()
  data.check_single_batch(batch)
  # Chat messages as for chosen/rejected. Ids follow the prompt tokens: a string prompt with a string completion
  # is not templated, so "hi" there is another prompt than the chat prompt "hi".
  ds = data.SingleResponseDataset.from_rows(
      [{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yo"}],
        "label": True},
       {"prompt": "hi", "completion": "hey", "reward": 1.5},
       {"completion": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "no"}],
        "label": False}], max_length=64)
  assert _TOK.decode(ds.prompts[0]) == "<|user|>\nhi\n<|assistant|>\n" and _TOK.decode(ds.completions[0]) == "yo\n"
  assert _TOK.decode(ds.prompts[1]) == "hi" and _TOK.decode(ds.completions[1]) == "hey"
  assert _TOK.decode(ds.prompts[2]) == _TOK.decode(ds.prompts[0]) and _TOK.decode(ds.completions[2]) == "no\n"
  np.testing.assert_array_equal(ds.prompt_ids, [0, 1, 0])
  np.testing.assert_array_equal(ds.rewards, np.float32([1, 1.5, 0]))
  assert ds.num_prompts == 2


def test_single_response_prompt_ids_follow_the_truncated_prompt():
  # Prompts that differ only in bytes cut by prompt-first truncation share an id; ones that differ after do not.
  # L = 16, R = 12: each prompt keeps max(P, L - R) = 4 tokens, BOS + its last 3 bytes.
  rows = [{"prompt": "AAAAxyz", "completion": "c" * 11, "label": True},
          {"prompt": "BBBBxyz", "completion": "d" * 11, "label": False},
          {"prompt": "AAAAxyw", "completion": "e" * 11, "reward": 1.0}]
  ds = data.SingleResponseDataset.from_rows(rows, max_length=16, max_prompt_length=4)
  assert [_TOK.decode(p) for p in ds.prompts] == ["xyz", "xyz", "xyw"] and all(p[0] == BOS for p in ds.prompts)
  np.testing.assert_array_equal(ds.prompt_ids, [0, 0, 1])
  assert ds.num_prompts == 2 and ds.report.truncated_prompts == 3


def test_single_response_drops_are_counted_and_reported(tmp_path):
  rows = [{"prompt": "p", "completion": "good", "label": True},
          {"prompt": "p", "completion": "  \n", "label": False},
          {"prompt": "p", "completion": [{"role": "assistant", "content": ""}], "reward": 1},
          {"prompt": "x" * 40, "completion": "good", "reward": 0.0},
          {"prompt": "q", "completion": "fine", "reward": 3}]
  path = _write(tmp_path / "s.jsonl", rows)
  ds = data.SingleResponseDataset.from_jsonl(path, max_length=32)
  r = ds.report
  assert (r.rows, r.kept, len(ds)) == (5, 2, 2)
  assert r.dropped == {"empty_completion": 2, "prompt_too_long": 1}
  assert r.dropped_lines["empty_completion"] == [f"{path}:2", f"{path}:3"]
  assert r.dropped_lines["prompt_too_long"] == [f"{path}:4"]
  np.testing.assert_array_equal(ds.prompt_ids, [0, 1])
  np.testing.assert_array_equal(ds.rewards, np.float32([1, 3]))
  ds = data.SingleResponseDataset.from_jsonl(path, max_length=32, long_prompt="truncate")
  assert "prompt_too_long" not in ds.report.dropped and len(ds) == 3
  with pytest.raises(PrefjaxError, match="no usable rows"):
    data.SingleResponseDataset.from_rows([rows[1]])
  with pytest.raises(PrefjaxError, match="on_malformed"):
    data.SingleResponseDataset.from_rows(rows, on_malformed="skip")


@pytest.mark.parametrize("line,match", [
    ('{"prompt": "p", "completion": "a"}', "exactly one of fields 'label' and 'reward', got neither"),
    ('{"prompt": "p", "completion": "a", "label": true, "reward": 1}',
     "exactly one of fields 'label' and 'reward', got both"),
    ('{"prompt": "p", "completion": "a", "label": 1}', "field 'label' must be a JSON boolean"),
    ('{"prompt": "p", "completion": "a", "label": "true"}', "field 'label' must be a JSON boolean"),
    ('{"prompt": "p", "completion": "a", "reward": true}', "field 'reward' must be a finite number"),
    ('{"prompt": "p", "completion": "a", "reward": "1.0"}', "field 'reward' must be a finite number"),
    ('{"prompt": "p", "completion": "a", "reward": NaN}', "field 'reward' must be a finite number"),
    ('{"prompt": "p", "completion": "a", "reward": -Infinity}', "field 'reward' must be a finite number"),
    ('{"prompt": "p", "completion": "a", "reward": 1e300}', "field 'reward' must be a finite number"),
    ('{"prompt": "p", "label": true}', "missing field 'completion'"),
    ('{"prompt": "p", "completion": 3, "label": true}', "'completion' must be a string or a list"),
    ('{"prompt": "p", "completion": [{"role": "usr", "content": "a"}], "label": true}',
     r"'completion'\[0\] has unknown role"),
    ('{"completion": "a", "label": true}', "missing field 'prompt'"),
    ('["p", "a", true]', "must be a JSON object"),
])
def test_single_response_malformed_lines_name_file_line_and_field(tmp_path, line, match):
  good = {"prompt": "p", "completion": "a", "label": True}
  path = _write(tmp_path / "s.jsonl", [good, line, good])
  with pytest.raises(PrefjaxError, match=f"s.jsonl:2: malformed single-response row: .*{match}"):
    data.SingleResponseDataset.from_jsonl(path, max_length=16)
  ds = data.SingleResponseDataset.from_jsonl(path, max_length=16, on_malformed="drop")
  assert ds.report.dropped == {"malformed": 1} and ds.report.dropped_lines["malformed"] == [f"{path}:2"]
  assert len(ds) == 2 and ds.num_prompts == 1


def test_single_response_iterator_resumes():
  ds = data.SingleResponseDataset.from_rows(
      [{"prompt": f"p{i % 3}", "completion": f"c{i}", "reward": float(i)} for i in range(7)], max_length=12)
  assert ds.num_prompts == 3
  it = ds.iterator(3, seed=2)
  for _ in range(3):
    next(it)
  state = json.loads(json.dumps(it.state()))
  following = [next(it) for _ in range(4)]
  resumed = ds.iterator(3, seed=2, state=state)
  for want in following:
    got = next(resumed)
    data.check_single_batch(got)
    for k in data.SINGLE_KEYS:
      np.testing.assert_array_equal(got[k], want[k])
  evals = list(ds.batches(3))
  assert sum((b["reward_B"].tolist() for b in evals), []) == [float(i) for i in range(7)]


def _single_arrays(n=6, length=5):
  rng = np.random.default_rng(0)
  return {"tokens_BxL": rng.integers(0, 9, (n, length)), "loss_mask_BxL": np.ones((n, length), np.int32),
          "attention_mask_BxL": np.ones((n, length), np.int32), "prompt_id_B": np.arange(n) % 3,
          "reward_B": rng.normal(size=n), "label_B": np.array([1, 0, -1, -1, 1, 0])[:n]}


def test_single_arrays_iterator_and_defaults():
  arrays = _single_arrays()
  ds = data.SingleArrays(arrays)
  assert len(ds) == 6 and ds.num_prompts == 3 and ds.arrays["reward_B"].dtype == np.float32
  assert ds.arrays["prompt_id_B"].dtype == np.int32 and ds.arrays["label_B"].dtype == np.int32
  assert data.SingleArrays(arrays, num_prompts=10).num_prompts == 10
  no_label = {k: v for k, v in arrays.items() if k != "label_B"}
  np.testing.assert_array_equal(data.SingleArrays(no_label).arrays["label_B"], [-1] * 6)
  it = ds.iterator(4, seed=1)
  first = next(it)
  assert sorted(first) == sorted(data.SINGLE_KEYS)
  data.check_single_batch(first)
  state = json.loads(json.dumps(it.state()))
  want = [next(it) for _ in range(3)]
  resumed = ds.iterator(4, seed=1, state=state)
  for w in want:
    got = next(resumed)
    for k in data.SINGLE_KEYS:
      np.testing.assert_array_equal(got[k], w[k])


@pytest.mark.parametrize("change,match", [
    (lambda a: a.pop("reward_B"), r"missing \['reward_B'\]"),
    (lambda a: a.update(loss_mask_BxL=np.ones((6, 4), np.int32)), r"loss_mask_BxL has shape \(6, 4\)"),
    (lambda a: a.update(attention_mask_BxL=np.ones((5, 5), np.int32)), r"attention_mask_BxL has shape \(5, 5\)"),
    (lambda a: a.update(tokens_BxL=np.ones(6, np.int32)), r"tokens_BxL must be \[B, L\]"),
    (lambda a: a.update(prompt_id_B=np.zeros(5, np.int32)), r"prompt_id_B has shape \(5,\)"),
    (lambda a: a.update(reward_B=np.zeros(7)), r"reward_B has shape \(7,\)"),
    (lambda a: a.update(label_B=np.zeros((6, 1), np.int32)), r"label_B has shape \(6, 1\)"),
    (lambda a: a.update({k: a[k][:0] for k in data.SINGLE_KEYS}), r"tokens_BxL must be a non-empty \[N, L\]"),
    (lambda a: a.update(prompt_id_B=np.array([0, 1, -1, 0, 1, 2])), r"prompt_id_B must be >= 0; rows \[2\]"),
    (lambda a: a.update(prompt_id_B=np.arange(6) / 2), "prompt_id_B must hold integers"),
    (lambda a: a.update(label_B=np.array([1, 0, 2, 0, 1, 0])), r"label_B must be -1, 0 or 1; rows \[2\]"),
    (lambda a: a.update(reward_B=np.array([0, np.nan, 0, 0, np.inf, 0])), r"reward_B must be finite; rows \[1, 4\]"),
])
def test_single_arrays_checks_name_the_key(change, match):
  arrays = _single_arrays()
  change(arrays)
  with pytest.raises(PrefjaxError, match=f"SingleArrays.*{match}"):
    data.SingleArrays(arrays)


def test_single_arrays_num_prompts_must_exceed_every_id():
  with pytest.raises(PrefjaxError, match=r"num_prompts must be an integer exceeding every prompt_id_B \(max 2\)"):
    data.SingleArrays(_single_arrays(), num_prompts=2)


def test_check_single_batch():
  batch = {k: v[:4] for k, v in _single_arrays().items()}
  data.check_single_batch(batch)
  with pytest.raises(PrefjaxError, match=r"train batch is missing \['label_B'\]"):
    data.check_single_batch({k: v for k, v in batch.items() if k != "label_B"}, "train batch")
  with pytest.raises(PrefjaxError, match=r"batch: loss_mask_BxL has shape \(4, 3\), tokens_BxL \(4, 5\)"):
    data.check_single_batch(dict(batch, loss_mask_BxL=batch["loss_mask_BxL"][:, :3]))
  with pytest.raises(PrefjaxError, match=r"batch: reward_B has shape \(3,\), expected \(4,\)"):
    data.check_single_batch(dict(batch, reward_B=batch["reward_B"][:3]))
  with pytest.raises(PrefjaxError, match=r"batch: tokens_BxL must be \[B, L\]"):
    data.check_single_batch(dict(batch, tokens_BxL=batch["tokens_BxL"][None]))
  with pytest.raises(PrefjaxError, match="a single-response batch has"):
    data.check_single_batch({"tokens_BxL": batch["tokens_BxL"]})


def _pair_arrays(n=7, length=4):
  """Pair arrays whose column 0 names the row (tokens i), with scores 1.5 i and -i."""
  tokens = np.tile(np.arange(n)[:, None], (1, length))
  ones = np.ones((n, length), np.int32)
  return {"chosen_tokens_BxL": tokens, "chosen_loss_mask_BxL": ones, "chosen_attention_mask_BxL": ones,
          "rejected_tokens_BxL": tokens + 100, "rejected_loss_mask_BxL": ones, "rejected_attention_mask_BxL": ones,
          "chosen_score_B": 1.5 * np.arange(n), "rejected_score_B": -np.arange(n), "prompt": np.arange(n)}


def test_pair_arrays_keep_scores_in_step_with_the_pairs():
  arrays = _pair_arrays()
  ds = data.PairArrays(arrays)
  assert ds.has_scores and len(ds) == 7 and sorted(ds.arrays) == sorted(data.PAIR_KEYS + data.SCORE_KEYS)
  assert ds.arrays["chosen_score_B"].dtype == np.float32 and ds.arrays["rejected_score_B"].dtype == np.float32
  it = ds.iterator(3, seed=4)
  for _ in range(6):  # several epochs (each a new permutation, the remainder dropped)
    batch = next(it)
    rows = batch["chosen_tokens_BxL"][:, 0]
    np.testing.assert_array_equal(batch["rejected_tokens_BxL"][:, 0], rows + 100)
    np.testing.assert_array_equal(batch["chosen_score_B"], np.float32(1.5 * rows))
    np.testing.assert_array_equal(batch["rejected_score_B"], np.float32(-rows))
  state = json.loads(json.dumps(it.state()))
  want = [next(it) for _ in range(3)]
  resumed = ds.iterator(3, seed=4, state=state)
  for w in want:
    got = next(resumed)
    for k in data.PAIR_KEYS + data.SCORE_KEYS:
      np.testing.assert_array_equal(got[k], w[k])
  # Without the score keys: the pair keys only, as before.
  plain = data.PairArrays({k: v for k, v in arrays.items() if k not in data.SCORE_KEYS})
  assert not plain.has_scores and sorted(next(plain.iterator(3))) == sorted(data.PAIR_KEYS)
  # A scored PreferenceDataset's batch round-trips.
  ds = data.PreferenceDataset.from_rows([dict(_SCORED, chosen=f"c{i}", chosen_score=i) for i in range(4)],
                                        max_length=12)
  pairs = data.PairArrays(ds.collate(np.arange(4)))
  assert pairs.has_scores
  np.testing.assert_array_equal(pairs.arrays["chosen_score_B"], np.float32([0, 1, 2, 3]))
  assert not data.RankingArrays({"tokens_BxKxL": np.ones((2, 2, 3)), "loss_mask_BxKxL": np.ones((2, 2, 3)),
                                 "attention_mask_BxKxL": np.ones((2, 2, 3)), "scores_BxK": np.ones((2, 2))}).has_scores


@pytest.mark.parametrize("change,match", [
    (lambda a: a.pop("rejected_score_B"), "chosen_score_B without rejected_score_B"),
    (lambda a: a.pop("chosen_score_B"), "rejected_score_B without chosen_score_B"),
    (lambda a: a.update(chosen_score_B=np.zeros(6)), r"chosen_score_B has shape \(6,\), expected \(7,\)"),
    (lambda a: a.update(rejected_score_B=np.zeros((7, 1))), r"rejected_score_B has shape \(7, 1\), expected \(7,\)"),
    (lambda a: a.update(chosen_score_B=np.array([0, 1, np.nan, 0, 0, np.inf, 0])),
     r"chosen_score_B must be finite \(within float32 range\); rows \[2, 5\]"),
    (lambda a: a.update(rejected_score_B=np.array([0, 0, 0, 1e300, 0, 0, 0])),
     r"rejected_score_B must be finite \(within float32 range\); rows \[3\]"),
    (lambda a: a.update(chosen_score_B=np.array(["1"] * 7)), "chosen_score_B must hold numbers"),
    (lambda a: a.update(rejected_score_B=np.ones(7, bool)), "rejected_score_B must hold numbers, got dtype bool"),
])
def test_pair_arrays_score_checks_name_the_key(change, match):
  arrays = _pair_arrays()
  change(arrays)
  with pytest.raises(PrefjaxError, match=f"PairArrays: {match}"):
    data.PairArrays(arrays)


def test_ultrafeedback_score_names_are_the_same_score_fields(tmp_path):
  """ultrafeedback_binarized's `score_chosen` / `score_rejected` load as the scores; both names of one score in a
  row is malformed, naming the two fields."""
  path = tmp_path / "uf.jsonl"
  rows = [{"prompt": "q?", "chosen": "good", "rejected": "bad", "score_chosen": 8.5, "score_rejected": 3.0},
          {"prompt": "r?", "chosen": "fine", "rejected": "poor", "score_chosen": 7, "score_rejected": 7.5}]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  ds = data.PreferenceDataset.from_jsonl(str(path), max_length=32)
  assert ds.has_scores
  batch = ds.collate([0, 1])
  np.testing.assert_array_equal(batch["chosen_score_B"], np.asarray([8.5, 7.0], np.float32))
  np.testing.assert_array_equal(batch["rejected_score_B"], np.asarray([3.0, 7.5], np.float32))
  path.write_text(json.dumps({**rows[0], "chosen_score": 1.0}) + "\n", encoding="utf-8")
  with pytest.raises(PrefjaxError, match=r"uf.jsonl:1: .*'score_chosen' and 'chosen_score' are two names"):
    data.PreferenceDataset.from_jsonl(str(path), max_length=32)

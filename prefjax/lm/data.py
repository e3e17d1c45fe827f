"""Preference data for language models: JSONL loading, validation, tokenisation, truncation, batching.

Batch contract (what `prefjax.lm.train` consumes; every array is a numpy array):

  Pairwise (`PreferenceDataset`, JSONL rows {"prompt", "chosen", "rejected"}; `PAIR_KEYS`):
    chosen_tokens_BxL            int32  prompt + chosen response + EOS, right-padded with pad_id
    chosen_loss_mask_BxL         int32  1 on response tokens (EOS included), 0 on prompt and padding
    chosen_attention_mask_BxL    int32  1 on real tokens (prompt and response), 0 on padding
    rejected_tokens_BxL, rejected_loss_mask_BxL, rejected_attention_mask_BxL   the same for rejected
  Scored pairs (optional keys of the pairwise layout, `SCORE_KEYS`; rows that also have "chosen_score" and
  "rejected_score"; the "scored_pair" contract, whose MMPO soft margin reads the scores' difference):
    chosen_score_B               float32 the chosen response's quality score (e.g. UltraFeedback's rating)
    rejected_score_B             float32 the rejected response's quality score
                                        (present exactly when `dataset.has_scores`: every kept row has both;
                                        packed batches omit them)
  Multi-response (`MultiResponseDataset`, JSONL rows {"prompt", "responses", "scores"}):
    tokens_BxKxL, loss_mask_BxKxL, attention_mask_BxKxL   int32, as above for each of K responses
    scores_BxK                   float32 the row's scores (higher is better)
  Single-response (`SingleResponseDataset`, JSONL rows {"prompt", "completion", and "label" or "reward"}):
    tokens_BxL, loss_mask_BxL, attention_mask_BxL   int32, prompt + completion + EOS, as one side of a pair
    prompt_id_B                  int32  the index of the row's prompt among the dataset's distinct prompts
                                        (0..num_prompts-1, in order of first appearance; two rows have the same
                                        id exactly when their prompt token ids after truncation are equal);
                                        trainers that learn a per-prompt value V(x) index a table with it
    reward_B                     float32 the row's scalar reward; a row with a binary label instead has 1.0
                                        (desirable) or 0.0 (undesirable)
    label_B                      int32  1 desirable / 0 undesirable for labelled rows, -1 for rows that carry
                                        a reward and no label

  L is the dataset's `max_length` (fixed, so one compiled step serves every batch); B the batch size.
  Column 0 is always a prompt token (BOS), so `loss_mask[:, 0] == 0` as `prefjax.lm.logprobs` requires.

Iterator contract: `dataset.iterator(batch_size, seed=...)` returns a `BatchIterator`; `next(it)` gives a
batch dict; `it.state()` is a JSON-serialisable dict of ints {"seed", "epoch", "index", "num_examples",
"batch_size", "shuffle", "pack_segments"} for checkpoints; `it.restore(state)` (or
`dataset.iterator(..., state=state)`) resumes so the following batches are exactly those an
uninterrupted run would have produced. `dataset.batches(B)` visits every example once, in file order
(evaluation). `dataset.report` (`DataReport`, `.to_dict()`) says what was kept, dropped and truncated.

In-memory datasets, for data already tokenised (synthetic tasks, tests): `PairArrays` (pairs, with `SCORE_KEYS`
when both are given: `has_scores`),
`RankingArrays` (K responses with scores), `SingleArrays` (one response per row with its prompt id, reward and
label, `SINGLE_KEYS`) and `PromptArrays` (left-padded prompts `PROMPT_KEYS`, for the online trainers), with
`PairIterator` (seeded epochs, remainder dropped, the same state()/restore() protocol). `check_ranking_batch` and
`check_single_batch` check a batch's keys and shapes (the trainers call them on each batch).

Packing (optional, pairwise only): `dataset.iterator(B, pack_segments=S)` puts up to S pairs in each
row and adds `*_segment_ids_BxL`, `*_positions_BxL` and `num_pairs_B` (see `PackedBatchIterator`); packed
batches never carry `SCORE_KEYS` (a dataset with scores packs as one without: the scores are left out).
Scoring them needs segment-aware attention, which the model has (`Transformer(segment_ids_BxT=,
positions_BxT=)`; per-pair log-probs: `prefjax.lm.logprobs.policy_segment_logps`, tested equal to the
unpacked pairs). The offline trainer `prefjax.lm.train` trains on packed batches when
`TrainConfig.pack_segments = S` (its loss is averaged over the real pairs of the optimiser batch, equal to
the unpacked loss on the same pairs); with pack_segments = 0 it rejects them with a PrefjaxError.

Rows and formatting (`PreferenceDataset.from_jsonl`):
  - `prompt` is a string or a list of chat messages {"role": str, "content": str}; `chosen`/`rejected`
    are strings or message lists. Message-list responses may repeat the prompt messages first (the
    UltraFeedback-binarized layout: `chosen` is the whole conversation); that shared prefix is removed.
    Without `prompt`, message-list rows take the longest common message prefix of chosen and rejected
    as the prompt (the HH-RLHF conversational layout); string rows must have a `prompt`.
  - Pair rows may also have `chosen_score` and `rejected_score` (both or neither; finite numbers, not booleans,
    within float32 range; `score_chosen` / `score_rejected`, ultrafeedback_binarized's names, are read as
    the same fields): the two responses' quality scores, batched as `SCORE_KEYS`. The dataset has
    scores (`has_scores`) when its rows do; a file must not mix scored and unscored rows (the first kept row
    decides which a file is: a later row that disagrees with it is malformed).
  - A message's role must be one of `chat_roles` (default `CHAT_ROLES`: "system", "user", "assistant",
    "tool"); any other role (a typo such as "usr") is a malformed row naming the field and the role, since
    the template would render it and the model be trained on it. Pass `chat_roles=` for a template that
    knows more roles.
  - Chat messages are rendered by `chat_template(messages, add_generation_prompt) -> str` (default:
    the tokenizer's own template when its tokenizer_config.json has one, else `default_chat_template`:
    "<|role|>\\ncontent\\n" per message, "<|assistant|>\\n" as the generation prompt). A response's
    text is the full conversation's rendering minus the prompt's rendering with the generation
    prompt, so any template that extends its prefix works.
  - Single-response rows (`SingleResponseDataset`, TRL's unpaired/KTO layout) have `prompt` and
    `completion` (formatted as `chosen` above; without `prompt`, a message-list completion's messages but
    the last are the prompt) and exactly one of `label` (a JSON boolean: true desirable, false undesirable)
    and `reward` (a finite number, not a boolean).
  - Tokens: prompt = [BOS] + encode(prompt text); response = encode(response text) + [EOS]. Prompt and
    responses are encoded separately (as TRL does), so a BPE merge never crosses the boundary.

Validation (never silent):
  - Malformed rows (invalid JSON, a line that is not valid UTF-8, not an object, missing or mistyped
    field, bad message, unknown role; for pair rows also only one of `chosen_score` and `rejected_score`, a
    score that is a boolean, not a number or not finite, or a row with scores in a file whose first kept row
    has none, or the reverse; for single-response rows also neither or both of `label` and `reward`, a
    `label` that is not a boolean, a `reward` that is a boolean, not a number or not finite) raise
    `PrefjaxError` naming the file and line (and the field); with `on_malformed="drop"` they are dropped and
    counted ("malformed").
  - Dropped and counted in the `DataReport` (with the first line numbers of each reason), and logged:
    "empty_chosen" / "empty_rejected" (response text empty or whitespace only), "identical"
    (chosen text == rejected text), "prompt_too_long" (the tokenized prompt alone has >= max_length
    tokens: no response token would fit), "identical_after_truncation".
    Multi-response rows: "empty_response", "identical" (all responses equal), "prompt_too_long".
    Single-response rows: "empty_completion", "prompt_too_long".
  - A dataset with no row left raises `PrefjaxError`.

Truncation (prompt first), with L = max_length, P = max_prompt_length (default L // 2) and R the longest
response of the row (chosen or rejected, any of the K responses, or the completion):
  1. if len(prompt) >= L the row is dropped ("prompt_too_long"; with `long_prompt="truncate"` it goes
     on to rule 2 instead);
  2. if len(prompt) + R > L, the prompt loses tokens from its START (its BOS is kept as the first token;
     the tokens right after it are cut, so the end of the prompt, next to the response, survives) until
     it has max(P, L − R) tokens, or fewer if it was shorter;
  3. if still len(prompt) + len(response) > L, each response keeps its first L − len(prompt) tokens (its
     EOS is then cut). Counts of truncated prompts and responses are in the report.

Shuffling: epoch e visits the examples in `np.random.default_rng([seed, e]).permutation(n)` order;
batches are consecutive slices of the concatenated epochs (a batch may span two epochs), so every batch
has exactly B rows and the state (epoch, index of the next example) determines all later batches.
"""

import dataclasses
import json
import logging
import math
import os
import re
from typing import Any

import numpy as np

from prefjax.errors import PrefjaxError
from prefjax.lm.logprobs import segment_sums  # noqa: F401  (moved to logprobs; re-exported here)
from prefjax.lm.tokenizer import load_tokenizer

_log = logging.getLogger(__name__)

PAIR_KEYS = ("chosen_tokens_BxL", "chosen_loss_mask_BxL", "chosen_attention_mask_BxL",
             "rejected_tokens_BxL", "rejected_loss_mask_BxL", "rejected_attention_mask_BxL")
# Optional keys of the pairwise layout ("scored pairs"): float32 [B], the chosen and the rejected response's score.
SCORE_KEYS = ("chosen_score_B", "rejected_score_B")
SCORE_FIELDS = ("chosen_score", "rejected_score")  # the JSONL row fields they come from
MULTI_KEYS = ("tokens_BxKxL", "loss_mask_BxKxL", "attention_mask_BxKxL", "scores_BxK")
SINGLE_KEYS = ("tokens_BxL", "loss_mask_BxL", "attention_mask_BxL", "prompt_id_B", "reward_B", "label_B")
PROMPT_KEYS = ("prompt_tokens_BxP", "prompt_mask_BxP")  # left-padded prompts (the online trainers')
_MAX_LINES_REPORTED = 20

# Roles a chat message may have unless the dataset is given `chat_roles=` (see the module docstring).
CHAT_ROLES = ("system", "user", "assistant", "tool")


def default_chat_template(messages, add_generation_prompt=False):
  """Renders chat messages as "<|role|>\\ncontent\\n" each, plus "<|assistant|>\\n" when asked.

  Args:
    messages: list of {"role": str, "content": str}.
    add_generation_prompt: append the assistant header that a response follows.

  Returns:
    The text.
  """
  text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
  return text + "<|assistant|>\n" if add_generation_prompt else text


@dataclasses.dataclass
class DataReport:
  """What loading kept, dropped (by reason, with line numbers) and truncated."""
  source: str
  rows: int = 0
  kept: int = 0
  dropped: dict = dataclasses.field(default_factory=dict)
  dropped_lines: dict = dataclasses.field(default_factory=dict)
  truncated_prompts: int = 0
  truncated_responses: int = 0

  def drop(self, reason, where):
    self.dropped[reason] = self.dropped.get(reason, 0) + 1
    lines = self.dropped_lines.setdefault(reason, [])
    if len(lines) < _MAX_LINES_REPORTED:
      lines.append(where)

  @property
  def num_dropped(self):
    return sum(self.dropped.values())

  def to_dict(self):
    return dataclasses.asdict(self)

  def __str__(self):
    parts = [f"{self.source}: {self.rows} rows, {self.kept} kept, {self.num_dropped} dropped"]
    for reason, count in sorted(self.dropped.items()):
      parts.append(f"  dropped {count} ({reason}), first at {', '.join(self.dropped_lines[reason])}")
    if self.truncated_prompts or self.truncated_responses:
      parts.append(f"  truncated: {self.truncated_prompts} prompts, {self.truncated_responses} "
                   f"responses")
    return "\n".join(parts)


class _Malformed(Exception):
  pass


def _read_jsonl(paths):
  """Yields (where "file:line", row dict or _Malformed) for every non-blank line of the files."""
  if isinstance(paths, (str, os.PathLike)):
    paths = [paths]
  for path in paths:
    path = os.fspath(path)
    if not os.path.isfile(path):
      raise PrefjaxError(f"data file {path!r} does not exist")
    # Undecodable bytes become lone surrogates U+DC80..U+DCFF (which a valid decode never yields), so a
    # bad line is reported with its number instead of a bare UnicodeDecodeError for the whole file.
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
      for lineno, line in enumerate(f, start=1):
        where = f"{path}:{lineno}"
        bad = _first_undecodable(line)
        if bad is not None:
          yield where, _Malformed(f"not valid UTF-8 (byte 0x{ord(line[bad]) - 0xDC00:02x} at column "
                                  f"{bad + 1})")
          continue
        if not line.strip():
          continue
        try:
          row = json.loads(line)
        except json.JSONDecodeError as e:
          yield where, _Malformed(f"invalid JSON ({e.msg} at column {e.colno})")
          continue
        yield where, row


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _first_undecodable(line):
  """Index of the first byte that was not valid UTF-8 (a surrogate escape) in `line`, or None."""
  bad = _UNDECODABLE.search(line)
  return None if bad is None else bad.start()


def _check_messages(value, field, roles=CHAT_ROLES):
  if not value:
    raise _Malformed(f"field {field!r} is an empty message list")
  for i, m in enumerate(value):
    if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(
        m.get("content"), str):
      raise _Malformed(f"field {field!r}[{i}] must be a message {{'role': str, 'content': str}}, "
                       f"got {str(m)[:80]!r}")
    if m["role"] not in roles:
      raise _Malformed(f"field {field!r}[{i}] has unknown role {m['role']!r} (known roles: "
                       f"{', '.join(map(repr, roles))}; pass chat_roles= to allow others)")
  return [{"role": m["role"], "content": m["content"]} for m in value]


def _field(row, name, required=True, roles=CHAT_ROLES, label=None):
  """Field `name` of `row`: a string or a checked message list; `label` names it in errors."""
  label = name if label is None else label
  if name not in row:
    if required:
      raise _Malformed(f"missing field {name!r} (fields present: {sorted(row)})")
    return None
  value = row[name]
  if isinstance(value, str):
    return value
  if isinstance(value, list):
    return _check_messages(value, label, roles)
  raise _Malformed(f"field {label!r} must be a string or a list of chat messages, got "
                   f"{type(value).__name__}")


def _check_roles(chat_roles):
  """The `chat_roles` option as a tuple of strings (None: `CHAT_ROLES`)."""
  if chat_roles is None:
    return CHAT_ROLES
  if isinstance(chat_roles, str) or not all(isinstance(r, str) for r in chat_roles) or not chat_roles:
    raise PrefjaxError(f"chat_roles must be a non-empty list of role names, got {chat_roles!r}")
  return tuple(chat_roles)


def _strip_prefix(messages, prefix):
  if prefix and len(messages) > len(prefix) and messages[:len(prefix)] == prefix:
    return messages[len(prefix):]
  return messages


def _render(prompt, responses, chat_template, fields):
  """Prompt text, response texts and per-response emptiness (see the module docstring).

  `fields` names the responses in errors ("chosen", "rejected", "responses[i]").

  A response is empty when its text is whitespace only or, for message lists, when every message of
  it (after removing the prompt prefix) has whitespace-only content, whatever the template adds.
  """
  if prompt is None:
    if not all(isinstance(r, list) for r in responses):
      raise _Malformed("missing field 'prompt' (only message-list rows may omit it)")
    prefix = []
    # The shared prefix leaves at least one message to every response.
    for group in zip(*(r[:-1] for r in responses)):
      if any(m != group[0] for m in group[1:]):
        break
      prefix.append(group[0])
    if not prefix:
      raise _Malformed("no 'prompt' and the responses share no leading message to use as one")
    prompt = prefix
  any_list = any(isinstance(r, list) for r in responses)
  if isinstance(prompt, str) and not any_list:
    return prompt, list(responses), [_is_empty(r) for r in responses]
  prompt_msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
  prompt_text = _apply_template(chat_template, prompt_msgs, True, "prompt")
  texts, empty = [], []
  for r, field in zip(responses, fields):
    if isinstance(r, str):
      texts.append(r)
      empty.append(_is_empty(r))
      continue
    r = _strip_prefix(r, prompt_msgs)
    full = _apply_template(chat_template, list(prompt_msgs) + r, False, field)
    if not full.startswith(prompt_text):
      raise _Malformed(f"field {field!r} (roles {[m['role'] for m in r]}): the chat template's rendering "
                       "of prompt + response does not start with its rendering of the prompt with the "
                       "generation prompt")
    texts.append(full[len(prompt_text):])
    empty.append(_is_empty(texts[-1]) or all(_is_empty(m["content"]) for m in r))
  return prompt_text, texts, empty


def _apply_template(chat_template, messages, add_generation_prompt, field):
  """The template's rendering; a `PrefjaxError` it raises (a Jinja template's `raise_exception`, e.g.
  roles that do not alternate) becomes a malformed row naming the field (and so the file and line)."""
  try:
    return chat_template(messages, add_generation_prompt)
  except PrefjaxError as e:
    raise _Malformed(f"field {field!r} (roles {[m['role'] for m in messages]}): {e}") from None


def _is_empty(text):
  return not text.strip()


class _Builder:
  """Shared tokenisation and prompt-first truncation."""

  def __init__(self, tokenizer, max_length, max_prompt_length, chat_template, long_prompt):
    self.tokenizer = load_tokenizer(tokenizer)
    if not isinstance(max_length, (int, np.integer)) or max_length < 2:
      raise PrefjaxError(f"max_length must be an integer >= 2, got {max_length!r}")
    self.max_length = int(max_length)
    if max_prompt_length is None:
      max_prompt_length = self.max_length // 2
    if not isinstance(max_prompt_length, (int, np.integer)) or not (
        1 <= max_prompt_length < self.max_length):
      raise PrefjaxError(f"max_prompt_length must be an integer in [1, max_length={self.max_length}), "
                         f"got {max_prompt_length!r}")
    self.max_prompt_length = int(max_prompt_length)
    if long_prompt not in ("drop", "truncate"):
      raise PrefjaxError(f"long_prompt must be 'drop' or 'truncate', got {long_prompt!r}")
    self.long_prompt = long_prompt
    self.chat_template = (chat_template or getattr(self.tokenizer, "chat_template", None)
                          or default_chat_template)

  def tokenize(self, prompt_text, response_texts, report, where):
    """(prompt ids, [response ids]) after truncation, or None when the row is dropped."""
    tok = self.tokenizer
    prompt = [tok.bos_id] + tok.encode(prompt_text)
    responses = [tok.encode(t) + [tok.eos_id] for t in response_texts]
    big_l = self.max_length
    if len(prompt) >= big_l and self.long_prompt == "drop":
      report.drop("prompt_too_long", where)
      return None
    longest = max(len(r) for r in responses)
    if len(prompt) + longest > big_l:
      keep = min(len(prompt), max(self.max_prompt_length, big_l - longest))
      if keep < len(prompt):
        prompt = prompt[:1] + prompt[len(prompt) - keep + 1:]
        report.truncated_prompts += 1
      room = big_l - len(prompt)
      for i, r in enumerate(responses):
        if len(r) > room:
          responses[i] = r[:room]
          report.truncated_responses += 1
    return np.asarray(prompt, np.int32), [np.asarray(r, np.int32) for r in responses]


def _pad_row(prompt, response, length, pad_id):
  n_p, n_r = len(prompt), len(response)
  tokens = np.full((length,), pad_id, np.int32)
  tokens[:n_p] = prompt
  tokens[n_p:n_p + n_r] = response
  loss = np.zeros((length,), np.int32)
  loss[n_p:n_p + n_r] = 1
  attn = np.zeros((length,), np.int32)
  attn[:n_p + n_r] = 1
  return tokens, loss, attn


class _Dataset:
  """Common parts: iteration, in-order batches, the report."""

  report: DataReport
  max_length: int
  tokenizer: Any

  def __len__(self):
    return self._num_examples()

  def iterator(self, batch_size, *, seed=0, shuffle=True, num_epochs=None, state=None,
               pack_segments=0):
    """A `BatchIterator` over shuffled, fixed-size batches (see the module docstring).

    Args:
      batch_size: B, rows per batch.
      seed: shuffling seed.
      shuffle: False visits the examples in file order every epoch.
      num_epochs: None for an endless stream, else stop after this many epochs.
      state: optional `state()` of an earlier iterator to resume from.
      pack_segments: 0 (default) for one example per row; S >= 1 packs up to S pairs per row
        (`PreferenceDataset` only; see `PackedBatchIterator`).
    """
    if pack_segments:
      if not isinstance(self, PreferenceDataset):
        raise PrefjaxError("pack_segments: packing is implemented for pairwise data only")
      it = PackedBatchIterator(self, batch_size, seed=seed, shuffle=shuffle, num_epochs=num_epochs,
                               max_segments=pack_segments)
    else:
      it = BatchIterator(self, batch_size, seed=seed, shuffle=shuffle, num_epochs=num_epochs)
    if state is not None:
      it.restore(state)
    return it

  def batches(self, batch_size):
    """Every example once, in file order (for evaluation); the last batch may be smaller."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
      raise PrefjaxError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(self)
    for start in range(0, n, batch_size):
      yield self.collate(np.arange(start, min(start + batch_size, n)))


def _finish(report, num_kept):
  report.kept = num_kept
  if report.num_dropped:
    _log.warning("preference data: %s", report)
  if num_kept == 0:
    raise PrefjaxError(f"no usable rows in {report.source}:\n{report}")


class PreferenceDataset(_Dataset):
  """Tokenized (prompt, chosen, rejected) pairs; batches follow the pairwise contract above.

  Rows with `chosen_score` and `rejected_score` make a scored dataset: its batches (`collate`, `iterator`,
  `batches`) add `SCORE_KEYS`; packed batches (`iterator(pack_segments=S)`) leave the scores out.

  Attributes:
    prompts, chosen, rejected: lists of int32 token arrays (after truncation).
    has_scores: whether every kept row has both scores (then no row may lack them: see `__init__`).
    chosen_scores, rejected_scores: float32 [N], the kept rows' scores, or None when `has_scores` is False.
    where: "file:line" of each kept row; report: the `DataReport` of the load.
    tokenizer, max_length, max_prompt_length: as given.
  """

  def __init__(self, rows, *, tokenizer="byte", max_length=512, max_prompt_length=None,
               chat_template=None, on_malformed="raise", long_prompt="drop", source="<memory>",
               chat_roles=None):
    """Builds the dataset from rows.

    Args:
      rows: iterable of (where, row) pairs, where `where` names the row ("file:line") and `row` is a
        dict or a `_Malformed` marker; use `from_jsonl` or `from_rows` rather than this directly.
      tokenizer: "byte", a tokenizer.json path, or a tokenizer object (see `prefjax.lm.tokenizer`).
      max_length: L, tokens per sequence (prompt + response).
      max_prompt_length: P, the prompt length that prompt-first truncation keeps (default L // 2).
      chat_template: `(messages, add_generation_prompt) -> str`; default: the tokenizer's template
        (`HFTokenizer.chat_template`) if it has one, else `default_chat_template`.
      on_malformed: "raise" (default) or "drop" (counted as "malformed"). Besides bad fields, a row whose
        scores disagree with the first kept row's (it has `chosen_score` / `rejected_score` and that row had
        none, or the reverse) is malformed: the first kept row decides whether the data is scored, so with
        "drop" a mixed file keeps the rows that agree with it.
      long_prompt: "drop" (default) prompts of >= L tokens, or "truncate" them by rule 2 of the
        module docstring (to max(P, L − R) tokens) like any other long prompt.
      source: name of the data for the report.
      chat_roles: the roles chat messages may have (default `CHAT_ROLES`); another role is malformed.
    """
    if on_malformed not in ("raise", "drop"):
      raise PrefjaxError(f"on_malformed must be 'raise' or 'drop', got {on_malformed!r}")
    roles = _check_roles(chat_roles)
    b = _Builder(tokenizer, max_length, max_prompt_length, chat_template, long_prompt)
    self.tokenizer, self.max_length, self.max_prompt_length = (b.tokenizer, b.max_length,
                                                               b.max_prompt_length)
    self.report = DataReport(source=source)
    self.prompts, self.chosen, self.rejected, self.where = [], [], [], []
    scores = []  # (chosen, rejected) per kept row, or None for an unscored row
    for where, row in rows:
      self.report.rows += 1
      try:
        if isinstance(row, _Malformed):
          raise row
        if not isinstance(row, dict):
          raise _Malformed(f"a row must be a JSON object, got {type(row).__name__}")
        prompt = _field(row, "prompt", required=False, roles=roles)
        chosen, rejected = _field(row, "chosen", roles=roles), _field(row, "rejected", roles=roles)
        pair_scores = _pair_scores(row)
        if self.where and (pair_scores is None) != (scores[0] is None):
          raise _Malformed(_mixed_scores_message(pair_scores is not None, self.where[0]))
        prompt_text, (chosen_text, rejected_text), empty = _render(
            prompt, [chosen, rejected], b.chat_template, ("chosen", "rejected"))
      except _Malformed as e:
        if on_malformed == "raise":
          raise PrefjaxError(f"{where}: malformed preference row: {e}") from None
        self.report.drop("malformed", where)
        continue
      if empty[0]:
        self.report.drop("empty_chosen", where)
        continue
      if empty[1]:
        self.report.drop("empty_rejected", where)
        continue
      if chosen_text == rejected_text:
        self.report.drop("identical", where)
        continue
      out = b.tokenize(prompt_text, [chosen_text, rejected_text], self.report, where)
      if out is None:
        continue
      p, (c, r) = out
      if np.array_equal(c, r):
        self.report.drop("identical_after_truncation", where)
        continue
      self.prompts.append(p)
      self.chosen.append(c)
      self.rejected.append(r)
      self.where.append(where)
      scores.append(pair_scores)
    _finish(self.report, len(self.prompts))
    self.has_scores = scores[0] is not None
    self.chosen_scores = np.asarray([s[0] for s in scores], np.float32) if self.has_scores else None
    self.rejected_scores = np.asarray([s[1] for s in scores], np.float32) if self.has_scores else None

  @classmethod
  def from_jsonl(cls, paths, **kwargs):
    """Loads preference JSONL file(s) (one path or a list); keyword arguments as `__init__`."""
    names = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else [
        os.fspath(p) for p in paths]
    kwargs.setdefault("source", ", ".join(names))
    return cls(_read_jsonl(names), **kwargs)

  @classmethod
  def from_rows(cls, rows, **kwargs):
    """From in-memory dicts (row i is reported as "<memory>:i+1"); keyword arguments as `__init__`."""
    return cls(((f"<memory>:{i + 1}", r) for i, r in enumerate(rows)), **kwargs)

  def _num_examples(self):
    return len(self.prompts)

  def collate(self, indices):
    """The batch dict (pairwise contract, with `SCORE_KEYS` when `has_scores`) of the examples at `indices`
    (order kept)."""
    indices = np.asarray(indices, np.int64)
    out = {k: np.zeros((len(indices), self.max_length), np.int32) for k in PAIR_KEYS}
    if self.has_scores:
      out["chosen_score_B"] = self.chosen_scores[indices]
      out["rejected_score_B"] = self.rejected_scores[indices]
    pad = self.tokenizer.pad_id
    for row, i in enumerate(indices):
      for side, responses in (("chosen", self.chosen), ("rejected", self.rejected)):
        t, l, a = _pad_row(self.prompts[i], responses[i], self.max_length, pad)
        out[f"{side}_tokens_BxL"][row] = t
        out[f"{side}_loss_mask_BxL"][row] = l
        out[f"{side}_attention_mask_BxL"][row] = a
    return out


class MultiResponseDataset(_Dataset):
  """Tokenized (prompt, K responses, K scores) rows; batches follow the multi-response contract.

  Every row must have the same K (`num_responses`, default: the first row's K).
  """

  def __init__(self, rows, *, tokenizer="byte", max_length=512, max_prompt_length=None,
               chat_template=None, on_malformed="raise", long_prompt="drop", num_responses=None,
               source="<memory>", chat_roles=None):
    """Builds the dataset; arguments as `PreferenceDataset`, plus `num_responses` (K >= 2)."""
    if on_malformed not in ("raise", "drop"):
      raise PrefjaxError(f"on_malformed must be 'raise' or 'drop', got {on_malformed!r}")
    roles = _check_roles(chat_roles)
    if num_responses is not None and (not isinstance(num_responses, (int, np.integer))
                                      or num_responses < 2):
      raise PrefjaxError(f"num_responses must be an integer >= 2, got {num_responses!r}")
    b = _Builder(tokenizer, max_length, max_prompt_length, chat_template, long_prompt)
    self.tokenizer, self.max_length, self.max_prompt_length = (b.tokenizer, b.max_length,
                                                               b.max_prompt_length)
    self.report = DataReport(source=source)
    self.num_responses = num_responses
    self.prompts, self.responses, self.scores, self.where = [], [], [], []
    for where, row in rows:
      self.report.rows += 1
      try:
        if isinstance(row, _Malformed):
          raise row
        if not isinstance(row, dict):
          raise _Malformed(f"a row must be a JSON object, got {type(row).__name__}")
        prompt = _field(row, "prompt", required=False, roles=roles)
        responses, scores = row.get("responses"), row.get("scores")
        if not isinstance(responses, list) or len(responses) < 2:
          raise _Malformed("field 'responses' must be a list of at least 2 responses")
        fields = [f"responses[{i}]" for i in range(len(responses))]
        responses = [_field({"responses": r}, "responses", roles=roles, label=f)
                     for r, f in zip(responses, fields)]
        if (not isinstance(scores, list) or len(scores) != len(responses) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)
            for s in scores)):
          raise _Malformed(f"field 'scores' must be a list of {len(responses)} finite numbers, got "
                           f"{str(scores)[:80]}")
        if self.num_responses is None:
          self.num_responses = len(responses)
        if len(responses) != self.num_responses:
          raise _Malformed(f"{len(responses)} responses, but the dataset has K = "
                           f"{self.num_responses} per row")
        prompt_text, texts, empty = _render(prompt, responses, b.chat_template, fields)
      except _Malformed as e:
        if on_malformed == "raise":
          raise PrefjaxError(f"{where}: malformed multi-response row: {e}") from None
        self.report.drop("malformed", where)
        continue
      if any(empty):
        self.report.drop("empty_response", where)
        continue
      if all(t == texts[0] for t in texts[1:]):
        self.report.drop("identical", where)
        continue
      out = b.tokenize(prompt_text, texts, self.report, where)
      if out is None:
        continue
      self.prompts.append(out[0])
      self.responses.append(out[1])
      self.scores.append(np.asarray(scores, np.float32))
      self.where.append(where)
    _finish(self.report, len(self.prompts))

  from_jsonl = classmethod(PreferenceDataset.from_jsonl.__func__)
  from_rows = classmethod(PreferenceDataset.from_rows.__func__)

  def _num_examples(self):
    return len(self.prompts)

  def collate(self, indices):
    """The batch dict (multi-response contract) of the examples at `indices`."""
    indices = np.asarray(indices, np.int64)
    b, k, big_l = len(indices), self.num_responses, self.max_length
    out = {name: np.zeros((b, k, big_l), np.int32) for name in MULTI_KEYS[:3]}
    out["scores_BxK"] = np.zeros((b, k), np.float32)
    for row, i in enumerate(indices):
      for j, resp in enumerate(self.responses[i]):
        t, l, a = _pad_row(self.prompts[i], resp, big_l, self.tokenizer.pad_id)
        out["tokens_BxKxL"][row, j] = t
        out["loss_mask_BxKxL"][row, j] = l
        out["attention_mask_BxKxL"][row, j] = a
      out["scores_BxK"][row] = self.scores[i]
    return out


class SingleResponseDataset(_Dataset):
  """Tokenized (prompt, completion, label or reward) rows; batches follow the single-response contract.

  Attributes:
    prompts, completions: lists of int32 token arrays (after truncation).
    rewards: float32 [N], the reward (1.0 / 0.0 for labelled rows); labels: int32 [N], 1 / 0, or -1 for
      reward rows.
    prompt_ids: int32 [N], each row's prompt among the distinct (truncated) prompts, in order of first
      appearance; num_prompts: their number.
    where: "file:line" of each row; report: the `DataReport` of the load.
    tokenizer, max_length, max_prompt_length: as given.
  """

  def __init__(self, rows, *, tokenizer="byte", max_length=512, max_prompt_length=None,
               chat_template=None, on_malformed="raise", long_prompt="drop", source="<memory>",
               chat_roles=None):
    """Builds the dataset; arguments as `PreferenceDataset`."""
    if on_malformed not in ("raise", "drop"):
      raise PrefjaxError(f"on_malformed must be 'raise' or 'drop', got {on_malformed!r}")
    roles = _check_roles(chat_roles)
    b = _Builder(tokenizer, max_length, max_prompt_length, chat_template, long_prompt)
    self.tokenizer, self.max_length, self.max_prompt_length = (b.tokenizer, b.max_length,
                                                               b.max_prompt_length)
    self.report = DataReport(source=source)
    self.prompts, self.completions, self.where = [], [], []
    rewards, labels, prompt_ids, distinct = [], [], [], {}
    for where, row in rows:
      self.report.rows += 1
      try:
        if isinstance(row, _Malformed):
          raise row
        if not isinstance(row, dict):
          raise _Malformed(f"a row must be a JSON object, got {type(row).__name__}")
        prompt = _field(row, "prompt", required=False, roles=roles)
        completion = _field(row, "completion", roles=roles)
        reward, label = _reward_or_label(row)
        prompt_text, (text,), (empty,) = _render(prompt, [completion], b.chat_template, ("completion",))
      except _Malformed as e:
        if on_malformed == "raise":
          raise PrefjaxError(f"{where}: malformed single-response row: {e}") from None
        self.report.drop("malformed", where)
        continue
      if empty:
        self.report.drop("empty_completion", where)
        continue
      out = b.tokenize(prompt_text, [text], self.report, where)
      if out is None:
        continue
      p, (c,) = out
      self.prompts.append(p)
      self.completions.append(c)
      rewards.append(reward)
      labels.append(label)
      prompt_ids.append(distinct.setdefault(p.tobytes(), len(distinct)))
      self.where.append(where)
    self.rewards = np.asarray(rewards, np.float32)
    self.labels = np.asarray(labels, np.int32)
    self.prompt_ids = np.asarray(prompt_ids, np.int32)
    self.num_prompts = len(distinct)
    _finish(self.report, len(self.prompts))

  from_jsonl = classmethod(PreferenceDataset.from_jsonl.__func__)
  from_rows = classmethod(PreferenceDataset.from_rows.__func__)

  def _num_examples(self):
    return len(self.prompts)

  def collate(self, indices):
    """The batch dict (single-response contract) of the examples at `indices` (order kept)."""
    indices = np.asarray(indices, np.int64)
    out = {k: np.zeros((len(indices), self.max_length), np.int32) for k in SINGLE_KEYS[:3]}
    for row, i in enumerate(indices):
      t, l, a = _pad_row(self.prompts[i], self.completions[i], self.max_length, self.tokenizer.pad_id)
      out["tokens_BxL"][row] = t
      out["loss_mask_BxL"][row] = l
      out["attention_mask_BxL"][row] = a
    out["prompt_id_B"] = self.prompt_ids[indices]
    out["reward_B"] = self.rewards[indices]
    out["label_B"] = self.labels[indices]
    return out


def _reward_or_label(row):
  """(reward, label) of a single-response row: (1.0 / 0.0, 1 / 0) for a label, (reward, -1) for a reward."""
  has_label, has_reward = "label" in row, "reward" in row
  if has_label == has_reward:
    raise _Malformed(f"a row needs exactly one of fields 'label' and 'reward', got "
                     f"{'both' if has_label else 'neither'} (fields present: {sorted(row)})")
  if has_label:
    label = row["label"]
    if not isinstance(label, bool):
      raise _Malformed(f"field 'label' must be a JSON boolean (true: desirable, false: undesirable), got "
                       f"{type(label).__name__} {str(label)[:80]!r}")
    return float(label), int(label)
  return _finite_number(row["reward"], "reward", "reward_B"), -1


def _finite_number(value, field, key):
  """`value` (row field `field`, batched as the float32 `key`) as a float: a finite number within float32 range,
  not a boolean."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise _Malformed(f"field {field!r} must be a finite number (not a boolean), got {type(value).__name__} "
                     f"{str(value)[:80]!r}")
  try:
    number = float(value)
  except OverflowError:  # an integer beyond float range
    number = math.inf
  if not math.isfinite(number) or abs(number) > float(np.finfo(np.float32).max):
    raise _Malformed(f"field {field!r} must be a finite number (within float32 range: {key} is float32), got "
                     f"{str(value)[:80]}")
  return number


# Other names of the score fields: Hugging Face's ultrafeedback_binarized calls them score_chosen / score_rejected.
SCORE_FIELD_ALIASES = {"score_chosen": "chosen_score", "score_rejected": "rejected_score"}


def _pair_scores(row):
  """(chosen score, rejected score) of a pair row with `chosen_score` and `rejected_score` (or their aliases
  `SCORE_FIELD_ALIASES`), None without either."""
  aliased = [a for a in SCORE_FIELD_ALIASES if a in row]
  if aliased:
    both = [a for a in aliased if SCORE_FIELD_ALIASES[a] in row]
    if both:
      raise _Malformed(f"fields {both[0]!r} and {SCORE_FIELD_ALIASES[both[0]]!r} are two names of one score: give "
                       f"one")
    row = {**row, **{SCORE_FIELD_ALIASES[a]: row[a] for a in aliased}}
    row = {k: v for k, v in row.items() if k not in SCORE_FIELD_ALIASES}
  present = [f for f in SCORE_FIELDS if f in row]
  if not present:
    return None
  if len(present) == 1:
    missing = next(f for f in SCORE_FIELDS if f not in row)
    raise _Malformed(f"field {present[0]!r} without {missing!r}: a scored pair needs both fields "
                     f"{SCORE_FIELDS[0]!r} and {SCORE_FIELDS[1]!r} (fields present: {sorted(row)})")
  return tuple(_finite_number(row[f], f, k) for f, k in zip(SCORE_FIELDS, SCORE_KEYS))


def _mixed_scores_message(has_scores, first_where):
  """The malformed-row message for a row whose scores disagree with the first kept row's (at `first_where`)."""
  fields = f"fields {SCORE_FIELDS[0]!r} and {SCORE_FIELDS[1]!r}"
  if has_scores:
    return (f"{fields} present, but the first kept row ({first_where}) has no scores: a file must not mix "
            f"scored and unscored pairs")
  return (f"{fields} missing, but the first kept row ({first_where}) has them: a file must not mix scored and "
          f"unscored pairs")


def epoch_permutation(num_examples, seed, epoch, shuffle=True):
  """The order of epoch `epoch`: `default_rng([seed, epoch]).permutation(n)`, or 0..n−1 unshuffled."""
  if not shuffle:
    return np.arange(num_examples)
  return np.random.default_rng([int(seed), int(epoch)]).permutation(num_examples)


_STATE_KEYS = ("seed", "epoch", "index", "num_examples", "batch_size", "shuffle", "pack_segments")


class BatchIterator:
  """Fixed-size batches over the concatenated epoch permutations, with a checkpointable state.

  `state()` is {"seed", "epoch", "index", "num_examples", "batch_size", "shuffle", "pack_segments"}
  (all ints; pack_segments is 0 unless packing): the next
  batch starts at position `index` of epoch `epoch`'s order. With `num_epochs`, iteration stops when
  fewer than `batch_size` examples remain before the end of the last epoch (those are skipped; the
  number is `skipped_at_end`).
  """

  def __init__(self, dataset, batch_size, *, seed=0, shuffle=True, num_epochs=None):
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
      raise PrefjaxError(f"batch_size must be a positive integer, got {batch_size!r}")
    if num_epochs is not None and (not isinstance(num_epochs, (int, np.integer)) or num_epochs < 1):
      raise PrefjaxError(f"num_epochs must be a positive integer or None, got {num_epochs!r}")
    self.dataset = dataset
    self.batch_size = int(batch_size)
    self.seed = int(seed)
    self.shuffle = bool(shuffle)
    self.num_epochs = num_epochs
    self.epoch = 0
    self.index = 0
    self.skipped_at_end = 0
    self._perm_epoch, self._perm = None, None
    self.max_segments = 0

  def _order(self, epoch):
    if self._perm_epoch != epoch:
      self._perm = epoch_permutation(len(self.dataset), self.seed, epoch, self.shuffle)
      self._perm_epoch = epoch
    return self._perm

  def __iter__(self):
    return self

  def next_indices(self):
    """Dataset indices of the next batch (advances the state)."""
    n = len(self.dataset)
    epoch, index, picked = self.epoch, self.index, []
    while len(picked) < self.batch_size:
      if self.num_epochs is not None and epoch >= self.num_epochs:
        self.skipped_at_end = len(picked)
        raise StopIteration
      take = min(self.batch_size - len(picked), n - index)
      picked.extend(self._order(epoch)[index:index + take].tolist())
      index += take
      if index == n:
        epoch, index = epoch + 1, 0
    self.epoch, self.index = epoch, index
    return np.asarray(picked, np.int64)

  def __next__(self):
    return self.dataset.collate(self.next_indices())

  def state(self):
    """The JSON-serialisable state (a dict of Python ints)."""
    return {"seed": self.seed, "epoch": self.epoch, "index": self.index,
            "num_examples": len(self.dataset), "batch_size": self.batch_size,
            "shuffle": int(self.shuffle), "pack_segments": self.max_segments}

  def restore(self, state):
    """Resumes from `state()` of an iterator over the same data (numpy or Python ints accepted)."""
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
      raise PrefjaxError(f"BatchIterator.restore: state lacks {missing}; got keys {sorted(state)}")
    s = {k: int(np.asarray(state[k])) for k in _STATE_KEYS}
    if s["num_examples"] != len(self.dataset):
      raise PrefjaxError(f"BatchIterator.restore: the state is for {s['num_examples']} examples, this "
                         f"dataset has {len(self.dataset)} (different data or load options)")
    if not 0 <= s["index"] < s["num_examples"] or s["epoch"] < 0:
      raise PrefjaxError(f"BatchIterator.restore: invalid position epoch={s['epoch']}, "
                         f"index={s['index']}")
    for k, mine in (("seed", self.seed), ("shuffle", int(self.shuffle)),
                    ("batch_size", self.batch_size), ("pack_segments", self.max_segments)):
      if s[k] != mine:
        raise PrefjaxError(f"BatchIterator.restore: state has {k}={s[k]}, this iterator {mine}")
    self.epoch, self.index = s["epoch"], s["index"]
    return self


PACKED_KEYS = PAIR_KEYS + ("chosen_segment_ids_BxL", "chosen_positions_BxL",
                           "rejected_segment_ids_BxL", "rejected_positions_BxL", "num_pairs_B")


class PackedBatchIterator(BatchIterator):
  """Packs several preference pairs into each row (fewer padding tokens for short examples).

  Examples are taken from the same shuffled stream as `BatchIterator`; each goes into the first row
  whose chosen AND rejected sequences both have room (at most `max_segments` pairs per row); the
  first example that fits no row starts the next batch (it is not consumed), so the state is again
  (epoch, index). Pair j of row b is segment j + 1 of both `chosen_*[b]` and `rejected_*[b]`.

  Batch: the pairwise keys plus `chosen_segment_ids_BxL` / `rejected_segment_ids_BxL` (int32, 1..S
  for the pairs of the row, 0 on padding), `chosen_positions_BxL` / `rejected_positions_BxL` (int32,
  restarting at 0 in each segment) and `num_pairs_B` (int32), exactly `PACKED_KEYS`: a dataset with scores
  (`has_scores`) packs as one without, its `SCORE_KEYS` left out. Segment boundaries never put a scored
  token after another segment's token (each segment starts with its prompt's BOS, loss mask 0), so
  `token_logps` needs no change; per-pair log-probs are `segment_sums`.

  A model must attend only within a segment (a block-diagonal causal mask built from the segment ids):
  pass `segment_ids_BxT` and the positions to `prefjax.lm.model.Transformer`, or use
  `prefjax.lm.logprobs.policy_segment_logps`, which does both and returns per-pair log-probs `[B, S]`.
  `prefjax.lm.train` trains on these batches with `TrainConfig.pack_segments = max_segments` (per-pair
  losses averaged over the real pairs) and raises a PrefjaxError for them when pack_segments = 0.
  """

  def __init__(self, dataset, batch_size, *, seed=0, shuffle=True, num_epochs=None, max_segments=4):
    super().__init__(dataset, batch_size, seed=seed, shuffle=shuffle, num_epochs=num_epochs)
    if not isinstance(max_segments, (int, np.integer)) or max_segments < 1:
      raise PrefjaxError(f"max_segments must be a positive integer, got {max_segments!r}")
    self.max_segments = int(max_segments)

  def next_indices(self):
    """Per row, the dataset indices packed into it (advances the state)."""
    ds, n, big_l = self.dataset, len(self.dataset), self.dataset.max_length
    epoch, index = self.epoch, self.index
    rows = [[] for _ in range(self.batch_size)]
    used = np.zeros((self.batch_size, 2), np.int64)
    while True:
      if self.num_epochs is not None and epoch >= self.num_epochs:
        self.skipped_at_end = sum(len(r) for r in rows)
        raise StopIteration
      i = int(self._order(epoch)[index])
      need = np.array([len(ds.prompts[i]) + len(ds.chosen[i]),
                       len(ds.prompts[i]) + len(ds.rejected[i])])
      fits = [b for b in range(self.batch_size)
              if len(rows[b]) < self.max_segments and np.all(used[b] + need <= big_l)]
      if not fits:
        break
      rows[fits[0]].append(i)
      used[fits[0]] += need
      index += 1
      if index == n:
        epoch, index = epoch + 1, 0
    self.epoch, self.index = epoch, index
    return rows

  def __next__(self):
    rows = self.next_indices()
    ds, big_l = self.dataset, self.dataset.max_length
    out = {k: np.zeros((self.batch_size, big_l), np.int32) for k in PACKED_KEYS[:-1]}
    out["num_pairs_B"] = np.asarray([len(r) for r in rows], np.int32)
    for side, responses in (("chosen", ds.chosen), ("rejected", ds.rejected)):
      out[f"{side}_tokens_BxL"][:] = ds.tokenizer.pad_id
      for b, row in enumerate(rows):
        start = 0
        for seg, i in enumerate(row, start=1):
          n_p, n_r = len(ds.prompts[i]), len(responses[i])
          end = start + n_p + n_r
          out[f"{side}_tokens_BxL"][b, start:start + n_p] = ds.prompts[i]
          out[f"{side}_tokens_BxL"][b, start + n_p:end] = responses[i]
          out[f"{side}_loss_mask_BxL"][b, start + n_p:end] = 1
          out[f"{side}_attention_mask_BxL"][b, start:end] = 1
          out[f"{side}_segment_ids_BxL"][b, start:end] = seg
          out[f"{side}_positions_BxL"][b, start:end] = np.arange(end - start)
          start = end
    return out


def check_vocab(tokenizer, vocab_size):
  """Raises unless every id of `tokenizer` is < the model's `vocab_size`."""
  tokenizer = load_tokenizer(tokenizer)
  if tokenizer.vocab_size > vocab_size:
    raise PrefjaxError(f"tokenizer {tokenizer!r} has {tokenizer.vocab_size} ids but the model's "
                       f"vocab_size is {vocab_size}")


# ------------------------------------------------------------------------------------------------
# In-memory datasets (arrays already tokenised), with the same resumable-iterator protocol.
# ------------------------------------------------------------------------------------------------


def check_ranking_batch(batch, where="batch"):
  """Raises a PrefjaxError unless `batch` holds K >= 2 responses per prompt with scores (`MULTI_KEYS`)."""
  missing = [k for k in MULTI_KEYS if k not in batch]
  if missing:
    raise PrefjaxError(f"{where} is missing {missing}; a ranking batch (K responses per prompt) has "
                       f"{list(MULTI_KEYS)}")
  shape = np.shape(batch["tokens_BxKxL"])
  if len(shape) != 3 or shape[1] < 2:
    raise PrefjaxError(f"{where}: tokens_BxKxL must be [B, K >= 2, L], got shape {shape}")
  for k in MULTI_KEYS[1:3]:
    if np.shape(batch[k]) != shape:
      raise PrefjaxError(f"{where}: {k} has shape {np.shape(batch[k])}, tokens_BxKxL {shape}")
  if np.shape(batch["scores_BxK"]) != shape[:2]:
    raise PrefjaxError(f"{where}: scores_BxK has shape {np.shape(batch['scores_BxK'])}, expected {shape[:2]}")


class PairArrays:
  """An in-memory pairwise dataset: a dict of `[N, L]` int32 arrays with the batch contract's keys (`PAIR_KEYS`)
  and, for scored pairs, both `SCORE_KEYS` (float32 `[N]`, finite; batches then carry them, in step with the
  pairs). Other keys of the dict are ignored; one score key without the other is an error.

  Attributes:
    arrays: the kept arrays (`PAIR_KEYS`, then `SCORE_KEYS` when given).
    has_scores: whether the batches carry `SCORE_KEYS`.
  """

  def __init__(self, arrays):
    missing = [k for k in PAIR_KEYS if k not in arrays]
    if missing:
      raise PrefjaxError(f"PairArrays is missing {missing}; a pairwise batch has {list(PAIR_KEYS)}")
    self.arrays = {k: np.asarray(arrays[k], np.int32) for k in PAIR_KEYS}
    n = {v.shape[0] if v.ndim else 0 for v in self.arrays.values()}
    if len(n) != 1 or 0 in n:
      raise PrefjaxError(f"PairArrays: arrays must share a non-zero leading size, got {sorted(n)}")
    present = [k for k in SCORE_KEYS if k in arrays]
    if len(present) == 1:
      missing = next(k for k in SCORE_KEYS if k not in arrays)
      raise PrefjaxError(f"PairArrays: {present[0]} without {missing}; scored pairs have both {list(SCORE_KEYS)}")
    (n,) = n
    for k in present:
      self.arrays[k] = _score_array(arrays[k], k, n)

  @property
  def has_scores(self):
    return all(k in self.arrays for k in SCORE_KEYS)

  def __len__(self):
    return next(iter(self.arrays.values())).shape[0]

  def iterator(self, batch_size, seed=0, state=None):
    it = PairIterator(self, batch_size, seed)
    if state is not None:
      it.restore(state)
    return it


def _score_array(value, key, n):
  """`value` as PairArrays' float32 `[n]` score array `key`: numbers (not booleans), finite in float32."""
  raw = np.asarray(value)
  if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
    raise PrefjaxError(f"PairArrays: {key} must hold numbers, got dtype {raw.dtype}")
  if raw.shape != (n,):
    raise PrefjaxError(f"PairArrays: {key} has shape {raw.shape}, expected ({n},) (N of the token arrays)")
  with np.errstate(over="ignore"):
    scores = raw.astype(np.float32)
  rows = np.flatnonzero(~np.isfinite(scores))
  if rows.size:
    raise PrefjaxError(f"PairArrays: {key} must be finite (within float32 range); rows {rows[:10].tolist()} have "
                       f"{raw[rows[:10]].tolist()}")
  return scores


class RankingArrays(PairArrays):
  """An in-memory K-responses-per-prompt dataset: `[N, K, L]` int32 token arrays and `[N, K]` float scores
  (`MULTI_KEYS`, the layout of `prefjax.lm.data.MultiResponseDataset`)."""

  def __init__(self, arrays):  # pylint: disable=super-init-not-called
    check_ranking_batch(arrays, "RankingArrays")
    self.arrays = {k: np.asarray(arrays[k], np.float32 if k == "scores_BxK" else np.int32) for k in MULTI_KEYS}
    if self.arrays["scores_BxK"].shape[0] == 0:
      raise PrefjaxError("RankingArrays: no examples")


def check_single_batch(batch, where="batch"):
  """Raises a PrefjaxError unless `batch` holds one response per row with its prompt id, reward and label
  (`SINGLE_KEYS`: three `[B, L]` token arrays of one shape and three `[B]` arrays)."""
  missing = [k for k in SINGLE_KEYS if k not in batch]
  if missing:
    raise PrefjaxError(f"{where} is missing {missing}; a single-response batch has {list(SINGLE_KEYS)}")
  shape = np.shape(batch["tokens_BxL"])
  if len(shape) != 2:
    raise PrefjaxError(f"{where}: tokens_BxL must be [B, L], got shape {shape}")
  for k in SINGLE_KEYS[1:3]:
    if np.shape(batch[k]) != shape:
      raise PrefjaxError(f"{where}: {k} has shape {np.shape(batch[k])}, tokens_BxL {shape}")
  for k in SINGLE_KEYS[3:]:
    if np.shape(batch[k]) != shape[:1]:
      raise PrefjaxError(f"{where}: {k} has shape {np.shape(batch[k])}, expected {shape[:1]} (B of tokens_BxL)")


class SingleArrays(PairArrays):
  """An in-memory single-response dataset (`SINGLE_KEYS`, the layout of `SingleResponseDataset`): `[N, L]` int32
  token arrays, `prompt_id_B` int32 `[N]`, `reward_B` float32 `[N]` and `label_B` int32 `[N]` (optional; default
  all -1, reward rows).

  `num_prompts` (default `max(prompt_id_B) + 1`) is the size of a per-prompt table; it must exceed every id.
  `iterator(batch_size, seed, state)` is `PairIterator` (seeded epochs, JSON state).
  """

  def __init__(self, arrays, num_prompts=None):  # pylint: disable=super-init-not-called
    required = [k for k in SINGLE_KEYS if k != "label_B"]
    missing = [k for k in required if k not in arrays]
    if missing:
      raise PrefjaxError(f"SingleArrays is missing {missing}; a single-response dataset has {required} (and "
                         f"optionally label_B)")
    for k in ("prompt_id_B", "label_B"):
      if k in arrays and not np.issubdtype(np.asarray(arrays[k]).dtype, np.integer):
        raise PrefjaxError(f"SingleArrays: {k} must hold integers, got dtype {np.asarray(arrays[k]).dtype}")
    self.arrays = {k: np.asarray(arrays[k], np.float32 if k == "reward_B" else np.int32) for k in required}
    n = self.arrays["tokens_BxL"].shape[0] if self.arrays["tokens_BxL"].ndim else 0
    self.arrays["label_B"] = (np.asarray(arrays["label_B"], np.int32) if "label_B" in arrays
                              else np.full((n,), -1, np.int32))
    self.arrays = {k: self.arrays[k] for k in SINGLE_KEYS}
    check_single_batch(self.arrays, "SingleArrays")
    if n == 0 or self.arrays["tokens_BxL"].shape[1] == 0:
      raise PrefjaxError(f"SingleArrays: tokens_BxL must be a non-empty [N, L], got shape "
                         f"{self.arrays['tokens_BxL'].shape}")
    ids, labels, rewards = self.arrays["prompt_id_B"], self.arrays["label_B"], self.arrays["reward_B"]
    for key, bad, what in (("prompt_id_B", ids < 0, "must be >= 0"),
                           ("label_B", ~np.isin(labels, (-1, 0, 1)), "must be -1, 0 or 1"),
                           ("reward_B", ~np.isfinite(rewards), "must be finite")):
      rows = np.flatnonzero(bad)
      if rows.size:
        raise PrefjaxError(f"SingleArrays: {key} {what}; rows {rows[:10].tolist()} have "
                           f"{self.arrays[key][rows[:10]].tolist()}")
    if num_prompts is None:
      num_prompts = int(ids.max()) + 1
    if not isinstance(num_prompts, (int, np.integer)) or num_prompts <= ids.max():
      raise PrefjaxError(f"SingleArrays: num_prompts must be an integer exceeding every prompt_id_B (max "
                         f"{int(ids.max())}), got {num_prompts!r}")
    self.num_prompts = int(num_prompts)


class PairIterator:
  """Epochs of a deterministic permutation (seeded by (seed, epoch)); state is a JSON dict of ints."""

  def __init__(self, dataset, batch_size, seed):
    if batch_size > len(dataset):
      raise PrefjaxError(f"batch_size={batch_size} exceeds the dataset's {len(dataset)} pairs")
    self.dataset, self.batch_size, self.seed = dataset, int(batch_size), int(seed)
    self.epoch, self.index = 0, 0
    self._perm = self._permutation(0)

  def _permutation(self, epoch):
    return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))

  def __iter__(self):
    return self

  def __next__(self):
    if self.index + self.batch_size > len(self.dataset):  # drop the remainder; next epoch
      self.epoch, self.index = self.epoch + 1, 0
      self._perm = self._permutation(self.epoch)
    idx = self._perm[self.index:self.index + self.batch_size]
    self.index += self.batch_size
    return {k: v[idx] for k, v in self.dataset.arrays.items()}

  def state(self):
    return {"seed": self.seed, "epoch": self.epoch, "index": self.index,
            "num_examples": len(self.dataset), "batch_size": self.batch_size}

  def restore(self, state):
    if state.get("num_examples", len(self.dataset)) != len(self.dataset):
      raise PrefjaxError(f"iterator state is for {state['num_examples']} examples, the dataset has "
                         f"{len(self.dataset)}")
    self.seed, self.epoch, self.index = int(state["seed"]), int(state["epoch"]), int(state["index"])
    self._perm = self._permutation(self.epoch)


class PromptArrays:
  """In-memory left-padded prompts: `prompt_tokens_BxP` and `prompt_mask_BxP` int32 `[M, P]`.

  `iterator(batch_size, seed, state)` is `PairIterator` (seeded epochs, JSON state).
  """

  def __init__(self, arrays):
    missing = [k for k in PROMPT_KEYS if k not in arrays]
    if missing:
      raise PrefjaxError(f"PromptArrays is missing {missing}; prompts need {list(PROMPT_KEYS)}")
    self.arrays = {k: np.asarray(arrays[k], np.int32) for k in PROMPT_KEYS}
    t, m = self.arrays["prompt_tokens_BxP"], self.arrays["prompt_mask_BxP"]
    if t.ndim != 2 or t.shape != m.shape or t.shape[0] == 0 or t.shape[1] == 0:
      raise PrefjaxError(f"PromptArrays: tokens and mask must be the same non-empty [M, P], got {t.shape} "
                         f"and {m.shape}")
    bad = np.flatnonzero(m[:, -1] == 0)
    if bad.size:
      raise PrefjaxError(f"PromptArrays: prompts must be left-padded (last column real); rows "
                         f"{bad[:10].tolist()} end with padding")

  def __len__(self):
    return self.arrays["prompt_tokens_BxP"].shape[0]

  def iterator(self, batch_size, seed=0, state=None):
    it = PairIterator(self, batch_size, seed)
    if state is not None:
      it.restore(state)
    return it

"""Bad inputs give a one-line `PrefjaxError` naming the field, file and line (or argument and index).

Covers: non-UTF-8 bytes in preference JSONL and battles / ratings files, extra CSV cells, nested-list
preference matrices and unnormalised policies in the Nash toolkit, unknown chat roles, and the opt-in
`check_finite` option of the objectives (eager raise, `checkify` under jit, unchanged default).
"""

import json

import jax
from jax.experimental import checkify
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax import objectives
from prefjax import ranking
from prefjax.errors import PrefjaxError
from prefjax.games import nash
from prefjax.lm import data
from prefjax.objectives import density
from prefjax.objectives import listwise
from prefjax.objectives import margins
from prefjax.objectives import nash as nash_objectives
from prefjax.objectives import ot
from prefjax.objectives import single
from prefjax.ranking import ratings


def _write_bytes(path, lines):
  path.write_bytes(b"".join(line + b"\n" for line in lines))
  return path


_GOOD = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}).encode()


# ----------------------------------------------------------------------------------------------------
# 1. Non-UTF-8 bytes.


def test_preference_jsonl_with_bad_utf8_names_file_line_byte_and_column(tmp_path):
  bad = b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}'
  path = _write_bytes(tmp_path / "p.jsonl", [_GOOD, bad, _GOOD])
  with pytest.raises(PrefjaxError, match=r"p\.jsonl:2: .*not valid UTF-8 \(byte 0xe9 at column 16\)"):
    data.PreferenceDataset.from_jsonl(path, max_length=16)
  ds = data.PreferenceDataset.from_jsonl(path, max_length=16, on_malformed="drop")
  assert len(ds) == 2 and ds.report.dropped_lines == {"malformed": [f"{path}:2"]}


def test_multi_response_jsonl_with_bad_utf8(tmp_path):
  good = json.dumps({"prompt": "q", "responses": ["a", "b"], "scores": [1, 2]}).encode()
  path = _write_bytes(tmp_path / "k.jsonl", [good, good, b'{"prompt": "\xff"}'])
  with pytest.raises(PrefjaxError, match=r"k\.jsonl:3: .*not valid UTF-8 \(byte 0xff at column 13\)"):
    data.MultiResponseDataset.from_jsonl(path, max_length=16)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_battles_files_with_bad_utf8(tmp_path, suffix):
  if suffix == ".csv":
    lines = [b"model_a,model_b,winner", b"x,y,model_a", b"x\xc3(,y,tie"]
    line, column = 3, 2
  elif suffix == ".jsonl":
    lines = [b'{"model_a": "x", "model_b": "y", "winner": "tie"}',
             b'{"model_a": "x\xc3(", "model_b": "y", "winner": "tie"}']
    line, column = 2, 15
  else:
    lines = [b'[{"model_a": "x", "model_b": "y", "winner": "tie"},',
             b' {"model_a": "x\xc3(", "model_b": "y", "winner": "tie"}]']
    line, column = 2, 16
  path = _write_bytes(tmp_path / f"b{suffix}", lines)
  with pytest.raises(PrefjaxError, match=rf"b{suffix} line {line}: not valid UTF-8 \(byte 0xc3 at column "
                                         rf"{column}\)"):
    ranking.load_battles(path)


def test_ratings_file_with_bad_utf8(tmp_path):
  path = _write_bytes(tmp_path / "r.csv", [b"item,rating", b"a,good", b"b\x80,bad"])
  with pytest.raises(PrefjaxError, match=r"r\.csv line 3: not valid UTF-8 \(byte 0x80 at column 2\)"):
    ratings.load_ratings(path, class_names=["bad", "good"])


# ----------------------------------------------------------------------------------------------------
# 2. Extra CSV cells.


def test_battles_csv_row_with_an_extra_cell_is_an_error(tmp_path):
  path = tmp_path / "b.csv"
  path.write_text("model_a,model_b,winner\nx,y,model_a\nllama, 7b,y,tie\n")
  with pytest.raises(PrefjaxError, match=r"b\.csv line 3: 4 cells but the header has 3 columns "
                                         r"\['model_a', 'model_b', 'winner'\]"):
    ranking.load_battles(path)
  # Extra named columns are still allowed, and a quoted comma is one cell.
  path.write_text('model_a,model_b,winner,judge\nx,y,model_a,h1\n"llama, 7b",y,tie,h2\n')
  battles = ranking.load_battles(path)
  assert battles.model_names == ("llama, 7b", "x", "y") and battles.outcome.tolist() == [0, 2]


def test_ratings_csv_row_with_an_extra_cell_is_an_error(tmp_path):
  path = tmp_path / "r.csv"
  path.write_text("item,rating\na,good\nb,bad,worse\n")
  with pytest.raises(PrefjaxError, match=r"r\.csv line 3: 3 cells but the header has 2 columns"):
    ratings.load_ratings(path, class_names=["bad", "good"])


# ----------------------------------------------------------------------------------------------------
# 3. and 4. Nash toolkit: array-likes, policy validation.

_P = [[0.5, 0.7], [0.3, 0.5]]


def test_nash_functions_accept_nested_lists():
  sol = nash.solve_regularised_nash(_P, [0.0, 0.0], 0.5)
  want = nash.solve_regularised_nash(jnp.asarray(_P), jnp.zeros(2), 0.5)
  np.testing.assert_allclose(sol.policy, want.policy)
  pi = [0.5, 0.5]
  P_j, ref_j = jnp.asarray(_P), jnp.zeros(2)
  np.testing.assert_allclose(nash.nash_residual(pi, _P, [0.0, 0.0], 0.5),
                             nash.nash_residual(jnp.asarray(pi), P_j, ref_j, 0.5))
  np.testing.assert_allclose(nash.duality_gap(pi, _P, [0.0, 0.0], [0.5]),
                             nash.duality_gap(jnp.asarray(pi), P_j, ref_j, jnp.asarray([0.5])))
  np.testing.assert_allclose(nash.exploitability(pi, _P), nash.exploitability(jnp.asarray(pi), P_j))
  np.testing.assert_allclose(nash.game_value(pi, pi, _P, (0.0, 0.0), 0.5), 0.5, rtol=1e-6)
  assert int(nash.condorcet_winner(_P)) == 0
  assert nash.check_game("f", _P, [0.0, 0.0], 0.5, pi=pi) == 2


@pytest.mark.parametrize("pi,match", [
    ([0.9, 0.9], r"duality_gap: pi must be a probability vector summing to 1 .* sums to 1\.8"),
    ([1.5, -0.5], r"duality_gap: pi must be a probability vector .*entry 1 is -0\.5"),
    ([[0.5, 0.5], [0.4, 0.5]], r"row \(1,\) sums to 0\.9"),
])
def test_duality_gap_rejects_a_policy_that_is_not_a_distribution(pi, match):
  with pytest.raises(PrefjaxError, match=match):
    nash.duality_gap(jnp.asarray(pi), jnp.asarray(_P), jnp.zeros(2), 0.5)


def test_exploitability_and_residual_reject_unnormalised_policies():
  with pytest.raises(PrefjaxError, match="exploitability: pi must be a probability vector"):
    nash.exploitability(jnp.asarray([0.2, 0.2]), _P)
  with pytest.raises(PrefjaxError, match="exploitability: pi .*entry 0 is -0.5"):
    nash.exploitability(np.asarray([-0.5, 1.5]), _P)
  with pytest.raises(PrefjaxError, match="nash_residual: pi must be a probability vector"):
    nash.nash_residual(jnp.asarray([0.2, 0.2]), _P, jnp.zeros(2), 0.5)
  with pytest.raises(PrefjaxError, match="game_value: pi2 must be"):
    nash.game_value(jnp.asarray([0.5, 0.5]), jnp.asarray([0.5, 0.6]), _P, jnp.zeros(2), 0.5)


def test_policy_tolerance_accepts_rounding_and_skips_tracers():
  n = 7
  assert nash.policy_tolerance(n, jnp.float32) == pytest.approx(np.sqrt(np.finfo(np.float32).eps))
  assert nash.policy_tolerance(10**9, np.float32) == pytest.approx(4e9 * np.finfo(np.float32).eps)
  # float64 counts at the precision jax computes in (float32 unless x64 is enabled).
  with jax.enable_x64(True):
    assert nash.policy_tolerance(n, np.float64) == pytest.approx(np.sqrt(np.finfo(np.float64).eps))
  with jax.enable_x64(False):
    assert nash.policy_tolerance(n, np.float64) == nash.policy_tolerance(n, np.float32)
  # Softmax output and a policy off by a few ulps pass; one off by 10 sqrt(eps) does not.
  P = jnp.full((n, n), 0.5)
  pi = jax.nn.softmax(jnp.linspace(-3.0, 2.0, n))
  nash.duality_gap(pi, P, jnp.zeros(n), 0.5)
  nash.exploitability(pi * (1 + 3e-7), P)
  with pytest.raises(PrefjaxError, match="tolerance"):
    nash.exploitability(pi * (1 + 10 * nash.policy_tolerance(n, jnp.float32)), P)
  # Under jit the policy is a tracer: no value check (the result is just computed).
  out = jax.jit(nash.duality_gap)(jnp.full(2, 0.9), jnp.asarray(_P), jnp.zeros(2), 0.5)
  assert np.isfinite(float(out))


# ----------------------------------------------------------------------------------------------------
# 5. Chat roles.


def _msgs(role, content):
  return [{"role": role, "content": content}]


def test_misspelled_role_in_the_prompt_is_an_error_naming_field_and_role(tmp_path):
  good = {"prompt": _msgs("user", "hi"), "chosen": _msgs("assistant", "a"),
          "rejected": _msgs("assistant", "b")}
  bad = dict(good, prompt=_msgs("system", "be brief") + _msgs("usr", "hi"))
  path = tmp_path / "c.jsonl"
  path.write_text("\n".join(json.dumps(r) for r in (good, bad)) + "\n")
  with pytest.raises(PrefjaxError, match=r"c\.jsonl:2: .*field 'prompt'\[1\] has unknown role 'usr' "
                                         r"\(known roles: 'system', 'user', 'assistant', 'tool'"):
    data.PreferenceDataset.from_jsonl(path, max_length=64)
  ds = data.PreferenceDataset.from_jsonl(path, max_length=64, chat_roles=["system", "usr", "user",
                                                                          "assistant"])
  assert len(ds) == 2


@pytest.mark.parametrize("field", ["chosen", "rejected"])
def test_misspelled_role_in_a_response_names_field_and_role(tmp_path, field):
  row = {"prompt": _msgs("user", "hi"), "chosen": _msgs("assistant", "a"),
         "rejected": _msgs("assistant", "b")}
  row[field] = _msgs("asistant", "x")
  path = tmp_path / "c.jsonl"
  path.write_text(json.dumps(row) + "\n")
  with pytest.raises(PrefjaxError, match=rf"c\.jsonl:1: .*field '{field}'\[0\] has unknown role "
                                         r"'asistant' \(known roles:"):
    data.PreferenceDataset.from_jsonl(path, max_length=64)
  # A role the template cannot extend the prompt with: the message now names the field and its roles.
  with pytest.raises(PrefjaxError, match=rf"c\.jsonl:1: .*field '{field}' \(roles \['asistant'\]\): the "
                                         r"chat template's rendering"):
    data.PreferenceDataset.from_jsonl(path, max_length=64, chat_roles=["user", "assistant", "asistant"])


def test_misspelled_role_in_multi_response_rows_names_responses_i(tmp_path):
  row = {"prompt": "q", "responses": ["a", _msgs("Assistant", "b"), "c"], "scores": [1, 2, 3]}
  path = tmp_path / "k.jsonl"
  path.write_text(json.dumps(row) + "\n")
  with pytest.raises(PrefjaxError, match=r"k\.jsonl:1: .*field 'responses\[1\]'\[0\] has unknown role "
                                         r"'Assistant'"):
    data.MultiResponseDataset.from_jsonl(path, max_length=64)


def test_template_errors_name_the_row_and_field():
  def strict(messages, add_generation_prompt=False):
    if messages[-1]["role"] == "system":
      raise PrefjaxError("chat template: a conversation cannot end with a system message")
    return data.default_chat_template(messages, add_generation_prompt)
  rows = [{"prompt": _msgs("user", "q"), "chosen": _msgs("assistant", "a"),
           "rejected": _msgs("system", "b")}]
  with pytest.raises(PrefjaxError, match=r"<memory>:1: .*field 'rejected' .*cannot end with a system"):
    data.PreferenceDataset.from_rows(rows, chat_template=strict, max_length=64)
  with pytest.raises(PrefjaxError, match="chat_roles must be"):
    data.PreferenceDataset.from_rows(rows, chat_roles="user")


# ----------------------------------------------------------------------------------------------------
# 6. Opt-in finiteness check of the objectives.

_B = 4


def _logps(bad_arg=None, bad_index=2, value=np.nan):
  rng = np.random.default_rng(0)
  out = {name: jnp.asarray(-rng.uniform(1.0, 5.0, _B), jnp.float32) for name in (
      "policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")}
  if bad_arg is not None:
    out[bad_arg] = out[bad_arg].at[bad_index].set(value)
  return out


@pytest.mark.parametrize("arg,value", [("policy_rejected_logps", np.nan), ("ref_chosen_logps", -np.inf)])
def test_pairwise_check_finite_eager_names_argument_and_index(arg, value):
  x = _logps(arg, 2, value)
  with pytest.raises(PrefjaxError, match=rf"'sigmoid': {arg} has a non-finite value {value} at index 2"):
    objectives.pairwise_loss("sigmoid", **x, beta=0.1, check_finite=True)
  with pytest.raises(PrefjaxError, match=rf"{arg} has a non-finite value"):
    objectives.pairwise_loss_and_metrics("ipo", **x, beta=0.1, check_finite=True)
  lengths = jnp.asarray([3.0, 4.0, np.inf, 2.0])
  with pytest.raises(PrefjaxError, match="chosen_lengths has a non-finite value inf at index 2"):
    objectives.pairwise_loss("sft", **_logps(), beta=0.1, chosen_lengths=lengths, check_finite=True)


def test_pairwise_check_finite_under_jit_is_reported_by_checkify():
  def loss(x):
    return objectives.pairwise_loss("sigmoid", **x, beta=0.1, check_finite=True).mean()
  checked = checkify.checkify(jax.jit(loss))
  err, _ = checked(_logps("ref_rejected_logps", 1))
  assert "ref_rejected_logps has a non-finite value nan at index 1" in err.get()
  with pytest.raises(checkify.JaxRuntimeError, match="ref_rejected_logps"):
    err.throw()
  err, value = checked(_logps())
  assert err.get() is None
  np.testing.assert_allclose(value, objectives.pairwise_loss("sigmoid", **_logps(), beta=0.1).mean(),
                             rtol=1e-6)
  # Also under grad.
  err, _ = checkify.checkify(jax.jit(jax.grad(loss)))(_logps("policy_chosen_logps", 3))
  assert "policy_chosen_logps has a non-finite value nan at index 3" in err.get()


def test_check_finite_off_by_default_changes_nothing():
  x = _logps("policy_chosen_logps", 0)

  def default(x):
    return objectives.pairwise_loss("sigmoid", **x, beta=0.1)

  def off(x):
    return objectives.pairwise_loss("sigmoid", **x, beta=0.1, check_finite=False)

  def on(x):
    return objectives.pairwise_loss("sigmoid", **x, beta=0.1, check_finite=True)

  jaxpr = str(jax.make_jaxpr(default)(x))
  assert jaxpr == str(jax.make_jaxpr(off)(x))
  assert "check" not in jaxpr and "is_finite" not in jaxpr
  assert "check" in str(jax.make_jaxpr(on)(x))
  losses = default(x)  # no error, the NaN flows through as before
  assert np.isnan(losses[0]) and np.all(np.isfinite(losses[1:]))
  np.testing.assert_array_equal(jax.jit(default)(x), losses)
  # Listwise: the default jaxpr has no finiteness check either.
  pol, ref = jnp.zeros((2, 3)), jnp.zeros((2, 3))
  rewards = jnp.arange(6.0).reshape(2, 3)
  lw = lambda p: listwise.listwise_loss("infonca", p, ref, beta=0.1, rewards=rewards)
  assert "is_finite" not in str(jax.make_jaxpr(lw)(pol))


def test_other_families_check_finite_eager_and_under_checkify():
  x = _logps("ref_rejected_logps", 1)
  good = _logps()
  rng = np.random.default_rng(1)
  cases = [
      ("aot_paired_loss", lambda d, **k: ot.aot_paired_loss(**d, beta=0.1, **k)),
      ("aot_unpaired_loss", lambda d, **k: ot.aot_unpaired_loss(**d, beta=0.1, **k)),
      ("mmpo_loss", lambda d, **k: margins.mmpo_loss(**d, quality_margins=jnp.ones(_B), beta=0.1, gamma=1.0,
                                                    **k)),
      ("gamma_po_loss", lambda d, **k: margins.gamma_po_loss(**d, beta=0.1, gamma0=0.5, tau=1.0, **k)),
      ("beta_dpo_loss", lambda d, **k: margins.beta_dpo_loss(
          **d, state=margins.beta_dpo_init(), key=jax.random.PRNGKey(0), beta=0.1, alpha=0.5, **k).losses),
      ("jpo_loss", lambda d, **k: single.jpo_loss(**d, beta=0.1, **k)),
  ]
  for fn, loss in cases:
    with pytest.raises(PrefjaxError, match=rf"{fn}: ref_rejected_logps has a non-finite value nan at index 1"):
      loss(x, check_finite=True)
    loss(x)  # default: no check
    checked = checkify.checkify(jax.jit(lambda d, loss=loss: loss(d, check_finite=True)))
    err, _ = checked(x)
    assert f"{fn}: ref_rejected_logps has a non-finite value nan at index 1" in err.get(), fn
    err, _ = checked(good)
    assert err.get() is None, fn
  # Listwise: a [B, K] index.
  pol = jnp.asarray(rng.normal(size=(2, 3)), jnp.float32).at[1, 2].set(np.inf)
  kwargs = dict(beta=0.1, rewards=jnp.arange(6.0).reshape(2, 3), check_finite=True)
  with pytest.raises(PrefjaxError, match=r"'infonca': policy_logps has a non-finite value inf at index \(1, 2\)"):
    listwise.listwise_loss("infonca", pol, jnp.zeros((2, 3)), **kwargs)
  err, _ = checkify.checkify(jax.jit(lambda p: listwise.listwise_loss("infonca", p, jnp.zeros((2, 3)),
                                                                      **kwargs)))(pol)
  assert "policy_logps has a non-finite value inf at index (1, 2)" in err.get()
  # Single-response, OT and density entry points.
  v = jnp.zeros(_B).at[3].set(np.nan)
  with pytest.raises(PrefjaxError, match="dro_losses: values has a non-finite value nan at index 3"):
    single.dro_losses(jnp.zeros(_B), jnp.zeros(_B), v, jnp.zeros(_B), tau=0.1, check_finite=True)
  with pytest.raises(PrefjaxError, match="bco_loss: ref_logps has a non-finite"):
    single.bco_loss(jnp.zeros(_B), v, jnp.ones(_B, bool), single.bco_init(), beta=0.1, check_finite=True)
  with pytest.raises(PrefjaxError, match="ot_losses: v has a non-finite value nan at index 3"):
    ot.ot_value(jnp.zeros(_B), v, check_finite=True)
  with pytest.raises(PrefjaxError, match="'dpo': logpre_b has a non-finite value nan at index 3"):
    density.density_loss("dpo", jnp.zeros(_B), jnp.zeros(_B), jnp.zeros(_B), v, jnp.ones(_B), beta=0.1,
                         check_finite=True)
  # Nash objectives (one game; vmap + jit under checkify).
  P = jnp.asarray(_P)
  logits = jnp.asarray([0.0, np.nan])
  with pytest.raises(PrefjaxError, match="online_ipo_1_loss: logits has a non-finite value nan at index 1"):
    nash_objectives.online_ipo_1_loss(logits, jnp.zeros(2), P, 0.1, check_finite=True)
  with pytest.raises(PrefjaxError, match="sppo_loss: prev_logits has a non-finite"):
    nash_objectives.sppo_loss(jnp.zeros(2), logits, P, 0.1, check_finite=True)
  batched = jax.jit(jax.vmap(lambda l: nash_objectives.online_ipo_2_loss(l, jnp.zeros(2), P, 0.1,
                                                                         check_finite=True)))
  err, _ = checkify.checkify(batched)(jnp.stack([jnp.zeros(2), logits]))
  assert "online_ipo_2_loss: logits has a non-finite value nan at index 1" in err.get()

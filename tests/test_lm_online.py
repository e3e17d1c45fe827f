"""Online / self-play LM trainers (prefjax.lm.online) against the exact tabular losses of prefjax.objectives.nash.

With one prompt and a one-token response a sequence is an action: the policy is softmax(z) with z the
transformer's logits at the prompt, so the mean of many sampled per-prompt gradients (w.r.t. z) must match
the exact tabular loss's gradient within a few standard errors. Sampling goes through the trainer's own
samplers (the real transformer and `prefjax.lm.sampling`); the loss's forward passes use a tabular model
whose logits are z, so gradients w.r.t. z are exact per sample.
"""


import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefjax import checkpoint as ckpt
from prefjax import jit_utils
from prefjax import preemption
from prefjax import sharding as shd
from prefjax.errors import PrefjaxError
from prefjax.games import experiments as game_experiments
from prefjax.lm import model as lm_model
from prefjax.lm import online
from prefjax.lm import train as lm_train
from prefjax.objectives import nash
from resume_helpers import Crash
from resume_helpers import crash_after
from resume_helpers import records_by_step

import float32_noise

V = 4  # vocabulary = actions
BETA = 0.5
ALPHA_MIX = 0.3  # Nash-MD's mixture weight α = ηβ
LAM = 1.5
K = 3


@flax.struct.dataclass
class TableOracle:
  """P(a ≻ b | x) = P[a_1, b_1] for one-token responses (a pytree, so it is traced by the step)."""
  P_VxV: jax.Array

  def prefer(self, prompt_tokens_BxP, prompt_mask_BxP, a_BxT, mask_a_BxT, b_BxT, mask_b_BxT):
    del prompt_tokens_BxP, prompt_mask_BxP, mask_a_BxT, mask_b_BxT
    return self.P_VxV[a_BxT[:, 0], b_BxT[:, 0]]


def _preferences(seed=0):
  rng = np.random.default_rng(seed)
  lower = np.tril(rng.uniform(size=(V, V)), -1)
  P = lower + np.triu(1.0 - lower.T, 1)
  np.fill_diagonal(P, 0.5)
  return P.astype(np.float32)


def _model_config(max_len=2):
  return lm_model.TransformerConfig(vocab_size=V, d_model=8, num_layers=1, num_heads=1, d_ff=16,
                                    max_len=max_len, style="gpt2", init_std=0.7)


def _params(seed, config=None):
  return nn.unbox(lm_model.init_params(config or _model_config(), jax.random.key(seed)))


def _tabular_apply(params, tokens_BxL, attention_mask_BxT=None):
  del attention_mask_BxT
  b, l = tokens_BxL.shape
  return jnp.broadcast_to(params["z"], (b, l, V))


def _prompt_logits(config, params):
  return lm_model.Transformer(config).apply(params, jnp.zeros((1, 1), jnp.int32))[0, -1]


def _prompts(b):
  return {"prompt_tokens_BxP": jnp.zeros((b, 1), jnp.int32), "prompt_mask_BxP": jnp.ones((b, 1), jnp.int32)}


def _cfg(algorithm, **kw):
  base = dict(algorithm=algorithm, beta=BETA, mixture_weight=ALPHA_MIX, num_samples=K, spin_lambda=LAM,
              spin_alpha=0.5, max_new_tokens=1, batch_size=8, num_steps=4, learning_rate=0.05,
              schedule="constant", grad_clip=0.0, log_every=1)
  base.update(kw)
  return online.OnlineConfig(**base)


def _nash_md_exact(z, zr, P, beta, alpha):
  """IPO-MD exact twin: Σ μ(y) μ(y') (h(y, y') − (P − ½)/β)², μ the (detached) geometric mixture."""
  mu = jnp.exp(nash.mixture_logits(z, zr, beta, alpha / beta))
  ell = nash.log_ratio(z, zr)
  d = ell[:, None] - ell[None, :] - (P - 0.5) / beta
  return mu @ (d * d) @ mu


EXACT = {
    "online_dpo": lambda z, zr, zp, zmu, P: 2.0 * game_experiments.online_dpo_loss(z, zr, P, BETA),
    "online_ipo": lambda z, zr, zp, zmu, P: nash.online_ipo_2_loss(z, zr, P, BETA),
    "nash_md": lambda z, zr, zp, zmu, P: _nash_md_exact(z, zr, P, BETA, ALPHA_MIX),
    "nash_md_pg": lambda z, zr, zp, zmu, P: nash.nash_md_pg_loss(z, zr, P, BETA, ALPHA_MIX / BETA),
    "sppo": lambda z, zr, zp, zmu, P: nash.sppo_loss(z, zp, P, BETA, num_samples_k=K),
    "spin": lambda z, zr, zp, zmu, P: nash.spin_loss(z, zp, zr, zmu, zp, LAM),
    "alpha_spin": lambda z, zr, zp, zmu, P: nash.spin_loss(z, zp, zr, zmu, zp, LAM, alpha=0.5),
}


def _spin_data_fn(zmu):
  """SPIN's data sampler for one-token responses: y ~ softmax(zmu)."""
  def data_fn(key, prompt_tokens_BxP, prompt_mask_BxP):
    del prompt_mask_BxP
    y = jax.random.categorical(key, zmu, shape=(prompt_tokens_BxP.shape[0], 1))
    return y.astype(jnp.int32), jnp.ones_like(y, jnp.int32)
  return data_fn


def _train_setup(algorithm, seed, num_prompts, **kw):
  """(model config, initial params, table oracle, OnlineConfig, prompts) for the short training runs below."""
  config = _model_config()
  prompts = online.PromptArrays({k: np.asarray(v) for k, v in _prompts(num_prompts).items()})
  return config, _params(seed, config), TableOracle(jnp.asarray(_preferences(3))), _cfg(algorithm, **kw), prompts


def test_sampled_gradients_match_exact_tabular_twins():
  config = _model_config()
  pol, ref, prev = _params(1, config), _params(2, config), _params(3, config)
  z, zr, zp = (_prompt_logits(config, p) for p in (pol, ref, prev))
  zmu = jnp.asarray([0.8, -0.4, 0.3, -1.0])
  P = _preferences()
  oracle = TableOracle(jnp.asarray(P))

  data_fn = _spin_data_fn(zmu)
  n = 4096
  prompts = _prompts(n)
  tab = lambda x: {"z": x}

  def sampled_grads(key):
    out = {}
    for i, name in enumerate(EXACT):
      sample_fn, loss_fn = online.make_loss_fn(config, _cfg(name), oracle, data_fn, loss_apply_fn=_tabular_apply)
      samples = sample_fn(pol, prev, ref, prompts, jax.random.fold_in(key, i))
      per_prompt = lambda zz: loss_fn(tab(zz), tab(zr), tab(zp), samples)[1][0]
      out[name] = jax.jacfwd(per_prompt)(z)  # [n, V]: one gradient per prompt (independent samples)
    return out

  grads = jit_utils.jit(sampled_grads, fast_compile=True)(jax.random.key(0))
  for name, exact in EXACT.items():
    want = np.asarray(jax.grad(exact)(z, zr, zp, zmu, jnp.asarray(P)), np.float64)
    g = np.asarray(grads[name], np.float64)
    mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(mean - want) <= 5 * se + 1e-6), (name, mean, want, se)
    assert np.abs(want).max() > 10 * se.max() or name in ("nash_md_pg",), (name, want, se)  # not vacuous


def test_spin_history_plays_the_fictitious_play_mixture_of_past_iterates():
  """spin_history = 2: the rejected responses come from (π_t + π_{t−1})/2, the anchor stays π_t."""
  config = _model_config()
  pol, ref, prev, older = (_params(s, config) for s in (1, 2, 3, 4))
  z, zr, zp, zo = (_prompt_logits(config, p) for p in (pol, ref, prev, older))
  stack = jax.tree.map(lambda a, b: jnp.stack([a, b]), prev, older)  # π_t first
  zmu = jnp.asarray([0.8, -0.4, 0.3, -1.0])
  oracle = TableOracle(jnp.asarray(_preferences()))
  data_fn = _spin_data_fn(zmu)
  mixture = jnp.logaddexp(jax.nn.log_softmax(zp), jax.nn.log_softmax(zo)) - jnp.log(2.0)
  n = 16384
  prompts = _prompts(n)
  tab = lambda x: {"z": x}
  names = ("spin", "alpha_spin")

  def sampled_grads(key):
    out = {}
    for i, name in enumerate(names):
      sample_fn, loss_fn = online.make_loss_fn(config, _cfg(name, spin_history=2), oracle, data_fn,
                                               loss_apply_fn=_tabular_apply)
      samples = sample_fn(pol, stack, ref, prompts, jax.random.fold_in(key, i))
      tab_stack = {"z": jnp.stack([zp, zo])}
      per_prompt = lambda zz: loss_fn(tab(zz), tab(zr), tab_stack, samples)[1][0]
      out[name] = jax.jacfwd(per_prompt)(z)
    return out

  grads = jit_utils.jit(sampled_grads, fast_compile=True)(jax.random.key(5))
  for name in names:
    alpha = 0.5 if name == "alpha_spin" else 0.0
    exact = lambda opp: np.asarray(jax.grad(nash.spin_loss)(z, zp, zr, zmu, opp, LAM, alpha=alpha), np.float64)
    want, without_history = exact(mixture), exact(zp)
    g = np.asarray(grads[name], np.float64)
    mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(mean - want) <= 5 * se + 1e-6), (name, mean, want, se)
    # Not vacuous: the samples reject the gradient of the opponent π_t alone (no history).
    assert np.any(np.abs(mean - without_history) > 8 * se), (name, mean, without_history, se)


def test_spin_history_state_pushes_iterates_and_resumes(tmp_path):
  """spin_history = 2, a new iteration every step: prev_params is [π_t, π_{t−1}]; a crash and resume keeps it."""
  config, params, oracle, cfg, prompts = _train_setup("spin", 7, 16, spin_history=2, iteration_steps=1,
                                                       num_steps=3, checkpoint_every=1)
  kw = dict(init_params=params, data_fn=_spin_data_fn(jnp.asarray([0.8, -0.4, 0.3, -1.0])), verbose=False,
            fast_compile=True)
  leaves = lambda tree: [np.asarray(x) for x in jax.tree.leaves(tree)]
  iterate = lambda stack, k: leaves(jax.tree.map(lambda x: x[k], stack))
  init = online.init_state(config, cfg, params, jax.random.key(0), shd.make_mesh())
  for a, b, c in zip(leaves(params), iterate(init.prev_params, 0), iterate(init.prev_params, 1)):
    np.testing.assert_array_equal(b, a)  # iterates before π_0 are π_0
    np.testing.assert_array_equal(c, a)

  with pytest.raises(Crash):
    online.train_online(config, cfg, prompts, oracle, tmp_path, on_step=crash_after(3), **kw)
  target = lm_train._abstract_state(init)  # pylint: disable=protected-access
  at2, _ = ckpt.Checkpointer(str(tmp_path / "checkpoints")).restore(target, step=2)
  resumed = online.train_online(config, cfg, prompts, oracle, tmp_path, **kw)
  assert resumed.resumed_from == 2
  for p2, s0 in zip(leaves(at2.params), iterate(at2.prev_params, 0)):
    np.testing.assert_array_equal(s0, p2)  # after step 2: [π_2, π_1]
  assert any(not np.array_equal(a, b) for a, b in zip(leaves(params), iterate(at2.prev_params, 1)))
  assert any(not np.array_equal(a, b) for a, b in zip(leaves(at2.params), iterate(at2.prev_params, 1)))
  # After step 3 π_3 is pushed in front and π_1 dropped: [π_3, π_2].
  final = resumed.state
  for p3, p2, s0, s1 in zip(leaves(final.params), leaves(at2.params), iterate(final.prev_params, 0),
                            iterate(final.prev_params, 1)):
    np.testing.assert_array_equal(s0, p3)
    np.testing.assert_array_equal(s1, p2)


def test_egpo_step_uses_fresh_samples_and_step0_loss_is_online_ipo_closed_form():
  """EGPO's update equals its two half steps by hand; at π = π_ref its (online IPO) loss is mean((p − ½)²)/β²."""
  config = _model_config()
  params = _params(6, config)
  P = _preferences(2)
  oracle = TableOracle(jnp.asarray(P))
  b = 64
  cfg = _cfg("egpo", batch_size=b, learning_rate=0.5)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1), ("data", "fsdp", "tensor"))
  state = online.init_state(config, cfg, params, jax.random.key(3), mesh)
  key = jax.random.fold_in(state.key, 0)
  prompts = _prompts(b)
  opt_state0 = jax.tree.map(jnp.copy, state.opt_state)
  new_state, metrics = jit_utils.jit(online.make_online_step(config, cfg), fast_compile=True)(
      state, prompts, params, oracle)

  # Step 0, π_θ = π_ref: h = 0 for any responses, so the loss (online IPO's, on the second half step's
  # samples) is exactly mean((p − ½)²)/β²; the first half step's p are draws from π_ref, whose mean
  # squared deviation is the exact online IPO loss at π_ref (within 5 standard errors).
  p = np.asarray(metrics["oracle_p"], np.float64)
  assert p.shape == (2 * b,)
  np.testing.assert_allclose(float(metrics["loss"]), np.mean((p[b:] - 0.5) ** 2) / BETA ** 2, rtol=1e-5)
  per = (p[:b] - 0.5) ** 2 / BETA ** 2
  zr = _prompt_logits(config, params)
  exact = float(nash.online_ipo_2_loss(zr, zr, jnp.asarray(P), BETA))
  assert abs(per.mean() - exact) <= 5 * per.std(ddof=1) / np.sqrt(b)

  # The same update by hand: half step from samples of π_t (key k1), full step at θ_t from FRESH samples of
  # π_{t+½} (key k2), both from the same optimiser state.
  import optax  # pylint: disable=g-import-not-at-top
  from prefjax.lm import train as lm_train  # pylint: disable=g-import-not-at-top
  tx, _ = lm_train.make_optimizer(cfg)
  sample_fn, loss_fn = online.make_loss_fn(config, cfg, oracle)
  k1, k2 = jax.random.split(key)

  def by_hand(params, opt_state):
    s1 = sample_fn(params, None, params, prompts, k1)
    g1 = jax.grad(lambda q: loss_fn(q, params, None, s1)[0])(params)
    half = optax.apply_updates(params, tx.update(g1, opt_state, params)[0])
    s2 = sample_fn(half, None, params, prompts, k2)
    g2 = jax.grad(lambda q: loss_fn(q, params, None, s2)[0])(params)
    return optax.apply_updates(params, tx.update(g2, opt_state, params)[0]), s1, s2, half

  want, s1, s2, half = jit_utils.jit(by_hand, fast_compile=True)(params, opt_state0)
  for x, y in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(p, np.concatenate([np.asarray(s1.p), np.asarray(s2.p)]), rtol=1e-6)
  t1, t2 = (np.asarray(s.seqs["pair"]["tokens_BxL"]) for s in (s1, s2))
  assert not np.array_equal(t1, t2)  # fresh samples
  # The half iterate differs from θ_t, and the full step from the half step.
  assert any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(half), jax.tree.leaves(params)))
  assert any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(half), jax.tree.leaves(want)))


def test_resume_after_interruption_is_bit_identical_and_bad_oracle_raises(tmp_path):
  config, params, oracle, cfg, prompts = _train_setup("sppo", 7, 24, batch_size=8, num_steps=6, iteration_steps=2,
                                                       checkpoint_every=1)
  kw = dict(init_params=params, verbose=False, fast_compile=True)
  straight = online.train_online(config, cfg, prompts, oracle, tmp_path / "a", **kw)

  with pytest.raises(Crash):
    online.train_online(config, cfg, prompts, oracle, tmp_path / "b", on_step=crash_after(3), **kw)
  resumed = online.train_online(config, cfg, prompts, oracle, tmp_path / "b", **kw)
  assert resumed.resumed_from == 2  # the crash came before step 3's checkpoint
  for a, b in zip(jax.tree.leaves((straight.state.params, straight.state.prev_params, straight.state.opt_state)),
                  jax.tree.leaves((resumed.state.params, resumed.state.prev_params, resumed.state.opt_state))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert records_by_step(tmp_path / "a") == records_by_step(tmp_path / "b")
  # π_t was refreshed at steps 2, 4, 6: the final previous iterate is the final policy.
  for a, b in zip(jax.tree.leaves(straight.state.params), jax.tree.leaves(straight.state.prev_params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  # SIGTERM: the step in flight finishes, is checkpointed, and training stops (same compiled step).
  import os, signal  # pylint: disable=g-import-not-at-top,g-multiple-import
  term = lambda step, record: os.kill(os.getpid(), signal.SIGTERM) if step == 2 else None
  with pytest.raises(preemption.Preempted, match="SIGTERM.*checkpointed step 2"):
    online.train_online(config, cfg, prompts, oracle, tmp_path / "c", on_step=term, **kw)
  again = online.train_online(config, cfg, prompts, oracle, tmp_path / "c", **kw)
  assert again.resumed_from == 2
  for a, b in zip(jax.tree.leaves(straight.state.params), jax.tree.leaves(again.state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  # Same compiled step (the oracle is a traced pytree), a NaN and a > 1 oracle: clear errors.
  for bad, what in ((np.nan, "NaN"), (1.5, "outside")):
    P = _preferences(3)
    P[:, :] = bad
    with pytest.raises(PrefjaxError, match="oracle at step 1"):
      online.train_online(config, cfg, prompts, TableOracle(jnp.asarray(P)), tmp_path / f"bad{what}", **kw)


def test_zero_length_generation_raises(tmp_path):
  """A response that is only EOS (allowed by min_new_tokens = 0) has zero real tokens: a clear error."""
  config = _model_config(max_len=3)
  params = _params(8, config)
  eos = int(jnp.argmax(_prompt_logits(config, params)))  # the likeliest first token: EOS comes first often
  oracle = TableOracle(jnp.asarray(_preferences(4)))
  cfg = _cfg("online_dpo", batch_size=32, max_new_tokens=2, eos_id=eos, min_new_tokens=0, num_steps=1)
  prompts = online.PromptArrays({k: np.asarray(v) for k, v in _prompts(32).items()})
  with pytest.raises(PrefjaxError, match=r"step 1: .*zero real tokens.*min_new_tokens >= 1"):
    online.train_online(config, cfg, prompts, oracle, tmp_path, init_params=params, verbose=False,
                        fast_compile=True)
  lengths = online.content_lengths(jnp.asarray([[eos, 0], [2, eos], [2, 3]]), jnp.asarray([[1, 0], [1, 1], [1, 1]]),
                                   eos)
  np.testing.assert_array_equal(np.asarray(lengths), [0, 1, 2])


def test_config_errors_are_clear():
  with pytest.raises(PrefjaxError, match="algorithm"):
    online.OnlineConfig(algorithm="ppo")
  with pytest.raises(PrefjaxError, match="beta"):
    online.OnlineConfig(beta=0.0)
  with pytest.raises(PrefjaxError, match="num_samples"):
    online.OnlineConfig(algorithm="sppo", num_samples=1)
  with pytest.raises(PrefjaxError, match="labels"):
    online.OnlineConfig(labels="soft")
  with pytest.raises(PrefjaxError, match="mixture_weight"):
    online.OnlineConfig(mixture_weight=1.5)
  with pytest.raises(PrefjaxError, match="max_new_tokens"):
    online.OnlineConfig(max_new_tokens=0)
  with pytest.raises(PrefjaxError, match="spin_history=2 applies to spin / alpha_spin only"):
    online.OnlineConfig(algorithm="sppo", spin_history=2)
  with pytest.raises(PrefjaxError, match="spin_history"):
    online.OnlineConfig(algorithm="spin", spin_history=0)


def test_loss_log_probs_use_the_response_window():
  """The losses' log-probs run the transformer's head only at the `max_new_tokens` response positions: equal
  to the full head's (float32 rounding) for left-padded prompts of several lengths and EOS-shortened
  responses."""
  from prefjax.lm import logprobs  # pylint: disable=g-import-not-at-top
  from prefjax.lm import sampling  # pylint: disable=g-import-not-at-top
  config = lm_model.TransformerConfig(vocab_size=V, d_model=8, num_layers=1, num_heads=1, d_ff=16, max_len=12,
                                      style="gpt2", init_std=0.7)
  params = _params(1, config)
  ctx = online._Ctx(config, _cfg("online_ipo", max_new_tokens=3), None, None)  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  prompt_mask = np.array([[1] * 6, [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]], np.int32)
  prompt_tokens = rng.integers(0, V, (3, 6)).astype(np.int32) * prompt_mask
  gen_mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], np.int32)
  gen_tokens = rng.integers(0, V, (3, 3)).astype(np.int32) * gen_mask
  zeros = jnp.zeros((3, 3), jnp.float32)
  gen = sampling.Generation(jnp.asarray(gen_tokens), jnp.asarray(gen_mask), jnp.asarray(gen_mask.sum(1)), zeros,
                            zeros, None)
  seqs = sampling.sequences(prompt_tokens, prompt_mask, gen)

  @jax.jit
  def both(p):
    full = logprobs.policy_logps(lm_model.Transformer(config).apply, p, seqs["tokens_BxL"], seqs["loss_mask_BxL"],
                                 seqs["attention_mask_BxL"]).logps
    return ctx.logps(p, seqs), full

  got, want = both(params)
  float32_noise.assert_close(got, want, float32_noise.noise_scale(both, params)[1])
  assert np.all(np.asarray(want) < 0)

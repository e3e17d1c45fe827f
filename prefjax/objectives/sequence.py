"""Per-prompt losses on sequence log-probs for the online and self-play trainers (`prefjax.lm.online`).

Pure functions of arrays, `[B]` in, `[B]` out: summed log-probs of sampled responses under the policy, the
reference or the previous iterate, and the preference oracle's probabilities (or 0/1 labels). They are the
sequence-level twins of the tabular losses of `prefjax.objectives.nash` (docs/theory.md §4); the trainer
(`prefjax.lm.online`) samples the responses, asks the oracle and differentiates these. Online DPO, online IPO,
Nash-MD-PG, SPPO (with its soft win rates) and SPIN / α-SPIN.
"""

import jax
import jax.numpy as jnp

from prefjax.objectives import pairwise

sg = jax.lax.stop_gradient


def online_dpo_losses(policy_a_B, policy_b_B, ref_a_B, ref_b_B, pref_B, beta):
  """Online DPO on a sampled pair (Guo et al. arXiv:2402.04792): the DPO sigmoid loss, chosen by the label.

    loss = pref · (−log σ(β h(a, b))) + (1 − pref) · (−log σ(β h(b, a)))

  with `pref` a 0/1 label (a ≻ b) or the oracle's probability (the label's expectation).

  Args:
    policy_a_B, policy_b_B: `[B]` summed log π_θ of the two responses (differentiable).
    ref_a_B, ref_b_B: `[B]` summed log π_ref.
    pref_B: `[B]` P(a ≻ b) or a 0/1 label.
    beta: β > 0.

  Returns:
    `[B]` losses.
  """
  ab = pairwise.pairwise_loss("sigmoid", policy_a_B, policy_b_B, ref_a_B, ref_b_B, beta=beta)
  ba = pairwise.pairwise_loss("sigmoid", policy_b_B, policy_a_B, ref_b_B, ref_a_B, beta=beta)
  return pref_B * ab + (1.0 - pref_B) * ba


def online_ipo_losses(policy_a_B, policy_b_B, ref_a_B, ref_b_B, pref_B, beta):
  """Online IPO on a sampled pair (Calandriello et al. arXiv:2403.08635): (h(a, b) − (pref − ½)/β)².

  Args:
    policy_a_B, policy_b_B: `[B]` summed log π_θ (differentiable).
    ref_a_B, ref_b_B: `[B]` summed log π_ref.
    pref_B: `[B]` P(a ≻ b) or a 0/1 label.
    beta: β > 0.

  Returns:
    `[B]` losses.
  """
  h = (policy_a_B - ref_a_B) - (policy_b_B - ref_b_B)
  return (h - (pref_B - 0.5) / beta) ** 2


def nash_md_pg_losses(policy_a_B, ref_a_B, pref_B, beta, baseline=0.5):
  """Nash-MD-PG's REINFORCE surrogate (Munos et al. arXiv:2312.00886): −[pref − b − β ℓ(a)]_sg log π_θ(a).

  a ∼ π_θ, the opponent ∼ π^μ; `pref` = P(a ≻ opponent). The baseline b has zero expected gradient under
  a ∼ π_θ (it only lowers variance).

  Args:
    policy_a_B: `[B]` summed log π_θ(a) (differentiable).
    ref_a_B: `[B]` summed log π_ref(a).
    pref_B: `[B]` P(a ≻ opponent) or a 0/1 label.
    beta: β > 0.
    baseline: b (½ by default: the value of a tie).

  Returns:
    `[B]` losses.
  """
  advantage = sg(pref_B - baseline - beta * (policy_a_B - ref_a_B))
  return -advantage * policy_a_B


def soft_win_rates(pref_BxKxK):
  """SPPO's soft win rates P̂_i = (1/K) Σ_j pref[i, j] (self included: pref[i, i] = ½), `[B, K]`."""
  return jnp.mean(pref_BxKxK, axis=-1)


def sppo_losses(policy_BxK, prev_BxK, pref_BxKxK, beta):
  """SPPO with soft win rates (Wu et al. arXiv:2405.00675, eq. (4.5)): ½ (1/K) Σ_i (ℓ_t(y_i) − (P̂_i − ½)/β)².

  Args:
    policy_BxK: `[B, K]` summed log π_θ of the K samples (differentiable).
    prev_BxK: `[B, K]` summed log π_t (the previous iterate, which drew them).
    pref_BxKxK: `[B, K, K]` pref[b, i, j] = P(y_i ≻ y_j) (or labels), ½ on the diagonal.
    beta: β > 0 (SPPO's η = 1/β).

  Returns:
    `[B]` losses.
  """
  win = soft_win_rates(pref_BxKxK)
  return 0.5 * jnp.mean((policy_BxK - prev_BxK - (win - 0.5) / beta) ** 2, axis=-1)


def spin_losses(policy_data_B, policy_opp_B, anchor_data_B, anchor_opp_B, lam):
  """SPIN / α-SPIN (arXiv:2401.01335, arXiv:2404.04291): −log σ(λ(ℓ_m(y) − ℓ_m(y'))), ℓ_m = log π_θ − log m.

  `anchor_*` are log m up to a per-prompt constant (it cancels): log π_t (SPIN) or
  (1 − α) log π_t + α log π_ref (α-SPIN).

  Args:
    policy_data_B, policy_opp_B: `[B]` summed log π_θ of the data response y and the opponent's y'.
    anchor_data_B, anchor_opp_B: `[B]` log m of the same responses.
    lam: λ > 0.

  Returns:
    `[B]` losses.
  """
  return pairwise.pairwise_loss("sigmoid", policy_data_B, policy_opp_B, anchor_data_B, anchor_opp_B,
                                  beta=lam)

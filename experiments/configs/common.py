"""Shared pieces of experiment configs (big_vision's `parse_arg` habit: `get_config("quick")`)."""

import ml_collections


def parse_arg(arg, **defaults):
  """Parses 'quick' or 'quick,key=value' style config arguments into a ConfigDict over `defaults`."""
  out = ml_collections.ConfigDict(defaults)
  for part in (arg or "").split(","):
    if not part:
      continue
    key, _, value = part.partition("=")
    if key not in out:
      raise ValueError(f"unknown config argument {key!r}; known: {sorted(out.keys())}")
    out[key] = type(out[key])(value) if value else True
  return out


def bandit_sweep_config():
  """Defaults of the `bandit_sweep` runner (prefjax.bandit.runs), each field with why it is there."""
  c = ml_collections.ConfigDict()
  c.experiment = "bandit_sweep"
  c.name = ""  # Written into summary.json.
  c.num_actions = 3
  c.datasets = ("d1", "unobserved")  # Named pair datasets (prefjax.envs.bandit.NAMED_DATASETS).
  c.bradley_terry_rewards = ()  # Non-empty: also train on an online Bradley–Terry bandit with these rewards.
  c.objectives = ("sigmoid", "ipo")  # Registered pairwise objective names.
  c.objective_settings = ml_collections.ConfigDict()  # {objective: {label_smoothing, divergence, ...}}.
  c.betas = (0.1, 0.5, 1.0)  # β = τ (regularisation strength), swept inside one jitted call.
  c.lr = 0.01
  c.label_smoothing = 0.0  # Default ε for objectives that take one (per-objective in objective_settings).
  c.optimizer = "adam"
  c.num_steps = 18_000
  c.batch_size = 9  # Pairs per step, drawn uniformly with replacement.
  c.record_every = 100  # Steps between recorded metrics.
  c.num_seeds = 10
  # Each seed's final policy is its average over this fraction of the recorded steps (tail averaging removes
  # the constant-learning-rate jitter of the last iterate; the last iterate is reported too).
  c.tail_fraction = 0.25
  c.seed = 0
  # Compile with XLA's optimisation level 0 (compiles ~2x faster, runs ~10x slower): for :quick variants,
  # whose time is mostly compilation.
  c.fast_compile = False
  c.write_table = False
  c.figure = True
  c.figure_objectives = ()  # Objectives drawn in figure.png (empty: all).
  return c

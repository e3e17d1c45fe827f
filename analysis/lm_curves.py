r"""Redraws an `lm_offline` workdir's figure: oracle reward, win rate and KL over steps per objective.

  python -m analysis.lm_curves runs/lm_dpo_synthetic   # writes runs/lm_dpo_synthetic/lm_curves.png

The drawing is `prefjax.plotting.lm.plot_lm_curves` (the runner calls it too).
"""

import argparse

from prefjax.plotting import lm


def plot(workdir, out=None):
  """Draws the three panels for every objective in `workdir`; returns the PNG path."""
  return lm.plot_lm_curves(workdir, out)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdir", help="a finished lm_offline (synthetic task) workdir")
  parser.add_argument("--out", default=None, help="PNG path (default: WORKDIR/lm_curves.png)")
  args = parser.parse_args(argv)
  print(plot(args.workdir, args.out))


if __name__ == "__main__":
  main()

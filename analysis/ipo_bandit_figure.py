r"""Redraws the bandit-sweep figure of a workdir (π(y) over steps, one panel per τ, DPO vs IPO).

  python analysis/ipo_bandit_figure.py runs/ipo_bandit [--objectives=sigmoid,ipo] [--out=figure.png]
"""

import argparse

from prefjax.plotting import bandit


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir")
  parser.add_argument("--objectives", default="", help="comma-separated objectives to draw (default all)")
  parser.add_argument("--out", default="figure.png", help="PNG name inside the workdir")
  args = parser.parse_args()
  objectives = tuple(o for o in args.objectives.split(",") if o) or None
  print(bandit.plot_bandit_sweep(args.workdir, objectives=objectives, out=args.out))


if __name__ == "__main__":
  main()

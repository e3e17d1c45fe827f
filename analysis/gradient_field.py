r"""Draws the gradient fields of pairwise objectives over (π(y_w), π(y_l)) (Feng et al. 2404.04626).

  python analysis/gradient_field.py --out=gradient_field.png --objectives=sigmoid,ipo,hinge --beta=1

Runs in a few seconds on a CPU. Expected: DPO's (sigmoid's) descent direction points mostly down (the
rejected probability falls faster than the chosen one rises wherever π(y_l) < π(y_w)), and its ratio
|∂L/∂π(y_l)| / |∂L/∂π(y_w)| lies on the black x1/x2 curves of the last panel; prints the largest deviation.
"""

import argparse

import numpy as np

from prefjax.analysis_tools import gradient_field as gf
from prefjax.plotting import gradient_field as gf_plot


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="gradient_field.png", help="PNG path")
  parser.add_argument("--objectives", default="sigmoid,ipo,hinge", help="comma-separated pairwise names")
  parser.add_argument("--beta", type=float, default=1.0)
  parser.add_argument("--ref_chosen", type=float, default=0.5)
  parser.add_argument("--ref_rejected", type=float, default=0.5)
  parser.add_argument("--num", type=int, default=17, help="grid points per axis")
  args = parser.parse_args()
  names = [n for n in args.objectives.split(",") if n]
  fig = gf_plot.plot_gradient_fields(names, beta=args.beta, ref_chosen=args.ref_chosen,
                                     ref_rejected=args.ref_rejected, num=args.num, out=args.out)
  fig.clf()
  x1, x2 = gf.probability_grid(args.num)
  g1, g2 = gf.loss_gradient_field("sigmoid", x1, x2, beta=args.beta, ref_chosen=args.ref_chosen,
                             ref_rejected=args.ref_rejected)
  error = np.max(np.abs(np.abs(g2) / np.abs(g1) / gf.dpo_gradient_ratio(x1, x2) - 1))
  print(f"wrote {args.out}; DPO max relative deviation of |dL/dx2|/|dL/dx1| from x1/x2: {error:.2e}")


if __name__ == "__main__":
  main()

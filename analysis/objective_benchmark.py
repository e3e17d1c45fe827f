r"""Redraws the objective benchmark's Pareto figure and rewrites its table.md from a workdir.

  python analysis/objective_benchmark.py runs/objective_benchmark [--out figure.png]

Reads summary.json and arrays.npz (through prefjax.results) written by
`python -m experiments.main --config=experiments/configs/objective_benchmark.py --workdir=runs/objective_benchmark`;
the figure has the Pareto front (oracle reward vs KL(π ‖ π_ref), one marker per objective, coloured by family,
with the KL-optimal front π*_β' ∝ π_ref e^{r̄/β'}), and the label-noise and ranked-data sweeps.
"""

import argparse
import os

from prefjax import results
from prefjax.plotting import benchmark
from prefjax.runs import objective_benchmark


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir")
  parser.add_argument("--out", default="figure.png", help="figure file name inside the workdir")
  args = parser.parse_args()
  table = objective_benchmark.format_table(results.load_summary(args.workdir))
  with open(os.path.join(args.workdir, "table.md"), "w", encoding="utf-8") as f:
    f.write(table)
  print(table)
  print("wrote", benchmark.plot_benchmark(args.workdir, out=args.out))


if __name__ == "__main__":
  main()

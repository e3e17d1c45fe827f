r"""Prints (and writes table.md for) the loss-zoo comparison of a bandit-sweep workdir.

  python analysis/loss_zoo_table.py runs/loss_zoo
"""

import argparse
import os

from prefjax import results
from prefjax.runs import bandit_sweep


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir")
  args = parser.parse_args()
  table = bandit_sweep.format_table(results.load_summary(args.workdir))
  with open(os.path.join(args.workdir, "table.md"), "w", encoding="utf-8") as f:
    f.write(table)
  print(table)


if __name__ == "__main__":
  main()

"""What the runners of `prefjax.runs` share."""

import time


def finish(wd, summary, t_start):
  """Records the run time (`summary["seconds"]`, since `t_start`) and writes summary.json; returns `summary`."""
  summary["seconds"] = time.time() - t_start
  wd.write_summary(summary)
  return summary

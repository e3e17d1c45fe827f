"""Confidence intervals over seeds."""

import numpy as np
from scipy import stats


def t_interval(x, axis=0, level=0.95):
  """Mean of `x` over `axis` and the half-width of its Student-t `level` interval (NaN for one sample)."""
  x = np.asarray(x, np.float64)
  n = x.shape[axis]
  mean = x.mean(axis)
  if n < 2:
    return mean, np.full_like(mean, np.nan)
  return mean, stats.t.ppf(0.5 + level / 2, n - 1) * x.std(axis, ddof=1) / np.sqrt(n)

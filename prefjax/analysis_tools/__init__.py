"""Analysis tools that compute from objectives directly (no workdir): gradient fields of pairwise losses.

Their figure, `plot_gradient_fields`, is drawn in `prefjax.plotting.gradient_field`; it still resolves here.
"""

from prefjax.analysis_tools.gradient_field import dpo_gradient_ratio
from prefjax.analysis_tools.gradient_field import loss_gradient_field
from prefjax.analysis_tools.gradient_field import probability_grid

__all__ = ["dpo_gradient_ratio", "loss_gradient_field", "plot_gradient_fields", "probability_grid"]


def __getattr__(name):
  # On first use: prefjax.plotting.gradient_field imports this package's maths.
  if name == "plot_gradient_fields":
    from prefjax.analysis_tools import gradient_field  # pylint: disable=g-import-not-at-top
    return gradient_field.plot_gradient_fields
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Analysis tools that compute from objectives directly (no workdir): gradient fields of pairwise losses."""

from prefjax.analysis_tools.gradient_field import dpo_gradient_ratio
from prefjax.analysis_tools.gradient_field import loss_gradient_field
from prefjax.analysis_tools.gradient_field import plot_gradient_fields
from prefjax.analysis_tools.gradient_field import probability_grid

__all__ = ["dpo_gradient_ratio", "loss_gradient_field", "plot_gradient_fields", "probability_grid"]

"""The density-estimation view of preference learning (Dumoulin et al., arXiv 2311.14115; docs/theory.md §6).

`prefjax.density.grid`: the 1-D environment (grid, trapezoid normaliser, energy MLP, pretraining, annotator,
pairs). `prefjax.runs.density`: the `pbde_toy` and `pbde_misspecified` runners (`prefjax.density.experiments` re-exports them). The objectives live in
`prefjax.objectives.density`.
"""

from prefjax.density.grid import EnergyMLP
from prefjax.density.grid import Grid
from prefjax.density.grid import PairCells
from prefjax.density.grid import Pairs
from prefjax.density.grid import annotator_component_logpdfs
from prefjax.density.grid import annotator_logpdf
from prefjax.density.grid import make_grid
from prefjax.density.grid import make_pairs
from prefjax.density.grid import normalise
from prefjax.density.grid import pair_cells
from prefjax.density.grid import pretrain
from prefjax.density.grid import pretrain_target_logpdf
from prefjax.density.grid import total_variation
from prefjax.density.grid import trapezoid_log_partition
from prefjax.density.grid import truncated_normal_logpdf

__all__ = [
    "EnergyMLP", "Grid", "PairCells", "Pairs", "annotator_component_logpdfs", "annotator_logpdf",
    "make_grid", "make_pairs", "normalise", "pair_cells", "pretrain", "pretrain_target_logpdf", "total_variation",
    "trapezoid_log_partition", "truncated_normal_logpdf",
]

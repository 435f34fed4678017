"""Layer-wise adaptive optimizers: LARS, TVLARS and LAMB (``torch.optim.Optimizer``s)."""

from tvlars.optim._stats import LayerStats
from tvlars.optim.lamb import LAMB
from tvlars.optim.lars import LARS
from tvlars.optim.tvlars import TVLARS

__all__ = ["LAMB", "LARS", "TVLARS", "LayerStats"]

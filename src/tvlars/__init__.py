"""tvlars: large-batch training with layer-wise adaptive optimizers.

``from tvlars import TVLARS`` gives a drop-in ``torch.optim.Optimizer``; LARS and LAMB are
the baselines of the paper "Revisiting LARS for Large Batch Training Generalization of
Neural Networks". Schedules live in :mod:`tvlars.schedules`, per-layer norm telemetry in
:mod:`tvlars.telemetry`.
"""

from tvlars.optim import LAMB, LARS, TVLARS, LayerStats

__version__ = "0.1.0"
__all__ = ["LAMB", "LARS", "TVLARS", "LayerStats", "__version__"]

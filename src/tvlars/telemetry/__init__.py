"""Per-layer norm telemetry of optimizer steps (the paper's LWN, LGN and LNR).

For a layer (parameter tensor) with weights ``w`` and gradient ``g``, the paper (Section
III, Figure 3) follows the layer weight norm LWN ``||w||``, the layer gradient norm LGN
``||grad||`` and their ratio LNR ``||w|| / ||grad||``. :class:`LayerRecorder` records
these, the trust ratio applied and the effective step size, for the steps of any
``torch.optim.Optimizer``, without synchronizing the device on the step path;
:func:`read_layers` reads the CSV back and :func:`plot_layers` draws Figure 3's panels;
:func:`diagnose` reads a run's norms into findings (``tvlars diagnose``).

Example::

    with LayerRecorder(optimizer, model.named_parameters(), "run/layers.csv", every=10):
        for batch in batches:
            ...
            optimizer.step()
    plot_layers("run/layers.csv", "run/layers.png")
"""

from tvlars.telemetry.diagnosis import DiagnoseInputError, Finding, diagnose
from tvlars.telemetry.layers_file import (
    COLUMNS,
    VALUE_COLUMNS,
    read_grad_clip,
    read_layers,
    split_by_layer,
)
from tvlars.telemetry.plot import plot_layers
from tvlars.telemetry.recorder import LayerRecorder

__all__ = [
    "COLUMNS",
    "VALUE_COLUMNS",
    "DiagnoseInputError",
    "Finding",
    "LayerRecorder",
    "diagnose",
    "plot_layers",
    "read_grad_clip",
    "read_layers",
    "split_by_layer",
]

"""Figure 3 of the paper from a layer telemetry file: LWN, LGN, LNR per layer over steps."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

import numpy as np

from tvlars.telemetry.layers_file import read_layers, split_by_layer

# (column, panel title, y label). LNR = ||w|| / ||grad||, the ratio LARS scales by.
_PANELS = (
    ("weight_norm", "LWN", r"$\|w\|$"),
    ("grad_norm", "LGN", r"$\|\nabla \mathcal{L}(w)\|$"),
    ("norm_ratio", "LNR", r"$\|w\| \,/\, \|\nabla \mathcal{L}(w)\|$"),
)
# Above this many layers a legend hides the curves; a colour bar over depth replaces it.
_MAX_LEGEND_ENTRIES = 10
# A panel switches to a log axis once its positive values span this factor (two decades).
_LOG_SPAN = 100.0


def _wants_log(values: Iterable[np.ndarray]) -> bool:
    finite = [v[np.isfinite(v)] for v in values]
    finite = np.concatenate(finite) if finite else np.empty(0)
    if finite.size == 0 or finite.min() <= 0:
        return False
    return finite.max() / finite.min() >= _LOG_SPAN


def plot_layers(
    path_or_data: str | os.PathLike[str] | Mapping[str, np.ndarray],
    out_png: str | os.PathLike[str],
    layers: Collection[str] | Callable[[str], bool] | None = None,
    test_loss: Iterable[tuple[float, float]] | None = None,
    title: str | None = None,
    spans: Iterable[tuple[float, float, str, str]] | None = None,
) -> Path:
    """Draw the paper's Figure 3 layout and save it as a PNG.

    One panel each for LWN ``||w||``, LGN ``||grad||`` and LNR ``||w|| / ||grad||``
    (Section III), one line per layer over the optimizer steps, and a fourth panel of
    test loss when ``test_loss`` gives ``(step, loss)`` pairs. A panel whose values span
    two decades or more gets a log y axis. Lines are coloured by depth (the recorder's
    layer order, input to output); with more than ten layers a colour bar replaces the
    legend. Non-finite values (the LNR of a zero gradient) are left out of the lines.

    Args:
        path_or_data: a file written by ``LayerRecorder`` or what ``read_layers`` returned.
        out_png: where to write the figure.
        layers: names of the layers to draw, or a predicate on the name; all by default.
        test_loss: optional ``(step, loss)`` pairs for the fourth panel.
        title: optional figure title.
        spans: optional ``(first_step, last_step, colour, label)`` ranges shaded on every
            panel (the findings of ``tvlars diagnose``), labelled below the panels.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    data = path_or_data if isinstance(path_or_data, Mapping) else read_layers(path_or_data)
    series = split_by_layer(data)
    if layers is not None:
        keep = layers if callable(layers) else set(layers).__contains__
        series = {name: s for name, s in series.items() if keep(name)}
    if not series:
        raise ValueError("no layer to plot")
    losses = None if test_loss is None else np.asarray(list(test_loss), dtype=np.float64)

    panels = len(_PANELS) + (losses is not None)
    fig, axes = plt.subplots(
        1, panels, figsize=(4.4 * panels, 3.8), squeeze=False, layout="constrained"
    )
    axes = axes[0]
    cmap = plt.get_cmap("viridis")
    count = len(series)
    colours = [cmap(i / max(count - 1, 1)) for i in range(count)]

    for ax, (column, name, ylabel) in zip(axes, _PANELS, strict=False):
        curves = []
        for colour, (layer, s) in zip(colours, series.items(), strict=True):
            y = np.where(np.isfinite(s[column]), s[column], np.nan)
            curves.append(y)
            ax.plot(s["step"], y, color=colour, linewidth=1.0, label=layer)
        if _wants_log(curves):
            ax.set_yscale("log")
        ax.set_title(f"{name} {ylabel}")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)

    if losses is not None:
        ax = axes[len(_PANELS)]
        if losses.size:
            ax.plot(losses[:, 0], losses[:, 1], color="tab:red", linewidth=1.2, marker=".")
            if _wants_log([losses[:, 1]]):
                ax.set_yscale("log")
        ax.set_title("Test loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3)

    # Each range: a light band, a dashed line at its first step and its number on top,
    # so that overlapping ranges stay apart.
    span_handles = []
    for number, (first, last, colour, label) in enumerate(spans or (), start=1):
        for ax in axes:
            ax.axvspan(first, max(last, first + 0.5), color=colour, alpha=0.07, linewidth=0)
            line = ax.axvline(first, color=colour, linestyle="--", linewidth=1.0)
            # Numbers stacked downwards, so that ranges starting together stay legible.
            ax.text(first, 0.98 - 0.07 * ((number - 1) % 8), f" {number}", color=colour,
                    fontsize="small", va="top", transform=ax.get_xaxis_transform())  # fmt: skip
        line.set_label(f"{number}: {label} (from step {first:g})")
        span_handles.append(line)
    if span_handles:
        fig.legend(
            handles=span_handles, loc="outside lower center", ncols=min(len(span_handles), 3),
            fontsize="small",
        )  # fmt: skip

    if count <= _MAX_LEGEND_ENTRIES:
        axes[0].legend(fontsize="small", loc="best")
    else:
        mappable = ScalarMappable(norm=Normalize(0, count - 1), cmap=cmap)
        bar = fig.colorbar(mappable, ax=list(axes), fraction=0.02, pad=0.01)
        bar.set_label(f"layer index (0 = {next(iter(series))}, input to output)")
    if title:
        fig.suptitle(title)

    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out

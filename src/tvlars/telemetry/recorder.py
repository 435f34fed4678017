"""Per-layer norm telemetry: LWN, LGN, LNR, trust ratio and step size of every step.

The paper (Section III and Figure 3) reasons about layer-wise adaptive optimizers through
three per-layer quantities, for a layer ``k`` with weights ``w`` and gradient ``g``:

- LWN, the layer weight norm ``||w||``;
- LGN, the layer gradient norm ``||grad||``;
- LNR, the layer norm ratio ``||w|| / ||grad||``, which LARS scales its learning rate by.

:class:`LayerRecorder` records them for every adapted layer at every step (or every N-th
step) of any ``torch.optim.Optimizer``, together with the trust ratio the optimizer applied
and the effective step size ``lr * trust_ratio``. The values stay on the device in a
fixed-size buffer and reach the host only when the buffer is full or on ``flush()``, so a
step never waits for the device. The output is a tidy CSV with one row per (step, layer).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from tvlars.optim._base import is_adapted
from tvlars.optim._multi_tensor import (
    Scratch,
)
from tvlars.telemetry.layers_file import (
    GRAD_CLIP_HEADER,
    HEADER,
    VALUE_COLUMNS,
    csv_field,
    prepare_for_append,
)
from tvlars.telemetry.plain_norms import layer_norms_before_step

LayerFilter = Callable[[str], bool] | Collection[str]


class LayerRecorder:
    """Record per-layer norms of an optimizer's steps into a CSV file.

    Each recorded step adds, for every recorded layer (parameter tensor), one row of:

    - ``weight_norm`` (LWN): ``||w||`` before the update;
    - ``grad_norm`` (LGN): the norm of the gradient the step used, see below;
    - ``norm_ratio`` (LNR): ``weight_norm / grad_norm``, the ratio of the paper's
      Section III. It is ``inf`` where the gradient norm is 0 and ``nan`` where both are;
      those values are written as such, since that is what the ratio is;
    - ``trust_ratio``: the layer-wise factor the optimizer applied to the update direction;
    - ``step_size``: the effective step size ``lr * trust_ratio``.

    Two kinds of optimizer are handled:

    - **tvlars' own** (``LARS``, ``TVLARS``, ``LAMB``, recognised by the class attribute
      ``record_layer_stats``): on steps that are recorded the recorder sets
      ``optimizer.record_layer_stats = True`` and afterwards reads the norms the step
      computed anyway from ``optimizer.layer_stats`` (a ``tvlars.optim._stats.LayerStats``),
      so nothing is computed twice. There LGN is the norm the trust ratio divides by:
      ``||g + wd*w||`` for LARS and TVLARS (the denominator of Eq. 2) and the norm of the
      Adam direction plus weight decay for LAMB; ``trust_ratio`` includes eta (and phi(t)
      for TVLARS). The recorded layers are those the optimizer adapts.
    - **any other** ``torch.optim.Optimizer`` (SGD, AdamW, ...): before the update the
      recorder computes ``||w||`` and ``||g + wd*w||`` (``wd`` being the param group's
      ``weight_decay``, 0 if it has none), so LGN has the same meaning as for LARS. A plain
      optimizer applies no layer-wise ratio: ``trust_ratio`` is 1 and ``step_size`` is the
      group's ``lr``. The gradient is read when ``step()`` is called, so an optimizer
      whose closure computes the gradient inside ``step()`` (LBFGS) is seen before it.

    Parameters sharded across processes as DTensors (FSDP2's ``fully_shard``) are recorded
    with their whole layers' values. For tvlars' optimizers the step already made them
    whole, so a recorder on one process suffices; for any other optimizer the recorder's
    norms are a collective, so attach one on every process (those whose file is not
    wanted may write to ``os.devnull``).

    Which layers: those of ``named_parameters`` that the optimizer updates and that pass
    ``layers``. By default, the layers a layer-wise optimizer adapts: a param group's
    ``adapt`` key decides, else tensors with ``ndim <= 1`` (biases, normalization layers)
    are left out, as tvlars' optimizers do with ``exclude_1d=True``. ``layers`` may be a
    predicate on the parameter name or a collection of names; for a plain optimizer it
    replaces the default, for tvlars' optimizers it selects among the adapted layers (the
    others report no trust ratio). A recorded layer that had no gradient at a step (the
    optimizer skipped it) gets ``nan`` in every column of that step.

    Steps are counted by the recorder, from ``start_step``: the row of a step carries the
    number of optimizer steps applied before it (0 for the first step of a fresh run), and
    a step is recorded when that number is a multiple of ``every``, so a resumed run
    records the same steps as an uninterrupted one. A step that ``torch.amp.GradScaler``
    skips (inf/NaN gradients) never calls ``optimizer.step()``, is not counted and has no
    row, as it did not happen for the optimizer either.

    Output: the file at ``path`` keeps the rows of an earlier run whose step is below
    ``start_step`` (so resuming from a checkpoint drops rows written after it) and this
    recorder appends after them; a new or empty file gets the header first. Rows are kept
    on the device in a ``(capacity, num_layers, 5)`` float32 buffer and written when it is
    full, on :meth:`flush` and on :meth:`close`; host memory stays bounded by ``capacity``.
    Only those writes move data to the host (one transfer each); the step path does not.
    A step that hands over its values as one ``(layers, 3)`` tensor (the native CPU
    kernels do) costs the recorder only a reference to it: the flush fills the buffer rows
    of all such steps at once, so up to ``capacity`` of those small tensors are held.

    An optimizer that clips its gradients by their global norm (``LAMB(max_grad_norm=...)``)
    also reports, per step, that norm ``G`` and the factor ``max(G / max_grad_norm, 1)``
    the gradients were divided by: they go to a second file beside ``path``,
    :attr:`grad_clip_path` (``layers.grad_clip.csv`` for ``layers.csv``), one row per
    recorded step (:func:`~tvlars.telemetry.read_grad_clip` reads it), so that the
    per-layer file keeps its columns.

    Use as a context manager, or call :meth:`close`, which writes what is left and
    detaches the hooks. Attach at most one recorder to one of tvlars' optimizers.

    Args:
        optimizer: the optimizer whose steps are recorded.
        named_parameters: ``(name, parameter)`` pairs, or an ``nn.Module`` whose
            ``named_parameters()`` are used. Parameters are matched to the optimizer's by
            identity; those not listed are not recorded.
        path: the CSV file to write.
        every: record every ``every``-th step.
        capacity: how many recorded steps the device buffer holds between writes.
        start_step: the number of steps the optimizer applied before this recorder was
            attached (the step to resume from).
        layers: which layers to record (see above).
        tensorboard: an optional ``torch.utils.tensorboard.SummaryWriter``: each flush
            also writes the rows as scalars ``layers/<layer>/<lwn|lgn|lnr|trust_ratio|
            step_size>`` at their steps (:mod:`tvlars.telemetry.tensorboard`). The
            recorder does not close it.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        named_parameters: Iterable[tuple[str, Tensor]] | nn.Module,
        path: str | os.PathLike[str],
        every: int = 1,
        capacity: int = 256,
        start_step: int = 0,
        layers: LayerFilter | None = None,
        tensorboard: Any = None,
    ) -> None:
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"Invalid every: {every!r} (must be an integer >= 1)")
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"Invalid capacity: {capacity!r} (must be an integer >= 1)")
        if not isinstance(start_step, int) or start_step < 0:
            raise ValueError(f"Invalid start_step: {start_step!r} (must be an integer >= 0)")
        if isinstance(named_parameters, nn.Module):
            named_parameters = named_parameters.named_parameters()

        self.optimizer = optimizer
        self.path = Path(path)
        #: Where the global gradient norms and clip factors go, when the optimizer has them.
        self.grad_clip_path = self.path.with_name(self.path.stem + ".grad_clip.csv")
        self.every = every
        self.capacity = capacity
        self.tensorboard = tensorboard
        #: Number of the next optimizer step (steps applied so far, counted from start_step).
        self.next_step = start_step
        self._layerwise = hasattr(type(optimizer), "record_layer_stats")

        names: dict[int, str] = {}
        for name, param in named_parameters:
            names.setdefault(id(param), name)
        self._params: list[Tensor] = self._select_layers(names, layers)
        #: Names of the recorded layers: the CSV's ``layer`` values, in column order.
        self.layer_names: list[str] = [names[id(p)] for p in self._params]
        self._column = {id(p): i for i, p in enumerate(self._params)}
        self._names = names

        device = self._params[0].device
        self._buffer = torch.empty(
            (capacity, len(self._params), len(VALUE_COLUMNS)), dtype=torch.float32, device=device
        )
        self._nan = torch.full((), math.nan, dtype=torch.float32, device=device)
        self._one = torch.ones((), dtype=torch.float32, device=device)
        self._row_steps: list[int] = []
        # Rows given as one (layers, 3) tensor each are kept as they are, with their
        # buffer row and LRs, and written into the buffer together at the next flush.
        self._stacked_rows: list[tuple[int, Tensor, Sequence[Any]]] = []
        # (step, G, clip factor) of the recorded steps that clipped by the global norm.
        self._grad_clip_rows: list[tuple[int, Tensor, Tensor]] = []
        self._recording = False
        self._closed = False
        self._checked_reported_layers = False
        # Memory for a large layer's g + wd*w on CPU, kept from step to step (see
        # _layer_norms_before_step).
        self._scratch = Scratch()

        prepare_for_append(self.path, HEADER, start_step)
        if self.grad_clip_path.exists():
            prepare_for_append(self.grad_clip_path, GRAD_CLIP_HEADER, start_step)
        if self._layerwise:
            # Restored after every recorded step, so a user who set the flag keeps it.
            self._base_flag = bool(optimizer.record_layer_stats)
            pre, post = self._pre_step_layerwise, self._post_step_layerwise
        else:
            pre, post = self._pre_step_plain, self._post_step_plain
        # The hooks run eagerly even where the step is compiled: they are bookkeeping on
        # the host, and dynamo, tracing them around a step it cannot see into, handed the
        # post-hook a stale layer_stats.
        self._handles = [
            optimizer.register_step_pre_hook(torch.compiler.disable(pre)),
            optimizer.register_step_post_hook(torch.compiler.disable(post)),
        ]

    # ----------------------------------------------------------------- layer selection
    def _select_layers(self, names: Mapping[int, str], layers: LayerFilter | None) -> list[Tensor]:
        if layers is None or callable(layers):
            explicit = None
        else:
            if isinstance(layers, str):
                raise TypeError("layers must be a predicate or a collection of names, not a str")
            explicit = set(layers)
            unknown = explicit - set(names.values())
            if unknown:
                raise ValueError(f"layers not in named_parameters: {sorted(unknown)}")

        selected: dict[int, Tensor] = {}
        # Adapted layers left out on purpose: the only named layers the optimizer may
        # report without being recorded (checked once, on the first recorded step).
        self._declined: set[int] = set()
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                name = names.get(id(param))
                if name is None:
                    continue
                adapted = is_adapted(param, group)
                if self._layerwise and not adapted:
                    if explicit is not None and name in explicit:
                        raise ValueError(
                            f"layer {name!r} is not adapted by {type(self.optimizer).__name__}"
                            ", which reports no norms or trust ratio for it"
                        )
                    continue
                if explicit is not None:
                    keep = name in explicit
                elif callable(layers):
                    keep = bool(layers(name))
                else:
                    keep = adapted
                if keep:
                    selected[id(param)] = param
                elif adapted:
                    self._declined.add(id(param))
        if not selected:
            raise ValueError(
                "no layer to record: no parameter of named_parameters is in the optimizer "
                "and passes the layer selection"
            )
        # Columns follow named_parameters' order (input to output for most models), so a
        # colour scale over the columns reads as depth.
        order = {pid: i for i, pid in enumerate(names)}
        return sorted(selected.values(), key=lambda p: order[id(p)])

    # ----------------------------------------------------------------- step hooks
    def _should_record(self) -> bool:
        return self.next_step % self.every == 0

    def _pre_step_layerwise(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self._recording = self._should_record()
        if self._recording:
            # Cleared so that a step that did not publish its stats is noticed, not
            # mistaken for the previous step's.
            optimizer.layer_stats = None
            optimizer.record_layer_stats = True
        else:
            optimizer.record_layer_stats = self._base_flag

    def _post_step_layerwise(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        if self._recording:
            stats = optimizer.layer_stats
            optimizer.record_layer_stats = self._base_flag
            if stats is None:
                raise RuntimeError(
                    f"{type(optimizer).__name__}.step() did not set layer_stats although "
                    "record_layer_stats was True"
                )
            if not self._checked_reported_layers:
                self._checked_reported_layers = True
                self._warn_unexpected_layers(stats.params)
            if getattr(stats, "global_grad_norm", None) is not None:
                self._grad_clip_rows.append(
                    (self.next_step, stats.global_grad_norm, stats.clip_factor)
                )
            if stats.stacked is not None and self._is_column_order(stats.params):
                # The step's values are already one (layers, 3) tensor in column order.
                self._write_stacked_row(stats.stacked, stats.lr)
                self._finish_step()
                return
            if self._is_column_order(stats.params):
                # The usual case: the step reported exactly the recorded layers, in order.
                weight, grad, trust, lr = (
                    stats.weight_norm,
                    stats.grad_norm,
                    stats.trust_ratio,
                    stats.lr,
                )
            else:
                count = len(self._params)
                weight = [None] * count
                grad = [None] * count
                trust = [None] * count
                lr = [math.nan] * count
                for i, param in enumerate(stats.params):
                    col = self._column.get(id(param))
                    if col is not None:
                        weight[col] = stats.weight_norm[i]
                        grad[col] = stats.grad_norm[i]
                        trust[col] = stats.trust_ratio[i]
                        lr[col] = stats.lr[i]
            self._write_row(weight, grad, trust, lr)
        self._finish_step()

    def _is_column_order(self, reported: list[Tensor]) -> bool:
        return len(reported) == len(self._params) and all(
            p is q for p, q in zip(reported, self._params, strict=True)
        )

    def _warn_unexpected_layers(self, reported: list[Tensor]) -> None:
        unexpected = [
            self._names[id(p)]
            for p in reported
            if id(p) in self._names and id(p) not in self._column and id(p) not in self._declined
        ]
        if unexpected:
            # The recorder predicts the adapted layers from the param groups (keys "adapt"
            # and "exclude_1d"); an optimizer adapting by another rule is not recorded whole.
            warnings.warn(
                f"{type(self.optimizer).__name__} reports layers the recorder did not expect "
                f"to be adapted; they are not recorded: {unexpected}",
                RuntimeWarning,
                stacklevel=2,
            )

    def _pre_step_plain(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self._recording = self._should_record()
        if not self._recording:
            return
        count = len(self._params)
        weight: list[Tensor | None] = [None] * count
        grad: list[Tensor | None] = [None] * count
        trust: list[Tensor | None] = [None] * count
        lr: list[Any] = [math.nan] * count
        # Norms before the update, batched per (device, dtype, weight decay): one
        # _foreach_norm launch per batch instead of one kernel per layer.
        batches: dict[tuple[torch.device, torch.dtype, float], list[tuple[int, Tensor]]] = {}
        for group in optimizer.param_groups:
            decay = group.get("weight_decay", 0.0) or 0.0
            for param in group["params"]:
                col = self._column.get(id(param))
                if col is None or param.grad is None:
                    continue
                key = (param.device, param.dtype, decay)
                batches.setdefault(key, []).append((col, param))
                trust[col] = self._one
                lr[col] = group["lr"]
        with torch.no_grad():
            for (_, dtype, decay), members in batches.items():
                params = [p for _, p in members]
                grads = [p.grad.to_dense() if p.grad.is_sparse else p.grad for p in params]
                w_norms, g_norms = layer_norms_before_step(
                    params, grads, dtype, decay, self._scratch
                )
                for (col, _), w_norm, g_norm in zip(members, w_norms, g_norms, strict=True):
                    weight[col], grad[col] = w_norm, g_norm
            # Written now because the update will change w; committed by the post-hook
            # only if the step completes.
            self._write_row(weight, grad, trust, lr)

    def _post_step_plain(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self._finish_step()

    # ----------------------------------------------------------------- buffer
    def _write_row(
        self,
        weight: Sequence[Tensor | None],
        grad: Sequence[Tensor | None],
        trust: Sequence[Tensor | None],
        lr: Sequence[Any],
    ) -> None:
        """Write one step's values into the next free buffer row, with device ops only.

        A handful of kernels whatever the number of layers (one stack of every 0-d value,
        the ratio, the step size, one copy into the row): per-layer work here would be
        the bulk of the recorder's cost.
        """
        device = self._buffer.device
        count = len(self._params)
        values = [
            self._nan if v is None else v if v.device == device else v.to(device)
            for v in (*weight, *grad, *trust)
        ]
        with torch.no_grad():
            weight_t, grad_t, trust_t = torch.stack(values).to(torch.float32).view(3, count)
            self._write_values(weight_t, grad_t, trust_t, lr)

    def _write_stacked_row(self, stacked: Tensor, lr: Sequence[Any]) -> None:
        # Nothing to compute per step: the step's tensor is fresh (the optimizer does not
        # write into it again), so keeping a reference is as good as a copy.
        self._stacked_rows.append((len(self._row_steps), stacked, lr))

    def _fill_stacked_rows(self) -> None:
        """Write the kept (layers, 3) rows into the buffer, a few kernels for all of them."""
        rows, self._stacked_rows = self._stacked_rows, []
        if not rows:
            return
        device = self._buffer.device
        with torch.no_grad():
            if any(isinstance(x, Tensor) for _, _, lr in rows for x in lr):
                for index, stacked, lr in rows:  # LRs held in tensors: row by row
                    weight_t, grad_t, trust_t = stacked.to(device, torch.float32).unbind(1)
                    self._write_values(weight_t, grad_t, trust_t, lr, index)
                return
            # One conversion for all rows (the native kernels hand over float64 rows).
            values = torch.stack([stacked for _, stacked, _ in rows]).to(device, torch.float32)
            weight_t, grad_t, trust_t = values.unbind(2)
            # At flush time a host-to-device copy of the LRs costs nothing extra: the
            # buffer is about to be read back anyway.
            lr_t = torch.tensor([lr for _, _, lr in rows], dtype=torch.float32, device=device)
            filled = torch.stack(
                (weight_t, grad_t, weight_t / grad_t, trust_t, trust_t * lr_t), dim=2
            )
            indices = torch.tensor([index for index, _, _ in rows], device=device)
            self._buffer.index_copy_(0, indices, filled)

    def _write_values(
        self,
        weight_t: Tensor,
        grad_t: Tensor,
        trust_t: Tensor,
        lr: Sequence[Any],
        index: int | None = None,
    ) -> None:
        """Fill buffer row ``index`` (default: the next) from the three per-layer columns
        (callers hold no_grad)."""
        device = self._buffer.device
        if any(isinstance(x, Tensor) for x in lr):
            lr_t = torch.stack(
                [x.to(device) if isinstance(x, Tensor) else torch.full_like(self._nan, x)
                 for x in lr]
            )  # fmt: skip
            step_t = trust_t * lr_t
        elif all(x == lr[0] for x in lr):
            # One LR for every layer (one param group): a kernel scalar, no transfer.
            step_t = trust_t * lr[0]
        else:
            # Python floats as kernel scalars: building a tensor from them would be a
            # host-to-device copy, which on CUDA waits for the queued work.
            step_t = torch.stack(torch._foreach_mul(list(trust_t.unbind()), list(lr)))
        row = torch.stack((weight_t, grad_t, weight_t / grad_t, trust_t, step_t), dim=1)
        self._buffer[len(self._row_steps) if index is None else index].copy_(row)

    def _finish_step(self) -> None:
        if self._recording:
            self._recording = False
            self._row_steps.append(self.next_step)
            if len(self._row_steps) == self.capacity:
                self.flush()
        self.next_step += 1

    # ----------------------------------------------------------------- output
    def flush(self) -> None:
        """Append the buffered rows to the file (one device-to-host transfer), and to the
        TensorBoard writer when there is one."""
        self._flush_grad_clip()
        count = len(self._row_steps)
        if count == 0:
            return
        self._fill_stacked_rows()
        values = self._buffer[:count].cpu().numpy().astype(np.float64)
        steps = self._row_steps
        self._row_steps = []
        # One format per row and one write per flush: csv.writer's per-field work was most
        # of a flush's time. 9 significant digits round-trip any float32; inf and nan are
        # written as "inf" and "nan", which float() reads back.
        row_format = ",%.9g,%.9g,%.9g,%.9g,%.9g\n"
        names = [csv_field(name) for name in self.layer_names]
        lines = []
        for step, step_values in zip(steps, values.tolist(), strict=True):
            for name, row in zip(names, step_values, strict=True):
                lines.append(f"{step},{name}" + row_format % tuple(row))
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            f.write("".join(lines))
        if self.tensorboard is not None:
            from tvlars.telemetry.tensorboard import write_layer_rows

            write_layer_rows(self.tensorboard, steps, self.layer_names, values)

    def _flush_grad_clip(self) -> None:
        """Append the buffered global norms and clip factors (one transfer)."""
        rows, self._grad_clip_rows = self._grad_clip_rows, []
        if not rows:
            return
        pairs = [torch.stack((norm, factor)).to(torch.float64) for _, norm, factor in rows]
        values = torch.stack(pairs).cpu().tolist()
        if not self.grad_clip_path.exists():
            prepare_for_append(self.grad_clip_path, GRAD_CLIP_HEADER, rows[0][0])
        lines = [f"{step},%.17g,%.17g\n" % tuple(v) for (step, _, _), v in zip(rows, values)]
        with open(self.grad_clip_path, "a", newline="", encoding="utf-8") as f:
            f.write("".join(lines))

    def close(self) -> None:
        """Write the buffered rows and detach from the optimizer. Calling it again is a no-op."""
        if self._closed:
            return
        self._closed = True
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._layerwise:
            self.optimizer.record_layer_stats = self._base_flag
        self._recording = False
        self.flush()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> LayerRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={str(self.path)!r}, layers={len(self.layer_names)}, "
            f"every={self.every}, next_step={self.next_step}, buffered={len(self._row_steps)})"
        )

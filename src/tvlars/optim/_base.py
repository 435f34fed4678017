"""What LARS, TVLARS and LAMB share: the adaptation rule, the step loop, validation.

A subclass provides ``_init_state(param, state, group)`` and
``_update_group(group, params, grads, states, adapted, path, stats, sharded)``; this base class
gathers the parameters that have gradients, decides which of them are adapted, counts
steps, and collects the per-layer norms for telemetry when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from tvlars.optim import _native
from tvlars.optim._multi_tensor import Scratch
from tvlars.optim._paths import (
    FOREACH,
    FUSED_CHOICES,
    NATIVE,
    SINGLE,
    PerStepValues,
    resolve_path,
    wants_native,
)
from tvlars.optim._sharded import ShardedLayers, is_dtensor
from tvlars.optim._stats import LayerStats

#: One param group's part of a step: the group, its parameters that have a gradient, their
#: gradients and states, and their ``ShardedLayers`` (``None`` when none is a DTensor).
Gathered = tuple[
    dict[str, Any], list[Tensor], list[Tensor], list[dict[str, Any]], ShardedLayers | None
]


def require(condition: bool, name: str, value: Any, rule: str) -> None:
    """Raise ``ValueError`` naming the argument, its value and the rule it broke."""
    if not condition:
        raise ValueError(f"Invalid {name}: {value!r} (must be {rule})")


def adapted_flags(params: Iterable[Tensor], group: Mapping[str, Any]) -> list[bool]:
    """Whether each parameter receives weight decay and the trust ratio.

    A group's ``adapt=True/False`` decides; otherwise ``exclude_1d`` (default ``True``)
    excludes tensors with ``ndim <= 1`` (biases and normalization scales and shifts). A
    plain torch optimizer's group has neither key, so the rule also names the layers a
    layer-wise optimizer would adapt there (telemetry uses it so).
    """
    adapt = group.get("adapt")
    if adapt is not None:
        return [bool(adapt) for _ in params]
    if not group.get("exclude_1d", True):
        return [True for _ in params]
    return [param.ndim > 1 for param in params]


def is_adapted(param: Tensor, group: Mapping[str, Any]) -> bool:
    """:func:`adapted_flags` of one parameter."""
    return adapted_flags((param,), group)[0]


def refuse_flat(param: Tensor, optimizer: str) -> None:
    """Raise for FSDP1's flat parameters: several layers in one tensor have no layer-wise
    norms. (DTensors, FSDP2's sharded parameters, are supported: see ``_sharded``.)"""
    if type(param).__name__ == "FlatParameter":
        raise ValueError(
            f"{optimizer} got an FSDP flat parameter (several layers in one tensor): its "
            "norm is not any layer's norm, so the layer-wise trust ratios would be wrong. "
            "Shard with FSDP2 (torch.distributed.fsdp.fully_shard), whose DTensor parameters "
            f"{optimizer} takes, or shard the optimizer state by whole parameters "
            "(DDP, or torch.distributed.optim.ZeroRedundancyOptimizer with "
            f"optimizer_class={optimizer})"
        )


def refuse_sharded_fused(param: Tensor, group: Mapping[str, Any], optimizer: str) -> None:
    """Raise for a DTensor in a group that asks for a fused path it cannot take:
    ``torch.compile`` of the per-tensor update does not take DTensors, and the native
    kernels (``fused=True``/``"native"``) take only CPU shards."""
    fused = group.get("fused")
    if not fused or not is_dtensor(param):
        return
    if fused == "compile" or param.device.type != "cpu":
        raise ValueError(
            f"{optimizer}: fused={fused!r} cannot step DTensor (sharded) parameters on "
            f"{param.device.type}. Leave fused=None (the native kernels on CPU, else the "
            "multi-tensor path, run on the local shards with one all-reduce for the layer "
            "norms) or pass foreach=False (the reference path)."
        )


class LayerStatsCollector:
    """Accumulates the norms a step computed, in group order, into one ``LayerStats``."""

    def __init__(self) -> None:
        self._params: list[Tensor] = []
        self._lr: list[float] = []
        # Per call: a (layers, 3) tensor with the dtype its values are reported in, or the
        # three sequences of 0-d tensors.
        self._chunks: list[
            tuple[Tensor, torch.dtype] | tuple[list[Tensor], list[Tensor], list[Tensor]]
        ] = []
        self._grad_clip: tuple[Tensor, Tensor] | None = None

    def add_grad_clip(self, global_grad_norm: Tensor, clip_factor: Tensor) -> None:
        """The step's global gradient norm G and the factor max(G/c, 1) it divided every
        gradient by (LAMB's ``max_grad_norm``), 0-d tensors."""
        self._grad_clip = (global_grad_norm, clip_factor)

    def add(
        self,
        params: list[Tensor],
        weight_norms: Iterable[Tensor],
        grad_norms: Iterable[Tensor],
        trust_ratios: Iterable[Tensor],
        lr: float,
    ) -> None:
        """Layers whose values are separate 0-d tensors."""
        self._chunks.append((list(weight_norms), list(grad_norms), list(trust_ratios)))
        self._extend(params, lr)

    def add_stacked(
        self, params: list[Tensor], values: Tensor, lr: float, dtype: torch.dtype
    ) -> None:
        """Layers whose values are the rows of ``values`` (layers, 3): |w|, grad norm, trust,
        to be reported in ``dtype`` (converted only if someone reads them one by one)."""
        self._chunks.append((values, dtype))
        self._extend(params, lr)

    def _extend(self, params: list[Tensor], lr: float) -> None:
        self._params.extend(params)
        self._lr.extend([lr] * len(params))

    def finish(self) -> LayerStats:
        stats = self._finish_layers()
        if self._grad_clip is not None:
            stats.global_grad_norm, stats.clip_factor = self._grad_clip
        return stats

    def _finish_layers(self) -> LayerStats:
        chunks = self._chunks
        stacked = [chunk for chunk in chunks if isinstance(chunk[0], Tensor)]
        dtypes = {dtype for _, dtype in stacked}
        if chunks and len(stacked) == len(chunks) and len(dtypes) == 1:
            # The usual case: one tensor, converted only if its values are read one by one.
            tensors = [tensor for tensor, _ in stacked]
            return LayerStats(
                self._params,
                lr=self._lr,
                stacked=tensors[0] if len(tensors) == 1 else torch.cat(tensors),
                dtype=dtypes.pop(),
            )
        columns: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
        for chunk in chunks:
            if isinstance(chunk[0], Tensor):
                values, dtype = chunk
                chunk = tuple(part.unbind() for part in values.to(dtype).t().unbind(0))
            for column, part in zip(columns, chunk):
                column.extend(part)
        return LayerStats(self._params, *columns, lr=self._lr)


class LayerwiseOptimizer(Optimizer):
    """Base class of the layer-wise adaptive optimizers.

    Each param group carries ``step``, the number of steps this optimizer has applied
    (``t`` of the spec). It is a host-side integer, saved by ``state_dict``, so that
    per-step factors such as TVLARS's phi(t) are computed without touching the device.
    """

    #: Set to ``True`` (by ``tvlars.telemetry``) to have each step fill ``layer_stats``.
    record_layer_stats: bool = False
    #: The per-layer norms of the last step, when ``record_layer_stats`` was set.
    layer_stats: LayerStats | None = None
    #: The execution path each param group took in the last step, in group order:
    #: ``"native"`` (the C++ kernels), ``"fused"`` (torch.compile), ``"foreach"`` or
    #: ``"single"``; ``None`` for a group none of whose parameters had a gradient. For
    #: checking that a model gets the fast path (a group falls back, for example, when a
    #: gradient is laid out differently from its weight).
    last_step_paths: tuple[str | None, ...] = ()

    def __init__(
        self,
        params,
        defaults: dict[str, Any],
        *,
        foreach: bool | None,
        fused: bool | str | None,
    ) -> None:
        require(fused in FUSED_CHOICES, "fused", fused, "None, True, False, 'native' or 'compile'")
        require(
            not (fused and foreach),
            "foreach/fused",
            (foreach, fused),
            "at most one of foreach=True and fused=True",
        )
        defaults = {**defaults, "adapt": None, "foreach": foreach, "fused": fused}
        self._per_step_values = PerStepValues()
        self._scratch = Scratch()
        self._sharded_layers: dict[int, ShardedLayers] = {}  # by id(group), see _sharded
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # A group added mid-run continues the optimizer's step count, not a new one.
        current_step = self.param_groups[0]["step"] if self.param_groups else 0
        param_group.setdefault("step", current_step)
        super().add_param_group(param_group)
        try:
            for param in param_group["params"]:
                refuse_flat(param, type(self).__name__)
                refuse_sharded_fused(param, param_group, type(self).__name__)
        except ValueError:
            self.param_groups.pop()  # a refused group is not half added
            raise
        if param_group["adapt"] is not None and not isinstance(param_group["adapt"], bool):
            raise ValueError(
                f"Invalid adapt: {param_group['adapt']!r} (must be True, False or None)"
            )
        self._validate_group(param_group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._per_step_values = PerStepValues()
        self._scratch = Scratch()
        self._sharded_layers = {}
        for group in self.param_groups:
            group.setdefault("step", 0)
            group.setdefault("adapt", None)
            group.setdefault("foreach", None)
            group.setdefault("fused", None)

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Check one group's hyperparameters; subclasses extend."""
        lr = group["lr"]
        if isinstance(lr, Tensor):
            # The step reads the LR on the host; from a GPU tensor that would wait for the
            # GPU at every step.
            require(
                lr.numel() == 1 and lr.device.type == "cpu",
                "lr",
                lr,
                "a float or a one-element CPU tensor",
            )
        require(float(lr) >= 0.0, "lr", lr, ">= 0")

    # Never traced by torch.compile: a step the user compiles (torch.compile(opt.step), or
    # a compiled training step that calls it) runs eagerly, one graph break. Traced, it
    # recompiled at every step: dynamo guards on the Python numbers that change from step
    # to step (the LR a scheduler sets, TVLARS's phi(t), LAMB's bias corrections) and on
    # each parameter's state at the first step, so after dynamo's limit of 8
    # recompilations, each paid for, it ran the step eagerly anyway. The fused path's own
    # compiled kernels (fused="compile") still run compiled inside.
    @torch.compiler.disable
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Apply one update to every parameter that has a gradient.

        Returns the closure's loss when a closure is given (it is evaluated with
        gradients enabled, as in ``torch.optim``). Inside ``torch.compile`` the step runs
        eagerly (a graph break), so it never recompiles.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        collector = LayerStatsCollector() if self.record_layer_stats else None
        gathered = [self._gather(group) for group in self.param_groups]
        self._before_update(gathered, collector)
        paths: list[str | None] = []
        for group, params, grads, states, sharded in gathered:
            path = None
            if sharded is not None:
                adapted = adapted_flags(params, group)
                path = self._sharded_path(group, params, grads, sharded)
                self._update_group(group, params, grads, states, adapted, path, collector, sharded)
            elif params:
                adapted = adapted_flags(params, group)
                device = params[0].device
                native_ok = wants_native(
                    group["foreach"], group["fused"], device
                ) and _native.available(params, grads)
                # Only a group the native kernels cannot take needs its size (to decide
                # whether compiling pays).
                adapted_numel = (
                    0 if native_ok else sum(p.numel() for p, a in zip(params, adapted) if a)
                )
                path = resolve_path(
                    group["foreach"], group["fused"], device, adapted_numel, native_ok
                )
                self._update_group(group, params, grads, states, adapted, path, collector, None)
            paths.append(path)
            group["step"] += 1

        self.last_step_paths = tuple(paths)
        self.layer_stats = collector.finish() if collector is not None else None
        return loss

    def _gather(self, group: dict[str, Any]) -> Gathered:
        """A group's parameters that have gradients, their gradients and states (made on
        first sight), and their :class:`ShardedLayers` when some are DTensors."""
        params, grads, states = [], [], []
        for param in group["params"]:
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError(
                    f"{type(self).__name__} does not support sparse gradients: the trust "
                    "ratio needs the whole gradient's norm. Use a dense embedding "
                    "(sparse=False) or a sparse optimizer such as torch.optim.SparseAdam."
                )
            if param.is_complex():
                raise RuntimeError(f"{type(self).__name__} does not support complex parameters")
            state = self.state[param]
            if not state:
                self._init_state(param, state, group)
            params.append(param)
            grads.append(grad)
            states.append(state)
        sharded = None
        if params:
            previous = self._sharded_layers.get(id(group))
            sharded = ShardedLayers.of(params, grads, previous)
            if sharded is not None:
                self._sharded_layers[id(group)] = sharded
        return group, params, grads, states, sharded

    def _before_update(
        self, gathered: list[Gathered], collector: LayerStatsCollector | None
    ) -> None:
        """Work on the whole step's gradients before any group is updated (LAMB's global
        gradient norm); nothing by default."""

    @staticmethod
    def _sharded_path(group, params, grads, sharded: ShardedLayers) -> str:
        """The path of a group with DTensors: the reference path on the DTensors when
        ``foreach=False``; else on the local shards the native kernels' split steps where
        they can take them (CPU, one dtype), the multi-tensor path elsewhere.
        ``fused=True``/``"native"`` (CPU shards: the constructor refused the rest) require
        the native kernels."""
        if group["foreach"] is False:
            return SINGLE
        native_ok = (
            group["foreach"] is None
            and wants_native(None, group["fused"], params[0].device)
            and _native.sharded_available(sharded.local(params), sharded.local(grads))
        )
        if native_ok:
            return NATIVE
        if group["fused"]:
            raise RuntimeError(
                f"fused={group['fused']!r} needs the native CPU kernels for DTensor "
                "parameters: CPU shards of one dtype (float32, float64 or bfloat16), "
                "contiguous or channels-last with gradients laid out alike, and a working C++ "
                "compiler; pass fused=None to fall back to the multi-tensor path"
            )
        return FOREACH

    def _init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _update_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
        adapted: list[bool],
        path: str,
        collector: LayerStatsCollector | None,
        sharded: ShardedLayers | None,
    ) -> None:
        """Update one group along ``path``. ``sharded`` is set when some parameters are
        DTensors: the single-tensor path then runs on the DTensors themselves, the
        multi-tensor and native paths on their local shards with ``sharded``'s norms."""
        raise NotImplementedError

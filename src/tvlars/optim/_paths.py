"""Choosing and running an execution path: single-tensor, multi-tensor (foreach) or fused.

Every optimizer here writes its per-parameter update once, as a plain function of one
tensor (the *single-tensor reference path*). The *compiled fused path* is that same
function run through ``torch.compile``: inductor turns the norms, the trust ratio, the
moment updates and the parameter update into two passes over memory. Because both paths
run the same source, they cannot drift apart. The *multi-tensor path* is written
separately with ``torch._foreach_*`` ops, which cut the per-tensor dispatch cost on small
tensors. On CPU the fused path is the *native* one (:mod:`tvlars.optim._native`): the same
two passes as C++ kernels, one call per param group, built in about a second.
"""

from __future__ import annotations

import functools
import shutil
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

SINGLE = "single"
FOREACH = "foreach"
FUSED = "fused"  # torch.compile of the per-tensor update
NATIVE = "native"  # the C++ kernels of tvlars.optim._native (CPU)
#: What the ``fused`` keyword accepts: a bool, None (automatic) or the implementation.
FUSED_CHOICES = (None, False, True, "native", "compile")

# Below this many adapted elements in a param group, compilation costs more than it saves
# in any short run (see docs/benchmarks.md), so the automatic choice stays with foreach.
FUSED_MIN_NUMEL = 1 << 20
# The device types on which the automatic choice compiles a large enough group (one the
# native kernels cannot take). None, for now:
# - CPU: on ResNet-18/50 shapes the compiled LARS step was 1.25-1.33x as fast as the
#   multi-tensor one but repaid its 12-16 s cold compile only after 800-2000 steps, and
#   the compiled LAMB step was slower than the multi-tensor one (session 5);
# - CUDA: the fused path makes one compiled call per adapted layer, and each call costs the
#   host 130-250 us of guards and wrappers (benchmarks/path_overhead.py: a ResNet-50 LARS
#   step 3.6-4.1x the multi-tensor one's host time, arithmetic aside), where a GPU does
#   the whole step's arithmetic in well under a millisecond. Measured on this
#   project's CPU host; `.ci/gpu-check` measures it on a GPU (step_time.py's "finishes
#   first" lines): add "cuda" here if the compiled path wins there.
# docs/benchmarks.md has the tables.
AUTO_COMPILE_DEVICE_TYPES: frozenset[str] = frozenset()


def resolve_path(
    foreach: bool | None,
    fused: bool | str | None,
    device: torch.device,
    numel: int,
    native_ok: bool,
) -> str:
    """The path a param group's step takes.

    ``fused="native"``/``"compile"`` pick the fused implementation; ``fused=True`` takes the
    native kernels where they can run the group (``native_ok``: CPU tensors of a supported
    dtype and layout, and a working C++ compiler), else ``torch.compile``; ``foreach``
    True/False are obeyed. With both left at ``None``: the native kernels where they can
    run the group, else the multi-tensor path (``torch.compile`` instead on the device types
    of :data:`AUTO_COMPILE_DEVICE_TYPES`, none at present, for groups large enough to repay
    the compilation).
    """
    if fused == "native":
        if not native_ok:
            raise RuntimeError(
                "fused='native' needs CPU tensors of float32, float64 or bfloat16, contiguous "
                "or channels-last with gradients laid out alike, and a working C++ compiler "
                "(see tvlars.optim._native); pass fused=True to fall back to torch.compile"
            )
        return NATIVE
    if fused == "compile":
        return FUSED
    if fused:
        return NATIVE if native_ok else FUSED
    if foreach is not None:
        return FOREACH if foreach else SINGLE
    if fused is None and native_ok:
        return NATIVE
    auto_compile = device.type in AUTO_COMPILE_DEVICE_TYPES
    if fused is None and auto_compile and numel >= FUSED_MIN_NUMEL and compile_supported(device):
        return FUSED
    return FOREACH


def wants_native(foreach: bool | None, fused: bool | str | None, device: torch.device) -> bool:
    """Whether :func:`resolve_path` could choose the native kernels for these settings (so
    whether it is worth checking that they can run the group)."""
    if fused == "native" or (fused is True and device.type == "cpu"):
        return True
    return fused is None and foreach is None and device.type == "cpu"


@functools.cache
def _compiler_present(device_type: str) -> bool:
    if device_type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            return shutil.which(get_cpp_compiler()) is not None
        except Exception:  # noqa: BLE001 - any failure means "no usable compiler"
            return False
    if device_type == "cuda":
        try:
            from torch.utils._triton import has_triton

            return has_triton()
        except Exception:  # noqa: BLE001
            return False
    return False


_compile_failed: set[str] = set()


def compile_supported(device: torch.device) -> bool:
    """Whether ``torch.compile`` is expected to work for tensors on ``device``."""
    if device.type in _compile_failed:
        return False
    return _compiler_present(device.type)


@functools.cache
def compiled(function: Callable) -> Callable:
    """``torch.compile`` of a per-tensor update, shared by every optimizer instance.

    Shapes are dynamic and tensors are passed flattened (:func:`alias_1d`) so that one
    compiled kernel serves every layer; values that change from step to step come in one
    tensor (:class:`PerStepValues`), so that an LR scheduler never forces a recompilation.
    """
    # Each dtype, momentum form and clamp setting is its own graph; a test suite or a
    # process that trains several models can need more than dynamo's default of 8.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(function, dynamic=True, fullgraph=True)


def run_fused(function: Callable, device: torch.device, strict: bool, *args, **kwargs):
    """Run ``compiled(function)``; on a compiler failure fall back to eager (unless strict).

    The fallback is per tensor, so a failure part-way through a group never applies an
    update twice or skips one.
    """
    if device.type not in _compile_failed:
        try:
            return compiled(function)(*args, **kwargs)
        except Exception as error:  # noqa: BLE001
            if strict:
                raise RuntimeError(
                    f"the fused path's torch.compile failed on {device.type}: {error}. Pass "
                    "fused=True (native kernels on CPU), foreach=True (multi-tensor) or "
                    "fused=None (automatic fallback)."
                ) from error
            _compile_failed.add(device.type)
            warnings.warn(
                f"torch.compile failed on {device.type} ({type(error).__name__}: {error}); "
                "tvlars optimizers fall back to eager updates on this device.",
                RuntimeWarning,
                stacklevel=3,
            )
    return function(*args, **kwargs)


def alias_1d(tensor: Tensor) -> Tensor:
    """A 1-D tensor over ``tensor``'s memory, so one compiled kernel serves every layer shape.

    Not a view: dynamo guards on a view's base shape, which would compile once per layer
    rank. Writes through the alias do not bump ``tensor``'s version counter; the caller
    does that (:func:`torch.autograd.graph.increment_version`), so autograd still notices
    an in-place update of a tensor it saved.
    """
    if not tensor.is_contiguous():
        return tensor
    alias = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    return alias.set_(tensor.untyped_storage(), tensor.storage_offset(), (tensor.numel(),), (1,))


class PerStepValues:
    """Device tensors holding the values that change every step (lr, phi, bias corrections).

    Compiled code reads them as an ordinary 1-D tensor input, so new values never cause a
    recompilation (a Python float may be specialized; a 0-d CPU tensor is read back to the
    host by dynamo's guards at every call). ``fill_`` passes each value to the device as a
    kernel argument: no host-to-device copy, no synchronization.
    """

    def __init__(self) -> None:
        self._tensors: dict[tuple[int, torch.device], Tensor] = {}

    def __call__(self, key: int, device: torch.device, values: Sequence[float]) -> Tensor:
        tensor = self._tensors.get((key, device))
        if tensor is None or tensor.numel() != len(values):
            dtype = torch.float32 if device.type == "mps" else torch.float64
            tensor = torch.empty(len(values), dtype=dtype, device=device)
            self._tensors[(key, device)] = tensor
        for index, value in enumerate(values):
            tensor[index].fill_(value)
        return tensor


def norm_dtype(dtype: torch.dtype) -> torch.dtype:
    """Norms accumulate in at least float32, so that bfloat16 layers get usable ratios."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def group_by_device_and_dtype(
    indices: Sequence[int], tensors: Sequence[Tensor]
) -> dict[tuple[torch.device, torch.dtype], list[int]]:
    """Indices of ``tensors`` bucketed so each bucket can go through one foreach call."""
    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = defaultdict(list)
    for index in indices:
        tensor = tensors[index]
        buckets[(tensor.device, tensor.dtype)].append(index)
    return buckets

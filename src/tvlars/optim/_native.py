"""The native fused path on CPU: one C++ call updates a whole param group.

``_native_kernels.cpp`` holds the kernels (two passes over memory per layer, norms
accumulated in double, OpenMP threads). They are compiled with the system's C++ compiler
on first use (about a second, against 10-20 s for ``torch.compile``), cached per machine
under ``<cache>/kernels/`` (``$TVLARS_CACHE``, else ``~/.cache/tvlars``) and loaded with
:mod:`ctypes`. No torch headers are involved: tensors are passed as data pointers, and the
host never waits on anything (CPU tensors only).

:func:`kernels` returns ``None`` when no compiler works or ``TVLARS_NATIVE=0`` is set;
callers then take the ``torch.compile`` or multi-tensor path.

Threads: the kernels use as many OpenMP threads as ``torch.get_num_threads()``. The
library links ``libgomp.so.1`` by its soname, so where torch's own libgomp is already
loaded under that name (as in torch's Linux CPU wheels) both share one runtime and one
thread pool; ``benchmarks/step_time.py`` prints which OpenMP runtimes a process has.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.graph import increment_version

from tvlars._cache_dir import resolve_cache_dir
from tvlars.optim._paths import group_by_device_and_dtype

SOURCE = Path(__file__).with_name("_native_kernels.cpp")
DISABLE_ENV = "TVLARS_NATIVE"
_FLAGS = [
    "-O3",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-std=c++17",
    "-shared",
    "-fPIC",
]
_SUFFIX = {torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "bfloat16"}
_MOMENTUM_FORMS = {"none": 0, "heavy_ball": 1, "nesterov": 2}


class NativeKernels:
    """The loaded library: ``lars`` and ``lamb`` steps over float32, float64 or bfloat16
    tensors (one dtype per call)."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._library = library
        p = ctypes.c_void_p
        for suffix in _SUFFIX.values():
            lars = getattr(library, f"tvlars_lars_{suffix}")
            lars.argtypes = [ctypes.c_int64, p, p, p, p, p, p, ctypes.c_int64, ctypes.c_int64, p]
            lars.restype = None
            lamb = getattr(library, f"tvlars_lamb_{suffix}")
            # The last argument, a float64 gradient scale or null, is ignored by older builds.
            lamb.argtypes = [ctypes.c_int64, p, p, p, p, p, p, p, ctypes.c_int64, p, p]
            lamb.restype = None
            # Builds of older sources (kernel_ab.py loads them to compare) lack the entry
            # points below.
            optional = {
                "norms": [ctypes.c_int64, p, p, p, ctypes.c_double, ctypes.c_int64, p],
                "lars_apply": [ctypes.c_int64, p, p, p, p, p, p, p, ctypes.c_int64, ctypes.c_int64],
                "lamb_moments": [ctypes.c_int64, p, p, p, p, p, p, p, ctypes.c_int64, p, p],
                "lamb_apply": [ctypes.c_int64, p, p, p, p, p, p, p, ctypes.c_int64],
            }
            for name, argtypes in optional.items():
                if hasattr(library, f"tvlars_{name}_{suffix}"):
                    function = getattr(library, f"tvlars_{name}_{suffix}")
                    function.argtypes = argtypes
                    function.restype = None

    def lars(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        buffers: Sequence[Tensor | None],
        adapted: Sequence[bool],
        values: Sequence[float],
        momentum_form: str,
    ) -> Tensor:
        """One LARS/TVLARS step over ``params`` (one dtype, contiguous CPU tensors).

        ``values``: lr, eta*scale, momentum, weight decay, excluded scale, norm clamp (NaN:
        none), trust clip (1.0: LARC's ``min(trust/lr, 1)``; 0.0: none). Returns an
        (adapted layers, 3) float64 tensor: |w|, |g + wd*w| and the trust ratio (as
        applied) of each adapted layer, in order."""
        count = len(params)
        stats = torch.empty((sum(adapted), 3), dtype=torch.float64)
        kernel = getattr(self._library, f"tvlars_lars_{_SUFFIX[params[0].dtype]}")
        arrays = _lars_arrays(params, grads, buffers, adapted, values)  # held for the call
        kernel(
            count,
            *map(_address, arrays),
            _MOMENTUM_FORMS[momentum_form],
            torch.get_num_threads(),
            stats.data_ptr(),
        )
        return stats

    def lamb(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        exp_avgs: Sequence[Tensor],
        exp_avg_sqs: Sequence[Tensor],
        adapted: Sequence[bool],
        values: Sequence[float],
        grad_scale: Tensor | None = None,
    ) -> Tensor:
        """One LAMB step. ``values``: lr, 1 - beta1^s, 1 - beta2^s, beta1, beta2, eps,
        weight decay, clamp low, clamp high (NaN: none). ``grad_scale``: a one-element
        CPU tensor that every gradient is multiplied by first (global gradient clipping; read
        by the kernel, not here), or ``None``. Returns stats as :meth:`lars`."""
        count = len(params)
        stats = torch.empty((sum(adapted), 3), dtype=torch.float64)
        kernel = getattr(self._library, f"tvlars_lamb_{_SUFFIX[params[0].dtype]}")
        arrays = _lamb_arrays(params, grads, exp_avgs, exp_avg_sqs, adapted, values)
        scale = _kernel_scale(grad_scale)  # held for the call
        kernel(
            count,
            *map(_address, arrays),
            torch.get_num_threads(),
            stats.data_ptr(),
            None if scale is None else scale.data_ptr(),
        )
        return stats

    def norms(self, params: Sequence[Tensor], grads: Sequence[Tensor], weight_decay: float):
        """``|w|`` and ``|g + wd*w|`` of each parameter (one dtype), changing nothing: an
        (n, 2) float64 tensor. The norm pass of :meth:`lars` alone, for telemetry."""
        norms = torch.empty((len(params), 2), dtype=torch.float64)
        if not params:  # a group with no adapted layer (biases only) has none to take
            return norms
        kernel = getattr(self._library, f"tvlars_norms_{_SUFFIX[params[0].dtype]}")
        arrays = (_pointers(params), _pointers(grads), _numels(params))  # held for the call
        kernel(
            len(params),
            *map(_address, arrays),
            float(weight_decay),
            torch.get_num_threads(),
            norms.data_ptr(),
        )
        return norms

    # The split steps of parameters sharded across processes (tvlars.optim._sharded): the
    # caller adds up the first call's sums over the processes, then passes trust ratios.

    def lars_apply(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        buffers: Sequence[Tensor | None],
        adapted: Sequence[bool],
        values: Sequence[float],
        trusts: Tensor,
        momentum_form: str,
    ) -> None:
        """The update pass of :meth:`lars` with the trust ratios given: ``trusts``, one
        float64 value per adapted layer (their norms come from :meth:`norms`)."""
        kernel = getattr(self._library, f"tvlars_lars_apply_{_SUFFIX[params[0].dtype]}")
        trusts = trusts.to(torch.float64).contiguous()
        arrays = _lars_arrays(params, grads, buffers, adapted, values)  # held for the call
        kernel(
            len(params),
            *map(_address, arrays),
            trusts.data_ptr(),
            _MOMENTUM_FORMS[momentum_form],
            torch.get_num_threads(),
        )

    def lamb_moments(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        exp_avgs: Sequence[Tensor],
        exp_avg_sqs: Sequence[Tensor],
        adapted: Sequence[bool],
        values: Sequence[float],
        grad_scale: Tensor | None = None,
    ) -> Tensor:
        """The first pass of :meth:`lamb`: excluded layers updated whole, adapted layers'
        moments updated. Returns an (adapted layers, 2) float64 tensor of the sums of
        squares of w and of u = Adam direction + wd*w (``values`` as :meth:`lamb`'s first
        seven, ``grad_scale`` as :meth:`lamb`'s)."""
        sums = torch.empty((sum(adapted), 2), dtype=torch.float64)
        kernel = getattr(self._library, f"tvlars_lamb_moments_{_SUFFIX[params[0].dtype]}")
        arrays = _lamb_arrays(params, grads, exp_avgs, exp_avg_sqs, adapted, values)
        scale = _kernel_scale(grad_scale)  # held for the call
        kernel(
            len(params),
            *map(_address, arrays),
            torch.get_num_threads(),
            sums.data_ptr(),
            None if scale is None else scale.data_ptr(),
        )
        return sums

    def lamb_apply(
        self,
        params: Sequence[Tensor],
        exp_avgs: Sequence[Tensor],
        exp_avg_sqs: Sequence[Tensor],
        adapted: Sequence[bool],
        values: Sequence[float],
        trusts: Tensor,
    ) -> None:
        """The second pass of :meth:`lamb` with the trust ratios given (one float64 value
        per adapted layer), after :meth:`lamb_moments`."""
        kernel = getattr(self._library, f"tvlars_lamb_apply_{_SUFFIX[params[0].dtype]}")
        trusts = trusts.to(torch.float64).contiguous()
        arrays = (
            _pointers(params),
            _pointers(exp_avgs),
            _pointers(exp_avg_sqs),
            _numels(params),
            _flags(adapted),
            _doubles(values),
        )
        kernel(len(params), *map(_address, arrays), trusts.data_ptr(), torch.get_num_threads())


def report_stats(
    collector, stats: Tensor, params: Sequence[Tensor], adapted: Sequence[bool], lr: float
) -> None:
    """Hand ``stats`` (one row per adapted one of ``params``, as a kernel call returns
    them) to telemetry (``collector``), to be reported in the dtype the other paths report
    norms in. They stay float64 until read one by one: the recorder converts all of its
    rows at once when it flushes, and a conversion per step cost more than its whole row."""
    if not len(stats):
        return
    dtype = torch.float64 if params[0].dtype == torch.float64 else torch.float32
    collector.add_stacked([p for p, a in zip(params, adapted) if a], stats, lr, dtype)


def _list_increment_supported() -> bool:
    """torch >= 2.5 bumps a whole list in one call; 2.4 takes one tensor at a time."""
    probe = torch.zeros(1)
    before = probe._version
    try:
        torch._C._increment_version([probe])
    except (TypeError, RuntimeError, AttributeError):
        return False
    return probe._version == before + 1


_LIST_INCREMENT = _list_increment_supported()


def bump_versions(tensors: Sequence[Tensor]) -> None:
    """Tell autograd that the kernels changed ``tensors`` in place (they write through data
    pointers, which torch cannot see), so that a tensor autograd saved is not reused
    stale."""
    if _LIST_INCREMENT:
        torch._C._increment_version(list(tensors))
    else:
        for tensor in tensors:
            increment_version(tensor)


def _lars_arrays(params, grads, buffers, adapted, values) -> tuple[array.array, ...]:
    """The array arguments of a LARS kernel call (the caller holds them until it returns),
    after checking the buffers against their parameters."""
    buffer_pointers = buffers if buffers[0] is not None else params  # unused without momentum
    _check_state(params, buffer_pointers)
    return (
        _pointers(params),
        _pointers(grads),
        _pointers(buffer_pointers),
        _numels(params),
        _flags(adapted),
        _doubles(values),
    )


def _lamb_arrays(params, grads, exp_avgs, exp_avg_sqs, adapted, values) -> tuple[array.array, ...]:
    """The array arguments of a LAMB kernel call with gradients, as :func:`_lars_arrays`."""
    _check_state(params, exp_avgs)
    _check_state(params, exp_avg_sqs)
    return (
        _pointers(params),
        _pointers(grads),
        _pointers(exp_avgs),
        _pointers(exp_avg_sqs),
        _numels(params),
        _flags(adapted),
        _doubles(values),
    )


def _check_state(params: Sequence[Tensor], states: Sequence[Tensor]) -> None:
    """The kernels index every tensor of a layer alike: its state must match the parameter.

    Runs at every step (a state swapped or resized since the last step would otherwise be
    read through a stale size), so it is written for speed: one loop, no calls on the
    usual contiguous path."""
    for param, state in zip(params, states):
        if (
            state.dtype is param.dtype
            and state.shape == param.shape
            and (
                state.is_contiguous() if param.is_contiguous() else _same_dense_layout(param, state)
            )
        ):
            continue
        raise RuntimeError(
            "native kernels: an optimizer state tensor does not match its parameter "
            f"(dtype {state.dtype} vs {param.dtype}, shape {tuple(state.shape)} vs "
            f"{tuple(param.shape)}, strides {state.stride()} vs {param.stride()}); pass "
            "fused='compile' or foreach=True"
        )


def _kernel_scale(grad_scale: Tensor | None) -> Tensor | None:
    """The gradient scale as the kernels read it: one float64 in CPU memory (the kernel
    reads the value itself, so the host never waits for it here)."""
    if grad_scale is None:
        return None
    return grad_scale.to(device="cpu", dtype=torch.float64).reshape(1).contiguous()


def _pointers(tensors: Sequence[Tensor]) -> array.array:
    """The tensors' data addresses as a C array of int64 (pass ``_address`` of it)."""
    return array.array("q", [t.data_ptr() for t in tensors])


def _numels(tensors: Sequence[Tensor]) -> array.array:
    return array.array("q", [t.numel() for t in tensors])


def _flags(flags: Sequence[bool]) -> array.array:
    return array.array("B", flags)


def _doubles(values: Sequence[float]) -> array.array:
    return array.array("d", values)


def _address(values: array.array) -> int:
    """Where ``values`` keeps its items: the kernels read them there during the call (the
    caller holds ``values`` until the call returns)."""
    return values.buffer_info()[0]


def usable(params: Sequence[Tensor], grads: Sequence[Tensor]) -> bool:
    """Whether the kernels can take these parameters and their gradients: CPU tensors of a
    supported dtype, each dense in memory with its gradient laid out alike (see
    :func:`_same_dense_layout`)."""
    checked_dtype = None  # hashing a dtype is slow: look one up only when it changes
    for param, grad in zip(params, grads, strict=True):
        dtype = param.dtype
        if dtype is not checked_dtype:
            if dtype not in _SUFFIX:
                return False
            checked_dtype = dtype
        if not param.is_cpu:
            return False
        if param.is_contiguous():
            if not grad.is_contiguous():
                return False
        elif not _same_dense_layout(param, grad):
            return False
    return True


def _same_dense_layout(param: Tensor, other: Tensor) -> bool:
    """Whether ``param`` fills its memory without gaps and ``other`` stores the same
    elements in the same places: then the kernels, which read tensors as flat arrays, pair
    each weight with its own gradient and state. Contiguous, or channels-last (what
    ``model.to(memory_format=torch.channels_last)`` makes of convolution weights; autograd
    and ``zeros_like`` keep that layout for gradients and state)."""
    if param.is_contiguous():
        return other.is_contiguous()
    dense = (param.dim() == 4 and param.is_contiguous(memory_format=torch.channels_last)) or (
        param.dim() == 5 and param.is_contiguous(memory_format=torch.channels_last_3d)
    )
    return dense and other.stride() == param.stride()


def _by_dtype(params: Sequence[Tensor], *others: Sequence) -> list[tuple[Sequence, ...]]:
    """``(params, *others)`` cut into one tuple of lists per dtype of ``params`` (one kernel
    call each), in order; the usual single-dtype group is passed on without copying."""
    first = params[0].dtype
    if all(t.dtype is first for t in params):
        return [(params, *others)]
    buckets = group_by_device_and_dtype(range(len(params)), params).values()
    return [
        tuple([sequence[i] for i in indices] for sequence in (params, *others))
        for indices in buckets
    ]


def _step_by_dtype(step, lists: tuple[Sequence, ...], collector, lr: float) -> None:
    """Run ``step(params, ..., adapted)`` (a kernel call returning stats) once per dtype of
    ``lists[0]``; tell autograd about the in-place update and telemetry (``collector``)
    about the norms. ``lists`` ends with the adapted flags."""
    for chunk in _by_dtype(*lists):
        stats = step(*chunk)
        bump_versions(chunk[0])
        if collector is not None:
            report_stats(collector, stats, chunk[0], chunk[-1], lr)


# The steps below are opaque to torch.compile (a ctypes call): a compiled training step
# runs them eagerly, between its graphs, instead of tracing into the library loading.


@torch.compiler.disable
def available(params: Sequence[Tensor], grads: Sequence[Tensor]) -> bool:
    """Whether the kernels exist here and can take this group."""
    return kernels() is not None and usable(params, grads)


@torch.compiler.disable
def layer_norms(params: Sequence[Tensor], grads: Sequence[Tensor], weight_decay: float) -> Tensor:
    """``|w|`` and ``|g + wd*w|`` of each parameter, as an (n, 2) float64 tensor (see
    :meth:`NativeKernels.norms`); the caller checks :func:`available` first."""
    return kernels().norms(params, grads, weight_decay)


@torch.compiler.disable
def sharded_available(params: Sequence[Tensor], grads: Sequence[Tensor]) -> bool:
    """Whether the split steps can take these local shards: as :func:`available`, for one
    dtype (the split steps make one collective per call, so a group is one call)."""
    kernels_ = kernels()
    return (
        kernels_ is not None
        and hasattr(kernels_._library, "tvlars_lamb_apply_float32")
        and len({p.dtype for p in params}) == 1
        and usable(params, grads)
    )


@torch.compiler.disable
def lars_group(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    buffers: Sequence[Tensor | None],
    adapted: Sequence[bool],
    values: Sequence[float],
    momentum_form: str,
    collector,
    lr: float,
) -> None:
    """A LARS/TVLARS step of one param group (see :meth:`NativeKernels.lars`)."""
    _step_by_dtype(
        lambda *chunk: kernels().lars(*chunk, values, momentum_form),
        (params, grads, buffers, adapted),
        collector,
        lr,
    )


@torch.compiler.disable
def lamb_group(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    adapted: Sequence[bool],
    values: Sequence[float],
    collector,
    lr: float,
    grad_scale: Tensor | None = None,
) -> None:
    """A LAMB step of one param group (see :meth:`NativeKernels.lamb`)."""
    _step_by_dtype(
        lambda *chunk: kernels().lamb(*chunk, values, grad_scale),
        (params, grads, exp_avgs, exp_avg_sqs, adapted),
        collector,
        lr,
    )


def _compiler() -> str | None:
    for candidate in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def _cpu_identity() -> str:
    """The CPU's model and instruction-set flags: the library is built with -march=native,
    so a cache shared by different machines must not hand one's build to another."""
    try:
        with open("/proc/cpuinfo") as info:
            lines = [line for line in info if line.startswith(("model name", "flags"))]
        return "".join(dict.fromkeys(lines))  # one of each distinct line, in order
    except OSError:
        return platform.processor() or platform.machine()


# Tried in order until one builds: this CPU's full instruction set, then a portable build
# for compilers that do not know -march=native (older Apple clang on arm64); OpenMP
# threads where the compiler has them, else one thread, still vectorized (the simd
# reductions need -fopenmp-simd to be allowed to reorder their sums).
_ARCH_OPTIONS = (["-march=native"], [])
_OPENMP_OPTIONS = (["-fopenmp"], ["-fopenmp-simd"], [])


def _build(compiler: str, target: Path, source: Path = SOURCE) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        command = [compiler, *_FLAGS, str(source), "-o", str(built)]
        for arch in _ARCH_OPTIONS:
            for openmp in _OPENMP_OPTIONS:
                result = subprocess.run([*command, *arch, *openmp], capture_output=True, text=True)
                if result.returncode == 0:
                    os.replace(built, target)  # atomic: a concurrent builder finds a whole file
                    return
        raise RuntimeError(f"{compiler} failed:\n{result.stderr.strip()[-2000:]}")


@functools.cache
def kernels() -> NativeKernels | None:
    """The native kernels, built on first use; ``None`` where they cannot be had."""
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return None
    compiler = _compiler()
    if compiler is None:
        return None
    options = [*_FLAGS, *(" ".join(o) for o in (*_ARCH_OPTIONS, *_OPENMP_OPTIONS))]
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), compiler, *options, _cpu_identity()]).encode()
    ).hexdigest()[:16]
    target = resolve_cache_dir() / "kernels" / f"tvlars-optim-{key}.so"
    # A build that failed is not retried by every process (each try takes seconds); the
    # marker holds the compiler's message, and deleting it asks for a new try.
    failed = target.with_suffix(".failed")
    try:
        if failed.exists():
            raise RuntimeError(f"{failed.read_text().strip()} (delete {failed} to try again)")
        if not target.exists():
            try:
                _build(compiler, target)
            except RuntimeError as error:
                _write_atomically(failed, str(error))
                raise
        try:
            return NativeKernels(ctypes.CDLL(str(target)))
        except (OSError, AttributeError) as error:
            # A corrupt cached build (a truncated copy, a full disk): remove it, so that
            # the next process builds it again instead of failing on it forever.
            with contextlib.suppress(OSError):
                target.unlink()
            raise RuntimeError(f"{error}; removed {target}, the next run rebuilds it") from None
    except (OSError, RuntimeError) as error:
        warnings.warn(
            f"tvlars: the native CPU optimizer kernels could not be built or loaded ({error}); "
            "using torch.compile or the multi-tensor path instead",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as file:
        file.write(text)
    os.replace(file.name, path)

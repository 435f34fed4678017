"""Building blocks of the multi-tensor path: chunks, scratch memory, norms, momentum.

The multi-tensor path (``foreach=True``, and the default where neither the native kernels
nor ``torch.compile`` can run, e.g. on a CPU machine without a C++ compiler) is written
with ``torch._foreach_*`` ops. On a GPU each such op is a few kernels over a whole list of
tensors. On CPU a foreach op is a loop over the list, and what costs is memory traffic,
not kernel launches; written as on a GPU it paid for three things it did not need
(measured on ResNet-18 shapes, ``benchmarks/step_time.py``):

- fresh temporaries every step: torch's CPU allocator gives large freed blocks back to
  the system, so each step page-faults them in again (two thirds of the time of the op
  that made the directions ``g + wd*w``). Here the temporaries of a large layer live in
  a :class:`Scratch` that the optimizer keeps from step to step (small blocks are
  reused by the allocator anyway);
- whole-list ops, each streaming every layer through memory before the next op starts.
  Here a CPU bucket goes in chunks of about :data:`CPU_CHUNK_NUMEL` elements
  (:func:`chunks`), so that the next op finds a chunk's tensors still in cache, and the
  scratch memory stays bounded;
- torch's CPU norm kernel, which runs at about 10 GB/s here and (in float32) is the
  less exact of the two: on a 2.36M-element layer its relative error against float64
  was 4e-5, against 5e-6 for a BLAS dot product. Here a large layer's norm is the square
  root of a dot product (:func:`layer_norms`), 1.6x as fast;

and heavy-ball momentum takes torch's fused SGD kernel on CPU and CUDA (one pass over
memory instead of the three that three foreach ops make, :func:`heavy_ball_step`), and
LAMB's moments and Adam direction take torch's fused Adam kernel on CPU (one pass instead
of eight, :func:`negated_adam_directions`). Both kernels are used only where they are
right: for float32/float64 tensors laid out alike. On other devices buckets go whole,
with fresh temporaries (GPU caching allocators recycle them) and ``torch._foreach_norm``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

#: CPU buckets are processed in chunks of about this many elements (a tensor larger than
#: this is a chunk of its own). On ResNet-18/50 shapes 2^18 beat 2^20 by 10-25% (LARS
#: 22/49 ms against 28/55 ms, LAMB 56/114 against 63/118), and 2^20 beat whole buckets.
CPU_CHUNK_NUMEL = 1 << 18

_FUSED_SGD_DEVICES = {"cpu", "cuda"}
# torch 2.13's CPU fused SGD leaves float16/bfloat16 parameters unchanged (it updates only
# the buffer), and on any device it walks memory in order, so tensors whose strides differ
# get each other's elements: those cases take the foreach ops (tests/test_optim_multi_tensor.py).
_FUSED_KERNEL_DTYPES = (torch.float32, torch.float64)
_FUSED_ADAM_DEVICES = {"cpu"}  # emptied where torch turns out to have no such kernel
# torch.OutOfMemoryError from torch 2.5 on; torch.cuda's before.
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


def on_cpu(tensor: Tensor) -> bool:
    """Whether the CPU arrangement applies (chunks, scratch memory, BLAS norms, torch's
    fused Adam kernel): a CPU tensor. (The optimizers' step is never traced by
    ``torch.compile``, so these eager-only tools are always usable there.)"""
    return tensor.device.type == "cpu"


def chunks(indices: Sequence[int], tensors: Sequence[Tensor]) -> list[list[int]]:
    """``indices`` split into consecutive runs of at most :data:`CPU_CHUNK_NUMEL` elements
    each (or one tensor, if larger) where :func:`on_cpu`; one run elsewhere."""
    if not indices:
        return []
    if not on_cpu(tensors[indices[0]]):
        return [list(indices)]
    runs: list[list[int]] = []
    run: list[int] = []
    run_numel = 0
    for index in indices:
        numel = tensors[index].numel()
        if run and run_numel + numel > CPU_CHUNK_NUMEL:
            runs.append(run)
            run, run_numel = [], 0
        run.append(index)
        run_numel += numel
    runs.append(run)
    return runs


class Scratch:
    """Memory for the multi-tensor path's temporaries, reused from step to step.

    One flat buffer per (device, dtype, slot), grown to the largest chunk it has served;
    :meth:`like` hands out tensors over it shaped and laid out like the given ones. Not
    part of an optimizer's state: it holds nothing between steps that matters.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype, int], Tensor] = {}

    def like(self, tensors: Sequence[Tensor], slot: int = 0) -> list[Tensor]:
        """Uninitialized tensors with the shapes and strides of ``tensors`` (one device and
        dtype), over this scratch's memory for ``slot``. Valid until the next call for the
        same slot, device and dtype."""
        first = tensors[0]
        total = sum(tensor.numel() for tensor in tensors)
        key = (first.device, first.dtype, slot)
        flat = self._buffers.get(key)
        if flat is None or flat.numel() < total:
            flat = torch.empty(total, dtype=first.dtype, device=first.device)
            self._buffers[key] = flat
        views, offset = [], 0
        for tensor in tensors:
            numel = tensor.numel()
            if _dense(tensor):
                views.append(flat.as_strided(tensor.shape, tensor.stride(), offset))
            else:  # a strided view into a larger tensor: its layout has holes
                views.append(torch.empty_like(tensor, memory_format=torch.contiguous_format))
            offset += numel
        return views


def scratch_for(chunk: Sequence[Tensor], scratch: Scratch) -> Scratch | None:
    """``scratch`` where a chunk's temporaries should use it: a chunk that is one large CPU
    layer (fresh memory for it page-faults at every step). ``None`` for a chunk of small
    layers, which does better with one foreach call than with a Python loop (and whose
    small blocks the allocator reuses), and off the CPU."""
    return scratch if len(chunk) == 1 and on_cpu(chunk[0]) else None


def decayed_gradients(
    grads: Sequence[Tensor], params: Sequence[Tensor], weight_decay: float, scratch: Scratch | None
) -> list[Tensor]:
    """``g + wd*w`` of each pair, as tensors the caller may overwrite: over ``scratch``'s
    memory when it is given, else fresh ones."""
    if scratch is None:
        return torch._foreach_add(grads, params, alpha=weight_decay)
    directions = scratch.like(params)
    for direction, grad, param in zip(directions, grads, params):
        torch.add(grad, param, alpha=weight_decay, out=direction)
    return directions


def _dense(tensor: Tensor) -> bool:
    """Whether ``tensor``'s elements fill exactly ``numel`` consecutive memory cells (any
    order of dimensions), so that a view with its strides fits in ``numel`` cells."""
    if tensor.is_contiguous():
        return True
    span = 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
    return all(stride > 0 for stride in tensor.stride()) and span == tensor.numel()


def _same_dense_layout(first: Tensor, second: Tensor, third: Tensor) -> bool:
    """Whether three tensors are laid out alike, each filling its memory without holes, so
    that walking their memory in order pairs up the same elements."""
    stride = first.stride()
    return second.stride() == stride and third.stride() == stride and _dense(first)


def layer_norms(tensors: Sequence[Tensor], accumulate: torch.dtype) -> Tensor:
    """``|x|`` (L2) of each tensor, stacked into one 1-D tensor of dtype ``accumulate``.

    One CPU float32/float64 tensor (a chunk that is one large layer): ``sqrt(x . x)`` with
    a BLAS dot product (faster and, in float32, more exact than torch's CPU norm kernel;
    see the module docstring). Several tensors (a chunk of small layers): one
    ``torch._foreach_norm`` call, as a call per tensor would cost more than it saves.
    """
    first = tensors[0]
    single = len(tensors) == 1
    if single and on_cpu(first) and first.dtype in (torch.float32, torch.float64):
        flat = first.reshape(-1)
        return torch.dot(flat, flat).sqrt_().reshape(1).to(accumulate)
    return torch.stack(torch._foreach_norm(tensors, 2, dtype=accumulate))


def heavy_ball_step(
    params: list[Tensor], updates: list[Tensor], buffers: list[Tensor], lr: float, momentum: float
) -> None:
    """``m <- mu*m + d;  w <- w - lr*m`` for lists of one device and dtype.

    On CPU and CUDA this is torch's fused SGD kernel with no weight decay and no dampening
    (one pass over w, d and m; it reads ``updates`` only, so they may be gradients), when
    the tensors are float32/float64 and each triple is laid out alike. Otherwise, or
    where that kernel is missing, three foreach ops.
    """
    device_type = params[0].device.type
    if (
        device_type in _FUSED_SGD_DEVICES
        and params[0].dtype in _FUSED_KERNEL_DTYPES
        and all(map(_same_dense_layout, params, updates, buffers))
    ):
        ran = _run_fused_kernel(
            lambda: torch._fused_sgd_(
                params,
                updates,
                buffers,
                weight_decay=0.0,
                momentum=momentum,
                lr=lr,
                dampening=0.0,
                nesterov=False,
                maximize=False,
                is_first_step=False,
            ),
            _FUSED_SGD_DEVICES,
            device_type,
        )
        if ran:
            return
    torch._foreach_mul_(buffers, momentum)
    torch._foreach_add_(buffers, updates)
    torch._foreach_add_(params, buffers, alpha=-lr)


def negated_adam_directions(
    scratch: Scratch,
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    bias_step: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> list[Tensor] | None:
    """Adam's moment updates and minus its direction, in one pass of torch's fused Adam.

    ``m <- b1*m + (1-b1)*g``, ``v <- b2*v + (1-b2)*g*g`` in place, and, in ``scratch``
    memory, ``-(m/c1) / (sqrt(v/c2) + eps)`` with ``c = 1 - b^bias_step``
    (``bias_step=math.inf``: no bias correction). The fused kernel updates a "parameter"
    that starts at zero with lr 1, so it ends as minus the direction; torch computes the
    denominator as ``sqrt(v)/sqrt(c2) + eps``, equal to the spec's up to rounding.

    ``None`` (and nothing changed) unless the tensors are CPU float32/float64 and each
    triple is laid out alike: the same hazards as :func:`heavy_ball_step`'s kernel.
    """
    first = grads[0]
    if "cpu" not in _FUSED_ADAM_DEVICES or not on_cpu(first):
        return None
    if first.dtype not in _FUSED_KERNEL_DTYPES:
        return None
    if not all(map(_same_dense_layout, grads, exp_avgs, exp_avg_sqs)):
        return None
    negated = scratch.like(exp_avgs)
    torch._foreach_zero_(negated)
    steps = [torch.tensor(float(bias_step))] * len(grads)  # read by the kernel, not advanced
    ran = _run_fused_kernel(
        lambda: torch._fused_adam_(
            negated,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            lr=1.0,
            beta1=beta1,
            beta2=beta2,
            weight_decay=0.0,
            eps=eps,
            amsgrad=False,
            maximize=False,
        ),
        _FUSED_ADAM_DEVICES,
        "cpu",
    )
    return negated if ran else None


def _run_fused_kernel(call: Callable[[], object], devices: set[str], device_type: str) -> bool:
    """Run ``call`` (one of torch's fused optimizer kernels); whether it ran.

    Both ways it may fail without running happen before it writes anything: a kernel
    torch does not have (an older torch, or none for this device: NotImplementedError at
    dispatch) takes ``device_type`` out of ``devices``, so it is not tried again; the
    kernel's own checks of its inputs (dtype, device, layout; CUDA's may be stricter than
    our guards know) refuse this call only. Running out of memory reaches the caller.
    """
    try:
        call()
        return True
    except (NotImplementedError, AttributeError):
        devices.discard(device_type)
    except _OUT_OF_MEMORY:
        raise
    except RuntimeError:
        pass
    return False

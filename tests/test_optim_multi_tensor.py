"""The multi-tensor path's building blocks (tvlars.optim._multi_tensor): chunks, scratch
memory, layer norms and the heavy-ball step, including the cases where torch's fused SGD
kernel must not be used."""

from __future__ import annotations

import math

import pytest
import torch

from tvlars import LAMB, LARS
from tvlars.optim import _multi_tensor
from tvlars.optim._multi_tensor import (
    Scratch,
    chunks,
    heavy_ball_step,
    layer_norms,
    negated_adam_directions,
)


def heavy_ball_by_hand(param, update, buffer, lr, momentum):
    """m <- mu*m + d; w <- w - lr*m in float64."""
    new_buffer = momentum * buffer.double() + update.double()
    return param.double() - lr * new_buffer, new_buffer


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_heavy_ball_step_is_momentum_then_update(dtype):
    generator = torch.Generator().manual_seed(0)
    shapes = [(3,), (1000,), (64, 3, 3, 3)]
    params = [torch.randn(s, generator=generator, dtype=dtype) for s in shapes]
    updates = [torch.randn(s, generator=generator, dtype=dtype) for s in shapes]
    buffers = [torch.randn(s, generator=generator, dtype=dtype) for s in shapes]
    expected = [heavy_ball_by_hand(*t, 0.3, 0.9) for t in zip(params, updates, buffers)]
    heavy_ball_step(params, updates, buffers, lr=0.3, momentum=0.9)
    tolerance = (
        dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-13, atol=1e-15)
    )
    for param, buffer, (want_param, want_buffer) in zip(params, buffers, expected):
        torch.testing.assert_close(param.double(), want_param, **tolerance)
        torch.testing.assert_close(buffer.double(), want_buffer, **tolerance)


def test_heavy_ball_step_reads_its_updates_without_writing_them():
    params, buffers = [torch.randn(50, 7)], [torch.randn(50, 7)]
    updates = [torch.randn(50, 7)]
    before = updates[0].clone()
    heavy_ball_step(params, updates, buffers, lr=0.1, momentum=0.9)
    assert torch.equal(updates[0], before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_heavy_ball_step_updates_half_precision_parameters(dtype):
    # torch 2.13's CPU fused SGD updates only the buffer of a float16/bfloat16 parameter.
    param = torch.randn(8, 8, dtype=dtype)
    update, buffer = torch.randn(8, 8, dtype=dtype), torch.zeros(8, 8, dtype=dtype)
    want_param, want_buffer = heavy_ball_by_hand(param, update, buffer, 0.5, 0.9)
    heavy_ball_step([param], [update], [buffer], lr=0.5, momentum=0.9)
    torch.testing.assert_close(buffer.double(), want_buffer, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(param.double(), want_param, rtol=1e-2, atol=1e-2)


def test_heavy_ball_step_pairs_the_same_elements_of_tensors_laid_out_differently():
    # A fused kernel walking memory in order would pair w[i, j] with d[j, i] here.
    param = torch.randn(8, 4).t()  # column-major (4, 8)
    update, buffer = torch.randn(4, 8), torch.randn(4, 8)
    want_param, want_buffer = heavy_ball_by_hand(param, update, buffer, 0.3, 0.9)
    heavy_ball_step([param], [update], [buffer], lr=0.3, momentum=0.9)
    torch.testing.assert_close(param.double(), want_param, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(buffer.double(), want_buffer, rtol=1e-6, atol=1e-6)


def test_chunks_split_a_cpu_bucket_into_runs_of_bounded_size(monkeypatch):
    monkeypatch.setattr(_multi_tensor, "CPU_CHUNK_NUMEL", 100)
    tensors = [torch.empty(n) for n in (40, 40, 30, 250, 10, 10)]
    assert chunks(range(6), tensors) == [[0, 1], [2], [3], [4, 5]]
    assert chunks([5, 0, 1], tensors) == [[5, 0, 1]]
    assert chunks([], tensors) == []


def test_chunks_keep_a_bucket_whole_off_the_cpu(monkeypatch):
    monkeypatch.setattr(_multi_tensor, "CPU_CHUNK_NUMEL", 100)
    tensors = [torch.empty(n, device="meta") for n in (400, 400, 400)]
    assert chunks([0, 1, 2], tensors) == [[0, 1, 2]]


def test_scratch_tensors_take_the_shapes_and_strides_of_their_models():
    scratch = Scratch()
    models = [
        torch.empty(4, 3, 5, 5).to(memory_format=torch.channels_last),
        torch.empty(7),
        torch.empty(6, 9).t(),
    ]
    views = scratch.like(models)
    for view, model in zip(views, models):
        assert view.shape == model.shape and view.stride() == model.stride()
    # They do not overlap: writing each leaves the others as they were.
    for index, view in enumerate(views):
        view.fill_(index)
    for index, view in enumerate(views):
        assert torch.all(view == index)


def test_scratch_memory_is_reused_from_call_to_call_and_slots_are_separate():
    scratch = Scratch()
    models = [torch.empty(10, 10), torch.empty(5)]
    first = scratch.like(models)
    again = scratch.like(models)
    other_slot = scratch.like(models, slot=1)
    assert first[0].data_ptr() == again[0].data_ptr()
    assert other_slot[0].data_ptr() != first[0].data_ptr()


def test_scratch_gives_a_strided_view_with_holes_its_own_memory():
    base = torch.empty(10, 10)
    holey = base[:, ::2]  # every other column: not dense
    (view,) = Scratch().like([holey])
    assert view.shape == holey.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_layer_norms_are_the_l2_norms_of_each_tensor(dtype):
    generator = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(s, generator=generator).to(dtype)
        for s in [(300, 300), (5,), (0,), (8, 3, 3, 3)]
    ]
    tensors.append(torch.randn(9, 4, generator=generator).to(dtype).t())
    accumulate = torch.float32 if dtype == torch.bfloat16 else dtype
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    # Several tensors at once (one foreach call), and each alone (a BLAS dot product).
    for group in [tensors, *([t] for t in tensors)]:
        norms = layer_norms(group, accumulate)
        assert norms.dtype == accumulate and norms.shape == (len(group),)
        exact = torch.stack([t.double().square().sum().sqrt() for t in group])
        torch.testing.assert_close(norms.double(), exact, rtol=rtol, atol=0)


@pytest.mark.parametrize(
    "make", [lambda p: LARS(p, lr=0.5, foreach=True), lambda p: LAMB(p, lr=0.01, foreach=True)]
)
def test_the_multi_tensor_path_reuses_its_scratch_memory_from_step_to_step(make):
    weights = [torch.nn.Parameter(torch.randn(64, 32)), torch.nn.Parameter(torch.randn(16))]
    optimizer = make(weights)
    for weight in weights:
        weight.grad = torch.randn_like(weight)
    optimizer.step()
    buffers = dict(optimizer._scratch._buffers)
    optimizer.step()
    assert buffers and {k: v.data_ptr() for k, v in buffers.items()} == {
        k: v.data_ptr() for k, v in optimizer._scratch._buffers.items()
    }


def adam_by_hand(grad, exp_avg, exp_avg_sq, step, beta1, beta2, eps):
    """(m, v, Adam direction) in float64; step=inf: no bias correction."""
    grad = grad.double()
    m = beta1 * exp_avg.double() + (1 - beta1) * grad
    v = beta2 * exp_avg_sq.double() + (1 - beta2) * grad * grad
    c1, c2 = 1 - beta1**step, 1 - beta2**step
    return m, v, (m / c1) / ((v / c2).sqrt() + eps)


@pytest.mark.parametrize("step", [1, 7, math.inf])
def test_negated_adam_directions_update_the_moments_and_give_minus_the_direction(step):
    generator = torch.Generator().manual_seed(3)
    shapes = [(50, 20), (7,)]
    grads = [torch.randn(s, generator=generator) for s in shapes]
    exp_avgs = [0.1 * torch.randn(s, generator=generator) for s in shapes]
    exp_avg_sqs = [0.01 * torch.rand(s, generator=generator) for s in shapes]
    expected = [adam_by_hand(*t, step, 0.9, 0.999, 1e-6) for t in zip(grads, exp_avgs, exp_avg_sqs)]
    negated = negated_adam_directions(
        Scratch(), grads, exp_avgs, exp_avg_sqs, step, 0.9, 0.999, 1e-6
    )
    assert negated is not None
    for values, m, v, (want_m, want_v, direction) in zip(negated, exp_avgs, exp_avg_sqs, expected):
        torch.testing.assert_close(m.double(), want_m, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(v.double(), want_v, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(-values.double(), direction, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "make_tensors",
    [
        lambda: [torch.randn(6, 4, dtype=torch.bfloat16) for _ in range(3)],
        lambda: [torch.randn(4, 6).t(), torch.randn(6, 4), torch.rand(6, 4)],
    ],
    ids=["bfloat16", "laid out differently"],
)
def test_negated_adam_directions_decline_tensors_the_fused_kernel_gets_wrong(make_tensors):
    grad, exp_avg, exp_avg_sq = make_tensors()
    before = (exp_avg.clone(), exp_avg_sq.clone())
    result = negated_adam_directions(Scratch(), [grad], [exp_avg], [exp_avg_sq], 1, 0.9, 0.99, 1e-6)
    assert result is None
    assert torch.equal(exp_avg, before[0]) and torch.equal(exp_avg_sq, before[1])


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda p: LARS(p, lr=0.5, foreach=True), "momentum_buffer"),
        (lambda p: LAMB(p, lr=0.05, foreach=True), "exp_avg"),
    ],
    ids=["LARS", "LAMB"],
)
def test_state_loaded_in_another_layout_gives_the_same_steps(make, key):
    # The fused kernels would pair the wrong elements; such state takes the foreach ops.
    def run(reload_transposed: bool):
        weight = torch.nn.Parameter(torch.randn(6, 5, generator=torch.Generator().manual_seed(1)))
        optimizer = make([weight])
        for step in range(3):
            weight.grad = torch.randn(6, 5, generator=torch.Generator().manual_seed(10 + step))
            optimizer.step()
            if reload_transposed and step == 0:
                state = optimizer.state[weight]
                state[key] = state[key].t().contiguous().t()
        return weight.detach()

    torch.testing.assert_close(run(True), run(False), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "error, tried_again",
    [
        (NotImplementedError("Could not run 'aten::_fused_sgd_' with arguments"), False),
        (RuntimeError("params, grads and momentum_buffer_list must have the same layout"), True),
    ],
    ids=["kernel missing", "tensors refused"],
)
def test_heavy_ball_step_takes_the_foreach_ops_where_the_fused_kernel_does_not_run(
    monkeypatch, error, tried_again
):
    # A missing kernel is not tried again; one that refuses these tensors is, next call.
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "_fused_sgd_", fail)
    monkeypatch.setattr(_multi_tensor, "_FUSED_SGD_DEVICES", {"cpu", "cuda"})
    param, update, buffer = torch.randn(30), torch.randn(30), torch.randn(30)
    want_param, want_buffer = heavy_ball_by_hand(param, update, buffer, 0.3, 0.9)
    heavy_ball_step([param], [update], [buffer], lr=0.3, momentum=0.9)
    torch.testing.assert_close(param.double(), want_param, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(buffer.double(), want_buffer, rtol=1e-6, atol=1e-6)
    assert ("cpu" in _multi_tensor._FUSED_SGD_DEVICES) == tried_again


def test_heavy_ball_step_lets_running_out_of_memory_through(monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("out of memory")

    monkeypatch.setattr(torch, "_fused_sgd_", out_of_memory)
    monkeypatch.setattr(_multi_tensor, "_FUSED_SGD_DEVICES", {"cpu", "cuda"})
    with pytest.raises(torch.OutOfMemoryError):
        heavy_ball_step([torch.randn(3)], [torch.randn(3)], [torch.randn(3)], lr=0.3, momentum=0.9)


def test_lamb_takes_the_foreach_ops_where_torch_has_no_fused_adam_kernel(monkeypatch):
    def missing(*args, **kwargs):
        raise NotImplementedError("Could not run 'aten::_fused_adam_' with arguments")

    def run():
        weight = torch.nn.Parameter(torch.randn(6, 5, generator=torch.Generator().manual_seed(1)))
        optimizer = LAMB([weight], lr=0.05, foreach=True)
        for step in range(3):
            weight.grad = torch.randn(6, 5, generator=torch.Generator().manual_seed(10 + step))
            optimizer.step()
        return weight.detach()

    expected = run()
    monkeypatch.setattr(torch, "_fused_adam_", missing)
    monkeypatch.setattr(_multi_tensor, "_FUSED_ADAM_DEVICES", {"cpu"})
    torch.testing.assert_close(run(), expected, rtol=1e-6, atol=1e-7)
    assert not _multi_tensor._FUSED_ADAM_DEVICES


def test_negated_adam_directions_decline_what_the_fused_kernel_refuses(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("params, grads, exp_avgs and exp_avg_sqs must have the same layout")

    monkeypatch.setattr(torch, "_fused_adam_", refuse)
    grad, exp_avg, exp_avg_sq = torch.randn(5), torch.randn(5), torch.rand(5)
    before = (exp_avg.clone(), exp_avg_sq.clone())
    result = negated_adam_directions(Scratch(), [grad], [exp_avg], [exp_avg_sq], 1, 0.9, 0.99, 1e-6)
    assert result is None
    assert torch.equal(exp_avg, before[0]) and torch.equal(exp_avg_sq, before[1])

"""The native fused path on CPU: when it is taken, when it steps aside, how it is built.

Its arithmetic is held to the float64 reference with every other path (the "native" entry
of harness.PATHS in test_optim_arithmetic.py and test_optim_behaviour.py)."""

from __future__ import annotations

import pytest
import torch
from harness import SHAPES, assert_matches, run_optimizer, run_reference
from reference import ReferenceLARS

from tvlars import LAMB, LARS, TVLARS
from tvlars.optim import _native

needs_native = pytest.mark.skipif(_native.kernels() is None, reason="no C++ compiler here")


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts calls into the native kernels (``lars`` and ``lamb``)."""
    calls = []
    kernels = _native.kernels()
    for name in ("lars", "lamb"):
        original = getattr(kernels, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(kernels, name, spy)
    return calls


def with_grads(params):
    for param in params:
        param.grad = torch.randn_like(param)
    return params


@needs_native
@pytest.mark.parametrize("make", [LARS, TVLARS, LAMB])
@pytest.mark.parametrize("fused", [None, True])
def test_cpu_steps_take_one_native_call_per_group_by_default_and_with_fused_true(
    make, fused, kernel_calls
):
    params = with_grads([torch.randn(s, requires_grad=True) for s in SHAPES])
    make(params, fused=fused).step()
    assert len(kernel_calls) == 1


@needs_native
def test_each_dtype_of_a_group_gets_its_own_native_call(kernel_calls):
    params = with_grads(
        [
            torch.randn(3, 4, dtype=dtype, requires_grad=True)
            for dtype in (torch.float32, torch.float64, torch.bfloat16)
        ]  # fmt: skip
    )
    LARS(params).step()
    assert kernel_calls == ["lars"] * 3


@needs_native
def test_compile_and_foreach_keywords_keep_the_native_kernels_out(kernel_calls):
    params = with_grads([torch.randn(s, requires_grad=True) for s in SHAPES])
    LARS(params, foreach=True).step()
    LARS(params, fused=False).step()
    assert kernel_calls == []


@needs_native
def test_non_contiguous_gradients_fall_back_by_default_and_give_the_reference_result(
    kernel_calls,
):
    def transposed_grads(optimizer, args, kwargs):
        for param in optimizer.param_groups[0]["params"]:
            if param.dim() == 2:  # same values, column-major memory
                param.grad = param.grad.t().contiguous().t()

    def make(params):
        optimizer = LARS(params, lr=0.7)
        optimizer.register_step_pre_hook(transposed_grads)
        return optimizer

    ours, _ = run_optimizer(make, 3)
    expected = run_reference(lambda shape: ReferenceLARS(lr=0.7, adapted=len(shape) > 1), 3)
    assert_matches(ours, expected, rtol=1e-10)
    assert kernel_calls == []


@needs_native
def test_fused_native_refuses_tensors_it_cannot_take():
    param = torch.randn(4, 4, dtype=torch.float16, requires_grad=True)
    param.grad = torch.randn_like(param)
    with pytest.raises(RuntimeError, match="fused='native'"):
        LARS([param], fused="native").step()


def test_float16_parameters_take_another_path_by_default():
    param = torch.randn(4, 4, dtype=torch.float16, requires_grad=True)
    param.grad = torch.randn_like(param)
    before = param.detach().clone()
    LARS([param], lr=0.5).step()
    assert not torch.equal(param.detach(), before)


def test_tvlars_native_zero_disables_the_kernels(monkeypatch):
    monkeypatch.setenv(_native.DISABLE_ENV, "0")
    _native.kernels.cache_clear()
    try:
        assert _native.kernels() is None
    finally:
        monkeypatch.delenv(_native.DISABLE_ENV)
        _native.kernels.cache_clear()


def test_a_compiler_that_fails_gives_one_warning_and_no_kernels(tmp_path, monkeypatch):
    failing = tmp_path / "broken-cxx"
    failing.write_text("#!/bin/sh\necho 'cannot compile' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("CXX", str(failing))
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path / "cache"))
    _native.kernels.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="cannot compile"):
            assert _native.kernels() is None
    finally:
        _native.kernels.cache_clear()


@needs_native
def test_the_built_library_is_cached_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path))
    _native.kernels.cache_clear()
    try:
        assert _native.kernels() is not None
        (library,) = (tmp_path / "kernels").glob("*.so")
        built = library.stat().st_mtime_ns
        _native.kernels.cache_clear()
        assert _native.kernels() is not None
        assert library.stat().st_mtime_ns == built
    finally:
        _native.kernels.cache_clear()


@needs_native
@pytest.mark.parametrize("make", [LARS, LAMB])
def test_native_layer_stats_come_stacked_and_equal_their_lists(make):
    params = with_grads([torch.randn(s, requires_grad=True) for s in SHAPES])
    optimizer = make(params, fused="native")
    optimizer.record_layer_stats = True
    optimizer.step()
    stats = optimizer.layer_stats
    assert stats.stacked is not None and stats.stacked.shape == (len(stats.params), 3)
    columns = [torch.stack(stats.weight_norm), torch.stack(stats.grad_norm),
               torch.stack(stats.trust_ratio)]  # fmt: skip
    torch.testing.assert_close(stats.stacked, torch.stack(columns, dim=1))


@needs_native
def test_state_that_does_not_match_its_parameter_is_refused_not_misread():
    weight = torch.randn(4, 6, requires_grad=True)
    weight.grad = torch.randn_like(weight)
    optimizer = LARS([weight], fused="native")
    optimizer.step()
    # Same values, column-major memory: the kernel would read it in the wrong order.
    buffer = optimizer.state[weight]["momentum_buffer"]
    optimizer.state[weight]["momentum_buffer"] = buffer.t().contiguous().t()
    with pytest.raises(RuntimeError, match="does not match its parameter"):
        optimizer.step()

"""The native fused path on CPU: when it is taken, when it steps aside, how it is built.

Its arithmetic is held to the float64 reference with every other path (the "native" entry
of harness.PATHS in test_optim_arithmetic.py and test_optim_behaviour.py)."""

from __future__ import annotations

import functools
import shutil
import warnings

import pytest
import torch
from harness import (
    SHAPES,
    assert_matches,
    gradients,
    initial_weights,
    run_optimizer,
    run_reference,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ReferenceLAMB, ReferenceLARS

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


def use_compiler(tmp_path, monkeypatch, script: str) -> None:
    """Make the shell ``script`` the C++ compiler, with an empty kernel cache."""
    compiler = tmp_path / "cxx"
    compiler.write_text("#!/bin/sh\n" + script)
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path / "cache"))
    _native.kernels.cache_clear()


def test_a_compiler_that_fails_gives_one_warning_and_no_kernels(tmp_path, monkeypatch):
    use_compiler(tmp_path, monkeypatch, "echo 'cannot compile' >&2\nexit 1\n")
    try:
        with pytest.warns(RuntimeWarning, match="cannot compile"):
            assert _native.kernels() is None
    finally:
        _native.kernels.cache_clear()


def test_a_failed_build_is_not_retried_by_the_next_process_until_its_marker_goes(
    tmp_path, monkeypatch
):
    calls = tmp_path / "calls"
    use_compiler(tmp_path, monkeypatch, f"echo x >> {calls}\necho 'cannot compile' >&2\nexit 1\n")
    try:
        with pytest.warns(RuntimeWarning, match="cannot compile"):
            assert _native.kernels() is None
        tries = len(calls.read_text().splitlines())
        _native.kernels.cache_clear()  # as a new process would start
        with pytest.warns(RuntimeWarning, match="cannot compile.*delete .* to try again"):
            assert _native.kernels() is None
        assert len(calls.read_text().splitlines()) == tries
        (marker,) = (tmp_path / "cache" / "kernels").glob("*.failed")
        marker.unlink()
        _native.kernels.cache_clear()
        with pytest.warns(RuntimeWarning, match="cannot compile"):
            assert _native.kernels() is None
        assert len(calls.read_text().splitlines()) == 2 * tries
    finally:
        _native.kernels.cache_clear()


@needs_native
def test_a_compiler_without_march_native_still_builds_working_kernels(tmp_path, monkeypatch):
    real = _native._compiler()
    use_compiler(
        tmp_path,
        monkeypatch,
        'for arg in "$@"; do [ "$arg" = -march=native ] && '
        "{ echo 'unsupported option -march=native' >&2; exit 1; }; done\n"
        f'exec {real} "$@"\n',
    )
    try:
        assert _native.kernels() is not None
        ours, _ = run_optimizer(lambda params: LARS(params, lr=0.7, fused="native"), 2)
        expected = run_reference(lambda shape: ReferenceLARS(lr=0.7, adapted=len(shape) > 1), 2)
        assert_matches(ours, expected, rtol=1e-10)
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
    # The lists are in the dtype the other paths report float32 layers' norms in; the
    # stacked rows keep the kernels' float64 until they are read.
    assert all(column.dtype == torch.float32 for column in columns)
    torch.testing.assert_close(
        stats.stacked.to(torch.float32), torch.stack(columns, dim=1), rtol=0, atol=0
    )


@needs_native
def test_a_group_of_mixed_dtypes_reports_each_layers_own_stats():
    def make_params():
        torch.manual_seed(0)
        dtypes = (torch.float32, torch.float64, torch.float32, torch.float64)
        params = [torch.randn(6, 5, dtype=dtype, requires_grad=True) for dtype in dtypes]
        params.append(torch.randn(5, dtype=torch.float64, requires_grad=True))  # excluded
        return with_grads(params)

    def stats_by_layer(params, **path):
        optimizer = LARS(params, **path)
        optimizer.record_layer_stats = True
        optimizer.step()
        stats = optimizer.layer_stats
        index = {id(p): i for i, p in enumerate(params)}
        rows = zip(stats.params, stats.weight_norm, stats.grad_norm, stats.trust_ratio)
        for param, *values in zip(stats.params, stats.weight_norm, stats.grad_norm,
                                  stats.trust_ratio):  # fmt: skip
            assert all(value.dtype == param.dtype for value in values)  # each in its own
        return {index[id(p)]: (float(w), float(g), float(t)) for p, w, g, t in rows}

    native = stats_by_layer(make_params(), fused="native")
    foreach = stats_by_layer(make_params(), foreach=True)
    assert sorted(native) == [0, 1, 2, 3]
    for layer, values in foreach.items():
        assert native[layer] == pytest.approx(values, rel=1e-6)


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


# Layers of at least 2**15 elements are split between threads (kParallelMin in the kernels);
# odd sizes leave the last thread a short share, and a share of over 1 MiB per tensor is
# updated in several blocks (kBlockBytes). Mixed with small layers, which go whole to one
# thread each in turn, and with 1-D layers.
SPLIT_SHAPES: list[tuple[int, ...]] = [
    (257, 131), (3, 2, 3, 3), (70_001,), (64, 16, 3, 3), (5,), (1201, 500)
]  # fmt: skip


@pytest.fixture
def threads():
    """Sets torch's (and so the kernels') thread count for one test, then restores it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@needs_native
@pytest.mark.parametrize("thread_count", [1, 2, 3])
@pytest.mark.parametrize("nesterov", [False, True])
def test_layers_split_between_threads_match_the_reference(threads, thread_count, nesterov):
    threads(thread_count)
    ours, _ = run_optimizer(
        lambda p: TVLARS(p, lr=0.6, lmbda=1e-2, nesterov=nesterov, fused="native"),
        4, shapes=SPLIT_SHAPES,
    )  # fmt: skip
    expected = run_reference(
        lambda shape: ReferenceLARS(lr=0.6, lmbda=1e-2, tv=True, nesterov=nesterov,
                                    adapted=len(shape) > 1),
        4, shapes=SPLIT_SHAPES,
    )  # fmt: skip
    assert_matches(ours, expected, rtol=1e-10)


@needs_native
@pytest.mark.parametrize("thread_count", [1, 2, 3])
def test_lamb_layers_split_between_threads_match_the_reference(threads, thread_count):
    threads(thread_count)
    ours, _ = run_optimizer(lambda p: LAMB(p, lr=0.01, fused="native"), 4, shapes=SPLIT_SHAPES)
    expected = run_reference(
        lambda shape: ReferenceLAMB(lr=0.01, adapted=len(shape) > 1), 4, shapes=SPLIT_SHAPES
    )
    assert_matches(ours, expected, rtol=1e-10)


@needs_native
@pytest.mark.parametrize("thread_count", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_the_norm_pass_alone_gives_each_layers_weight_and_decayed_gradient_norms(
    threads, thread_count, dtype
):
    # What LayerRecorder uses for optimizers that compute no norms: nothing is changed.
    threads(thread_count)
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=generator).to(dtype) for s in SPLIT_SHAPES]
    grads = [0.1 * torch.randn(s, generator=generator).to(dtype) for s in SPLIT_SHAPES]
    before = [t.clone() for t in (*params, *grads)]
    norms = _native.layer_norms(params, grads, 0.05)
    assert norms.shape == (len(params), 2) and norms.dtype == torch.float64
    decayed = [g.double() + (0.05 * w).to(dtype).double() for w, g in zip(params, grads)]
    expected = torch.tensor(
        [[w.double().norm(), d.to(dtype).double().norm()] for w, d in zip(params, decayed)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(norms, expected, rtol=1e-12, atol=0)
    assert all(torch.equal(a, b) for a, b in zip((*params, *grads), before))


@needs_native
@pytest.mark.parametrize("make", [LARS, LAMB])
def test_split_layers_give_the_same_bits_on_every_run(threads, make):
    # The per-thread partial sums of a norm are added in a fixed order, not as threads finish.
    threads(2)
    runs = [
        run_optimizer(lambda p: make(p, fused="native"), 5, torch.float32, shapes=SPLIT_SHAPES)[0]
        for _ in range(3)
    ]
    for other in runs[1:]:
        for first, again in zip(runs[0], other):
            assert torch.equal(first, again)


@needs_native
def test_split_layer_norms_agree_with_one_thread(threads):
    def layer_stats(thread_count):
        threads(thread_count)
        params = [torch.tensor(w, dtype=torch.float32, requires_grad=True)
                  for w in initial_weights(SPLIT_SHAPES)]  # fmt: skip
        for param, grad in zip(params, gradients(0, SPLIT_SHAPES)):
            param.grad = torch.tensor(grad, dtype=torch.float32)
        optimizer = LARS(params, fused="native")
        optimizer.record_layer_stats = True
        optimizer.step()
        return optimizer.layer_stats.stacked

    one, two = layer_stats(1), layer_stats(2)
    assert one.shape == (4, 3)  # the four adapted layers: |w|, |g + wd*w|, trust
    torch.testing.assert_close(two, one, rtol=1e-6, atol=0)


@pytest.mark.skipif(shutil.which("g++") is None, reason="the wrapper calls g++")
def test_a_compiler_without_openmp_still_builds_kernels_that_match_the_reference(
    tmp_path, monkeypatch
):
    # A wrapper that refuses -fopenmp, as a compiler without the OpenMP runtime does.
    compiler = tmp_path / "cxx-without-openmp"
    compiler.write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && exit 1; done\nexec g++ "$@"\n'
    )
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path / "cache"))
    _native.kernels.cache_clear()
    try:
        assert _native.kernels() is not None
        ours, _ = run_optimizer(lambda p: LARS(p, lr=0.6, fused="native"), 3, shapes=SPLIT_SHAPES)
        expected = run_reference(
            lambda shape: ReferenceLARS(lr=0.6, adapted=len(shape) > 1), 3, shapes=SPLIT_SHAPES
        )
        assert_matches(ours, expected, rtol=1e-10)
    finally:
        _native.kernels.cache_clear()


@needs_native
@settings(max_examples=30, deadline=None)
@given(
    layers=st.lists(
        st.tuples(st.integers(1, 80_000), st.booleans()),  # (elements, adapted: 2-D)
        min_size=1,
        max_size=7,
    ),
    thread_count=st.integers(1, 3),
    nesterov=st.booleans(),
    use_lamb=st.booleans(),
)
def test_any_mix_of_layer_sizes_and_thread_counts_matches_the_reference(
    layers, thread_count, nesterov, use_lamb
):
    # Sizes on both sides of the split threshold (2**15) and of the block size, adapted and
    # excluded layers in any order: how the kernels share work must never change a value.
    shapes = [(n, 1) if adapted else (n,) for n, adapted in layers]
    if use_lamb:
        make, reference = (
            lambda p: LAMB(p, lr=0.01, fused="native"),
            lambda shape: ReferenceLAMB(lr=0.01, adapted=len(shape) > 1),
        )
    else:
        make, reference = (
            lambda p: LARS(p, lr=0.6, nesterov=nesterov, fused="native"),
            lambda shape: ReferenceLARS(lr=0.6, nesterov=nesterov, adapted=len(shape) > 1),
        )
    before = torch.get_num_threads()
    torch.set_num_threads(thread_count)
    try:
        ours, _ = run_optimizer(make, 2, shapes=shapes)
    finally:
        torch.set_num_threads(before)
    assert_matches(ours, run_reference(reference, 2, shapes=shapes), rtol=1e-10)


@needs_native
@pytest.mark.parametrize("make", [TVLARS, LAMB])
def test_a_compiled_training_step_runs_the_kernels_eagerly_and_matches_eager(make, kernel_calls):
    def build():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)
        )
        return model, make(model.parameters(), lr=0.01)

    inputs, targets = torch.randn(16, 20), torch.randint(0, 3, (16,))

    def train_step(model, optimizer):
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    (compiled_model, compiled_optimizer), (model, optimizer) = build(), build()
    compiled_step = torch.compile(train_step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            compiled_step(compiled_model, compiled_optimizer)
            train_step(model, optimizer)
    assert len(kernel_calls) == 6  # three steps each, none traced into
    for ours, eager in zip(compiled_model.parameters(), model.parameters()):
        torch.testing.assert_close(ours, eager, rtol=1e-5, atol=1e-6)
    # Dynamo does not trace into the library loading (it warned about the cache and the
    # file checks there before the kernels were marked opaque to it).
    ours = ("_native.py", "_base.py", "lars.py", "lamb.py")
    assert not [w for w in caught if any(name in str(w.message) for name in ours)]


@needs_native
@pytest.mark.parametrize("make", [LARS, TVLARS, LAMB])
def test_channels_last_convolution_weights_take_the_kernels_and_match_the_reference_path(
    make, kernel_calls
):
    # model.to(memory_format=torch.channels_last) makes 4-D weights (and autograd their
    # gradients) channels-last: dense, but not contiguous.
    def run(channels_last):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(8, 16, 3)
        head = torch.nn.Linear(16, 4)
        if channels_last:
            conv = conv.to(memory_format=torch.channels_last)
        params = [*conv.parameters(), *head.parameters()]
        optimizer = make(params, **({} if channels_last else {"foreach": False}))
        for step in range(3):
            images = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(step))
            if channels_last:
                images = images.to(memory_format=torch.channels_last)
            head(conv(images).mean((2, 3))).square().sum().backward()
            optimizer.step()
            optimizer.zero_grad()
        return conv.weight, [p.detach() for p in params]

    weight, ours = run(channels_last=True)
    _, reference = run(channels_last=False)
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert len(kernel_calls) == 3
    for mine, expected in zip(ours, reference):
        torch.testing.assert_close(mine, expected, rtol=1e-5, atol=1e-6)


@needs_native
def test_a_channels_last_weight_with_a_contiguous_gradient_falls_back_to_the_reference(
    kernel_calls,
):
    def run(mixed_layouts):
        weight = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0))
        if mixed_layouts:
            weight = weight.to(memory_format=torch.channels_last)
        weight.requires_grad_()
        optimizer = LARS([weight], lr=0.5, **({} if mixed_layouts else {"foreach": False}))
        for step in range(2):
            weight.grad = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(step))
            optimizer.step()
        return weight.detach()

    mixed = run(mixed_layouts=True)
    assert kernel_calls == []  # the flat arrays would pair the wrong elements
    torch.testing.assert_close(mixed, run(mixed_layouts=False), rtol=1e-6, atol=1e-7)


@needs_native
def test_last_step_paths_name_each_groups_path_and_show_a_fallback():
    weight = torch.randn(6, 5, requires_grad=True)
    transposed = torch.randn(6, 5, requires_grad=True)
    idle = torch.randn(3, requires_grad=True)  # never gets a gradient
    optimizer = LARS([{"params": [weight]}, {"params": [transposed]}, {"params": [idle]}])
    assert optimizer.last_step_paths == ()
    weight.grad = torch.randn(6, 5)
    transposed.grad = torch.randn(5, 6).t()  # not laid out like its weight
    optimizer.step()
    assert optimizer.last_step_paths == ("native", "foreach", None)


@needs_native
@pytest.mark.parametrize(
    "make", [lambda p: LARS(p, lr=100.0, fused="native"), lambda p: LAMB(p, lr=0.1, fused="native")]
)
def test_bfloat16_layers_split_between_threads_equal_one_threads_result(threads, make):
    # Shares are cut at 64-byte lines: 32 bfloat16 elements, against 16 float32 ones. The
    # learning rates make each step move the weights by several bfloat16 steps, so an
    # element updated twice or not at all would show. Norms are summed in float64, so the
    # thread count does not change a trust ratio's float value.
    run = functools.partial(run_optimizer, make, 3, torch.bfloat16, shapes=SPLIT_SHAPES)
    threads(1)
    alone, _ = run()
    threads(2)
    split, _ = run()
    for one, two in zip(alone, split):
        assert torch.equal(one, two)


@needs_native
@pytest.mark.parametrize("nesterov", [False, True])
def test_bfloat16_updates_round_as_the_reference_path_does(nesterov):
    # Norms clamped far below their values pin both paths' trust ratio to the same float
    # (eta * clamp / clamp), so whatever differs is the update's arithmetic: every
    # intermediate rounded to bfloat16 where the per-tensor path's tensors are, including
    # d = g + wd*w (a large weight decay makes its rounding visible).
    def make(path):
        return lambda p: TVLARS(
            p, lr=50.0, lmbda=0.3, weight_decay=0.05, norm_clamp=1e-20, nesterov=nesterov, **path
        )

    native, _ = run_optimizer(make({"fused": "native"}), 3, torch.bfloat16, shapes=SPLIT_SHAPES)
    single, _ = run_optimizer(make({"foreach": False}), 3, torch.bfloat16, shapes=SPLIT_SHAPES)
    for ours, reference in zip(native, single):
        assert torch.equal(ours, reference)


@needs_native
@pytest.mark.parametrize(
    "make",
    [
        lambda p, **path: LARS(p, lr=1.0, **path),
        lambda p, **path: LARS(p, lr=1.0, nesterov=True, **path),
        lambda p, **path: LAMB(p, lr=0.5, **path),
    ],
    ids=["lars", "lars-nesterov", "lamb"],
)
def test_bfloat16_special_values_get_torchs_bits(make):
    # Excluded layers (no trust ratio), so both paths do the same elementwise arithmetic;
    # NaN (any NaN becomes 0x7fc0 in torch's conversion), infinities, the largest finite
    # values, a subnormal, signed zeros and values whose rounding ties.
    weights = [float("nan"), float("inf"), -float("inf"), 3.3895e38, -3.3895e38, 1e-40,
               -0.0, 0.0, 1.0, 65504.0, 1.00390625, 1.01171875]  # fmt: skip
    grads = [1.0, 1.0, -1.0, 3.3e38, -3.3e38, 1e-40, 0.0, -0.0, 0.00390625, 1.0,
             0.001953125, 0.005859375]  # fmt: skip

    def bits_after_two_steps(path):
        param = torch.tensor(weights).bfloat16().requires_grad_()
        param.grad = torch.tensor(grads).bfloat16()
        optimizer = make([{"params": [param], "adapt": False}], **path)
        optimizer.step()
        optimizer.step()
        return param.detach().view(torch.int16)

    assert torch.equal(
        bits_after_two_steps({"fused": "native"}), bits_after_two_steps({"foreach": False})
    )


def test_a_corrupt_cached_kernel_is_removed_so_the_next_run_rebuilds_it(tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    # A "compiler" that leaves garbage where the library should be, as a full disk might.
    use_compiler(
        tmp_path,
        monkeypatch,
        f"echo x >> {calls}\n"
        'while [ $# -gt 0 ]; do [ "$1" = -o ] && echo garbage > "$2"; shift; done\n',
    )
    try:
        with pytest.warns(RuntimeWarning, match="removed .*rebuilds it"):
            assert _native.kernels() is None
        assert list((tmp_path / "cache" / "kernels").glob("*.so")) == []
        _native.kernels.cache_clear()  # as the next process would start
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _native.kernels()
        assert len(calls.read_text().splitlines()) == 2  # built again, not loaded
    finally:
        _native.kernels.cache_clear()

"""LARC trust-ratio clipping (LARS/TVLARS ``trust_clip``) and LAMB's global gradient
clipping (``max_grad_norm``) compute the spec's arithmetic on every execution path."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from harness import (
    PATHS,
    SHAPES,
    assert_matches,
    gradients,
    initial_weights,
    run_optimizer,
    run_reference,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ReferenceLAMB, ReferenceLARS, clip_by_global_norm

from tvlars import LAMB, LARS, TVLARS

STEPS = 4
UNCOMPILED_PATHS = sorted(name for name in PATHS if name != "compiled")
# With eta = 0.05 the test layers' ratios are about 0.5: capped at 1 (trust/lr > 1) at the
# LRs 0.1 and 0.5, trust/lr below the cap at 1.0 and 2.0 (both cases within one run). With
# the default eta (ratios about 0.01) no step reaches the cap.
CLIPPING_LRS = [1.0, 0.1, 2.0, 0.5]
WITH_ZERO_LR = [0.5, 0.0, 0.3, 0.1]
# The test gradients' global norm is 0.79-0.85 at every step.
ACTIVE_MAX_NORM, INACTIVE_MAX_NORM = 0.3, 5.0


def adapted_by_default(shape: tuple[int, ...]) -> bool:
    return len(shape) > 1


def reference_lars(**kwargs):
    return lambda shape: ReferenceLARS(adapted=adapted_by_default(shape), **kwargs)


def reference_lamb(**kwargs):
    return lambda shape: ReferenceLAMB(adapted=adapted_by_default(shape), **kwargs)


# ------------------------------------------------------------------------ trust_clip

TRUST_CLIP_CASES = {
    "lars clipped at some LRs": (LARS, {"eta": 0.05}, {"eta": 0.05}, CLIPPING_LRS),
    "lars below the cap": (LARS, {}, {}, CLIPPING_LRS),
    "lars with lr 0": (LARS, {"eta": 0.05}, {"eta": 0.05}, WITH_ZERO_LR),
    "lars nesterov": (
        LARS,
        {"eta": 0.05, "nesterov": True},
        {"eta": 0.05, "nesterov": True},
        CLIPPING_LRS,
    ),
    "lars no momentum": (
        LARS,
        {"eta": 0.05, "momentum": 0.0},
        {"eta": 0.05, "momentum": 0.0},
        CLIPPING_LRS,
    ),
    "tvlars": (
        TVLARS,
        {"eta": 0.08, "lmbda": 0.4},
        {"eta": 0.08, "lmbda": 0.4, "tv": True},
        CLIPPING_LRS,
    ),
    "tvlars norm clamp": (
        TVLARS,
        {"eta": 0.2, "lmbda": 0.2, "norm_clamp": 0.5},
        {"eta": 0.2, "lmbda": 0.2, "norm_clamp": 0.5, "tv": True},
        CLIPPING_LRS,
    ),
    "tvlars with lr 0": (
        TVLARS,
        {"eta": 0.08, "lmbda": 0.4},
        {"eta": 0.08, "lmbda": 0.4, "tv": True},
        WITH_ZERO_LR,
    ),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", TRUST_CLIP_CASES)
def test_trust_clip_matches_reference_in_float64(path, case):
    optimizer_class, ours_kwargs, reference_kwargs, lrs = TRUST_CLIP_CASES[case]
    ours, _ = run_optimizer(
        lambda p: optimizer_class(p, trust_clip=True, **ours_kwargs, **PATHS[path]),
        STEPS,
        lrs=lrs,
    )
    expected = run_reference(reference_lars(trust_clip=True, **reference_kwargs), STEPS, lrs=lrs)
    assert_matches(ours, expected, rtol=1e-10)


def test_the_clipping_cases_do_clip():
    # Guards the cases above against testing nothing: the clip changes their result.
    for case in ("lars clipped at some LRs", "tvlars", "tvlars norm clamp", "lars with lr 0"):
        _, _, reference_kwargs, lrs = TRUST_CLIP_CASES[case]
        clipped = run_reference(reference_lars(trust_clip=True, **reference_kwargs), STEPS, lrs=lrs)
        plain = run_reference(reference_lars(**reference_kwargs), STEPS, lrs=lrs)
        assert not np.allclose(clipped[0], plain[0], rtol=1e-6), case


@pytest.mark.parametrize("path", PATHS)
def test_tvlars_official_preset_takes_trust_clip(path):
    ours, optimizer = run_optimizer(
        lambda p: TVLARS.official(p, lr=0.02, lmbda=0.3, trust_clip=True, **PATHS[path]), STEPS
    )
    expected = run_reference(
        lambda shape: ReferenceLARS.tvlars_official(
            lr=0.02, lmbda=0.3, trust_clip=True, adapted=adapted_by_default(shape)
        ),
        STEPS,
    )
    assert optimizer.param_groups[0]["trust_clip"] is True
    assert_matches(ours, expected, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("path", PATHS)
def test_trust_clip_in_lower_precision_tracks_the_reference(path, dtype):
    ours, _ = run_optimizer(
        lambda p: TVLARS(p, eta=0.08, lmbda=0.4, trust_clip=True, **PATHS[path]),
        STEPS,
        dtype=dtype,
        lrs=CLIPPING_LRS,
    )
    expected = run_reference(
        reference_lars(eta=0.08, lmbda=0.4, tv=True, trust_clip=True), STEPS, lrs=CLIPPING_LRS
    )
    assert all(p.dtype == dtype for p in ours)
    if dtype == torch.float32:
        assert_matches(ours, expected, rtol=1e-5)
    else:
        for actual, close_to in zip(ours, expected):
            np.testing.assert_allclose(actual.double().numpy(), close_to, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("lr", [0.5, 2.0])
def test_zero_weight_norm_falls_back_to_one_before_the_clip(path, lr):
    # Ratio 1 (zero |w|), then min(1/lr, 1): 1 at lr 0.5, 0.5 at lr 2.
    weight = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    weight.grad = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    optimizer = LARS(
        [weight], lr=lr, momentum=0.0, weight_decay=0.0, trust_clip=True, **PATHS[path]
    )
    optimizer.record_layer_stats = True
    optimizer.step()
    trust = min(1 / lr, 1.0)
    assert optimizer.layer_stats.trust_ratio[0].item() == pytest.approx(trust, rel=1e-15)
    torch.testing.assert_close(weight.detach(), -lr * trust * weight.grad, rtol=1e-15, atol=0)


@pytest.mark.parametrize("path", PATHS)
def test_zero_gradient_leaves_weights_alone_with_trust_clip(path):
    weight = torch.randn(4, 3, requires_grad=True)
    weight.grad = torch.zeros(4, 3)
    before = weight.detach().clone()
    LARS([weight], lr=3.0, weight_decay=0.0, trust_clip=True, **PATHS[path]).step()
    assert torch.equal(weight.detach(), before)


@pytest.mark.parametrize("path", PATHS)
def test_telemetry_reports_the_clipped_ratio(path):
    params = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for param, grad in zip(params, gradients(0)):
        param.grad = torch.tensor(grad)
    clipped = LARS(params, lr=0.1, eta=0.05, trust_clip=True, **PATHS[path])
    plain = LARS(copy.deepcopy(params), lr=0.1, eta=0.05, **PATHS[path])
    for optimizer in (clipped, plain):
        optimizer.record_layer_stats = True
        optimizer.step()
    for applied, unclipped in zip(clipped.layer_stats.trust_ratio, plain.layer_stats.trust_ratio):
        assert unclipped.item() > 0.1
        assert applied.item() == pytest.approx(min(unclipped.item() / 0.1, 1.0), rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    lr=st.sampled_from([0.0, 0.01, 0.3, 1.0, 4.0]),
    eta=st.floats(1e-3, 1.0),
    momentum=st.floats(0.0, 0.99),
    weight_decay=st.floats(0.0, 0.1),
    lmbda=st.floats(0.0, 1.0),
    nesterov=st.booleans(),
    path=st.sampled_from(UNCOMPILED_PATHS),
)
def test_trust_clip_matches_reference_for_any_hyperparameters(
    lr, eta, momentum, weight_decay, lmbda, nesterov, path
):
    knobs = dict(
        lr=lr, eta=eta, momentum=momentum, weight_decay=weight_decay, lmbda=lmbda, nesterov=nesterov
    )
    ours, _ = run_optimizer(lambda p: TVLARS(p, trust_clip=True, **PATHS[path], **knobs), 3)
    expected = run_reference(reference_lars(tv=True, trust_clip=True, **knobs), 3)
    assert_matches(ours, expected, rtol=1e-10)


# --------------------------------------------------------------------- max_grad_norm

LAMB_CASES = {
    "clipping": ({}, {}, ACTIVE_MAX_NORM, None),
    "not clipping": ({}, {}, INACTIVE_MAX_NORM, None),
    "clipping, lr changes": ({}, {}, ACTIVE_MAX_NORM, [0.01, 0.05, 0.002, 0.03]),
    "clipping, lr 0": ({}, {}, ACTIVE_MAX_NORM, [0.05, 0.0, 0.02, 0.0]),
    "clipping, no bias correction": (
        {"bias_correction": False},
        {"bias_correction": False},
        ACTIVE_MAX_NORM,
        None,
    ),
    "clipping, every layer adapted": (
        {"exclude_1d": False},
        {"adapted": True},
        ACTIVE_MAX_NORM,
        None,
    ),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", LAMB_CASES)
def test_lamb_max_grad_norm_matches_reference_in_float64(path, case):
    ours_kwargs, reference_kwargs, max_norm, lrs = LAMB_CASES[case]
    ours, _ = run_optimizer(
        lambda p: LAMB(p, lr=0.05, max_grad_norm=max_norm, **ours_kwargs, **PATHS[path]),
        STEPS,
        lrs=lrs,
    )
    expected = run_reference(
        lambda shape: ReferenceLAMB(
            lr=0.05, **{"adapted": adapted_by_default(shape), **reference_kwargs}
        ),
        STEPS,
        lrs=lrs,
        max_grad_norm=max_norm,
    )
    assert_matches(ours, expected, rtol=1e-10)


def test_the_lamb_clipping_case_does_clip():
    clipped = run_reference(reference_lamb(lr=0.05), STEPS, max_grad_norm=ACTIVE_MAX_NORM)
    plain = run_reference(reference_lamb(lr=0.05), STEPS)
    assert not np.allclose(clipped[0], plain[0], rtol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_an_inactive_global_clip_gives_the_bits_of_no_clip(path):
    ours, _ = run_optimizer(
        lambda p: LAMB(p, lr=0.05, max_grad_norm=INACTIVE_MAX_NORM, **PATHS[path]), STEPS
    )
    unclipped, _ = run_optimizer(lambda p: LAMB(p, lr=0.05, **PATHS[path]), STEPS)
    assert all(torch.equal(a, b) for a, b in zip(ours, unclipped))


@pytest.mark.parametrize("path", PATHS)
def test_lamb_official_preset_takes_max_grad_norm(path):
    ours, optimizer = run_optimizer(
        lambda p: LAMB.official(p, lr=0.05, max_grad_norm=ACTIVE_MAX_NORM, **PATHS[path]), STEPS
    )
    expected = run_reference(
        lambda shape: ReferenceLAMB.official(lr=0.05),
        STEPS,
        max_grad_norm=ACTIVE_MAX_NORM,
    )
    assert optimizer.param_groups[0]["max_grad_norm"] == ACTIVE_MAX_NORM
    assert_matches(ours, expected, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("path", PATHS)
def test_max_grad_norm_in_lower_precision_tracks_the_reference(path, dtype):
    ours, _ = run_optimizer(
        lambda p: LAMB(p, lr=0.05, max_grad_norm=ACTIVE_MAX_NORM, **PATHS[path]), STEPS, dtype=dtype
    )
    expected = run_reference(reference_lamb(lr=0.05), STEPS, max_grad_norm=ACTIVE_MAX_NORM)
    assert all(p.dtype == dtype for p in ours)
    if dtype == torch.float32:
        assert_matches(ours, expected, rtol=1e-5)
    else:
        for actual, close_to in zip(ours, expected):
            np.testing.assert_allclose(actual.double().numpy(), close_to, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("path", PATHS)
def test_global_norm_spans_every_param_group(path):
    # Two groups (different LRs): the clip divides both by the norm of all gradients.
    params = [torch.tensor(w, requires_grad=True) for w in initial_weights()]
    optimizer = LAMB(
        [{"params": params[:2]}, {"params": params[2:], "lr": 0.01}],
        lr=0.05,
        max_grad_norm=ACTIVE_MAX_NORM,
        **PATHS[path],
    )
    grads = gradients(0)
    for param, grad in zip(params, grads):
        param.grad = torch.tensor(grad)
    optimizer.step()
    clipped = clip_by_global_norm(grads, ACTIVE_MAX_NORM)
    start = initial_weights()
    expected = [
        ReferenceLAMB(lr=lr, adapted=adapted_by_default(w.shape)).step(w, g)
        for w, g, lr in zip(start, clipped, [0.05, 0.05, 0.01, 0.01])
    ]
    assert_matches([p.detach() for p in params], expected, rtol=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_telemetry_records_the_global_norm_and_the_clip_factor(path):
    params = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    grads = gradients(0)
    for param, grad in zip(params, grads):
        param.grad = torch.tensor(grad)
    optimizer = LAMB(params, max_grad_norm=ACTIVE_MAX_NORM, **PATHS[path])
    optimizer.record_layer_stats = True
    optimizer.step()
    norm = float(np.sqrt(sum(np.sum(g**2) for g in grads)))
    stats = optimizer.layer_stats
    assert stats.global_grad_norm.item() == pytest.approx(norm, rel=1e-12)
    assert stats.clip_factor.item() == pytest.approx(norm / ACTIVE_MAX_NORM, rel=1e-12)


def test_telemetry_has_no_global_norm_without_max_grad_norm():
    weight = torch.randn(4, 3, requires_grad=True)
    weight.grad = torch.randn(4, 3)
    optimizer = LAMB([weight])
    optimizer.record_layer_stats = True
    optimizer.step()
    assert optimizer.layer_stats.global_grad_norm is None
    assert optimizer.layer_stats.clip_factor is None


@pytest.mark.parametrize("path", PATHS)
def test_all_zero_gradients_with_max_grad_norm_move_nothing(path):
    weight = torch.randn(4, 3, requires_grad=True)
    weight.grad = torch.zeros(4, 3)
    before = weight.detach().clone()
    LAMB([weight], weight_decay=0.0, max_grad_norm=1.0, **PATHS[path]).step()
    assert torch.equal(weight.detach(), before)


@settings(max_examples=25, deadline=None)
@given(
    lr=st.floats(0.0, 0.5),
    max_norm=st.floats(0.01, 2.0),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.0, 0.9999),
    weight_decay=st.floats(0.0, 0.1),
    path=st.sampled_from(UNCOMPILED_PATHS),
)
def test_lamb_max_grad_norm_matches_reference_for_any_hyperparameters(
    lr, max_norm, beta1, beta2, weight_decay, path
):
    knobs = dict(lr=lr, weight_decay=weight_decay)
    ours, _ = run_optimizer(
        lambda p: LAMB(p, betas=(beta1, beta2), max_grad_norm=max_norm, **knobs, **PATHS[path]),
        3,
    )
    expected = run_reference(
        reference_lamb(beta1=beta1, beta2=beta2, **knobs), 3, max_grad_norm=max_norm
    )
    assert_matches(ours, expected, rtol=1e-10)


# --------------------------------------------------------- validation and state_dict


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda p: LARS(p, trust_clip=1), "trust_clip"),
        (lambda p: TVLARS(p, trust_clip="yes"), "trust_clip"),
        (lambda p: LARS([{"params": p, "trust_clip": None}]), "trust_clip"),
        (lambda p: LAMB(p, max_grad_norm=0.0), "max_grad_norm"),
        (lambda p: LAMB(p, max_grad_norm=-1.0), "max_grad_norm"),
        (lambda p: LAMB(p, max_grad_norm=float("inf")), "max_grad_norm"),
        (lambda p: LAMB(p, max_grad_norm=float("nan")), "max_grad_norm"),
        (lambda p: LAMB(p, max_grad_norm=True), "max_grad_norm"),
        (lambda p: LAMB(p, max_grad_norm="1.0"), "max_grad_norm"),
    ],
)
def test_invalid_option_raises_value_error_naming_it(make, argument):
    with pytest.raises(ValueError, match=argument):
        make([torch.zeros(2, 2, requires_grad=True)])


def test_max_grad_norm_must_be_the_same_in_every_group():
    first, second = torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="max_grad_norm.*every param group"):
        LAMB([{"params": [first]}, {"params": [second], "max_grad_norm": 2.0}], max_grad_norm=1.0)


def test_max_grad_norm_changed_in_one_group_mid_run_is_refused_at_the_step():
    first, second = torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)
    first.grad, second.grad = torch.ones(2, 2), torch.ones(2)
    optimizer = LAMB([{"params": [first]}, {"params": [second]}], max_grad_norm=1.0)
    optimizer.param_groups[1]["max_grad_norm"] = 2.0
    with pytest.raises(ValueError, match="max_grad_norm"):
        optimizer.step()


def test_options_default_to_no_clipping():
    param = [torch.zeros(2, 2, requires_grad=True)]
    assert LARS(param).defaults["trust_clip"] is False
    assert TVLARS(param).defaults["trust_clip"] is False
    assert LAMB(param).defaults["max_grad_norm"] is None


@pytest.mark.parametrize(
    ("make", "key", "value"),
    [
        (lambda p, **kw: LARS(p, **kw), "trust_clip", True),
        (lambda p, **kw: TVLARS(p, **kw), "trust_clip", True),
        (lambda p, **kw: LAMB(p, **kw), "max_grad_norm", 0.5),
    ],
)
def test_state_dict_round_trips_the_option(make, key, value):
    weight = torch.randn(3, 3, requires_grad=True)
    weight.grad = torch.randn(3, 3)
    saved = make([weight], **{key: value})
    saved.step()
    restored = make([weight])  # made with the default
    restored.load_state_dict(saved.state_dict())
    assert restored.param_groups[0][key] == value


@pytest.mark.parametrize(
    ("make", "key", "default"),
    [(LARS, "trust_clip", False), (TVLARS, "trust_clip", False), (LAMB, "max_grad_norm", None)],
)
def test_a_state_dict_saved_before_the_option_existed_loads_with_the_default(make, key, default):
    weight = torch.randn(3, 3, requires_grad=True)
    weight.grad = torch.randn(3, 3)
    optimizer = make([weight])
    optimizer.step()
    old = optimizer.state_dict()
    del old["param_groups"][0][key]
    restored = make([weight])
    restored.load_state_dict(old)
    assert restored.param_groups[0][key] == default
    restored.step()

"""The optimizers compute the spec's arithmetic (float64 to 1e-10, float32 to 1e-5) on
every execution path."""

from __future__ import annotations

import pytest
import torch
from harness import PATHS, assert_matches, run_optimizer, run_reference
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ReferenceLAMB, ReferenceLARS

from tvlars import LAMB, LARS, TVLARS

STEPS = 4
LR_CHANGES = [1.0, 0.5, 2.0, 0.1]
# Paths cheap enough to draw per hypothesis example (compiling is not).
UNCOMPILED_PATHS = sorted(name for name in PATHS if name != "compiled")


def adapted_by_default(shape: tuple[int, ...]) -> bool:
    return len(shape) > 1


LARS_CASES = {
    "defaults": ({}, {}),
    "nesterov": ({"nesterov": True}, {"nesterov": True}),
    "no momentum": ({"momentum": 0.0}, {"momentum": 0.0}),
    "no weight decay": ({"weight_decay": 0.0}, {"weight_decay": 0.0}),
    "large eta and decay": (
        {"eta": 0.02, "weight_decay": 0.05},
        {"eta": 0.02, "weight_decay": 0.05},
    ),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", LARS_CASES)
def test_lars_matches_reference_in_float64(path, case):
    ours_kwargs, reference_kwargs = LARS_CASES[case]
    ours, _ = run_optimizer(lambda p: LARS(p, lr=0.7, **ours_kwargs, **PATHS[path]), STEPS)
    expected = run_reference(
        lambda shape: ReferenceLARS(lr=0.7, adapted=adapted_by_default(shape), **reference_kwargs),
        STEPS,
    )
    assert_matches(ours, expected, rtol=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_lars_without_exclusion_adapts_one_dimensional_tensors(path):
    ours, _ = run_optimizer(lambda p: LARS(p, lr=0.7, exclude_1d=False, **PATHS[path]), STEPS)
    expected = run_reference(lambda shape: ReferenceLARS(lr=0.7, adapted=True), STEPS)
    assert_matches(ours, expected, rtol=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_lars_follows_learning_rate_changes_between_steps(path):
    ours, _ = run_optimizer(lambda p: LARS(p, **PATHS[path]), STEPS, lrs=LR_CHANGES)
    expected = run_reference(
        lambda shape: ReferenceLARS(adapted=adapted_by_default(shape)), STEPS, lrs=LR_CHANGES
    )
    assert_matches(ours, expected, rtol=1e-10)


TVLARS_CASES = {
    # lambda large enough that phi(t) changes visibly within a few steps
    "fast decay": ({"lmbda": 0.4}, {"lmbda": 0.4}),
    "delay, alpha and floor": (
        {"lmbda": 0.3, "delay_steps": 2, "alpha": 0.5, "min_scale": 0.05},
        {"lmbda": 0.3, "delay_steps": 2, "alpha": 0.5, "min_scale": 0.05},
    ),
    "norm clamp": ({"lmbda": 0.2, "norm_clamp": 0.5}, {"lmbda": 0.2, "norm_clamp": 0.5}),
    "excluded not scheduled": (
        {"lmbda": 0.4, "schedule_excluded": False},
        {"lmbda": 0.4, "schedule_excluded": False},
    ),
    "nesterov": ({"lmbda": 0.4, "nesterov": True}, {"lmbda": 0.4, "nesterov": True}),
    "no momentum": ({"lmbda": 0.4, "momentum": 0.0}, {"lmbda": 0.4, "momentum": 0.0}),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", TVLARS_CASES)
def test_tvlars_matches_reference_in_float64(path, case):
    ours_kwargs, reference_kwargs = TVLARS_CASES[case]
    ours, _ = run_optimizer(lambda p: TVLARS(p, lr=0.7, **ours_kwargs, **PATHS[path]), STEPS)
    expected = run_reference(
        lambda shape: ReferenceLARS(
            lr=0.7, tv=True, adapted=adapted_by_default(shape), **reference_kwargs
        ),
        STEPS,
    )
    assert_matches(ours, expected, rtol=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_tvlars_official_preset_is_the_authors_arithmetic(path):
    ours, _ = run_optimizer(lambda p: TVLARS.official(p, lr=3.0, lmbda=0.3, **PATHS[path]), STEPS)
    expected = run_reference(
        lambda shape: ReferenceLARS.tvlars_official(
            lr=3.0, lmbda=0.3, adapted=adapted_by_default(shape)
        ),
        STEPS,
    )
    assert_matches(ours, expected, rtol=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_tvlars_follows_learning_rate_changes_between_steps(path):
    ours, _ = run_optimizer(lambda p: TVLARS(p, lmbda=0.3, **PATHS[path]), STEPS, lrs=LR_CHANGES)
    expected = run_reference(
        lambda shape: ReferenceLARS(tv=True, lmbda=0.3, adapted=adapted_by_default(shape)),
        STEPS,
        lrs=LR_CHANGES,
    )
    assert_matches(ours, expected, rtol=1e-10)


LAMB_CASES = {
    "defaults": ({}, {}),
    "no bias correction": ({"bias_correction": False}, {"bias_correction": False}),
    "weight norm clamp": ({"weight_norm_clamp": (0.5, 1.5)}, {"weight_norm_clamp": (0.5, 1.5)}),
    "no exclusion": ({"exclude_1d": False}, {}),
    "no weight decay": ({"weight_decay": 0.0}, {"weight_decay": 0.0}),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", LAMB_CASES)
def test_lamb_matches_reference_in_float64(path, case):
    ours_kwargs, reference_kwargs = LAMB_CASES[case]
    adapt_all = ours_kwargs.get("exclude_1d") is False
    ours, _ = run_optimizer(lambda p: LAMB(p, lr=0.05, **ours_kwargs, **PATHS[path]), STEPS)
    expected = run_reference(
        lambda shape: ReferenceLAMB(
            lr=0.05, adapted=adapt_all or adapted_by_default(shape), **reference_kwargs
        ),
        STEPS,
    )
    assert_matches(ours, expected, rtol=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_lamb_official_preset_is_the_authors_arithmetic(path):
    ours, _ = run_optimizer(lambda p: LAMB.official(p, lr=0.05, **PATHS[path]), STEPS)
    expected = run_reference(
        lambda shape: ReferenceLAMB.official(lr=0.05),
        STEPS,
    )
    assert_matches(ours, expected, rtol=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_lamb_follows_learning_rate_changes_between_steps(path):
    lrs = [0.01, 0.05, 0.002, 0.03]
    ours, _ = run_optimizer(lambda p: LAMB(p, **PATHS[path]), STEPS, lrs=lrs)
    expected = run_reference(
        lambda shape: ReferenceLAMB(adapted=adapted_by_default(shape)), STEPS, lrs=lrs
    )
    assert_matches(ours, expected, rtol=1e-10)


FLOAT32_CASES = {
    "lars": (
        lambda p, path: LARS(p, lr=0.7, **PATHS[path]),
        lambda shape: ReferenceLARS(lr=0.7, adapted=adapted_by_default(shape)),
    ),
    "tvlars": (
        lambda p, path: TVLARS(p, lr=0.7, lmbda=0.3, **PATHS[path]),
        lambda shape: ReferenceLARS(lr=0.7, tv=True, lmbda=0.3, adapted=adapted_by_default(shape)),
    ),
    "lamb": (
        lambda p, path: LAMB(p, lr=0.05, **PATHS[path]),
        lambda shape: ReferenceLAMB(lr=0.05, adapted=adapted_by_default(shape)),
    ),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", FLOAT32_CASES)
def test_float32_parameters_match_reference_to_1e_5(path, case):
    make_optimizer, make_reference = FLOAT32_CASES[case]
    ours, _ = run_optimizer(lambda p: make_optimizer(p, path), STEPS, dtype=torch.float32)
    expected = run_reference(make_reference, STEPS)
    assert all(p.dtype == torch.float32 for p in ours)
    assert_matches(ours, expected, rtol=1e-5)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", FLOAT32_CASES)
def test_bfloat16_parameters_stay_bfloat16_and_track_float32(path, case):
    make_optimizer, _ = FLOAT32_CASES[case]
    ours, _ = run_optimizer(lambda p: make_optimizer(p, path), STEPS, dtype=torch.bfloat16)
    in_float32, _ = run_optimizer(lambda p: make_optimizer(p, path), STEPS, dtype=torch.float32)
    for actual, close_to in zip(ours, in_float32):
        assert actual.dtype == torch.bfloat16
        torch.testing.assert_close(actual.float(), close_to, rtol=3e-2, atol=3e-2)


@settings(max_examples=25, deadline=None)
@given(
    lr=st.floats(0.01, 5.0),
    momentum=st.floats(0.0, 0.99),
    weight_decay=st.floats(0.0, 0.1),
    eta=st.floats(1e-4, 0.1),
    lmbda=st.floats(0.0, 1.0),
    alpha=st.floats(0.05, 5.0),
    delay_steps=st.integers(-3, 3),
    min_scale=st.floats(0.0, 0.5),
    nesterov=st.booleans(),
    path=st.sampled_from(UNCOMPILED_PATHS),
)
def test_tvlars_matches_reference_for_any_hyperparameters(
    lr, momentum, weight_decay, eta, lmbda, alpha, delay_steps, min_scale, nesterov, path
):
    knobs = dict(
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        eta=eta,
        lmbda=lmbda,
        alpha=alpha,
        delay_steps=delay_steps,
        min_scale=min_scale,
        nesterov=nesterov,
    )
    ours, _ = run_optimizer(lambda p: TVLARS(p, **PATHS[path], **knobs), 3)
    expected = run_reference(
        lambda shape: ReferenceLARS(tv=True, adapted=adapted_by_default(shape), **knobs), 3
    )
    assert_matches(ours, expected, rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    lr=st.floats(1e-4, 0.5),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.0, 0.9999),
    eps=st.floats(1e-8, 1e-2),
    weight_decay=st.floats(0.0, 0.1),
    bias_correction=st.booleans(),
    path=st.sampled_from(UNCOMPILED_PATHS),
)
def test_lamb_matches_reference_for_any_hyperparameters(
    lr, beta1, beta2, eps, weight_decay, bias_correction, path
):
    ours, _ = run_optimizer(
        lambda p: LAMB(
            p,
            lr=lr,
            betas=(beta1, beta2),
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            **PATHS[path],
        ),
        3,
    )
    expected = run_reference(
        lambda shape: ReferenceLAMB(
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            adapted=adapted_by_default(shape),
        ),
        3,
    )
    assert_matches(ours, expected, rtol=1e-10)

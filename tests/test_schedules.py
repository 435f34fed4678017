"""Specification of tvlars.schedules and the ``tvlars schedule`` command."""

from __future__ import annotations

import math
import pickle
from functools import partial

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tvlars.cli import main
from tvlars.schedules import (
    ScheduleLR,
    constant,
    epochs_to_steps,
    nowa_schedule,
    polynomial,
    steps_per_epoch,
    tv_schedule,
    tv_sigmoid,
    wa_schedule,
    warmup_cosine,
)

steps = st.integers(min_value=0, max_value=10**12)
lambdas = st.floats(min_value=1e-9, max_value=10.0)


# constant


def test_constant_returns_its_value_at_every_step():
    assert constant(0) == 1.0
    assert constant(10**9, value=0.25) == 0.25


# warmup_cosine (Eq. 4)


def test_warmup_cosine_starts_at_zero():
    assert warmup_cosine(0, total=100, warmup=10, peak=2.0) == 0.0


def test_warmup_cosine_rises_linearly_during_warmup():
    assert warmup_cosine(5, total=100, warmup=10, peak=2.0) == pytest.approx(1.0)


def test_warmup_cosine_reaches_peak_at_warmup_end():
    assert warmup_cosine(10, total=100, warmup=10, peak=2.0, final=0.5) == 2.0


def test_warmup_cosine_is_halfway_between_peak_and_final_at_cosine_midpoint():
    assert warmup_cosine(55, total=100, warmup=10, peak=2.0, final=0.5) == pytest.approx(1.25)


def test_warmup_cosine_reaches_final_at_total():
    assert warmup_cosine(100, total=100, warmup=10, peak=2.0, final=0.5) == 0.5


def test_warmup_cosine_holds_final_beyond_total():
    assert warmup_cosine(10**9, total=100, warmup=10, peak=2.0, final=0.5) == 0.5


def test_warmup_cosine_without_warmup_starts_at_peak():
    assert warmup_cosine(0, total=100, warmup=0, peak=2.0) == 2.0


@pytest.mark.parametrize(("total", "warmup"), [(10, 10), (10, 20), (10, -1)])
def test_warmup_cosine_rejects_warmup_not_in_zero_to_total(total, warmup):
    with pytest.raises(ValueError, match="warmup"):
        warmup_cosine(0, total=total, warmup=warmup)


@given(step=st.integers(min_value=10, max_value=10**6))
def test_warmup_cosine_never_increases_after_warmup(step):
    assert warmup_cosine(step + 1, total=1000, warmup=10) <= warmup_cosine(
        step, total=1000, warmup=10
    )


# Every boundary of warmup_cosine with total = 10, warmup = 4, peak = 2, final = 0.5. Past
# the warm-up, q = (1 + cos(pi * (t - 4) / 6)) / 2: at t = 5, cos(pi/6) = sqrt(3)/2 gives
# q = (2 + sqrt(3)) / 4; at t = 9, cos(5 pi/6) = -sqrt(3)/2 gives q = (2 - sqrt(3)) / 4.
Q5, Q9 = (2 + math.sqrt(3)) / 4, (2 - math.sqrt(3)) / 4
WARMUP_COSINE_BOUNDARIES = [
    (0, 0.0),  # first step: no learning rate yet
    (1, 0.5),  # 2 * 1/4
    (3, 1.5),  # last warm-up step: 2 * 3/4
    (4, 2.0),  # first cosine step: the peak
    (5, 2 * Q5 + 0.5 * (1 - Q5)),  # 1.8995...
    (9, 2 * Q9 + 0.5 * (1 - Q9)),  # last cosine step: 0.6004...
    (10, 0.5),  # total: final
    (11, 0.5),  # beyond total: final held
]


@pytest.mark.parametrize(("step", "expected"), WARMUP_COSINE_BOUNDARIES)
def test_warmup_cosine_at_every_boundary_matches_hand_computed_values(step, expected):
    value = warmup_cosine(step, total=10, warmup=4, peak=2.0, final=0.5)
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_warmup_cosine_defaults_to_peak_one_and_final_zero():
    assert (warmup_cosine(4, total=10, warmup=4), warmup_cosine(10, total=10, warmup=4)) == (1, 0)


@pytest.mark.parametrize(
    "schedule", [partial(warmup_cosine, total=10, warmup=4), partial(polynomial, total=10)]
)
def test_schedules_reject_a_negative_step_by_name(schedule):
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        schedule(-1)


# polynomial (NOWA)


def test_polynomial_starts_at_peak():
    assert polynomial(0, total=100, peak=2.0, final=0.5) == 2.0


def test_polynomial_follows_its_power():
    # Halfway, (1 - 1/2) ** power of the way from final to peak remains.
    assert polynomial(50, total=100, peak=1.0, final=0.0, power=3.0) == pytest.approx(0.125)
    assert polynomial(50, total=100, peak=2.0, final=0.5, power=2.0) == pytest.approx(0.875)


def test_polynomial_reaches_final_at_total_and_holds_it():
    assert polynomial(100, total=100, peak=2.0, final=0.5) == 0.5
    assert polynomial(10**9, total=100, peak=2.0, final=0.5) == 0.5


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 2.0),  # peak
        (1, 1.5 * (3 / 4) ** 2 + 0.5),  # 1.34375
        (3, 1.5 * (1 / 4) ** 2 + 0.5),  # last step before total: 0.59375
        (4, 0.5),  # total: final
        (5, 0.5),  # beyond total: final held
    ],
)
def test_polynomial_at_every_boundary_matches_hand_computed_values(step, expected):
    assert polynomial(step, total=4, peak=2.0, final=0.5, power=2.0) == expected


@pytest.mark.parametrize(
    ("total", "power", "named"), [(0, 2.0, "total"), (10, 0.0, "power"), (10, -1.0, "power")]
)
def test_polynomial_rejects_non_positive_total_or_power(total, power, named):
    with pytest.raises(ValueError, match=named):
        polynomial(0, total=total, power=power)


def test_polynomial_defaults_to_a_square_from_one_to_zero():
    assert polynomial(2, total=4) == 0.25


def test_polynomial_accepts_one_step_and_a_power_below_one():
    assert polynomial(1, total=1) == 0.0
    assert polynomial(1, total=4, power=0.5) == pytest.approx(math.sqrt(3) / 2, rel=1e-15)


# tv_sigmoid (Eq. 8)


@given(
    lmbda=lambdas,
    alpha=st.floats(min_value=0.01, max_value=100.0),
    delay=st.integers(min_value=0, max_value=10**6),
    floor=st.floats(min_value=0.0, max_value=1.0),
)
def test_tv_sigmoid_at_delay_is_one_over_alpha_plus_one_plus_floor(lmbda, alpha, delay, floor):
    assert tv_sigmoid(delay, lmbda, alpha, delay, floor) == 1.0 / (alpha + 1.0) + floor


def test_tv_sigmoid_matches_equation_8():
    expected = 1.0 / (0.5 + math.exp(1e-3 * (700 - 200))) + 0.01
    assert tv_sigmoid(700, lmbda=1e-3, alpha=0.5, delay=200, floor=0.01) == expected


@given(lmbda=lambdas, first=steps, gap=st.integers(min_value=1, max_value=10**6))
def test_tv_sigmoid_never_increases_with_the_step(lmbda, first, gap):
    assert tv_sigmoid(first + gap, lmbda, delay=100) <= tv_sigmoid(first, lmbda, delay=100)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 1 / (1 + 2**-10) + 0.01),  # ten steps before the delay: exp(-10 ln 2)
        (9, 1 / (1 + 0.5) + 0.01),  # the step before the delay: 2/3 + floor
        (10, 1 / (1 + 1) + 0.01),  # the delay: 1/2 + floor
        (11, 1 / (1 + 2) + 0.01),  # the step after: 1/3 + floor
        (10 + 1100, 0.01),  # far beyond: exp(1100 ln 2) overflows, exactly the floor
    ],
)
def test_tv_sigmoid_around_its_delay_matches_hand_computed_values(step, expected):
    # lambda = ln 2 makes exp(lambda * (t - delay)) a power of two.
    value = tv_sigmoid(step, lmbda=math.log(2), alpha=1.0, delay=10, floor=0.01)
    assert value == pytest.approx(expected, rel=1e-12)


def test_tv_sigmoid_strictly_decreases_while_representable():
    values = [tv_sigmoid(step, lmbda=1e-2, delay=500) for step in range(0, 5000, 50)]
    assert all(later < earlier for earlier, later in zip(values[:-1], values[1:], strict=True))


@given(step=steps, lmbda=lambdas, floor=st.floats(min_value=0.0, max_value=1.0))
def test_tv_sigmoid_stays_finite_between_floor_and_one_over_alpha_plus_floor(step, lmbda, floor):
    value = tv_sigmoid(step, lmbda, alpha=1.0, delay=0, floor=floor)
    assert math.isfinite(value)
    assert floor <= value <= 1.0 + floor


def test_tv_sigmoid_returns_exactly_floor_where_exp_would_overflow():
    assert tv_sigmoid(10**7, lmbda=0.01) == 0.0
    assert tv_sigmoid(10**7, lmbda=0.01, floor=0.05) == 0.05


def test_tv_sigmoid_with_zero_lambda_is_constant():
    assert tv_sigmoid(0, 0.0) == tv_sigmoid(10**9, 0.0) == 0.5


@pytest.mark.parametrize("alpha", [0.0, -1.0, math.nan])
def test_tv_sigmoid_rejects_non_positive_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        tv_sigmoid(0, 1e-3, alpha=alpha)


@pytest.mark.parametrize("lmbda", [-1e-3, math.inf, math.nan])
def test_tv_sigmoid_rejects_a_negative_or_non_finite_lambda(lmbda):
    with pytest.raises(ValueError, match="lmbda must be finite and >= 0"):
        tv_sigmoid(0, lmbda)
    with pytest.raises(ValueError, match="lmbda must be finite and >= 0"):
        tv_schedule(lmbda)


def test_tv_sigmoid_defaults_to_alpha_one_no_delay_and_no_floor():
    assert tv_sigmoid(0, lmbda=1.0) == 0.5
    assert tv_schedule(1.0)(0) == 0.5


# epochs and steps


def test_steps_per_epoch_drops_or_keeps_the_last_partial_batch():
    assert steps_per_epoch(50_000, 512) == 97
    assert steps_per_epoch(50_000, 512, drop_last=False) == 98
    assert steps_per_epoch(1024, 512, drop_last=False) == 2


@pytest.mark.parametrize(
    ("num_samples", "batch_size", "named"),
    [
        (0, 1, "num_samples must be a positive integer"),
        (-1, 1, "num_samples must be a positive integer"),
        (10.0, 1, "num_samples must be a positive integer"),
        (10, 0, "batch_size must be a positive integer"),
        (10, 2.5, "batch_size must be a positive integer"),
        (10, 20, r"batch_size \(20\) exceeds num_samples \(10\): with drop_last=True an epoch"),
    ],
)
def test_steps_per_epoch_rejects_bad_arguments_by_name(num_samples, batch_size, named):
    with pytest.raises(ValueError, match=named):
        steps_per_epoch(num_samples, batch_size)


def test_steps_per_epoch_at_its_smallest_arguments():
    assert steps_per_epoch(1, 1) == 1
    assert steps_per_epoch(10, 1) == 10
    assert steps_per_epoch(10, 10) == 1  # the batch is the whole set: one step


def test_epochs_to_steps_multiplies_and_rounds_halves_up():
    assert epochs_to_steps(100, 97) == 9700
    assert epochs_to_steps(0.5, 97) == 49  # 48.5
    assert epochs_to_steps(0.1, 97) == 10  # 9.7


@given(epochs=st.integers(min_value=0, max_value=10**6), per_epoch=st.integers(1, 10**5))
def test_epochs_to_steps_is_exact_for_whole_epochs(epochs, per_epoch):
    assert epochs_to_steps(epochs, per_epoch) == epochs * per_epoch


@pytest.mark.parametrize(
    ("epochs", "per_epoch", "named"),
    [
        (-1, 10, "epochs"),
        (math.inf, 10, "epochs"),
        (True, 10, "epochs"),
        ("1", 10, "epochs"),
        (1, 0, "steps_per_epoch"),
        (1, 1.5, "steps_per"),
    ],
)
def test_epochs_to_steps_rejects_bad_arguments_by_name(epochs, per_epoch, named):
    with pytest.raises(ValueError, match=named):
        epochs_to_steps(epochs, per_epoch)


# presets


def test_wa_schedule_warms_up_to_one_then_decays_to_final_ratio():
    wa = wa_schedule(total_steps=1000, warmup_steps=200)
    assert (wa(0), wa(200), wa(1000)) == (0.0, 1.0, 1e-3)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.0),
        (3, 0.75),  # last warm-up step
        (4, 1.0),  # first cosine step
        (5, Q5 + 1e-3 * (1 - Q5)),
        (9, Q9 + 1e-3 * (1 - Q9)),  # last cosine step
        (10, 1e-3),  # total
        (11, 1e-3),  # beyond total
    ],
)
def test_wa_schedule_at_every_boundary_matches_hand_computed_values(step, expected):
    assert wa_schedule(total_steps=10, warmup_steps=4)(step) == pytest.approx(
        expected, rel=1e-12, abs=1e-15
    )


def test_wa_schedule_without_warmup_starts_at_one():
    wa = wa_schedule(total_steps=10, warmup_steps=0)
    assert (wa(0), wa(10), wa(11)) == (1.0, 1e-3, 1e-3)


@pytest.mark.parametrize(
    ("step", "expected"), [(0, 1.0), (1, 0.5625), (3, 0.0625), (4, 0.0), (5, 0.0)]
)
def test_nowa_schedule_at_every_boundary_matches_hand_computed_values(step, expected):
    assert nowa_schedule(total_steps=4)(step) == expected


def test_wa_schedule_may_decay_to_zero_but_not_below():
    assert wa_schedule(total_steps=10, warmup_steps=4, final_ratio=0.0)(10) == 0.0
    with pytest.raises(ValueError, match="final_ratio must be >= 0, got -0.1"):
        wa_schedule(total_steps=10, warmup_steps=4, final_ratio=-0.1)


def test_nowa_schedule_passes_its_power_on():
    assert nowa_schedule(total_steps=4, power=1.0)(1) == 0.75


def test_nowa_schedule_starts_at_one_and_decays_polynomially_to_zero():
    nowa = nowa_schedule(total_steps=1000)
    assert (nowa(0), nowa(500), nowa(1000)) == (1.0, 0.25, 0.0)


def test_tv_schedule_is_tv_sigmoid_with_bound_parameters():
    phi = tv_schedule(1e-3, alpha=0.5, delay=100, floor=0.01)
    assert phi(1234) == tv_sigmoid(1234, 1e-3, 0.5, 100, 0.01)


def test_presets_validate_when_built_not_when_first_called():
    with pytest.raises(ValueError, match="warmup"):
        wa_schedule(total_steps=100, warmup_steps=100)
    with pytest.raises(ValueError, match="power"):
        nowa_schedule(total_steps=100, power=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        tv_schedule(1e-3, alpha=0.0)


# ScheduleLR


def _sgd(*lrs):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups)


def _step(optimizer, scheduler):
    optimizer.step()
    scheduler.step()


def test_schedule_lr_sets_every_group_lr_to_its_base_lr_times_the_factor():
    optimizer = _sgd(0.1, 0.4)
    wa = wa_schedule(total_steps=10, warmup_steps=4)
    scheduler = ScheduleLR(optimizer, wa)
    for step in range(12):
        lrs = [group["lr"] for group in optimizer.param_groups]
        assert lrs == pytest.approx([0.1 * wa(step), 0.4 * wa(step)], abs=1e-15)
        _step(optimizer, scheduler)


def test_schedule_lr_rejects_a_schedule_that_is_not_callable():
    with pytest.raises(TypeError, match="schedule must be callable, got float"):
        ScheduleLR(_sgd(0.1), 0.5)


def test_schedule_lr_created_at_a_later_step_continues_from_it():
    optimizer = _sgd(0.1)
    optimizer.param_groups[0]["initial_lr"] = 0.2  # as a loaded optimizer state holds it
    wa = wa_schedule(total_steps=10, warmup_steps=4)
    scheduler = ScheduleLR(optimizer, wa, last_epoch=2)
    assert scheduler.last_epoch == 3
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * wa(3))


def test_schedule_lr_fills_a_tensor_lr_in_place():
    optimizer = _sgd(torch.tensor(0.1))
    lr_tensor = optimizer.param_groups[0]["lr"]
    phi = tv_schedule(0.5, delay=2)
    scheduler = ScheduleLR(optimizer, phi)
    for step in range(5):
        assert optimizer.param_groups[0]["lr"] is lr_tensor
        assert lr_tensor.item() == pytest.approx(0.1 * phi(step))
        _step(optimizer, scheduler)


def test_schedule_lr_state_dict_round_trip_resumes_the_same_lr_sequence():
    phi = lambda step: 1.0 / (1.0 + step)  # noqa: E731 - a lambda, which must not be pickled
    optimizer = _sgd(0.2)
    scheduler = ScheduleLR(optimizer, phi)
    for _ in range(3):
        _step(optimizer, scheduler)
    saved_optimizer = pickle.loads(pickle.dumps(optimizer.state_dict()))
    saved_scheduler = pickle.loads(pickle.dumps(scheduler.state_dict()))
    expected = []
    for _ in range(4):
        _step(optimizer, scheduler)
        expected.append(optimizer.param_groups[0]["lr"])

    resumed_optimizer = _sgd(0.2)
    resumed_scheduler = ScheduleLR(resumed_optimizer, phi)
    resumed_optimizer.load_state_dict(saved_optimizer)
    resumed_scheduler.load_state_dict(saved_scheduler)
    resumed = []
    for _ in range(4):
        _step(resumed_optimizer, resumed_scheduler)
        resumed.append(resumed_optimizer.param_groups[0]["lr"])

    assert resumed == expected == pytest.approx([0.2 / (1 + step) for step in range(4, 8)])


# tvlars schedule


def _cli(*argv):
    return main(["schedule", *argv])


def test_cli_without_plot_prints_values_at_landmark_steps(capsys):
    argv = ["--epochs", "10", "--steps-per-epoch", "100", "--warmup-epochs", "2", "--lmbda", "0"]
    assert _cli(*argv) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        for point in ("start", "warm-up end", "middle", "end"):
            if line.startswith(point + " "):
                rows[point] = line[len(point) :].split()
    # Columns: step, epoch, WA, NOWA, phi at lambda = 0 (constant 1 / (alpha + 1)).
    assert rows["start"] == ["0", "0", "0", "1", "0.5"]
    assert rows["warm-up end"] == ["200", "2", "1", "0.64", "0.5"]
    assert rows["middle"] == ["500", "5", "0.6917", "0.25", "0.5"]
    assert rows["end"] == ["1000", "10", "0.001", "0", "0.5"]


def test_cli_plot_writes_a_png(tmp_path):
    out = tmp_path / "schedules.png"
    assert _cli("--plot", str(out), "--epochs", "10", "--steps-per-epoch", "20") == 0
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["--total-steps", "100", "--warmup-steps", "100"],
        ["--epochs", "10", "--warmup-epochs", "20"],
        ["--alpha", "0"],
        ["--lmbda", "-1e-3"],
        ["--total-steps", "100", "--epochs", "10"],
    ],
)
def test_cli_bad_input_exits_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli(*argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err

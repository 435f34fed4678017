"""Specification of tvlars.train.config: what a run config and the data imply
(:class:`Plan`, in optimizer steps) and the defaults and checks of :class:`RunConfig`,
against values computed by hand."""

from __future__ import annotations

import pytest

from tvlars.train import Plan, RunConfig

CIFAR10_TRAIN = 50_000


def plan_for(num_train: int = CIFAR10_TRAIN, world_size: int = 1, **settings) -> Plan:
    return Plan.make(RunConfig(**settings).resolved(), num_train, world_size)


# The paper's protocol (Section VI-A): 100 epochs, warm-up 20, phi delayed by 10, which are
# also the defaults' shares (0.2 and 0.1 of the epochs). Steps per epoch = 50000 // B.
PAPER_PROTOCOL = [
    # batch, steps/epoch, total, warm-up, delay, min_scale = B / 256 * 1e-3
    (512, 97, 9700, 1940, 970, 0.002),
    (1024, 48, 4800, 960, 480, 0.004),
    (2048, 24, 2400, 480, 240, 0.008),
    (4096, 12, 1200, 240, 120, 0.016),
    (8192, 6, 600, 120, 60, 0.032),
    (16384, 3, 300, 60, 30, 0.064),
]
# The CPU-scale protocol: 15 epochs, so warm-up 3 and delay 1.5 epochs by the same shares.
CPU_PROTOCOL = [
    (512, 97, 1455, 291, 146, 0.002),  # delay 145.5 steps: halves round up
    (1024, 48, 720, 144, 72, 0.004),
    (2048, 24, 360, 72, 36, 0.008),
    (4096, 12, 180, 36, 18, 0.016),
    (8192, 6, 90, 18, 9, 0.032),
    (16384, 3, 45, 9, 5, 0.064),  # delay 4.5 steps: halves round up
]


@pytest.mark.parametrize("preset", ["paper", "official"])
@pytest.mark.parametrize(
    ("epochs", "row"),
    [(100, row) for row in PAPER_PROTOCOL] + [(15, row) for row in CPU_PROTOCOL],
)
def test_plan_converts_epochs_to_steps_for_each_preset_and_batch_size(preset, epochs, row):
    batch, per_epoch, total, warmup, delay, min_scale = row
    plan = plan_for(optimizer="tvlars", preset=preset, batch_size=batch, epochs=epochs, lr=2.0)
    assert (plan.steps_per_epoch, plan.total_steps) == (per_epoch, total)
    assert (plan.warmup_steps, plan.delay_steps) == (warmup, delay)
    assert plan.min_scale == pytest.approx(min_scale, rel=1e-12)
    assert (plan.lmbda, plan.target_lr) == (1e-4, 2.0)
    assert (plan.micro_batch, plan.accumulation_steps) == (batch, 1)


def test_plan_rounds_half_steps_up_as_the_schedule_command_does():
    # 2.5 epochs of 1 step: 3, not Python round()'s even 2; 0.5 epochs: 1, not 0.
    plan = plan_for(num_train=100, batch_size=100, epochs=10, warmup_epochs=2.5, delay_epochs=0.5)
    assert (plan.warmup_steps, plan.delay_steps) == (3, 1)


def test_explicit_warmup_and_delay_epochs_override_the_default_shares():
    plan = plan_for(batch_size=1000, epochs=10, warmup_epochs=1, delay_epochs=0.25)
    assert (plan.steps_per_epoch, plan.warmup_steps, plan.delay_steps) == (
        50,
        50,
        13,
    )  # 12.5 rounds up


@pytest.mark.parametrize(
    ("batch", "decay", "lmbda"),
    [
        (16384, 0.5, 0.5 / (45 - 5)),  # K over the 40 steps after the delay
        (512, 0.5, 0.5 / (1455 - 146)),
        (4096, 2.0, 2.0 / (180 - 18)),
    ],
)
def test_tv_decay_spreads_k_over_the_steps_after_the_delay(batch, decay, lmbda):
    plan = plan_for(batch_size=batch, epochs=15, tv_decay=decay, lmbda=1e-4)
    assert plan.lmbda == pytest.approx(lmbda, rel=1e-12)


def test_tv_decay_with_the_delay_at_or_past_the_end_divides_by_one_step():
    plan = plan_for(num_train=300, batch_size=100, epochs=2, delay_epochs=5, tv_decay=0.3)
    assert (plan.total_steps, plan.delay_steps, plan.lmbda) == (6, 15, 0.3)


def test_without_tv_decay_lambda_is_the_per_step_value_given():
    assert plan_for(batch_size=4096, epochs=15, lmbda=3e-3).lmbda == 3e-3


@pytest.mark.parametrize("min_scale", [0.0, 0.25])
def test_an_explicit_min_scale_replaces_the_papers(min_scale):
    assert plan_for(batch_size=4096, epochs=15, min_scale=min_scale).min_scale == min_scale


@pytest.mark.parametrize(("scaling", "target"), [("none", 0.1), ("linear256", 0.1 * 4096 / 256)])
def test_lr_scaling_linear256_multiplies_the_lr_by_batch_over_256(scaling, target):
    plan = plan_for(batch_size=4096, epochs=15, lr=0.1, lr_scaling=scaling)
    assert plan.target_lr == pytest.approx(target, rel=1e-12)


@pytest.mark.parametrize(
    ("batch", "micro", "world", "expected"),
    [
        (16384, 4096, 1, (4096, 4)),  # the CPU presets' micro-batches
        (512, 4096, 1, (512, 1)),  # a micro-batch above the batch is the batch
        (512, None, 2, (256, 1)),  # each of two processes takes half
        (512, 64, 2, (64, 4)),
    ],
)
def test_micro_batch_and_accumulation_split_the_per_process_batch(batch, micro, world, expected):
    plan = plan_for(batch_size=batch, micro_batch=micro, epochs=15, world_size=world)
    assert (plan.micro_batch, plan.accumulation_steps) == expected
    assert plan.micro_batch * plan.accumulation_steps * world == batch


@pytest.mark.parametrize(
    ("settings", "num_train", "world", "message"),
    [
        ({"batch_size": 128}, 100, 1, "exceeds the 100 training samples"),
        ({"batch_size": 100}, 100, 3, "divisible by the 3 processes"),
        ({"batch_size": 96, "micro_batch": 40}, 100, 1, "must divide the per-process batch 96"),
    ],
)
def test_a_plan_that_cannot_be_made_names_the_setting(settings, num_train, world, message):
    with pytest.raises(ValueError, match=message):
        plan_for(num_train=num_train, world_size=world, epochs=2, **settings)


# RunConfig: defaults


@pytest.mark.parametrize(
    ("dataset", "name", "model"),
    [
        ("MNIST-1D", "mnist1d", "mnist1d-resnet"),
        ("CIFAR_10", "cifar10", "resnet18"),
        ("cifar100", "cifar100", "resnet18"),
        ("Tiny-ImageNet", "tinyimagenet", "resnet34"),
        ("synthetic", "synthetic", "resnet18-cifar"),
    ],
)
def test_dataset_names_are_normalized_and_pick_the_papers_model(dataset, name, model):
    config = RunConfig(dataset=dataset).resolved()
    assert (config.dataset, config.model) == (name, model)


def test_a_dataset_without_a_default_model_gets_resnet18():
    # The data registry names unknown datasets when loading; the config does not check them.
    assert RunConfig(dataset="imagenet").resolved().model == "resnet18"


@pytest.mark.parametrize(
    ("optimizer", "schedule", "lr"),
    [
        ("tvlars", "none", 2.0),
        ("lars", "warmup-cosine", 2.0),
        ("lamb", "warmup-cosine", 1e-2),
        ("sgd", "warmup-cosine", 0.1),
        ("adamw", "warmup-cosine", 1e-3),
    ],
)
def test_each_optimizer_gets_its_default_schedule_and_lr(optimizer, schedule, lr):
    config = RunConfig(optimizer=optimizer).resolved()
    assert (config.schedule, config.lr) == (schedule, lr)


def test_warmup_and_delay_default_to_a_fifth_and_a_tenth_of_the_epochs():
    config = RunConfig(epochs=30).resolved()
    assert (config.warmup_epochs, config.delay_epochs) == (6.0, 3.0)


def test_given_values_are_kept_over_the_defaults():
    given = dict(model="mnist1d-cnn", schedule="poly", lr=0.3, warmup_epochs=0, delay_epochs=0)
    config = RunConfig(optimizer="lars", **given).resolved()
    assert {key: getattr(config, key) for key in given} == given


# RunConfig: checks


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("optimizer", "adam"),
        ("schedule", "step"),
        ("preset", "fast"),
        ("precision", "fp8"),
        ("lr_scaling", "sqrt"),
    ],
)
def test_an_unknown_choice_is_named_with_the_options(flag, value):
    message = rf"--{flag.replace('_', '-')} '{value}': choose one of \("
    with pytest.raises(ValueError, match=message):
        RunConfig(**{flag: value}).resolved()


@pytest.mark.parametrize("flag", ["batch_size", "epochs", "telemetry_every", "micro_batch"])
def test_counts_must_be_at_least_one(flag):
    with pytest.raises(ValueError, match=f"--{flag.replace('_', '-')} must be >= 1, got 0"):
        RunConfig(**{flag: 0}).resolved()
    assert getattr(RunConfig(**{flag: 1}).resolved(), flag) == 1


@pytest.mark.parametrize(
    "flag",
    ["lr", "warmup_epochs", "delay_epochs", "excluded_lr_scale", "weight_decay", "lmbda"],
)
def test_rates_and_epochs_must_not_be_negative(flag):
    with pytest.raises(ValueError, match=f"--{flag.replace('_', '-')} must be >= 0"):
        RunConfig(schedule="none", **{flag: -0.5}).resolved()
    assert getattr(RunConfig(schedule="none", **{flag: 0}).resolved(), flag) == 0


def test_warmup_must_end_before_the_last_epoch_only_with_a_warmup_schedule():
    with pytest.raises(ValueError, match="--warmup-epochs 10 must be below --epochs 10"):
        RunConfig(schedule="warmup-cosine", epochs=10, warmup_epochs=10).resolved()
    assert RunConfig(schedule="warmup-cosine", epochs=10, warmup_epochs=9.5).resolved()
    assert RunConfig(schedule="poly", epochs=10, warmup_epochs=10).resolved()


@pytest.mark.parametrize("decay", [0.0, -1.0])
def test_tv_decay_must_be_positive(decay):
    with pytest.raises(ValueError, match="^--tv-decay must be > 0$"):
        RunConfig(tv_decay=decay).resolved()


# RunConfig: identity and files


def test_run_id_is_twelve_hex_digits_of_what_the_run_computes():
    run_id = RunConfig().run_id()
    assert len(run_id) == 12 and int(run_id, 16) >= 0
    assert RunConfig(lr=2.0).run_id() == run_id  # the default, given
    assert RunConfig(seed=1).run_id() != run_id


def test_where_and_how_fast_a_run_goes_is_left_out_of_its_id():
    moved = RunConfig(out="elsewhere", threads=3, data_dir="data", device="cpu", extra={"a": 1})
    assert moved.run_id() == RunConfig().run_id()
    hashed = RunConfig().hashed_items()
    assert not {"out", "threads", "data_dir", "device", "extra"} & hashed.keys()
    assert list(hashed) == sorted(hashed) and hashed["lr"] is None


def test_from_dict_names_unknown_keys_and_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown configuration keys \['batch', 'lrr'\]"):
        RunConfig.from_dict({"lrr": 1.0, "batch": 4, "epochs": 2})
    assert RunConfig.from_dict(RunConfig(epochs=2).to_dict()) == RunConfig(epochs=2)


def test_toml_keys_may_use_dashes_or_underscores(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('batch-size = 64\nwarmup_epochs = 2.5\noptimizer = "lamb"\n')
    config = RunConfig.from_toml(path)
    assert (config.batch_size, config.warmup_epochs, config.optimizer) == (64, 2.5, "lamb")

"""DeviceBatches and EvalBatches: order from (seed, epoch), disjoint equal shards,
augmentation replayed exactly, and every test sample evaluated exactly once."""

from __future__ import annotations

import pytest
import torch

from tvlars.data import DeviceBatches, EvalBatches, make_synthetic


def numbered_signals(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Signals whose label is their index, so the labels of a batch say which it holds."""
    return torch.arange(count, dtype=torch.float32)[:, None].repeat(1, 4), torch.arange(count)


def epoch_labels(batches: DeviceBatches, epoch: int, start: int = 0) -> list[list[int]]:
    return [labels.tolist() for _, labels in batches.epoch(epoch, start)]


def flat(lists: list[list[int]]) -> list[int]:
    return [value for values in lists for value in values]


def signal_batches(count=96, **options) -> DeviceBatches:
    inputs, labels = numbered_signals(count)
    options.setdefault("micro_batch", 8)
    return DeviceBatches(inputs, labels, **options)


def image_batches(**options) -> DeviceBatches:
    dataset = make_synthetic(64, 8, sample_shape=(3, 16, 16), seed=0)
    options.setdefault("micro_batch", 8)
    return DeviceBatches.from_dataset(dataset, **options)


def test_each_epoch_takes_every_sample_exactly_once_when_the_batch_divides():
    batches = signal_batches(96, micro_batch=8, accumulation_steps=2)
    assert sorted(flat(epoch_labels(batches, 0))) == list(range(96))
    assert len(batches) == 12 and batches.steps_per_epoch == 6


def test_the_remainder_is_dropped_and_the_rest_are_distinct():
    batches = signal_batches(100, micro_batch=16, accumulation_steps=2)
    taken = flat(epoch_labels(batches, 0))
    assert batches.steps_per_epoch == 3 and len(taken) == 96 and len(set(taken)) == 96


def test_same_seed_and_epoch_give_the_same_order():
    assert epoch_labels(signal_batches(seed=5), 3) == epoch_labels(signal_batches(seed=5), 3)


def test_different_epochs_give_different_orders():
    batches = signal_batches()
    assert epoch_labels(batches, 0) != epoch_labels(batches, 1)


def test_different_seeds_give_different_orders():
    assert epoch_labels(signal_batches(seed=0), 0) != epoch_labels(signal_batches(seed=1), 0)


def test_two_ranks_take_disjoint_shards_that_cover_the_epoch():
    shards = [
        flat(epoch_labels(signal_batches(96, world_size=2, rank=rank, micro_batch=8), 2))
        for rank in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 48
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(96))


def test_ranks_take_the_same_number_of_steps_when_the_samples_do_not_divide():
    lengths = {len(signal_batches(101, world_size=3, rank=r, micro_batch=4)) for r in range(3)}
    assert lengths == {8}  # 101 // 12 = 8 steps of 12, the last 5 samples dropped


def test_a_step_holds_the_same_samples_however_the_batch_is_split():
    # One rank accumulating 2 micro-batches vs 2 ranks with one each: same effective batch.
    single = epoch_labels(signal_batches(micro_batch=8, accumulation_steps=2), 4)
    ranks = [epoch_labels(signal_batches(micro_batch=8, world_size=2, rank=r), 4) for r in (0, 1)]
    for step in range(6):
        assert single[2 * step] + single[2 * step + 1] == ranks[0][step] + ranks[1][step]


def test_resuming_inside_an_epoch_replays_the_rest_exactly():
    batches = image_batches()
    full = list(batches.epoch(7))
    resumed = list(image_batches().epoch(7, start=3))
    assert len(resumed) == len(full) - 3
    for (x, y), (x_resumed, y_resumed) in zip(full[3:], resumed):
        assert torch.equal(x, x_resumed) and torch.equal(y, y_resumed)


def test_a_start_beyond_the_epoch_is_refused_at_once():
    with pytest.raises(ValueError, match="start 13"):
        signal_batches(96).epoch(0, start=13)


def test_indices_lists_the_samples_the_epoch_yields_in_order():
    batches = signal_batches(world_size=2, rank=1)
    assert batches.indices(2).tolist() == flat(epoch_labels(batches, 2))


def test_augmented_batches_are_normalized_float_of_the_image_shape():
    inputs, labels = next(iter(image_batches().epoch(0)))
    assert inputs.shape == (8, 3, 16, 16) and inputs.dtype == torch.float32
    assert labels.dtype == torch.int64


def test_crop_and_flip_vary_from_sample_to_sample():
    pattern = torch.arange(3 * 16 * 16).reshape(1, 3, 16, 16).remainder(251).byte()
    batches = DeviceBatches(
        pattern.repeat(64, 1, 1, 1),
        torch.zeros(64, dtype=torch.int64),
        micro_batch=64,
        padding=4,
        flip=True,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    )
    inputs, _ = next(iter(batches.epoch(0)))
    distinct = {tuple(sample.flatten().tolist()) for sample in inputs}
    assert len(distinct) > 32  # 81 offsets x 2 flips for 64 copies of one image


def test_augmentation_is_the_same_for_the_same_epoch_and_differs_between_epochs():
    first, again, other = (next(iter(image_batches().epoch(e)))[0] for e in (0, 0, 1))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_without_augmentation_batches_are_the_normalized_stored_images():
    dataset = make_synthetic(64, 8, sample_shape=(3, 16, 16), seed=0)
    batches = DeviceBatches.from_dataset(dataset, micro_batch=8, augment=False)
    inputs, _ = next(iter(batches.epoch(0)))
    stored = dataset.train_x[batches.indices(0)[:8]].double() / 255
    mean = torch.tensor(dataset.mean).view(1, 3, 1, 1)
    std = torch.tensor(dataset.std).view(1, 3, 1, 1)
    assert torch.allclose(inputs.double(), (stored - mean) / std, atol=1e-5)


def test_normalization_gives_about_zero_mean_and_unit_std_per_channel():
    dataset = make_synthetic(512, 8, sample_shape=(3, 16, 16), seed=0)
    batches = DeviceBatches.from_dataset(dataset, micro_batch=512, augment=False)
    inputs, _ = next(iter(batches.epoch(0)))
    assert inputs.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert (inputs.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


def test_signals_pass_through_unaugmented_by_default():
    dataset = make_synthetic(64, 8, sample_shape=(40,), seed=0)
    batches = DeviceBatches.from_dataset(dataset, micro_batch=8)
    inputs, _ = next(iter(batches.epoch(0)))
    assert torch.equal(inputs, dataset.train_x[batches.indices(0)[:8]])


def test_a_batch_larger_than_the_dataset_is_refused_with_the_numbers():
    with pytest.raises(ValueError, match="fewer than one effective batch of 128"):
        signal_batches(96, micro_batch=32, accumulation_steps=2, world_size=2)


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="rank 2"):
        signal_batches(world_size=2, rank=2)


@pytest.mark.parametrize("count, world_size, batch_size", [(103, 4, 8), (10, 3, 4), (5, 8, 2)])
def test_evaluation_covers_every_test_sample_exactly_once_across_ranks(
    count, world_size, batch_size
):
    inputs, labels = numbered_signals(count)
    seen = []
    for rank in range(world_size):
        shard = EvalBatches(inputs, labels, batch_size=batch_size, world_size=world_size, rank=rank)
        seen += [label for _, batch_labels in shard for label in batch_labels.tolist()]
    assert sorted(seen) == list(range(count))


def test_evaluation_shards_differ_in_size_by_at_most_one():
    inputs, labels = numbered_signals(103)
    sizes = [
        EvalBatches(inputs, labels, batch_size=8, world_size=4, rank=r).num_samples
        for r in range(4)
    ]
    assert sum(sizes) == 103 and max(sizes) - min(sizes) <= 1


def test_evaluation_keeps_order_and_applies_no_augmentation():
    dataset = make_synthetic(8, 20, sample_shape=(3, 16, 16), seed=0)
    shard = EvalBatches.from_dataset(dataset, batch_size=6)
    inputs = torch.cat([x for x, _ in shard])
    mean = torch.tensor(dataset.mean).view(1, 3, 1, 1)
    std = torch.tensor(dataset.std).view(1, 3, 1, 1)
    expected = (dataset.test_x.double() / 255 - mean) / std
    assert len(shard) == 4 and torch.allclose(inputs.double(), expected, atol=1e-5)

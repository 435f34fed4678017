"""Device-resident batch iteration: the dataset is moved to the device once, and every
batch is cut, augmented and normalized there, with no DataLoader and no worker processes.

Training (:class:`DeviceBatches`), per epoch ``e``:

1. **Order.** A permutation of all N training samples is drawn from a CPU generator seeded
   by ``(seed, e)`` alone, so it is the same on every rank and for a run resumed at epoch
   ``e`` as for one that never stopped (and on any device).
2. **Steps.** With ``E = micro_batch * accumulation_steps * world_size`` (the effective
   batch), the epoch has ``N // E`` optimizer steps; the last ``N % E`` samples of the
   permutation are left out (drop_last), so every rank takes the same number of steps.
   Step ``s`` uses positions ``[s*E, (s+1)*E)`` of the permutation: the first
   ``E / world_size`` of them go to rank 0, the next to rank 1, and so on, and each rank
   cuts its share into ``accumulation_steps`` micro-batches in order. Ranks therefore see
   disjoint samples, and the samples of each optimizer step do not depend on how the
   effective batch is split over ranks and accumulation.
3. **Augmentation** (images): a crop offset and a flip are drawn for every position of the
   permutation from a generator seeded by ``(seed, e)`` too, so they are replayed exactly
   on resume and, like the order, do not depend on the split. The per-epoch indices and
   parameters go to the device in one copy; each micro-batch is then gathered, cropped,
   flipped and normalized by a few tensor operations (no host-device synchronization).

Evaluation (:class:`EvalBatches`): no shuffling, no augmentation. The N test samples are
split into ``world_size`` contiguous shards of ``N // world_size`` or one more samples
(rank ``r`` gets ``[r*N//W, (r+1)*N//W)``), so the ranks together cover every sample
exactly once: nothing is dropped and nothing padded or repeated. Ranks may thus run one
batch more or fewer than each other; sum per-rank statistics (correct count, loss sum,
sample count) and all-reduce them once after the loop, not per batch.

Returned tensors are fresh for images; evaluation batches of float signals are views of
the stored tensor (do not modify them in place).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from tvlars.data.augment import crop_flip, normalization, normalize, sample_crop_flip
from tvlars.data.dataset import Dataset

DEFAULT_PADDING = 4  # pixels of zero padding for the random crop (CIFAR convention)

_ORDER_STREAM = 0
_AUGMENT_STREAM = 1


def derive_seed(*parts: int) -> int:
    """A 63-bit seed determined by ``parts``; nearby inputs give unrelated seeds."""
    digest = hashlib.sha256(",".join(str(int(part)) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _check_shard(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} and world_size {world_size}: need 0 <= rank < world_size")


class _Inputs:
    """Inputs and labels on the device, and how a batch of them becomes model input."""

    def __init__(self, inputs, labels, device, mean, std):
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.device = torch.device(device) if device is not None else inputs.device
        self.inputs = inputs.to(self.device)
        self.labels = labels.to(self.device, dtype=torch.int64)
        self.is_image = inputs.dtype == torch.uint8
        if self.is_image:
            if inputs.dim() != 4 or mean is None or std is None:
                raise ValueError(
                    "uint8 inputs must be images (N, C, H, W) with the dataset's mean and std "
                    "(pass mean=dataset.mean, std=dataset.std, or use from_dataset)"
                )
            self.scale, self.shift = normalization(mean, std, self.device)

    def to_model_input(self, images: Tensor) -> Tensor:
        return normalize(images, self.scale, self.shift) if self.is_image else images


class DeviceBatches:
    """Shuffled, sharded, augmented training micro-batches from a device-resident dataset.

    ``for inputs, labels in batches.epoch(e)`` yields this rank's
    ``steps_per_epoch * accumulation_steps`` micro-batches of ``micro_batch`` samples; take
    ``accumulation_steps`` of them per optimizer step. See the module docstring for how
    the order, the shards and the augmentation follow from ``(seed, epoch)``.

    ``padding`` > 0 enables random crops, ``flip`` random horizontal flips (images only).
    uint8 images are returned as normalized float32; float inputs are returned as stored.
    Every rank holds the whole training set on its device (the permutation draws from all
    of it): 150 MB for CIFAR, 1.2 GB for Tiny ImageNet.
    """

    def __init__(
        self,
        inputs: Tensor,
        labels: Tensor,
        *,
        micro_batch: int,
        accumulation_steps: int = 1,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        device: torch.device | str | None = None,
        padding: int = 0,
        flip: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        _check_shard(rank, world_size)
        if micro_batch < 1 or accumulation_steps < 1:
            raise ValueError("micro_batch and accumulation_steps must be positive")
        self.data = _Inputs(inputs, labels, device, mean, std)
        if (padding or flip) and not self.data.is_image:
            raise ValueError("crop and flip augmentation applies to uint8 images only")
        if padding < 0:
            raise ValueError(f"padding {padding} must be >= 0")
        self.micro_batch = micro_batch
        self.accumulation_steps = accumulation_steps
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.padding = padding
        self.flip = flip
        self.num_samples = len(inputs)
        self.steps_per_epoch = self.num_samples // self.effective_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{self.num_samples} training samples are fewer than one effective batch of "
                f"{self.effective_batch} (micro_batch {micro_batch} x accumulation_steps "
                f"{accumulation_steps} x world_size {world_size}); use a smaller batch"
            )

    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        *,
        micro_batch: int,
        augment: bool | None = None,
        padding: int = DEFAULT_PADDING,
        **options,
    ) -> DeviceBatches:
        """Training batches of ``dataset``; ``augment`` (default: on for images, off for
        signals) turns on the random crop with ``padding`` pixels and the flip."""
        augment = dataset.kind == "image" if augment is None else augment
        return cls(
            dataset.train_x,
            dataset.train_y,
            micro_batch=micro_batch,
            padding=padding if augment else 0,
            flip=augment,
            mean=dataset.mean,
            std=dataset.std,
            **options,
        )

    @property
    def effective_batch(self) -> int:
        """Samples per optimizer step over all ranks."""
        return self.micro_batch * self.accumulation_steps * self.world_size

    @property
    def micro_batches_per_epoch(self) -> int:
        """Micro-batches this rank yields per epoch."""
        return self.steps_per_epoch * self.accumulation_steps

    def __len__(self) -> int:
        return self.micro_batches_per_epoch

    def permutation(self, epoch: int) -> Tensor:
        """The epoch's order of all samples (CPU int64), the same on every rank."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, _ORDER_STREAM))
        return torch.randperm(self.num_samples, generator=generator)

    def _positions(self) -> Tensor:
        """Positions of the permutation this rank takes, in the order it takes them."""
        share = self.micro_batch * self.accumulation_steps
        used = torch.arange(self.steps_per_epoch * self.effective_batch)
        return used.view(self.steps_per_epoch, self.world_size, share)[:, self.rank].reshape(-1)

    def indices(self, epoch: int) -> Tensor:
        """This rank's sample indices for ``epoch``, in order (CPU int64)."""
        return self.permutation(epoch)[self._positions()]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(inputs, labels)`` micro-batches of ``epoch`` on the device, from
        micro-batch ``start`` on (to resume within an epoch)."""
        if not 0 <= start <= self.micro_batches_per_epoch:
            raise ValueError(
                f"start {start} is outside the epoch's {self.micro_batches_per_epoch} micro-batches"
            )
        return self._epoch(epoch, start)

    def _epoch(self, epoch: int, start: int) -> Iterator[tuple[Tensor, Tensor]]:
        positions = self._positions()
        order = self.permutation(epoch)[positions].to(self.data.device)
        params = None
        if self.padding or self.flip:
            generator = torch.Generator().manual_seed(
                derive_seed(self.seed, epoch, _AUGMENT_STREAM)
            )
            drawn = sample_crop_flip(self.num_samples, self.padding, self.flip, generator)
            params = drawn[positions].to(self.data.device)
        for micro in range(start, self.micro_batches_per_epoch):
            window = slice(micro * self.micro_batch, (micro + 1) * self.micro_batch)
            index = order[window]
            inputs = self.data.inputs.index_select(0, index)
            if params is not None:
                inputs = crop_flip(inputs, params[window], self.padding)
            yield self.data.to_model_input(inputs), self.data.labels.index_select(0, index)


class EvalBatches:
    """This rank's shard of the test set in order, in batches of ``batch_size`` (the last
    may be smaller); no augmentation. Shards of all ranks cover every sample once."""

    def __init__(
        self,
        inputs: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        device: torch.device | str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        _check_shard(rank, world_size)
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size} must be positive")
        total = len(inputs)
        self.start = rank * total // world_size
        self.stop = (rank + 1) * total // world_size
        self.total_samples = total
        self.batch_size = batch_size
        # Only this rank's shard goes to the device.
        self.data = _Inputs(
            inputs[self.start : self.stop], labels[self.start : self.stop], device, mean, std
        )

    @classmethod
    def from_dataset(cls, dataset: Dataset, *, batch_size: int, **options) -> EvalBatches:
        """Evaluation batches of ``dataset``'s test split."""
        return cls(
            dataset.test_x,
            dataset.test_y,
            batch_size=batch_size,
            mean=dataset.mean,
            std=dataset.std,
            **options,
        )

    @property
    def num_samples(self) -> int:
        """Samples in this rank's shard."""
        return self.stop - self.start

    def indices(self) -> Tensor:
        """The test-set indices of this rank's shard, in order."""
        return torch.arange(self.start, self.stop)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for first in range(0, self.num_samples, self.batch_size):
            inputs = self.data.inputs[first : first + self.batch_size]
            labels = self.data.labels[first : first + self.batch_size]
            yield self.data.to_model_input(inputs), labels

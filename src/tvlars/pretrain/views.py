"""Two random views of every sample, made on the device for a whole batch at once.

Each view has its own per-sample random parameters, drawn on the CPU from a generator
seeded by ``(seed, epoch, step, view)``, for the whole effective batch of the step; a
process takes its share's rows. So a resumed run replays its views exactly, and the views
of a sample do not depend on how the batch is split over processes and accumulation
(:meth:`TwoViews.draw`). Applying them is a few tensor operations on the batch, with no
Python loop over samples (:func:`apply_image_view`, :func:`apply_signal_view`).

Images, in ``[0, 1]`` (the Barlow Twins recipe, Zbontar et al. 2021, Appendix; BYOL's):

- random resized crop (area ``U(0.08, 1)`` of the image, aspect ratio log-uniform in
  ``[3/4, 4/3]``, resized back to ``H x W`` with bilinear sampling) and horizontal flip
  (p = 0.5), as one affine map per sample through ``affine_grid`` + ``grid_sample``. A
  crop wider or taller than the image is clamped to the image (torchvision retries ten
  draws, then falls back to a centre crop);
- colour jitter with p = 0.8: brightness ``b``, contrast ``c``, saturation ``s`` factors
  ``U(1 - 0.4, 1 + 0.4)``, ``U(0.6, 1.4)``, ``U(0.8, 1.2)`` and hue ``h ~ U(-0.1, 0.1)``,
  applied in this fixed order (torchvision shuffles it per call), each clamped to
  ``[0, 1]``::

      x <- b x;   x <- c x + (1 - c) mean(gray(x));   x <- s x + (1 - s) gray(x)

  and the hue shift as a rotation of the chroma plane by ``2 pi h`` in YIQ space,
  ``x <- T^-1 R(2 pi h) T x`` (an approximation of torchvision's rotation in HSV space,
  which is not a linear map);
- grayscale with p = 0.2 (``gray = 0.299 R + 0.587 G + 0.114 B`` in every channel);
- Gaussian blur with p = 1.0 (view 1) and 0.1 (view 2), ``sigma ~ U(0.1, 2.0)``, a
  kernel of about a tenth of the image side (23 at 224 pixels, as the paper), separable,
  reflect padding; off in the CIFAR recipe (``blur=False``);
- solarization with p = 0.0 (view 1) and 0.2 (view 2): ``x <- 1 - x`` where ``x >= 0.5``.

MNIST-1D signals (standardized, length 40), augmentations that keep the digit's class
(they are the kinds of transformation MNIST-1D's own generator applies):

- circular translation by an integer in ``[-10, 10]`` samples (the generator itself
  rolls the digit by up to about half the signal);
- amplitude scaling by ``U(0.8, 1.2)``;
- additive Gaussian noise of standard deviation 0.1;
- masking: with p = 0.8, a window of 1 to 12 consecutive samples set to 0 (the mean).

(Chosen on the default run, ``tvlars pretrain``: translations of 4 or 20 samples, weaker
masking, or noise of 0.2 each gave a smaller margin over the random backbone.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tvlars.data.batches import derive_seed

#: Streams of :func:`tvlars.data.batches.derive_seed` for the two views (0 and 1 are the
#: classification batches' order and augmentation, seeded by 3 parts, not 4).
_VIEW_STREAMS = (2, 3)
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)
_RGB_TO_YIQ_MATRIX = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
    dtype=torch.float64,
)
_YIQ_TO_RGB_MATRIX = torch.linalg.inv(_RGB_TO_YIQ_MATRIX)


class PerSample:
    """Per-sample parameters: every field is a tensor whose first axis is the sample."""

    def __getitem__(self, index) -> PerSample:
        return dataclasses.replace(
            self, **{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)}
        )

    def to(self, device: torch.device | str) -> PerSample:
        return dataclasses.replace(
            self,
            **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)},
        )


# ---------------------------------------------------------------------------------------
# Images


@dataclass(frozen=True)
class ImageViewRecipe:
    """The distribution of one image view's parameters (defaults: Barlow Twins' view 1)."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0


def barlow_twins_image_recipes(blur: bool = True) -> tuple[ImageViewRecipe, ImageViewRecipe]:
    """The paper's two asymmetric views; ``blur=False`` is the CIFAR recipe (no blur)."""
    return (
        ImageViewRecipe(blur_p=1.0 if blur else 0.0, solarize_p=0.0),
        ImageViewRecipe(blur_p=0.1 if blur else 0.0, solarize_p=0.2),
    )


@dataclass(frozen=True)
class ImageViewParams(PerSample):
    """Per-sample parameters of one image view.

    ``crop``: ``(B, 2, 3)`` affine maps from output to input coordinates in ``[-1, 1]``
    (scale, flip and offset of the crop); ``brightness``, ``contrast``, ``saturation``:
    ``(B,)`` factors (1 = unchanged); ``hue``: ``(B,)`` in turns (0 = unchanged);
    ``grayscale``, ``solarize``: ``(B,)`` bool; ``blur_sigma``: ``(B,)``, 0 = no blur.
    """

    crop: Tensor
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    grayscale: Tensor
    blur_sigma: Tensor
    solarize: Tensor


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)


def _chance(count: int, p: float, generator: torch.Generator) -> Tensor:
    return torch.rand(count, generator=generator) < p


def sample_image_view(
    count: int, recipe: ImageViewRecipe, generator: torch.Generator
) -> ImageViewParams:
    """Draw one view's parameters for ``count`` samples (CPU tensors)."""
    # Every draw happens whatever the probabilities, so that switching one augmentation
    # off leaves the random numbers of the others unchanged.
    area = _uniform(count, *recipe.crop_scale, generator)
    log_ratio = _uniform(
        count, math.log(recipe.crop_ratio[0]), math.log(recipe.crop_ratio[1]), generator
    )
    ratio = torch.exp(log_ratio)
    # Width and height as fractions of the image's side.
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (1 - width) * (2 * torch.rand(count, generator=generator, dtype=torch.float64) - 1)
    centre_y = (1 - height) * (2 * torch.rand(count, generator=generator, dtype=torch.float64) - 1)
    flip = _chance(count, recipe.flip_p, generator)
    crop = torch.zeros(count, 2, 3, dtype=torch.float64)
    crop[:, 0, 0] = torch.where(flip, -width, width)
    crop[:, 0, 2] = centre_x
    crop[:, 1, 1] = height
    crop[:, 1, 2] = centre_y

    jitter = _chance(count, recipe.jitter_p, generator)
    factors = []
    for spread in (recipe.brightness, recipe.contrast, recipe.saturation):
        factor = _uniform(count, max(0.0, 1 - spread), 1 + spread, generator)
        factors.append(torch.where(jitter, factor, torch.ones_like(factor)))
    hue = _uniform(count, -recipe.hue, recipe.hue, generator)
    hue = torch.where(jitter, hue, torch.zeros_like(hue))

    grayscale = _chance(count, recipe.grayscale_p, generator)
    blur = _chance(count, recipe.blur_p, generator)
    sigma = _uniform(count, *recipe.blur_sigma, generator)
    solarize = _chance(count, recipe.solarize_p, generator)
    return ImageViewParams(
        crop=crop.float(),
        brightness=factors[0].float(),
        contrast=factors[1].float(),
        saturation=factors[2].float(),
        hue=hue.float(),
        grayscale=grayscale,
        blur_sigma=torch.where(blur, sigma, torch.zeros_like(sigma)).float(),
        solarize=solarize,
    )


def blur_kernel_size(side: int) -> int:
    """An odd kernel of about a tenth of the image side: 23 at 224 pixels, 5 at 32."""
    return 2 * round(0.05 * side) + 1


def apply_image_view(images: Tensor, params: ImageViewParams) -> Tensor:
    """One view of a batch of float images ``(B, C, H, W)`` in ``[0, 1]``; same shape and
    dtype, values in ``[0, 1]``. ``params`` must be on the images' device."""
    batch, channels, height, width = images.shape
    grid = F.affine_grid(params.crop, [batch, channels, height, width], align_corners=False)
    x = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    x = (x * params.brightness.view(-1, 1, 1, 1)).clamp_(0, 1)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = _blend(x, mean, params.contrast)
    if channels == 3:
        x = _blend(x, _gray(x), params.saturation)
        x = _rotate_hue(x, params.hue)
        x = torch.where(params.grayscale.view(-1, 1, 1, 1), _gray(x).expand_as(x), x)
    x = _gaussian_blur(x, params.blur_sigma)
    return torch.where(params.solarize.view(-1, 1, 1, 1) & (x >= 0.5), 1 - x, x)


def _gray(x: Tensor) -> Tensor:
    """Luma ``(B, 1, H, W)`` of RGB images (the image itself when it has one channel)."""
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    weights = torch.tensor(_GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """``factor * x + (1 - factor) * other``, clamped to ``[0, 1]`` (torchvision's blend)."""
    factor = factor.view(-1, 1, 1, 1)
    return (factor * x + (1 - factor) * other).clamp_(0, 1)


def _rotate_hue(x: Tensor, hue: Tensor) -> Tensor:
    """Rotate the chroma of RGB images by ``2 pi hue`` in YIQ space: one 3x3 per sample."""
    to_yiq = _RGB_TO_YIQ_MATRIX.to(x.device)
    angle = 2 * math.pi * hue.double()
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(len(hue), 3, 3, dtype=torch.float64, device=x.device)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    matrices = (_YIQ_TO_RGB_MATRIX.to(x.device) @ rotation @ to_yiq).to(x.dtype)
    return torch.einsum("bij,bjhw->bihw", matrices, x).clamp_(0, 1)


def _gaussian_kernels(sigma: Tensor, size: int) -> Tensor:
    """``(B, size)`` normalized 1-D Gaussians; a unit impulse where ``sigma`` is 0."""
    offsets = torch.arange(size, dtype=sigma.dtype, device=sigma.device) - size // 2
    safe = sigma.clamp(min=1e-3).view(-1, 1)
    kernels = torch.exp(-0.5 * (offsets / safe).square())
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    impulse = (offsets == 0).to(sigma.dtype).expand_as(kernels)
    # An exact impulse leaves unblurred samples bit-identical.
    return torch.where(sigma.view(-1, 1) > 0, kernels, impulse)


def _gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Blur each image with its own sigma: two grouped convolutions (rows, then columns),
    one group per (sample, channel)."""
    batch, channels, height, width = x.shape
    size = min(blur_kernel_size(min(height, width)), 2 * min(height, width) - 1)
    if size < 3 or not bool((sigma > 0).any()):
        return x
    kernels = _gaussian_kernels(sigma, size).repeat_interleave(channels, dim=0)
    flat = x.reshape(1, batch * channels, height, width)
    pad = size // 2
    flat = F.pad(flat, (pad, pad, 0, 0), mode="reflect")
    flat = F.conv2d(flat, kernels.view(-1, 1, 1, size), groups=batch * channels)
    flat = F.pad(flat, (0, 0, pad, pad), mode="reflect")
    flat = F.conv2d(flat, kernels.view(-1, 1, size, 1), groups=batch * channels)
    return flat.view(batch, channels, height, width)


# ---------------------------------------------------------------------------------------
# MNIST-1D signals


@dataclass(frozen=True)
class SignalViewRecipe:
    """The distribution of one signal view's parameters."""

    max_shift: int = 10
    scale: tuple[float, float] = (0.8, 1.2)
    noise_std: float = 0.1
    mask_p: float = 0.8
    max_mask: int = 12


@dataclass(frozen=True)
class SignalViewParams(PerSample):
    """Per-sample parameters of one signal view: ``shift`` ``(B,)`` int64 (samples, to
    the right, circular), ``scale`` ``(B,)``, ``noise`` ``(B, L)`` (already scaled),
    ``mask_start`` and ``mask_length`` ``(B,)`` int64 (length 0: no mask)."""

    shift: Tensor
    scale: Tensor
    noise: Tensor
    mask_start: Tensor
    mask_length: Tensor


def sample_signal_view(
    count: int, length: int, recipe: SignalViewRecipe, generator: torch.Generator
) -> SignalViewParams:
    """Draw one view's parameters for ``count`` signals of ``length`` samples (CPU)."""
    shift = torch.randint(-recipe.max_shift, recipe.max_shift + 1, (count,), generator=generator)
    scale = _uniform(count, *recipe.scale, generator).float()
    noise = recipe.noise_std * torch.randn(count, length, generator=generator)
    masked = _chance(count, recipe.mask_p, generator)
    mask_length = torch.randint(1, max(recipe.max_mask, 1) + 1, (count,), generator=generator)
    mask_length = torch.where(masked, mask_length, torch.zeros_like(mask_length))
    mask_start = (torch.rand(count, generator=generator) * (length - mask_length + 1)).long()
    return SignalViewParams(shift, scale, noise, mask_start, mask_length)


def apply_signal_view(signals: Tensor, params: SignalViewParams) -> Tensor:
    """One view of a batch of signals ``(B, L)``: translated, scaled, noised, masked."""
    batch, length = signals.shape
    positions = torch.arange(length, device=signals.device)
    source = (positions - params.shift.view(-1, 1)) % length
    x = signals.gather(1, source) * params.scale.view(-1, 1) + params.noise
    offset = positions - params.mask_start.view(-1, 1)
    inside = (offset >= 0) & (offset < params.mask_length.view(-1, 1))
    return x.masked_fill(inside, 0.0)


# ---------------------------------------------------------------------------------------
# Both views of a batch


class TwoViews:
    """Two augmented views of the model-ready batches :class:`~tvlars.data.DeviceBatches`
    yields, with parameters from ``(seed, epoch, step, view)``.

    Images arrive normalized, ``(x - mean) / std``; they are mapped back to ``[0, 1]``,
    augmented, and normalized again. Signals are augmented as they are.
    """

    def __init__(
        self,
        kind: str,
        *,
        seed: int,
        sample_shape: Sequence[int],
        mean: Sequence[float] = (),
        std: Sequence[float] = (),
        blur: bool = True,
        image_recipes: tuple[ImageViewRecipe, ImageViewRecipe] | None = None,
        signal_recipes: tuple[SignalViewRecipe, SignalViewRecipe] | None = None,
    ) -> None:
        if kind not in ("image", "signal"):
            raise ValueError(f"views of {kind!r} inputs: expected 'image' or 'signal'")
        self.kind = kind
        self.seed = seed
        self.sample_shape = tuple(sample_shape)
        self.image_recipes = image_recipes or barlow_twins_image_recipes(blur)
        self.signal_recipes = signal_recipes or (SignalViewRecipe(), SignalViewRecipe())
        if kind == "image":
            self._mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
            self._std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    @classmethod
    def for_dataset(cls, dataset, *, seed: int, blur: bool = True) -> TwoViews:
        return cls(
            dataset.kind,
            seed=seed,
            sample_shape=dataset.sample_shape,
            mean=dataset.mean,
            std=dataset.std,
            blur=blur,
        )

    def draw(self, epoch: int, step: int, count: int) -> tuple[PerSample, PerSample]:
        """Both views' parameters for the ``count`` samples of optimizer step ``step`` of
        ``epoch`` (the effective batch, all processes), on the CPU."""
        views = []
        for stream, index in zip(_VIEW_STREAMS, range(2)):
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, step, stream))
            if self.kind == "image":
                views.append(sample_image_view(count, self.image_recipes[index], generator))
            else:
                length = self.sample_shape[-1]
                views.append(
                    sample_signal_view(count, length, self.signal_recipes[index], generator)
                )
        return views[0], views[1]

    def apply(self, inputs: Tensor, params: tuple[PerSample, PerSample]) -> tuple[Tensor, Tensor]:
        """The two views of ``inputs`` (a model-ready batch) under ``params`` (on its device)."""
        if self.kind == "signal":
            return apply_signal_view(inputs, params[0]), apply_signal_view(inputs, params[1])
        mean, std = self._mean.to(inputs.device), self._std.to(inputs.device)
        images = (inputs * std + mean).clamp_(0, 1)
        return tuple(apply_image_view(images, view).sub_(mean).div_(std) for view in params)  # type: ignore[return-value]

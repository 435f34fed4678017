"""Batched crop-with-padding, flip and normalization: the same as doing it per sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tvlars.data.augment import CropFlip, crop_flip, normalization, normalize, sample_crop_flip

PADDING = 4


def images(count: int = 6, channels: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, size, size), generator=generator).byte()


def params(top, left, flip) -> CropFlip:
    return CropFlip(torch.tensor(top), torch.tensor(left), torch.tensor(flip))


def reference(image: torch.Tensor, top: int, left: int, flip: bool, padding: int):
    """One sample the torchvision way: zero-pad, crop the window, then mirror."""
    height, width = image.shape[1:]
    padded = F.pad(image, (padding,) * 4)
    window = padded[:, top : top + height, left : left + width]
    return window.flip(-1) if flip else window


def test_centre_window_without_flip_is_the_identity():
    batch = images()
    centre = params([PADDING] * 6, [PADDING] * 6, [False] * 6)
    assert torch.equal(crop_flip(batch, centre, PADDING), batch)


def test_flip_mirrors_the_width_axis():
    batch = images()
    mirrored = params([PADDING] * 6, [PADDING] * 6, [True] * 6)
    assert torch.equal(crop_flip(batch, mirrored, PADDING), batch.flip(-1))


def test_top_left_window_shifts_the_image_and_fills_zeros():
    batch = images(count=1)
    out = crop_flip(batch, params([0], [0], [False]), PADDING)
    assert (out[:, :, :PADDING, :] == 0).all() and (out[:, :, :, :PADDING] == 0).all()
    assert torch.equal(out[:, :, PADDING:, PADDING:], batch[:, :, :-PADDING, :-PADDING])


def test_every_sample_matches_the_per_sample_reference():
    batch = images(count=64, size=12)
    drawn = sample_crop_flip(64, PADDING, True, torch.Generator().manual_seed(1))
    out = crop_flip(batch, drawn, PADDING)
    for i in range(64):
        expected = reference(
            batch[i], int(drawn.top[i]), int(drawn.left[i]), bool(drawn.flip[i]), PADDING
        )
        assert torch.equal(out[i], expected)


def test_output_keeps_shape_and_dtype():
    batch = images(size=32)
    out = crop_flip(batch, sample_crop_flip(6, PADDING, True, torch.Generator()), PADDING)
    assert out.shape == batch.shape and out.dtype == torch.uint8


def test_offsets_lie_within_the_padding_and_flip_can_be_off():
    drawn = sample_crop_flip(1000, PADDING, False, torch.Generator().manual_seed(0))
    assert drawn.top.min() == 0 and drawn.top.max() == 2 * PADDING
    assert drawn.left.min() == 0 and drawn.left.max() == 2 * PADDING
    assert not drawn.flip.any()


def test_flips_are_drawn_about_half_the_time():
    drawn = sample_crop_flip(1000, PADDING, True, torch.Generator().manual_seed(0))
    assert 400 < int(drawn.flip.sum()) < 600


def test_normalize_is_x_over_255_minus_mean_over_std():
    batch = images()
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    scale, shift = normalization(mean, std)
    mean_t = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    expected = (batch.double() / 255 - mean_t) / std_t
    out = normalize(batch, scale, shift)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), expected, atol=1e-5)

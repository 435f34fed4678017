"""Two-view augmentation: batched, per-sample random, replayable, and class-keeping."""

from __future__ import annotations

import torch

from tvlars.pretrain.views import (
    ImageViewRecipe,
    SignalViewRecipe,
    TwoViews,
    apply_image_view,
    apply_signal_view,
    sample_image_view,
    sample_signal_view,
)

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
OFF = ImageViewRecipe(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_p=0.0,
    jitter_p=0.0,
    grayscale_p=0.0,
    blur_p=0.0,
    solarize_p=0.0,
)


def images(count: int = 6, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


BARLOW_TWINS_VIEW_1 = ImageViewRecipe()


def draw_image(count: int, recipe: ImageViewRecipe = BARLOW_TWINS_VIEW_1, seed: int = 0):
    return sample_image_view(count, recipe, torch.Generator().manual_seed(seed))


def image_views() -> TwoViews:
    return TwoViews("image", seed=0, sample_shape=(3, 16, 16), mean=MEAN, std=STD)


def test_image_views_keep_shape_dtype_and_the_unit_range():
    x = images()
    for recipe in (BARLOW_TWINS_VIEW_1, ImageViewRecipe(blur_p=0.0, solarize_p=1.0)):
        view = apply_image_view(x, draw_image(len(x), recipe))
        assert view.shape == x.shape and view.dtype == x.dtype
        assert view.min() >= 0 and view.max() <= 1


def test_the_two_views_differ_from_each_other_and_from_the_input():
    views = image_views()
    inputs = (images(8) - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    view1, view2 = views.apply(inputs, views.draw(epoch=0, step=0, count=8))
    assert view1.shape == inputs.shape and view1.dtype == torch.float32
    for a, b in ((view1, view2), (view1, inputs), (view2, inputs)):
        per_sample = (a - b).abs().flatten(1).amax(dim=1)
        assert bool((per_sample > 1e-3).all())


def test_with_every_augmentation_off_an_image_comes_back_unchanged():
    x = images()
    torch.testing.assert_close(apply_image_view(x, draw_image(len(x), OFF)), x)


def test_a_flip_alone_mirrors_the_image():
    x = images()
    recipe = ImageViewRecipe(**{**OFF.__dict__, "flip_p": 1.0})
    torch.testing.assert_close(apply_image_view(x, draw_image(len(x), recipe)), x.flip(-1))


def test_solarization_alone_inverts_the_bright_pixels():
    x = images()
    recipe = ImageViewRecipe(**{**OFF.__dict__, "solarize_p": 1.0})
    expected = torch.where(x >= 0.5, 1 - x, x)
    torch.testing.assert_close(apply_image_view(x, draw_image(len(x), recipe)), expected)


def test_grayscale_alone_makes_the_channels_equal():
    recipe = ImageViewRecipe(**{**OFF.__dict__, "grayscale_p": 1.0})
    view = apply_image_view(images(), draw_image(6, recipe))
    torch.testing.assert_close(view[:, 0], view[:, 1])
    torch.testing.assert_close(view[:, 1], view[:, 2])


def test_blur_alone_keeps_the_mean_and_smooths():
    x = images(size=32)
    recipe = ImageViewRecipe(**{**OFF.__dict__, "blur_p": 1.0, "blur_sigma": (1.5, 2.0)})
    view = apply_image_view(x, draw_image(len(x), recipe))
    torch.testing.assert_close(view.mean(), x.mean(), atol=2e-3, rtol=0)
    assert view.diff(dim=-1).abs().mean() < 0.5 * x.diff(dim=-1).abs().mean()


def test_a_batch_is_transformed_as_each_sample_alone():
    x = images(8)
    params = draw_image(8)
    batched = apply_image_view(x, params)
    alone = torch.cat([apply_image_view(x[i : i + 1], params[i : i + 1]) for i in range(8)])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_views_are_replayed_from_seed_epoch_and_step():
    views = image_views()
    first, again = views.draw(3, 5, 8), views.draw(3, 5, 8)
    other_step, other_epoch = views.draw(3, 6, 8), views.draw(4, 5, 8)
    torch.testing.assert_close(first[0].crop, again[0].crop)
    torch.testing.assert_close(first[1].hue, again[1].hue)
    assert not torch.equal(first[0].crop, other_step[0].crop)
    assert not torch.equal(first[0].crop, other_epoch[0].crop)
    assert not torch.equal(first[0].crop, first[1].crop)  # the two views draw apart


def test_the_cifar_recipe_switches_blur_off_in_both_views():
    views = TwoViews("image", seed=0, sample_shape=(3, 16, 16), mean=MEAN, std=STD, blur=False)
    first, second = views.draw(0, 0, 256)
    assert not bool(first.blur_sigma.any()) and not bool(second.blur_sigma.any())
    blurred = image_views().draw(0, 0, 256)
    assert bool((blurred[0].blur_sigma > 0).all())  # p = 1.0 in view 1
    assert 0 < int((blurred[1].blur_sigma > 0).sum()) < 80  # p = 0.1 in view 2


def test_signal_views_keep_shape_and_dtype_and_differ():
    signals = torch.randn(16, 40, generator=torch.Generator().manual_seed(0))
    views = TwoViews("signal", seed=0, sample_shape=(40,))
    view1, view2 = views.apply(signals, views.draw(0, 0, 16))
    assert view1.shape == signals.shape and view1.dtype == torch.float32
    assert bool(((view1 - view2).abs().amax(dim=1) > 1e-3).all())


def test_a_signal_translation_alone_is_a_circular_shift():
    signals = torch.randn(5, 40)
    recipe = SignalViewRecipe(scale=(1.0, 1.0), noise_std=0.0, mask_p=0.0)
    params = sample_signal_view(5, 40, recipe, torch.Generator().manual_seed(0))
    view = apply_signal_view(signals, params)
    for i in range(5):
        torch.testing.assert_close(view[i], signals[i].roll(int(params.shift[i])))


def test_a_signal_mask_zeroes_one_window_of_at_most_max_mask_samples():
    signals = torch.randn(64, 40) + 10  # no zeros of its own
    recipe = SignalViewRecipe(max_shift=0, scale=(1.0, 1.0), noise_std=0.0, mask_p=1.0)
    params = sample_signal_view(64, 40, recipe, torch.Generator().manual_seed(0))
    zeros = apply_signal_view(signals, params) == 0
    counts = zeros.sum(dim=1)
    assert bool((counts >= 1).all()) and bool((counts <= recipe.max_mask).all())
    torch.testing.assert_close(counts, params.mask_length)


def test_a_hue_shift_alone_keeps_each_pixels_luma_and_changes_its_colour():
    x = 0.4 + 0.2 * images()  # mid-range colours: no clamping at 0 or 1
    jitter = {"jitter_p": 1.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0}
    recipe = ImageViewRecipe(**{**OFF.__dict__, **jitter, "hue": 0.1})
    view = apply_image_view(x, draw_image(len(x), recipe))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    torch.testing.assert_close((view * luma).sum(1), (x * luma).sum(1), atol=1e-5, rtol=0)
    assert (view - x).abs().amax() > 1e-3

"""Specification of tvlars.models: architectures, the registry and weight initialization."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from tvlars.models import (
    DEFAULT_INIT,
    INIT_SCHEMES,
    MNIST1DCNN,
    MODEL_NAMES,
    MNIST1DResNet,
    apply_init,
    build_model,
    check_input_kind,
    input_kind,
    resnet18,
)

IMAGE_MODELS = ["resnet18", "resnet34", "resnet18-cifar", "resnet34-cifar"]
SIGNAL_MODELS = ["mnist1d-cnn", "mnist1d-resnet"]


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def skeleton(name: str, num_classes: int) -> nn.Module:
    """The model built on the meta device: shapes without storage, for counting parameters."""
    with torch.device("meta"):
        return build_model(name, num_classes, init=None)


@functools.cache
def shared_model(name: str) -> nn.Module:
    """One 10-class model per name, shared by the tests that only run it (building is slow)."""
    return build_model(name, 10)


def example_input(name: str, batch: int = 2, size: int = 16) -> torch.Tensor:
    """A small batch the model can read; 16x16 images keep the CIFAR-stem ResNets cheap."""
    if input_kind(name) == "image":
        return torch.randn(batch, 3, size, size)
    return torch.randn(batch, 40)


def input_of(module: nn.Module, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The tensor ``module`` receives when ``model`` runs on ``x``."""
    seen = []
    handle = module.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


# registry


def test_registry_holds_the_resnets_with_both_stems_and_the_mnist1d_models():
    assert set(MODEL_NAMES) == set(IMAGE_MODELS + SIGNAL_MODELS)


def test_unknown_model_name_raises_listing_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'vgg16'") as error:
        build_model("vgg16", 10)
    for name in MODEL_NAMES:
        assert name in str(error.value)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_resnets_read_images(name):
    assert input_kind(name) == "image"
    assert shared_model(name).input_kind == "image"


@pytest.mark.parametrize("name", SIGNAL_MODELS)
def test_mnist1d_models_read_signals(name):
    assert input_kind(name) == "signal"
    assert shared_model(name).input_kind == "signal"


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("data_kind", ["image", "signal"])
def test_check_input_kind_refuses_exactly_the_datasets_of_the_other_kind(name, data_kind):
    if data_kind == input_kind(name):
        assert check_input_kind(name, data_kind) is None
    else:
        with pytest.raises(ValueError, match=f"reads {input_kind(name)} inputs"):
            check_input_kind(name, data_kind)


def test_check_input_kind_rejects_a_mismatch_naming_the_models_that_would_fit():
    with pytest.raises(ValueError, match="'mnist1d-cnn' reads signal inputs") as error:
        check_input_kind("mnist1d-cnn", "image")
    assert "resnet18-cifar" in str(error.value)


def test_negative_num_classes_is_rejected():
    with pytest.raises(ValueError, match="num_classes"):
        build_model("mnist1d-cnn", -1)


# output shapes


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("size", [32, 64])
def test_resnets_give_one_logit_per_class_for_32_and_64_pixel_images(name, size):
    model = shared_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 10)


@pytest.mark.parametrize("name", SIGNAL_MODELS)
def test_mnist1d_models_give_one_logit_per_class_for_length_40_signals(name):
    model = shared_model(name)
    assert model(torch.randn(2, 40)).shape == (2, 10)


@pytest.mark.parametrize("name", SIGNAL_MODELS)
def test_mnist1d_models_read_flat_and_one_channel_signals_alike(name):
    model = build_model(name, 10).eval()
    x = torch.randn(3, 40)
    torch.testing.assert_close(model(x), model(x.unsqueeze(1)))


def test_resnets_accept_other_input_channel_counts():
    model = build_model("resnet18", 10, in_channels=1, init=None).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_run_in_train_mode_and_in_eval_mode_with_a_single_example(name):
    model = shared_model(name)
    model.train()
    model(example_input(name, batch=2)).sum().backward()
    model.eval()
    with torch.no_grad():
        assert model(example_input(name, batch=1)).shape == (1, 10)


# features and backbones


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_features_have_feature_dim_columns_and_feed_the_head(name):
    model = shared_model(name).eval()
    x = example_input(name)
    with torch.no_grad():
        features = model.features(x)
        assert features.shape == (2, model.feature_dim)
        torch.testing.assert_close(model.forward_features(x), features)
        torch.testing.assert_close(model(x), model.fc(features))


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_resnet_features_are_512_wide(name):
    assert shared_model(name).feature_dim == 512


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zero_classes_builds_the_backbone_without_a_head(name):
    model = build_model(name, 0, init=None).eval()
    assert isinstance(model.fc, nn.Identity)
    with torch.no_grad():
        assert model(example_input(name)).shape == (2, model.feature_dim)


# parameter counts


@pytest.mark.parametrize(
    ("name", "parameters"), [("resnet18", 11_689_512), ("resnet34", 21_797_672)]
)
def test_imagenet_stem_resnets_with_1000_classes_have_torchvisions_parameter_count(
    name, parameters
):
    assert n_parameters(skeleton(name, 1000)) == parameters


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_ten_classes_drop_the_990_unused_rows_of_the_head(name):
    full = n_parameters(skeleton(name, 1000))
    assert n_parameters(skeleton(name, 10)) == full - 990 * (512 + 1)


def test_cifar_stem_trades_the_7x7_conv_for_a_3x3_one():
    imagenet = n_parameters(skeleton("resnet18", 10))
    cifar = n_parameters(skeleton("resnet18-cifar", 10))
    assert imagenet - cifar == 64 * 3 * (7 * 7 - 3 * 3)


def test_resnet18_parameter_names_follow_torchvision():
    names = [name for name, _ in skeleton("resnet18", 1000).named_parameters()]
    assert len(names) == 62
    assert names[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert "layer1.0.downsample.0.weight" not in names
    assert "layer2.0.downsample.0.weight" in names
    assert "layer4.1.conv2.weight" in names
    assert names[-2:] == ["fc.weight", "fc.bias"]


def test_mnist1d_cnn_has_the_reference_models_5210_parameters():
    assert n_parameters(build_model("mnist1d-cnn", 10)) == 5_210


def test_mnist1d_cnn_flattens_25_channels_of_5_samples():
    assert build_model("mnist1d-cnn", 10).feature_dim == 25 * 5


def test_mnist1d_cnn_computes_its_flatten_size_from_the_signal_length():
    # 50 -> 24 -> 12 -> 6 samples
    model = MNIST1DCNN(length=50)
    assert model.feature_dim == 25 * 6
    assert model(torch.randn(2, 50)).shape == (2, 10)


def test_mnist1d_cnn_rejects_a_signal_of_the_wrong_length():
    with pytest.raises(ValueError, match="length 40, got 50"):
        MNIST1DCNN()(torch.randn(2, 50))


def test_mnist1d_resnet_with_widths_8_16_32_has_7474_parameters():
    assert n_parameters(build_model("mnist1d-resnet", 10)) == 7_474


def test_mnist1d_resnet_widths_and_depth_are_configurable():
    model = MNIST1DResNet(widths=(4, 8, 16, 32), blocks_per_stage=2)
    assert model.feature_dim == 32
    assert model(torch.randn(2, 40)).shape == (2, 10)
    assert n_parameters(model) > n_parameters(MNIST1DResNet())


# stems


@pytest.mark.parametrize("size", [32, 64])
def test_imagenet_stem_halves_the_resolution_twice_before_layer1(size):
    model = shared_model("resnet18").eval()
    reaching_layer1 = input_of(model.layer1, model, torch.randn(1, 3, size, size))
    assert reaching_layer1.shape == (1, 64, size // 4, size // 4)


def test_cifar_stem_keeps_32x32_images_at_full_resolution_into_layer1():
    model = shared_model("resnet18-cifar").eval()
    reaching_layer1 = input_of(model.layer1, model, torch.randn(1, 3, 32, 32))
    assert reaching_layer1.shape == (1, 64, 32, 32)


def test_unknown_stem_raises_listing_the_stems():
    with pytest.raises(ValueError, match=r"\['imagenet', 'cifar'\]"):
        resnet18(stem="tiny")


# weight initialization


def probe() -> nn.Module:
    """A conv big enough for sample statistics, a batch norm, and a linear layer."""
    return nn.Sequential(nn.Conv2d(128, 256, 3), nn.BatchNorm2d(256), nn.Flatten(), nn.Linear(8, 4))


def fans(conv: nn.Conv2d) -> tuple[int, int]:
    taps = conv.kernel_size[0] * conv.kernel_size[1]
    return conv.in_channels * taps, conv.out_channels * taps


def initialized_conv(scheme: str) -> tuple[torch.Tensor, int, int]:
    model = apply_init(probe(), scheme, generator=torch.Generator().manual_seed(0))
    return model[0].weight.detach(), *fans(model[0])


def test_init_schemes_are_the_four_of_the_papers_ablation():
    assert set(INIT_SCHEMES) == {
        "xavier_uniform",
        "xavier_normal",
        "kaiming_uniform",
        "kaiming_normal",
    }


def test_default_init_is_kaiming_uniform():
    assert DEFAULT_INIT == "kaiming_uniform"


def test_xavier_uniform_fills_the_glorot_interval():
    weight, fan_in, fan_out = initialized_conv("xavier_uniform")
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert 0.99 * bound <= weight.abs().max() <= bound


def test_kaiming_uniform_fills_the_he_interval_with_relu_gain():
    weight, fan_in, _ = initialized_conv("kaiming_uniform")
    bound = math.sqrt(6 / fan_in)
    assert 0.99 * bound <= weight.abs().max() <= bound


def test_xavier_normal_has_glorot_standard_deviation_and_gaussian_tails():
    weight, fan_in, fan_out = initialized_conv("xavier_normal")
    std = math.sqrt(2 / (fan_in + fan_out))
    assert weight.std() == pytest.approx(std, rel=0.02)
    # A uniform law with this deviation stops at sqrt(3) std; a Gaussian of 295K draws does not.
    assert weight.abs().max() > 3 * std


def test_kaiming_normal_has_he_standard_deviation_and_gaussian_tails():
    weight, fan_in, _ = initialized_conv("kaiming_normal")
    std = math.sqrt(2 / fan_in)
    assert weight.std() == pytest.approx(std, rel=0.02)
    assert weight.abs().max() > 3 * std


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_init_reaches_linear_layers_too(scheme):
    model = probe()
    before = model[3].weight.detach().clone()
    apply_init(model, scheme)
    assert not torch.equal(model[3].weight, before)


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_init_zeroes_biases_and_resets_batch_norm_to_identity(scheme):
    model = probe()
    bn = model[1]
    with torch.no_grad():
        bn.weight.fill_(3.0)
        bn.bias.fill_(2.0)
        bn.running_mean.fill_(5.0)
    apply_init(model, scheme)
    assert torch.count_nonzero(model[0].bias) == 0
    assert torch.count_nonzero(model[3].bias) == 0
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)


def test_unknown_init_scheme_raises_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown init scheme 'orthogonal'") as error:
        apply_init(probe(), "orthogonal")
    for scheme in INIT_SCHEMES:
        assert scheme in str(error.value)


def test_build_model_rejects_an_unknown_init_scheme():
    with pytest.raises(ValueError, match="unknown init scheme"):
        build_model("mnist1d-cnn", 10, init="he")


def test_build_model_applies_kaiming_uniform_by_default_not_pytorchs_narrower_default():
    conv = build_model("mnist1d-resnet", 10).blocks[2].conv2  # 32 x 32 x 3 taps
    fan_in = conv.in_channels * conv.kernel_size[0]
    assert conv.weight.abs().max() > 0.99 * math.sqrt(6 / fan_in)


def test_build_model_without_init_keeps_pytorchs_default():
    conv = build_model("mnist1d-resnet", 10, init=None).blocks[2].conv2
    fan_in = conv.in_channels * conv.kernel_size[0]
    assert conv.weight.abs().max() <= 1 / math.sqrt(fan_in)


def test_build_model_zeroes_the_biases_pytorch_would_randomize():
    model = build_model("mnist1d-cnn", 10)
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    assert len(biases) == 4
    assert all(torch.count_nonzero(b) == 0 for b in biases)


def test_a_seeded_generator_makes_the_initial_weights_reproducible():
    first = build_model("mnist1d-resnet", 10, generator=torch.Generator().manual_seed(7))
    second = build_model("mnist1d-resnet", 10, generator=torch.Generator().manual_seed(7))
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)

"""Specification of tvlars.models.signal_layers: 1-D layers computed as 2-D channels-last."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tvlars.models import build_model
from tvlars.models.signal_layers import SignalBatchNorm, SignalConv, to_signal_layout

# (in_channels, kernel, stride, padding, bias): the single-channel stem takes its own route.
CONVS = [(1, 3, 1, 1, False), (1, 5, 2, 2, True), (8, 3, 1, 1, False), (8, 3, 2, 1, True),
         (16, 1, 2, 0, False)]  # fmt: skip


def test_to_signal_layout_makes_channels_last_n_c_1_l():
    x = torch.randn(4, 3, 10)
    y = to_signal_layout(x)
    assert y.shape == (4, 3, 1, 10)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y.squeeze(2), x)


def test_to_signal_layout_rejects_other_ranks():
    with pytest.raises(ValueError, match=r"\(N, C, L\)"):
        to_signal_layout(torch.randn(4, 10))


@pytest.mark.parametrize("in_channels, kernel, stride, padding, bias", CONVS)
def test_signal_conv_gives_conv1d_values_and_gradients_on_the_2d_route(
    in_channels, kernel, stride, padding, bias
):
    torch.manual_seed(0)
    conv = SignalConv(in_channels, 6, kernel, stride=stride, padding=padding, bias=bias)
    x = torch.randn(5, in_channels, 23, requires_grad=True)
    plain = conv(x)  # a 3-D input is nn.Conv1d's own computation
    routed = conv(to_signal_layout(x))
    assert routed.shape == (5, 6, 1, plain.shape[-1])
    torch.testing.assert_close(routed.squeeze(2), plain)
    grad = torch.randn_like(plain)
    inputs = (x, conv.weight) + ((conv.bias,) if bias else ())
    for a, b in zip(
        torch.autograd.grad(plain, inputs, grad),
        torch.autograd.grad(routed.squeeze(2), inputs, grad),
        strict=True,
    ):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("in_channels", [1, 8])
def test_signal_conv_output_stays_channels_last(in_channels):
    conv = SignalConv(in_channels, 6, 3, padding=1)
    out = conv(to_signal_layout(torch.randn(5, in_channels, 12)))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_signal_layers_have_the_parameters_and_state_dict_of_the_1d_layers():
    conv, plain_conv = SignalConv(4, 8, 3, bias=False), nn.Conv1d(4, 8, 3, bias=False)
    norm, plain_norm = SignalBatchNorm(8), nn.BatchNorm1d(8)
    for ours, theirs in ((conv, plain_conv), (norm, plain_norm)):
        assert isinstance(ours, type(theirs))
        assert {k: v.shape for k, v in ours.state_dict().items()} == {
            k: v.shape for k, v in theirs.state_dict().items()
        }


def test_signal_batch_norm_matches_batch_norm_1d_in_training_and_eval():
    torch.manual_seed(0)
    ours, theirs = SignalBatchNorm(6), nn.BatchNorm1d(6)
    x = torch.randn(16, 6, 9) * 3 + 1
    torch.testing.assert_close(ours(to_signal_layout(x)).squeeze(2), theirs(x))
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    assert ours.num_batches_tracked == theirs.num_batches_tracked == 1
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(to_signal_layout(x)).squeeze(2), theirs(x))


def test_signal_batch_norm_rejects_a_4d_input_of_height_other_than_1():
    with pytest.raises(ValueError, match=r"\(N, C, 1, L\)"):
        SignalBatchNorm(3)(torch.randn(4, 3, 2, 5))


def test_mnist1d_resnet_gives_the_same_logits_as_its_layers_on_3d_signals():
    """The model's channels-last route changes the memory layout, not the function: run
    block by block on plain (N, C, L) tensors, the same weights give the same logits."""
    torch.manual_seed(0)
    model = build_model("mnist1d-resnet", 10).eval()
    x = torch.randn(32, 40)
    h = torch.relu(model.bn1(model.conv1(x.unsqueeze(1))))
    plain = model.fc(model.blocks(h).mean(dim=-1))
    torch.testing.assert_close(model(x), plain)

"""Conv4's blocks pool before their ReLU: the same function and gradients as the textbook order."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mlcourse.backbones import Conv4, conv_block


def _textbook(net: Conv4) -> nn.Sequential:
    """The same modules in the order conv -> BatchNorm -> ReLU -> max-pool."""
    blocks = []
    for conv, bn, pool, relu in net.encoder:
        assert isinstance(pool, nn.MaxPool2d) and isinstance(relu, nn.ReLU)
        blocks.append(nn.Sequential(conv, bn, relu, pool))
    return nn.Sequential(*blocks, nn.Flatten())


def _derivatives(model: nn.Module, x: torch.Tensor):
    """Output, gradient and a second-order term (as exact MAML differentiates) of a fixed loss."""
    params = list(model.parameters())
    out = model(x.to(params[0].dtype))
    g = torch.autograd.grad(out.pow(2).sum() + out[:, :5].sum(), params, create_graph=True)
    h = torch.autograd.grad(sum(gi.pow(2).sum() for gi in g), params)
    return out.detach(), [gi.detach() for gi in g], h


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv4_equals_relu_before_pool_in_values_and_gradients(channels_last):
    torch.manual_seed(0)
    net = Conv4(track_running_stats=False, channels_last=channels_last)
    x = torch.randn(12, 1, 28, 28)
    x[:, :, :7] = -1.0  # whole pooling windows below zero, and ties, after the first block
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out, g, h = _derivatives(net, x)
    out_t, g_t, h_t = _derivatives(_textbook(net), x)
    assert torch.equal(out, out_t)  # the function and its gradient: bit for bit
    assert all(torch.equal(a, b) for a, b in zip(g, g_t))
    # The double backward sums in another order. In float64 the two agree to rounding; in float32
    # the new order is as close to float64 as the textbook order is.
    net64 = copy.deepcopy(net).double()
    _, _, h64 = _derivatives(net64, x)
    _, _, h64_t = _derivatives(_textbook(net64), x)
    scale = max(float(r.abs().max()) for r in h64)  # conv biases before BatchNorm: exactly 0, up to rounding
    for a, b in zip(h64, h64_t):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * scale)
    err = max(float((a.double() - r).abs().max()) for a, r in zip(h, h64)) / scale
    err_t = max(float((a.double() - r).abs().max()) for a, r in zip(h_t, h64)) / scale
    assert err < max(2 * err_t, 1e-5), (err, err_t)


def test_a_block_without_pooling_keeps_its_relu_last():
    assert [type(m) for m in conv_block(1, 8, pool=False)] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert [type(m) for m in conv_block(1, 8)] == [nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ReLU]

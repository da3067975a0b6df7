"""Conv4's blocks pool before their ReLU, with a pool that holds less for backward: the same
function and gradients as the textbook order with PyTorch's own max-pool."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mlcourse.backbones import Conv4, MaxPool2x2, conv_block


def _textbook(net: Conv4) -> nn.Sequential:
    """The same layers in the order conv -> BatchNorm -> ReLU -> max-pool, with ``nn.MaxPool2d``."""
    blocks = []
    for conv, bn, pool, relu in net.encoder:
        assert isinstance(pool, MaxPool2x2) and isinstance(relu, nn.ReLU)
        blocks.append(nn.Sequential(conv, bn, relu, nn.MaxPool2d(2)))
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
    assert [type(m) for m in conv_block(1, 8)] == [nn.Conv2d, nn.BatchNorm2d, MaxPool2x2, nn.ReLU]


def _pooled(pool: nn.Module, x: torch.Tensor, g: torch.Tensor):
    """Output, input gradient and a second-order term of ``sum(g * pool(x)^2)``, and the bytes
    autograd saved for backward while doing so."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t
    x = x.detach().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = pool(x)
        (dx,) = torch.autograd.grad((g * y.pow(2)).sum(), x, create_graph=True)
    (ddx,) = torch.autograd.grad(dx.pow(2).sum(), x)
    return y, dx, ddx, sum(saved)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_maxpool2x2_equals_the_builtin_and_saves_less(channels_last, dtype):
    torch.manual_seed(0)
    x = torch.randn(6, 8, 10, 7, dtype=dtype)  # an odd width: the last column is dropped
    x[:, :, :4] = 0.5  # ties inside windows: both pick the first
    g = torch.randn(6, 8, 5, 3, dtype=dtype)
    if channels_last:
        x, g = x.contiguous(memory_format=torch.channels_last), g.contiguous(memory_format=torch.channels_last)
    ours, builtin = _pooled(MaxPool2x2(), x, g), _pooled(nn.MaxPool2d(2), x, g)
    for a, b in zip(ours[:3], builtin[:3]):
        assert torch.equal(a, b)
    # the input gradient in the input's memory format, as the next layer's backward expects
    assert ours[1].is_contiguous(memory_format=torch.channels_last) == channels_last
    assert ours[3] < builtin[3] - x.numel() * x.element_size() // 2  # the input is not kept


def test_maxpool2x2_passes_gradient_checks_and_falls_back_where_it_should():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    pool = MaxPool2x2()
    assert torch.autograd.gradcheck(pool, (x,))
    assert torch.autograd.gradgradcheck(pool, (x,))
    with torch.no_grad():
        assert torch.equal(pool(x), nn.functional.max_pool2d(x, 2))
    assert pool(x).grad_fn.name() != "MaxPool2DWithIndicesBackward0"  # recorded: our function
    # under torch.func (MAML's vectorised path) it is the built-in pool, with its vmap rules
    grads = torch.func.vmap(torch.func.grad(lambda v: pool(v).pow(2).sum()))(x.detach())
    expected = torch.func.vmap(torch.func.grad(lambda v: nn.functional.max_pool2d(v, 2).pow(2).sum()))(x.detach())
    assert torch.equal(grads, expected)

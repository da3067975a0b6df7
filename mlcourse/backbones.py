"""Feature extractors shared by the few-shot methods.

``Conv4`` is the standard backbone of few-shot papers since Vinyals et al. (2016): four
blocks of 3x3 convolution (64 filters), batch normalisation, ReLU and 2x2 max-pooling.
On 28x28 inputs the feature map shrinks 28 -> 14 -> 7 -> 3 -> 1, giving a 64-d embedding.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["conv_block", "Conv4", "FrozenEncoder", "MLP", "MaxPool2x2"]


class _MaxPool2x2(torch.autograd.Function):
    """2x2 max-pool (stride 2) that keeps only the argmax indices for backward.

    ``nn.MaxPool2d`` also keeps its whole input alive for backward, only to read its shape;
    here the input can be freed once pooled. Backward scatters the gradient to the argmax
    positions with ``max_unpool2d``, exactly what the built-in backward writes (the windows do
    not overlap), and is itself differentiable (exact MAML's second order).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y, indices = torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2])
        ctx.save_for_backward(indices)
        ctx.input_size = x.shape[-2:]
        # the memory format the built-in backward gives its gradient (its input's)
        ctx.memory_format = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                             and not x.is_contiguous() else torch.contiguous_format)
        ctx.mark_non_differentiable(indices)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (indices,) = ctx.saved_tensors
        grad = grad.contiguous(memory_format=ctx.memory_format)
        out = torch.nn.functional.max_unpool2d(grad, indices, 2, output_size=ctx.input_size)
        return out.contiguous(memory_format=ctx.memory_format)


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` with the same values and gradients, holding less memory for backward.

    When gradients are recorded, only the int64 argmax indices are kept (the built-in keeps its
    input too): for Conv4 on a batch of 1,200 28x28 images that is 240 MB less per step held by
    the first block alone. Without gradients, and under ``torch.func`` transforms (MAML's
    vectorised path), it is the built-in pool.
    """

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() and x.requires_grad and x.dim() == 4
                and not torch._C._functorch.is_functorch_wrapped_tensor(x)):
            return _MaxPool2x2.apply(x)
        return super().forward(x)


def conv_block(in_channels: int, out_channels: int, pool: bool = True,
               track_running_stats: bool = True) -> nn.Sequential:
    """3x3 conv (padding 1) -> BatchNorm -> ReLU -> optional 2x2 max-pool.

    With pooling, the ReLU is applied after the max-pool: ``relu(max(a, b)) = max(relu(a),
    relu(b))`` (ReLU never changes the order of two numbers), so the block computes the same
    function and the same gradients, bit for bit, with the ReLU and its backward on a quarter of
    the values; second-order terms (exact MAML) agree to rounding. The pool is
    :class:`MaxPool2x2`, which holds less memory for backward.
    """
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1),
                               nn.BatchNorm2d(out_channels, track_running_stats=track_running_stats)]
    if pool:
        layers.append(MaxPool2x2())
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Conv4(nn.Module):
    """Four conv blocks; ``forward`` maps ``(B, C, H, W)`` images to ``(B, D)`` embeddings.

    Args:
        in_channels: Channels of the input images (1 for FontGlot / Omniglot).
        hidden: Filters per block (64 in the literature).
        n_blocks: Number of blocks.
        flatten: Return flat embeddings ``(B, D)``; otherwise feature maps ``(B, hidden, h, w)``.
        track_running_stats: BatchNorm keeps running averages for eval mode (the usual
            choice); ``False`` always normalises with the statistics of the current batch,
            as MAML does (see :mod:`mlcourse.optimization`).
        channels_last: Store weights and activations channels-last (NHWC). Same results;
            measured about 1.5x faster training on CPU (oneDNN) for this network.
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, n_blocks: int = 4, flatten: bool = True,
                 track_running_stats: bool = True, channels_last: bool = True) -> None:
        super().__init__()
        blocks = [conv_block(in_channels if i == 0 else hidden, hidden, track_running_stats=track_running_stats)
                  for i in range(n_blocks)]
        self.encoder = nn.Sequential(*blocks)
        self.flatten = flatten
        self.channels_last = channels_last
        self.out_features = hidden
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"Conv4 expects images of shape (B, C, H, W), got shape {tuple(x.shape)}; "
                             "add a channel axis with x.unsqueeze(1) for (B, H, W) grey images")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        z = self.encoder(x)  # (B, hidden, h, w)
        return z.flatten(1) if self.flatten else z


class FrozenEncoder(nn.Module):
    """A pre-trained encoder that does not learn: no gradients, and always in eval mode.

    Wrapping a trained :class:`Conv4` keeps its BatchNorm running statistics in use even
    while the model around it trains, so a learner built on it learns only its own layers.
    Its weights are still part of the ``state_dict`` (a checkpoint holds the whole model).

    Args:
        encoder: Maps images to embeddings and has ``out_features``.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        if not hasattr(encoder, "out_features"):
            raise TypeError(f"the encoder must say its embedding size (out_features), {type(encoder).__name__} does not")
        self.encoder = encoder
        self.out_features = int(encoder.out_features)
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> "FrozenEncoder":
        """Set the training mode of everything but the wrapped encoder, which stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encoder(x)


class MLP(nn.Module):
    """A small multilayer perceptron: ``(B, *in_shape)`` -> ``(B, sizes[-1])``, ReLU between layers."""

    def __init__(self, sizes: list[int], batch_norm: bool = False) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"sizes needs an input and an output size, got {sizes}")
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                if batch_norm:
                    layers.append(nn.BatchNorm1d(b))
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

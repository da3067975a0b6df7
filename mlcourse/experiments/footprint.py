"""What one outer step of a spec's training holds in memory, and how wide its backbone is.

:func:`training_memory` runs one ``meta_step`` of a spec's learner on a meta-batch of its own
training shape (the largest of its training shots) and counts the bytes autograd keeps for
the backward pass at their peak (:func:`~mlcourse.optimization.cost.autograd_peak_bytes`:
activations and the parameters they are saved with). It is the part of memory that grows with
the episode, the meta-batch and, for second-order MAML, the inner steps; it does not depend on
the device or on the weights, so it is measured on a fresh learner and needs no record.
"""
from __future__ import annotations

import torch
from torch import nn

from ..optimization.cost import autograd_peak_bytes
from ..episodes import labels_of
from ..training import TaskStream, make_optimizer
from .specs import SPECS, Spec, build_learner

__all__ = ["training_memory", "backbone_filters"]


def _spec(spec: Spec | str) -> Spec:
    if isinstance(spec, Spec):
        return spec
    if spec not in SPECS:
        raise ValueError(f"unknown spec {spec!r}; `mlcourse train --list` shows them")
    return SPECS[spec]


def training_memory(spec: Spec | str, source, *, seed: int = 0) -> int | None:
    """Peak bytes autograd holds during one outer step of ``spec``, on tasks drawn from ``source``.

    Args:
        spec: A spec or its name.
        source: The labelled training data (e.g. ``course_data("background")``).
        seed: Seed of the initial weights and of the meta-batch.

    Returns:
        The peak, in bytes, of the tensors saved for backward alive at once; ``None`` for a learner
        whose step runs under a ``torch.func`` transform (Proto-MAML's inner gradient), where
        PyTorch refuses the hooks that count the saved tensors.
    """
    spec = _spec(spec)
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
        torch.manual_seed(seed)
        return _measure(spec, source, seed)


def _measure(spec: Spec, source, seed: int) -> int | None:
    learner = build_learner(spec, n_classes=int(labels_of(source).max()) + 1)
    shots = spec.k_shot if isinstance(spec.k_shot, tuple) else (spec.k_shot,)
    stream = TaskStream(source, meta_batch_size=spec.meta_batch_size, n_way=spec.n_way, k_shot=max(shots),
                        n_query=spec.n_query, seed=seed)
    tasks = stream.batch(0)
    opt = make_optimizer(spec.optimizer, learner.parameters(), spec.outer_lr)
    learner.train()
    try:
        _, peak = autograd_peak_bytes(lambda: learner.meta_step(tasks, opt))
    except RuntimeError as error:
        if "saved tensor hooks" in str(error):
            return None
        raise
    return int(peak)


def backbone_filters(learner: nn.Module) -> int | None:
    """The width of ``learner``'s convolutional backbone: the output channels of its first convolution."""
    for module in learner.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.out_channels)
    return None

"""The MAML paper's baseline for regression: pre-train one network on all tasks, then fine-tune.

"Pretrained" here means ordinary supervised training on the pooled data of many tasks
(the MAML paper, section 5.1). For sinusoids the pooled target averages out to the mean
curve, ``E[y | x] = -(2 / pi) E[A] cos x`` for phases uniform in ``[0, pi]``, the same for
every task; fine-tuning it on K points is then compared with adapting MAML's initialisation
on the same points.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..progress import tqdm
from ..training import train_epoch
from .inner import adapt, functional_forward, parameters_of

__all__ = ["pretrain_on_tasks", "adaptation_curve"]


def pretrain_on_tasks(model: nn.Module, source, *, n_steps: int = 1000, meta_batch_size: int = 10, lr: float = 1e-3,
                      seed: int = 0, loss_fn: Callable = F.mse_loss, progress: bool = True) -> list[float]:
    """Train ``model`` with Adam on the pooled support+query points of ``meta_batch_size`` tasks per step.

    ``source`` has ``sample_tasks(n, rng)``; the tasks of step ``t`` depend on ``(seed, t)`` only.
    Returns the training loss per step.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    device = next(model.parameters()).device

    def pooled(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        tasks = source.sample_tasks(meta_batch_size, np.random.default_rng([seed, step]))
        return (torch.cat([torch.cat([t.support_x, t.query_x]) for t in tasks]).to(device),
                torch.cat([torch.cat([t.support_y, t.query_y]) for t in tasks]).to(device))

    return [train_epoch(opt, [pooled(step)], lambda x, y: loss_fn(model(x), y))
            for step in tqdm(range(n_steps), desc="pretraining", disable=not progress)]


def adaptation_curve(model: nn.Module, tasks: Sequence, *, inner_steps: int, inner_lr: float,
                     loss_fn: Callable = F.mse_loss) -> np.ndarray:
    """Query loss after 0, 1, ..., ``inner_steps`` plain gradient steps on each task's support set.

    Returns an array ``(len(tasks), inner_steps + 1)``. The model's own parameters are not changed.
    """
    device = next(model.parameters()).device
    out = np.empty((len(tasks), inner_steps + 1))
    for i, task in enumerate(tasks):
        task = task.to(device)
        params = parameters_of(model)
        for s in range(inner_steps + 1):
            with torch.no_grad():
                out[i, s] = loss_fn(functional_forward(model, params, task.query_x), task.query_y).item()
            if s < inner_steps:
                params = adapt(model, params, task.support_x, task.support_y, inner_lr=inner_lr, inner_steps=1,
                               loss_fn=loss_fn, track_meta_grad=False)
    return out

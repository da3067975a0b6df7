"""Multi-task learning: one shared trunk, one head per task, trained on every task at once.

Transfer learning is *sequential*: train on a source task, then reuse the network for a
target task. Multi-task learning (Caruana, "Multitask learning", 1997) trains the tasks
*together*: a shared backbone :math:`f_\\theta` and a head :math:`W_t` per task :math:`t`,
on the weighted sum of the task losses,

.. math::

    \\mathcal L(\\theta, W) = \\sum_t \\lambda_t \\, \\frac{1}{|B_t|} \\sum_{(x, y) \\in B_t}
    \\ell\\big(W_t f_\\theta(x), y\\big),

one batch :math:`B_t` of each task per step. The tasks may have different inputs and
label sets (script of a glyph, identity of a character); what they share is
:math:`\\theta`. A task with little data borrows the features the others need: the other
tasks' losses act as a regulariser on the shared trunk. The weights :math:`\\lambda_t` are
settings, chosen like any other on held-out training data.

:func:`train_multitask` runs it; an *epoch* is one pass over the largest task, the smaller
tasks' batches cycle.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..device import get_device
from ..progress import tqdm
from ..training import History, LossPlateau, train_epoch
from .finetune import TransferNet, train_mode

__all__ = ["MultiTaskNet", "multitask_loss", "train_multitask"]


class MultiTaskNet(nn.Module):
    """A shared backbone and one linear head per task.

    Args:
        backbone: Maps inputs to flat features ``(B, n_features)``.
        n_features: Size of the backbone's output.
        tasks: ``{task name: number of classes}``.

    ``model(x, task)`` gives the logits of ``task``; :meth:`for_task` gives a
    :class:`~mlcourse.transfer.finetune.TransferNet` that shares the backbone and that task's
    head (to evaluate, fine-tune or probe it like any single-task network).
    """

    def __init__(self, backbone: nn.Module, n_features: int, tasks: Mapping[str, int]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a multi-task network needs at least one task: pass tasks={name: n_classes}")
        bad = {t: n for t, n in tasks.items() if not isinstance(n, int) or n < 2}
        if bad:
            raise ValueError(f"every task needs at least 2 classes, got {bad}")
        self.backbone = backbone
        self.heads = nn.ModuleDict({t: nn.Linear(n_features, n) for t, n in tasks.items()})

    @property
    def tasks(self) -> list[str]:
        """The task names, in order."""
        return list(self.heads)

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        if task not in self.heads:
            raise KeyError(f"no task named {task!r}; the network's tasks are {self.tasks}")
        return self.heads[task](self.backbone(x))

    def for_task(self, task: str) -> TransferNet:
        """A :class:`~mlcourse.transfer.finetune.TransferNet` view of ``task``: the *same* backbone and head modules (not copies)."""
        if task not in self.heads:
            raise KeyError(f"no task named {task!r}; the network's tasks are {self.tasks}")
        head = self.heads[task]
        view = TransferNet(self.backbone, head.in_features, head.out_features)
        view.head = head
        return view


def multitask_loss(model: MultiTaskNet, batches: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                   weights: Mapping[str, float]) -> torch.Tensor:
    """:math:`\\sum_t \\lambda_t\\, \\mathrm{CE}(W_t f_\\theta(x_t), y_t)` over one batch ``(x_t, y_t)`` per task."""
    missing = [t for t in batches if t not in weights]
    if missing:
        raise ValueError(f"no loss weight for tasks {missing}; pass weights for {list(batches)}")
    return sum(weights[t] * F.cross_entropy(model(x, t), y) for t, (x, y) in batches.items())


def train_multitask(model: MultiTaskNet, data: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                    weights: Mapping[str, float] | None = None, *, epochs: int = 10, lr: float = 1e-3,
                    batch_size: int | Mapping[str, int] = 64, seed: int = 0, patience: int | None = None,
                    device: torch.device | str | None = None, progress: bool = True) -> History:
    """Train every task at once with Adam on :func:`multitask_loss`.

    Args:
        model: Trained in place; it must have a head for every task of ``data``.
        data: ``{task: (x, y)}``: each task's own training images and labels.
        weights: ``{task: λ}`` (default 1 for every task).
        epochs: Passes over the *largest* task; the others' batches cycle meanwhile, so a
            small task is seen many times per epoch.
        batch_size: One size for all tasks or ``{task: size}``.
        seed: Seeds the batch order.
        patience: Train to convergence: stop when the epoch's mean loss has not fallen for
            ``patience`` epochs (:class:`~mlcourse.training.LossPlateau`); ``epochs`` is then the most.

    Returns:
        The :class:`~mlcourse.training.History`, per epoch: ``epoch`` and ``loss`` (the mean
        weighted loss per step); ``history.stopped`` says what ended it.
    """
    if not data:
        raise ValueError("no tasks to train: pass data={task: (x, y)}")
    unknown = [t for t in data if t not in model.heads]
    if unknown:
        raise ValueError(f"the network has no head for tasks {unknown}; its tasks are {model.tasks}")
    for t, (x, y) in data.items():
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"task {t!r}: {len(x)} inputs and {len(y)} labels; need the same number, at least one")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    weights = {t: 1.0 for t in data} if weights is None else dict(weights)
    sizes = batch_size if isinstance(batch_size, Mapping) else {t: batch_size for t in data}
    device = get_device(device)
    model.to(device)
    tasks = list(data)
    largest = max(tasks, key=lambda t: len(data[t][0]))
    loaders = {t: DataLoader(TensorDataset(*data[t]), batch_size=min(sizes[t], len(data[t][0])), shuffle=True,
                             generator=torch.Generator().manual_seed(seed + i)) for i, t in enumerate(tasks)}
    cycles = {t: _cycle(loaders[t]) for t in tasks if t != largest}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)

    def steps():  # one step: the next batch of the largest task and of each other task
        for xb, yb in loaders[largest]:
            yield (xb, yb, *[b for t in tasks if t != largest for b in next(cycles[t])])

    def loss_of(xb, yb, *others):
        batches = {largest: (xb, yb), **{t: others[2 * i:2 * i + 2] for i, t in enumerate(
            [t for t in tasks if t != largest])}}
        return multitask_loss(model, {t: (x.to(device), y.to(device)) for t, (x, y) in batches.items()}, weights)

    history, rule, early = History(), LossPlateau(patience), False
    for epoch in tqdm(range(epochs), desc="multi-task", disable=not progress):
        train_mode(model)
        loss = train_epoch(opt, steps(), loss_of)
        history.log(epoch=epoch + 1, loss=loss)
        if rule.update(loss):
            early = True
            break
    history.stopped = rule.verdict(early)
    model.eval()
    return history


def _cycle(loader: DataLoader):
    """Batches of ``loader`` forever, reshuffled on each pass."""
    return itertools.chain.from_iterable(iter(loader) for _ in itertools.count())

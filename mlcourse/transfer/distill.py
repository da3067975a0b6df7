"""Knowledge distillation (Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015).

A large *teacher* knows more than its argmax: the probabilities it gives to the wrong classes
say which classes look alike. A small *student* learns from those *soft targets*, the
teacher's softmax at a temperature ``T > 1`` that spreads the probability mass:

    p_i^T = exp(z_i / T) / sum_j exp(z_j / T).

The loss mixes the soft term with the usual cross-entropy on the hard labels,

    L = alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(z_student, y).

The factor ``T^2`` keeps the soft term's gradient at the scale of the hard term's: the
gradient of the KL with respect to a student logit is ``(p_student^T - p_teacher^T) / T``, so
without it the soft targets would count ``T^2`` times less as ``T`` grows.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from ..device import get_device
from ..progress import tqdm
from ..training import History, LossPlateau, train_epoch

__all__ = ["soft_target_loss", "distillation_loss", "train_distilled", "random_shift"]


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift each image of ``x`` ``(B, C, H, W)`` by up to ``max_shift`` pixels each way (zero fill)."""
    if x.dim() != 4:
        raise ValueError(f"random_shift expects images (B, C, H, W), got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    m = max_shift
    padded = F.pad(x, (m, m, m, m))
    dy = torch.randint(0, 2 * m + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * m + 1, (b,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


def _check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError("student and teacher logits must both have shape (batch, classes), got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
                     ) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch.

    Args:
        student_logits: ``(B, C)``.
        teacher_logits: ``(B, C)``; treated as constants (detached).
        temperature: ``T > 0``.

    Returns:
        A scalar; zero exactly when the two softmaxes agree.
    """
    _check_logits(student_logits, teacher_logits)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return temperature ** 2 * kl


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """``alpha * soft_target_loss + (1 - alpha) * cross_entropy(student, targets)``.

    Args:
        student_logits, teacher_logits: ``(B, C)``.
        targets: ``(B,)`` hard labels.
        temperature: ``T > 0``.
        alpha: Weight of the soft term in ``[0, 1]`` (``0``: ordinary training).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if targets.shape != student_logits.shape[:1]:
        raise ValueError(f"targets must have shape ({student_logits.shape[0]},), got {tuple(targets.shape)}")
    hard = F.cross_entropy(student_logits, targets)
    if alpha == 0.0:
        return hard
    return alpha * soft_target_loss(student_logits, teacher_logits, temperature) + (1 - alpha) * hard


def train_distilled(student: nn.Module, teacher: nn.Module | None, x: torch.Tensor, y: torch.Tensor, *,
                    epochs: int = 10, lr: float = 1e-3, temperature: float = 4.0, alpha: float = 0.9,
                    batch_size: int = 128, seed: int = 0, device: torch.device | str | None = None,
                    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                    patience: int | None = None, progress: bool = True) -> History:
    """Train ``student`` on ``(x, y)`` with Adam, distilling from ``teacher``.

    The teacher is put in eval mode and its parameters are frozen (``requires_grad=False``).

    ``teacher=None`` (or ``alpha=0``) trains the student on the hard labels alone: the
    from-scratch baseline, with everything else identical.

    ``augment(x, generator)``, if given, transforms every batch before both networks see it
    (e.g. :func:`random_shift`): the teacher labels exactly the view the student is trained on
    ("consistent teaching", Beyer et al., 2022), and the baseline gets the same augmentation.

    ``patience`` trains to convergence: ``epochs`` is then the most, and training stops when
    the training loss has not fallen for ``patience`` epochs (:class:`~mlcourse.training.LossPlateau`).

    Returns:
        The :class:`~mlcourse.training.History`: ``epoch`` and ``loss`` (mean training loss);
        ``stopped`` is ``"converged"`` or ``"budget"``.
    """
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    device = get_device(device)
    if teacher is None:
        alpha = 0.0
    student.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    # Without augmentation the teacher sees the same images every epoch: its logits are
    # computed once (in eval mode, batched) instead of once per epoch.
    cached = alpha > 0 and augment is None
    columns = [x, y]
    if cached:
        with torch.no_grad():
            columns.append(torch.cat([teacher(x[i:i + 512].to(device)).cpu() for i in range(0, len(x), 512)]))
    loader = DataLoader(TensorDataset(*columns), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed + 1)
    history = History()

    def loss_of(xb: torch.Tensor, yb: torch.Tensor, *cached_logits: torch.Tensor) -> torch.Tensor:
        xb, yb = xb.to(device), yb.to(device)
        if augment is not None:
            xb = augment(xb, gen)
        out = student(xb)
        if alpha == 0:
            return F.cross_entropy(out, yb)
        if cached:
            t_out = cached_logits[0].to(device)
        else:
            with torch.no_grad():
                t_out = teacher(xb)
        return distillation_loss(out, t_out, yb, temperature, alpha)

    rule, early = LossPlateau(patience), False
    for epoch in tqdm(range(epochs), desc="distilling" if alpha > 0 else "training", disable=not progress):
        loss = train_epoch(opt, loader, loss_of)
        history.log(epoch=epoch + 1, loss=loss)
        if rule.update(loss):
            early = True
            break
    history.stopped = rule.verdict(early)
    return history

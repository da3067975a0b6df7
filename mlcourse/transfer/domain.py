"""Unsupervised domain adaptation: labelled source data, unlabelled target data.

A classifier trained on the source domain (font-rendered digits) is used on a target domain
(handwritten digits) whose inputs look different. No target label is used for training.
The methods here all make the *features* of the two domains look alike while they stay
useful for the source labels:

- **DANN** (Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016): a
  domain classifier tries to tell source features from target features; a *gradient reversal
  layer* between it and the feature extractor is the identity forward and multiplies the
  gradient by ``-lambda`` backward, so the extractor learns to fool the domain classifier.
- **Deep CORAL** (Sun and Saenko, 2016): penalise the distance between the feature
  covariance matrices of the two domains, ``||C_s - C_t||_F^2 / (4 d^2)``.
- **MMD** (Long et al., "Learning Transferable Features with Deep Adaptation Networks", 2015):
  penalise the maximum mean discrepancy between the feature distributions, with a sum of
  Gaussian kernels.
- **CORAL on the inputs** (Sun, Feng and Saenko, "Return of Frustratingly Easy Domain
  Adaptation", 2016): whiten the source data and re-colour it with the target covariance,
  then train any classifier: no network needed.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from ..device import get_device
from ..evaluation import accuracy
from ..progress import tqdm
from ..training import History, LossPlateau, train_epoch

__all__ = ["GradientReversal", "grad_reverse", "dann_lambda", "coral_loss", "mmd_loss", "coral_transform",
           "DomainAdaptationNet", "train_domain_adaptation", "METHODS"]

METHODS = ("source_only", "dann", "coral", "mmd", "target")


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = lambda_
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lambda_ * grad_output, None


def grad_reverse(x: torch.Tensor, lambda_: float = 1.0) -> torch.Tensor:
    """Identity in the forward pass; multiplies the incoming gradient by ``-lambda_`` backward."""
    return _ReverseGrad.apply(x, float(lambda_))


class GradientReversal(nn.Module):
    """The gradient reversal layer of DANN as a module; set ``lambda_`` between steps."""

    def __init__(self, lambda_: float = 1.0) -> None:
        super().__init__()
        self.lambda_ = lambda_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}"


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s schedule ``2 / (1 + exp(-gamma * p)) - 1``: 0 at the start, towards 1 at the end.

    The domain classifier is noise at first; the schedule keeps its reversed gradient from
    disturbing the features until it has learned something.
    """
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def _check_features(fs: torch.Tensor, ft: torch.Tensor) -> None:
    if fs.dim() != 2 or ft.dim() != 2 or fs.shape[1] != ft.shape[1]:
        raise ValueError(f"need source and target features of shapes (n_s, d) and (n_t, d), "
                         f"got {tuple(fs.shape)} and {tuple(ft.shape)}")
    if len(fs) < 2 or len(ft) < 2:
        raise ValueError("need at least two samples per domain to compare their statistics")


def coral_loss(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: ``||cov(fs) - cov(ft)||_F^2 / (4 d^2)`` (unbiased covariances)."""
    _check_features(fs, ft)
    d = fs.shape[1]
    cs, ct = torch.cov(fs.T), torch.cov(ft.T)
    return ((cs - ct) ** 2).sum() / (4 * d * d)


def mmd_loss(fs: torch.Tensor, ft: torch.Tensor, bandwidths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
             ) -> torch.Tensor:
    """Squared MMD (biased estimate) with a sum of Gaussian kernels.

    Each bandwidth multiplies the median pairwise squared distance of the pooled features
    (the "median heuristic"), so the kernel follows the scale of the features as they change.
    """
    _check_features(fs, ft)
    z = torch.cat([fs, ft])
    d2 = torch.cdist(z, z).pow(2)
    scale = d2.detach().median().clamp_min(1e-8)
    k = sum(torch.exp(-d2 / (b * scale)) for b in bandwidths)
    n = len(fs)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def coral_transform(Xs: np.ndarray, Xt: np.ndarray, eps: float = 1.0) -> np.ndarray:
    """Re-colour the source data with the target covariance: ``Xs C_s^{-1/2} C_t^{1/2}``.

    Args:
        Xs: Source data ``(n_s, d)``.
        Xt: Target data ``(n_t, d)`` (unlabelled).
        eps: Added to the diagonals of both covariances (Sun et al. use 1).

    Returns:
        Transformed source data ``(n_s, d)``; train a classifier on it with the source labels.
    """
    Xs, Xt = np.asarray(Xs, dtype=np.float64), np.asarray(Xt, dtype=np.float64)
    if Xs.ndim != 2 or Xt.ndim != 2 or Xs.shape[1] != Xt.shape[1]:
        raise ValueError(f"need (n_s, d) and (n_t, d) arrays, got {Xs.shape} and {Xt.shape}")

    def power(c: np.ndarray, p: float) -> np.ndarray:
        w, v = np.linalg.eigh(c)
        return (v * np.clip(w, 1e-12, None) ** p) @ v.T

    eye = np.eye(Xs.shape[1])
    cs = np.cov(Xs, rowvar=False) + eps * eye
    ct = np.cov(Xt, rowvar=False) + eps * eye
    return Xs @ power(cs, -0.5) @ power(ct, 0.5)


class DomainAdaptationNet(nn.Module):
    """Feature extractor, label classifier and domain classifier (the DANN architecture).

    Args:
        in_features: Input size (64 for 8x8 digits).
        hidden: Width of the two hidden layers of the feature extractor.
        n_features: Size of the features both domains share.
        n_classes: Number of labels.
    """

    def __init__(self, in_features: int = 64, hidden: int = 256, n_features: int = 64, n_classes: int = 10,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, n_features), nn.ReLU())
        self.classifier = nn.Linear(n_features, n_classes)
        self.domain = nn.Sequential(nn.Linear(n_features, 128), nn.ReLU(), nn.Linear(128, 1))
        self.reverse = GradientReversal(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, n_classes)``."""
        return self.classifier(self.features(x))

    def domain_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Source-vs-target logits ``(B,)`` through the gradient reversal layer."""
        return self.domain(self.reverse(features)).squeeze(1)


def train_domain_adaptation(model: DomainAdaptationNet, method: str, xs: torch.Tensor, ys: torch.Tensor,
                            xt: torch.Tensor, yt: torch.Tensor | None = None, *, epochs: int = 30,
                            batch_size: int = 128, lr: float = 1e-3, weight: float = 1.0, seed: int = 0,
                            eval_data: tuple[torch.Tensor, torch.Tensor] | None = None, patience: int | None = None,
                            device: torch.device | str | None = None, progress: bool = True) -> History:
    """Train ``model`` on labelled source data and unlabelled target data.

    Args:
        model: A :class:`DomainAdaptationNet` (trained in place).
        method: ``"source_only"`` (target data ignored), ``"dann"``, ``"coral"``, ``"mmd"``, or
            ``"target"`` (trains on the *target* labels ``yt``: the upper bound, not adaptation).
        xs, ys: Source inputs ``(n_s, d)`` and labels.
        xt: Target inputs ``(n_t, d)``; their labels are never used for training, except by
            ``method="target"``.
        yt: Target labels, used only to report ``target_acc`` per epoch (and by ``"target"``).
        eval_data: Held-out labelled target data ``(x, y)`` on which ``target_acc`` is measured
            (default: ``xt, yt``). Required by ``"target"``: an upper bound measured on the
            images it trained on would be training accuracy, so images shared with ``xt``
            raise a ``ValueError``.
        epochs: Passes over the source data; each source batch is paired with a target batch.
        weight: Weight of the alignment loss (the final ``lambda`` for DANN, reached with
            :func:`dann_lambda`; a constant for CORAL and MMD).
        patience: Train to convergence: ``epochs`` is then the most, and training stops when
            the classification loss on the source has not fallen for ``patience`` epochs
            (:class:`~mlcourse.training.LossPlateau`; no target label decides it). DANN
            runs its ``lambda`` schedule over all ``epochs``: it is *converged* when its loss
            stopped falling at some point of it (it does not stop early).

    Returns:
        The :class:`~mlcourse.training.History`, per epoch: ``epoch``, ``class_loss``,
        ``align_loss`` (domain / CORAL / MMD), ``source_acc`` and ``target_acc``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if method == "target":
        if yt is None:
            raise ValueError("method='target' trains on the target labels: pass yt")
        if eval_data is None:
            raise ValueError("method='target' is an upper bound only on target images it did not train on: "
                             "pass eval_data=(x_test, y_test), held out from xt")
        shared = _shared_rows(xt, eval_data[0])
        if shared:
            raise ValueError(f"{shared} of the {len(eval_data[0])} evaluation images are also training images (xt): "
                             "hold them out (e.g. mlcourse.data.base.split_per_class)")
        xs, ys = xt, yt
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} source inputs but {len(ys)} labels")
    device = get_device(device)
    model.to(device).train()
    xs, ys, xt = xs.to(device), ys.to(device), xt.to(device)
    yt = None if yt is None else yt.to(device)
    x_eval, y_eval = (xt, yt) if eval_data is None else (eval_data[0].to(device), eval_data[1].to(device))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, math.ceil(len(xs) / batch_size))
    total_steps = epochs * steps_per_epoch
    history = History()
    step = 0

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        nonlocal step, c_sum, a_sum
        t_idx = torch.randint(len(xt), (len(idx),), generator=gen).to(device)
        f_s = model.features(xs[idx])
        loss = F.cross_entropy(model.classifier(f_s), ys[idx])
        c_sum += loss.item()
        align = torch.zeros((), device=device)
        if method in ("dann", "coral", "mmd"):
            f_t = model.features(xt[t_idx])
            if method == "dann":
                model.reverse.lambda_ = weight * dann_lambda(step / total_steps)
                logits = model.domain_logits(torch.cat([f_s, f_t]))
                domain = torch.cat([torch.ones(len(f_s)), torch.zeros(len(f_t))]).to(device)
                align = F.binary_cross_entropy_with_logits(logits, domain)
                loss = loss + align  # the reversal layer scales and flips its gradient
            else:
                align = (coral_loss if method == "coral" else mmd_loss)(f_s, f_t)
                loss = loss + weight * align
        a_sum += align.item()
        step += 1
        return loss

    rule, early = LossPlateau(patience), False
    for epoch in tqdm(range(epochs), desc=method, disable=not progress):
        order = torch.randperm(len(xs), generator=gen).to(device)
        c_sum = a_sum = 0.0
        train_epoch(opt, [(order[i * batch_size:(i + 1) * batch_size],) for i in range(steps_per_epoch)], loss_of)
        history.log(epoch=epoch + 1, class_loss=c_sum / steps_per_epoch, align_loss=a_sum / steps_per_epoch,
                    source_acc=accuracy(model, xs, ys),
                    target_acc=accuracy(model, x_eval, y_eval) if y_eval is not None else float("nan"))
        if rule.update(c_sum / steps_per_epoch):
            early = True
            if method != "dann":  # DANN runs its lambda schedule to the end
                break
    history.stopped = rule.verdict(early)
    return history


def _shared_rows(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many rows of ``b`` are also rows of ``a`` (exact copies)."""
    seen = {row.tobytes() for row in a.detach().cpu().reshape(len(a), -1).numpy()}
    return sum(row.tobytes() in seen for row in b.detach().cpu().reshape(len(b), -1).numpy())

"""Calibration: does a confidence of 0.9 mean right 9 times in 10?

A classifier is *calibrated* when, among the predictions made with confidence ``p`` (the largest
softmax probability), a fraction ``p`` is right. The **expected calibration error** (ECE) bins the
predictions by confidence and averages, weighted by the bins' sizes, the gap between each bin's
accuracy and its mean confidence (Guo, Pleiss, Sun and Weinberger, ICML 2017):

.. math::
    \\mathrm{ECE} = \\sum_b \\frac{|B_b|}{n}\\, \\big|\\mathrm{acc}(B_b) - \\mathrm{conf}(B_b)\\big|.

**Temperature scaling** divides every logit by one number :math:`T > 0` before the softmax,
chosen to minimise the negative log-likelihood on held-out data. It never changes which class
is predicted (the argmax), only how confident the prediction is; for a few-shot learner it is
fitted on validation episodes, whose classes are disjoint from the test classes as well.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["expected_calibration_error", "fit_temperature", "episode_scores"]


def expected_calibration_error(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                               n_bins: int = 15) -> float:
    """ECE of predicted probabilities ``(n, n_classes)`` against labels ``(n,)``, with ``n_bins`` equal-width bins.

    Returns a number in [0, 1]: 0 when every bin's accuracy equals its mean confidence.
    """
    probs = torch.as_tensor(probs, dtype=torch.float64)
    labels = torch.as_tensor(labels, device=probs.device)
    if probs.dim() != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"probs must be (n, n_classes) and labels (n,) with n > 0, got {tuple(probs.shape)} "
                         f"and {tuple(labels.shape)}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).double()
    # bin b holds confidences in (b / n_bins, (b + 1) / n_bins]; a confidence of exactly 0 goes to the first
    bins = torch.clamp(torch.ceil(confidence * n_bins).long() - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            ece += float(inside.double().mean() * (correct[inside].mean() - confidence[inside].mean()).abs())
    return ece


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, max_iter: int = 100) -> float:
    """The temperature ``T`` that minimises the mean NLL of ``softmax(logits / T)`` on ``(logits, labels)``.

    Fitted on ``log T`` with L-BFGS (so ``T`` stays positive), starting from ``T = 1``.
    """
    logits = torch.as_tensor(logits).detach().double()
    labels = torch.as_tensor(labels, device=logits.device)
    if logits.dim() != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"logits must be (n, n_classes) and labels (n,) with n > 0, got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return float(log_t.detach().exp())


@torch.no_grad()
def episode_scores(learner, dataset, *, n_way: int = 5, k_shot: int = 1, n_query: int = 15, n_episodes: int = 100,
                   seed: int = 0, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The query scores ``(n_episodes * n_way * n_query, n_way)`` of an embedding learner and their labels.

    The episodes are those of :func:`~mlcourse.evaluation.evaluate` with the same ``seed``.
    """
    from .device import get_device
    from .episodes import check_episode_request, labels_of
    from .evaluation import episode_score_stream, eval_mode

    if not (callable(getattr(learner, "embed", None)) and callable(getattr(learner, "scores", None))):
        raise TypeError(f"episode_scores needs an embedding learner (with embed and scores, e.g. ProtoNet); "
                        f"{type(learner).__name__} has no scores of its own")
    device = get_device(device)
    check_episode_request(labels_of(dataset), n_way, k_shot, n_query)
    query_y = torch.arange(n_way).repeat_interleave(n_query)
    with eval_mode(learner):
        scores = [s.cpu() for s in episode_score_stream(learner, dataset, n_way=n_way, k_shot=k_shot, n_query=n_query,
                                                        n_episodes=n_episodes, rng=np.random.default_rng(seed),
                                                        device=device)]
    return torch.cat(scores), query_y.repeat(n_episodes)

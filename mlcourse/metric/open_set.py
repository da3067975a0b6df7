"""Knowing what you don't know: detecting queries from classes outside the episode.

A closed-set few-shot classifier always answers one of the N support classes, even for an
image of a class it was never shown. An *open-set* episode adds queries from N other
classes; a rejection score (higher = "none of these") should rank them above the queries
of the support classes. We measure that ranking with the area under the ROC curve (AUROC:
0.5 is chance, 1.0 perfect), per episode, averaged with a 95% confidence interval.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import Dataset

from ..device import get_device
from ..episodes import labels_of, sample_episode_indices
from ..evaluation import accuracy_ci, embed_dataset, eval_mode
from .base import FewShotClassifier

__all__ = ["REJECTION_SCORES", "open_set_evaluation"]

REJECTION_SCORES = {
    # minus the best score: for ProtoNet the squared distance to the nearest prototype
    "nearest_distance": lambda s: -s.max(dim=1).values,
    # one minus the largest softmax probability (Hendrycks and Gimpel, 2017)
    "max_softmax": lambda s: 1 - torch.softmax(s, dim=1).max(dim=1).values,
}
"""Rejection scores by name (higher means "none of the support classes")."""


@torch.no_grad()
def open_set_evaluation(model: FewShotClassifier, dataset: Dataset, *, n_way: int = 5, k_shot: int = 1,
                        n_query: int = 15, n_episodes: int = 600, seed: int = 0,
                        device: torch.device | str | None = None,
                        embeddings: torch.Tensor | None = None, temperature: float | None = None) -> dict[str, dict]:
    """AUROC of rejection scores at telling unseen-class queries from support-class queries.

    Each episode draws ``2 * n_way`` classes: the support set comes from the first ``n_way``;
    ``n_query`` queries come from each of the ``2 * n_way`` classes, half of them unknown.
    ``embeddings`` (from ``embed_dataset(model, dataset)``) skips embedding the data again.
    ``temperature`` (e.g. from :func:`mlcourse.calibration.fit_temperature` on validation
    episodes) adds the score ``"max_softmax_calibrated"``: one minus the largest probability of
    ``softmax(scores / temperature)``, the max-softmax baseline after temperature scaling.

    Returns:
        A dict with one entry per rejection score, each a dict of ``auroc`` (the mean), ``ci``
        (its half-width), ``per_episode`` (each episode's AUROC), ``scores`` (all scores) and
        ``unknown`` (all 0/1 labels); the last two are for an ROC plot. The scores are measured
        on the same episodes, so their ``per_episode`` values pair up.
    """
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    rules = dict(REJECTION_SCORES)
    if temperature is not None:
        rules["max_softmax_calibrated"] = lambda s: 1 - torch.softmax(s / temperature, dim=1).max(dim=1).values
    device = get_device(device)
    z = embeddings if embeddings is not None else embed_dataset(model, dataset, device=device)
    labels = labels_of(dataset)
    rng = np.random.default_rng(seed)
    results = {name: {"per_episode": [], "scores": [], "unknown": []} for name in rules}
    support_y = torch.arange(n_way, device=device).repeat_interleave(k_shot)
    for _ in range(n_episodes):
        s, q, _ = sample_episode_indices(labels, 2 * n_way, k_shot, n_query, rng)
        s = s[: n_way * k_shot]  # support only from the known half
        unknown = np.repeat(np.arange(2 * n_way) >= n_way, n_query).astype(int)
        with eval_mode(model):
            scores = model.scores(z[torch.as_tensor(s, device=device)], support_y, z[torch.as_tensor(q, device=device)],
                                  n_way)
        for name, fn in rules.items():
            r = fn(scores).cpu().numpy()
            results[name]["per_episode"].append(roc_auc_score(unknown, r))
            results[name]["scores"].append(r)
            results[name]["unknown"].append(unknown)
    out = {}
    for name, res in results.items():
        mean, half = accuracy_ci(res["per_episode"])
        out[name] = {"auroc": mean, "ci": half, "per_episode": np.asarray(res["per_episode"]),
                     "scores": np.concatenate(res["scores"]),
                     "unknown": np.concatenate(res["unknown"])}
    return out

"""Evaluating few-shot learners: one evaluator, its result, and a paired comparison.

Few-shot papers report the mean query accuracy over a fixed set of test episodes (often
600) with the half-width of a 95% confidence interval of that mean, ``1.96 * s / sqrt(n)``
with ``s`` the sample standard deviation (ddof=1). :func:`evaluate` draws the episodes from
a seed, so two learners evaluated with the same seed answer *the same* episodes; the right
way to compare them is then :func:`paired_difference`, the mean of the per-episode
differences with its own interval (much narrower than either interval alone when the two
learners find the same episodes hard). Two intervals that overlap do not show that two
methods are equal, nor two that do not overlap that they differ on other episodes or seeds:
these intervals cover the episode sampling of one trained model, not the training seed.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .device import get_device
from .episodes import Episode, check_episode_request, draw_episode, images_of, labels_of, sample_episode_indices
from .progress import tqdm

__all__ = ["accuracy_ci", "EvalResult", "Difference", "evaluate", "paired_difference", "eval_mode", "embed_dataset",
           "query_dependence", "episode_score_stream",
           "accuracy", "correct"]

Z_95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)


def _mean_ci(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(Z_95 * values.std(ddof=1) / np.sqrt(values.size))


def accuracy_ci(accuracies: np.ndarray | torch.Tensor | list[float]) -> tuple[float, float]:
    """Mean and 95% confidence half-width of per-episode accuracies.

    Args:
        accuracies: Accuracy of each episode, values in [0, 1], shape ``(n_episodes,)``.

    Returns:
        ``(mean, half_width)`` with ``half_width = 1.96 * std(ddof=1) / sqrt(n)``.

    Raises:
        ValueError: With fewer than two episodes (no spread can be estimated), or values
            outside [0, 1] or not finite.
    """
    acc = np.asarray(accuracies.detach().cpu() if isinstance(accuracies, torch.Tensor) else accuracies,
                     dtype=np.float64)
    if acc.ndim != 1:
        raise ValueError(f"accuracies must be one-dimensional (one value per episode), got shape {acc.shape}")
    if acc.size < 2:
        raise ValueError(f"need at least 2 episodes to estimate a confidence interval, got {acc.size}")
    if not np.all(np.isfinite(acc)) or acc.min() < 0 or acc.max() > 1:
        raise ValueError("accuracies must be finite values in [0, 1] (fractions, not percentages)")
    return _mean_ci(acc)


@dataclass(frozen=True)
class EvalResult:
    """Accuracy over a fixed set of test episodes.

    Attributes:
        mean: Mean query accuracy, in [0, 1].
        half_width: Half-width of its 95% confidence interval.
        per_episode: Accuracy of each episode ``(n_episodes,)``, in the order drawn.
        seed: Seed of the episodes: the same seed, shape and data give the same episodes.
        shape: ``(n_way, k_shot, n_query)`` of the episodes.
    """

    mean: float
    half_width: float
    per_episode: np.ndarray = field(repr=False)
    seed: int
    shape: tuple[int, int, int]

    @classmethod
    def from_accuracies(cls, per_episode: np.ndarray, *, seed: int, shape: tuple[int, int, int]) -> "EvalResult":
        mean, half = accuracy_ci(per_episode)
        return cls(mean, half, np.asarray(per_episode, dtype=np.float64), int(seed), tuple(int(v) for v in shape))

    def __str__(self) -> str:
        return f"{100 * self.mean:.1f} ± {100 * self.half_width:.1f}%"


@dataclass(frozen=True)
class Difference:
    """``a - b`` over identical episodes: the mean per-episode difference and its 95% half-width."""

    mean: float
    half_width: float
    n_episodes: int

    @property
    def settled(self) -> bool:
        """True when the interval excludes zero (on these episodes, for these trained models)."""
        return abs(self.mean) > self.half_width

    def __str__(self) -> str:
        return f"{100 * self.mean:+.1f} ± {100 * self.half_width:.1f} points"


def paired_difference(a: EvalResult, b: EvalResult) -> Difference:
    """Compare two results on the same episodes: mean of ``a - b`` per episode, with its 95% interval.

    Raises:
        ValueError: If the two results were not measured on the same episodes (other seed,
            shape or number of episodes).
    """
    if (a.seed, a.shape, a.per_episode.size) != (b.seed, b.shape, b.per_episode.size):
        raise ValueError(f"a paired comparison needs identical episodes; got seed {a.seed} vs {b.seed}, "
                         f"shape {a.shape} vs {b.shape}, {a.per_episode.size} vs {b.per_episode.size} episodes: "
                         "evaluate both with the same seed, shape and n_episodes")
    mean, half = _mean_ci(a.per_episode - b.per_episode)
    return Difference(mean, half, int(a.per_episode.size))


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode inside the block and restore *every* submodule's mode after it.

    Restoring each submodule (rather than calling ``train()``) keeps frozen BatchNorm layers
    in eval mode (:func:`mlcourse.transfer.finetune.train_mode`).
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode


@torch.no_grad()
def embed_dataset(model: nn.Module, dataset: Dataset, *, batch_size: int = 512,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """``model.embed`` of every example of ``dataset`` in eval mode, ``(N, ...)`` on ``device``."""
    device = get_device(device)
    with eval_mode(model):
        return torch.cat([model.embed(images_of(dataset, range(start, min(start + batch_size, len(dataset))))
                                      .to(device)) for start in range(0, len(dataset), batch_size)])


Predictor = Callable[[Episode], torch.Tensor]


def episode_score_stream(learner: nn.Module, dataset: Dataset, *, n_way: int, k_shot: int, n_query: int,
                         n_episodes: int, rng: np.random.Generator, device: torch.device | str,
                         embeddings: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """The query scores ``(n_way * n_query, n_way)`` of an embedding learner, episode after episode.

    The data set is embedded once (unless ``embeddings`` are given); each episode's indices are
    drawn from ``rng``, as :func:`evaluate` draws them, so a generator seeded alike gives the
    episodes of :func:`evaluate`. The caller puts the learner in eval mode.
    """
    labels = labels_of(dataset)
    z = embeddings if embeddings is not None else embed_dataset(learner, dataset, device=device)
    support_y = torch.arange(n_way, device=device).repeat_interleave(k_shot)
    for _ in range(n_episodes):
        s, q, _ = sample_episode_indices(labels, n_way, k_shot, n_query, rng)
        yield learner.scores(z[torch.as_tensor(s, device=device)], support_y, z[torch.as_tensor(q, device=device)],
                             n_way)


@torch.no_grad()
def evaluate(learner: nn.Module | Predictor, dataset: Dataset, *, n_way: int, k_shot: int, n_query: int = 15,
             n_episodes: int = 600, seed: int = 0, device: torch.device | str | None = None,
             embeddings: torch.Tensor | None = None, progress: bool = False, **predict_options) -> EvalResult:
    """Query accuracy of ``learner`` over ``n_episodes`` test episodes drawn from ``seed``.

    Args:
        learner: A learner (:class:`~mlcourse.learner.Learner`), or any function from an
            :class:`~mlcourse.episodes.Episode` to predicted query labels (a baseline).
        dataset: Test data (e.g. FontGlot evaluation).
        n_way, k_shot, n_query: The episode shape.
        n_episodes: Number of test episodes (600 by convention).
        seed: Seed of the episodes: the same seed gives every learner the same episodes.
        embeddings: ``embed_dataset(learner, dataset)`` computed already (reused across shapes).
            Learners with ``embed`` and ``scores`` are embedded once anyway.
        progress: Show a progress bar.
        **predict_options: Passed to ``learner.predict`` (e.g. ``inner_steps=10`` for MAML).

    Returns:
        An :class:`EvalResult`. The learner is in eval mode during the evaluation and its
        modes are restored after it.
    """
    device = get_device(device)
    labels = labels_of(dataset)
    check_episode_request(labels, n_way, k_shot, n_query)
    rng = np.random.default_rng(seed)
    query_y = torch.arange(n_way, device=device).repeat_interleave(n_query)
    embedded = isinstance(learner, nn.Module) and callable(getattr(learner, "embed", None)) \
        and callable(getattr(learner, "scores", None)) and not predict_options
    accs = np.empty(n_episodes)
    with eval_mode(learner) if isinstance(learner, nn.Module) else contextlib.nullcontext():
        if embedded:
            preds = (s.argmax(dim=1) for s in episode_score_stream(learner, dataset, n_way=n_way, k_shot=k_shot,
                                                                    n_query=n_query, n_episodes=n_episodes, rng=rng,
                                                                    device=device, embeddings=embeddings))
        else:
            predict = learner.predict if isinstance(learner, nn.Module) else learner
            preds = (torch.as_tensor(predict(draw_episode(dataset, n_way=n_way, k_shot=k_shot, n_query=n_query,
                                                          rng=rng, labels=labels).to(device), **predict_options),
                                     device=device) for _ in range(n_episodes))
        for i, pred in enumerate(tqdm(preds, total=n_episodes, desc="evaluating", disable=not progress, leave=False)):
            if pred.shape != query_y.shape:
                raise ValueError(f"predict returned shape {tuple(pred.shape)}, expected {tuple(query_y.shape)} "
                                 "(one label per query)")
            accs[i] = (pred == query_y).float().mean().item()
    return EvalResult.from_accuracies(accs, seed=seed, shape=(n_way, k_shot, n_query))


@torch.no_grad()
def query_dependence(learner: nn.Module, dataset: Dataset, *, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                     n_episodes: int = 20, seed: int = 0, device: torch.device | str | None = None,
                     **predict_options) -> float:
    """How often a query's predicted label changes when the episode's *other* queries are taken away.

    For each of ``n_episodes`` episodes, the queries are predicted together, then each one
    alone with the same support set. An inductive learner, whose answer for a query depends
    only on the support set and that query, gives 0. A learner that normalises with the
    statistics of the query batch (the MAML family, as in the reference code) is transductive
    and gives more: its answers move when the queries beside them change.

    Returns:
        The fraction of query predictions that changed, in [0, 1].
    """
    device = get_device(device)
    labels = labels_of(dataset)
    check_episode_request(labels, n_way, k_shot, n_query)
    rng = np.random.default_rng(seed)
    changed, total = 0, 0
    with eval_mode(learner):
        for _ in range(n_episodes):
            episode = draw_episode(dataset, n_way=n_way, k_shot=k_shot, n_query=n_query, rng=rng,
                                   labels=labels).to(device)
            together = learner.predict(episode, **predict_options)
            for i in range(len(episode.query_y)):
                alone = Episode(episode.support_x, episode.support_y, episode.query_x[i:i + 1],
                                episode.query_y[i:i + 1], episode.classes)
                changed += int(learner.predict(alone, **predict_options)[0] != together[i])
                total += 1
    return changed / total


@torch.no_grad()
def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512,
            device: torch.device | str | None = None) -> np.ndarray:
    """Whether ``model`` labels each input of ``x`` with its ``y`` (a boolean array; plain classification, eval mode).

    Two models scored on the same ``(x, y)`` are compared image by image (a paired test).
    """
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    device = get_device(device) if device is not None else next(model.parameters()).device
    with eval_mode(model):
        hits = [(model(x[i:i + batch_size].to(device)).argmax(1) == y[i:i + batch_size].to(device)).cpu()
                for i in range(0, len(x), batch_size)]
    return torch.cat(hits).numpy().astype(bool) if hits else np.zeros(0, dtype=bool)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512,
             device: torch.device | str | None = None) -> float:
    """Fraction of the inputs ``x`` that ``model`` labels ``y`` (plain classification, in eval mode)."""
    if len(x) == 0:
        raise ValueError("no inputs to measure accuracy on")
    return float(correct(model, x, y, batch_size=batch_size, device=device).mean())

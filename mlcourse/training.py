"""Episodic training and evaluation, shared by every few-shot method of the course.

A model plugs in by providing ``episode_loss(episode) -> (loss, scores)`` for training
and, for fast evaluation, ``embed(x)`` and ``scores(support_z, support_y, query_z, n_way)``
(see :class:`~mlcourse.metric.base.FewShotClassifier`). Evaluation embeds the whole test
set once (BatchNorm in eval mode) and then draws episodes from the embeddings, so 600
test episodes cost little more than one pass over the data.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from .progress import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .device import get_device
from .episodes import EpisodeSampler, labels_of, sample_episode_indices
from .evaluation import accuracy_ci

__all__ = ["TrainHistory", "train_episodic", "embed_dataset", "evaluate_model"]


@dataclass
class TrainHistory:
    """What happened during training: losses and accuracies per logged episode."""

    episode: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_episode: list[int] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    val_ci: list[float] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_episode: int = 0
    seconds: float = 0.0


@torch.no_grad()
def embed_dataset(model: nn.Module, dataset: Dataset, batch_size: int = 512,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Embeddings of every example of ``dataset`` in eval mode, ``(N, ...)`` on ``device``."""
    device = get_device(device)
    was_training = model.training
    model.eval()
    images = getattr(dataset, "images", None)
    out = []
    for start in range(0, len(dataset), batch_size):
        stop = min(start + batch_size, len(dataset))
        if images is not None and getattr(dataset, "transform", None) is None:
            x = images[start:stop].unsqueeze(1).float().div_(255.0)
        else:
            x = torch.stack([dataset[i][0] for i in range(start, stop)])
        out.append(model.embed(x.to(device)))
    model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, n_way: int, k_shot: int, n_query: int = 15,
                   n_episodes: int = 600, seed: int = 0, device: torch.device | str | None = None,
                   embeddings: torch.Tensor | None = None) -> tuple[float, float, np.ndarray]:
    """Mean query accuracy and 95% half-width over a fixed set of test episodes.

    Args:
        model: A few-shot classifier with ``embed`` and ``scores``.
        dataset: Test data (e.g. FontGlot evaluation).
        n_way, k_shot, n_query: The episode shape.
        n_episodes: Number of test episodes (600 by convention).
        seed: Seed of the episodes: the same seed gives every model the same tasks.
        embeddings: Precomputed ``embed_dataset(model, dataset)``, to reuse across settings.

    Returns:
        ``(mean, half_width, per_episode_accuracy)``.
    """
    device = get_device(device)
    z = embeddings if embeddings is not None else embed_dataset(model, dataset, device=device)
    labels = labels_of(dataset)
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    accs = np.empty(n_episodes)
    for i in range(n_episodes):
        s, q, _ = sample_episode_indices(labels, n_way, k_shot, n_query, rng)
        support_y = torch.arange(n_way, device=device).repeat_interleave(k_shot)
        query_y = torch.arange(n_way, device=device).repeat_interleave(n_query)
        pred = model.scores(z[torch.as_tensor(s, device=device)], support_y, z[torch.as_tensor(q, device=device)],
                            n_way).argmax(dim=1)
        accs[i] = (pred == query_y).float().mean().item()
    model.train(was_training)
    mean, half = accuracy_ci(accs)
    return mean, half, accs


def _signature(n_way: int, k_shot: int, n_query: int, n_episodes: int, lr: float, seed: int) -> dict:
    return dict(n_way=n_way, k_shot=k_shot, n_query=n_query, n_episodes=n_episodes, lr=lr, seed=seed)


def train_episodic(model: nn.Module, train_set: Dataset, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                   n_episodes: int = 2000, lr: float = 1e-3, val_set: Dataset | None = None, val_every: int = 250,
                   val_episodes: int = 100, checkpoint: str | os.PathLike | None = None, seed: int = 0,
                   device: torch.device | str | None = None, progress: bool = True) -> TrainHistory:
    """Train ``model`` on ``n_episodes`` episodes with Adam; keep the best validation checkpoint.

    Every ``val_every`` episodes the model is evaluated on ``val_episodes`` validation
    episodes (same way and shot); the weights with the best validation accuracy are kept and,
    when training ends, loaded back into ``model``. With ``checkpoint``, the full state
    (weights, optimiser, episode counter, history, best weights) is saved at every validation
    and training resumes from it after an interruption, continuing the same episode stream.

    Args:
        model: Has ``episode_loss(episode) -> (loss, scores)``; ``embed``/``scores`` for validation.
        train_set: Meta-training data (e.g. FontGlot background).
        n_way, k_shot, n_query: The episode shape.
        n_episodes: Training episodes in all (including those done before a resume).
        lr: Adam learning rate.
        val_set: Validation data; without it the final weights are kept.
        val_every: Episodes between validations.
        val_episodes: Episodes per validation.
        checkpoint: File to save to and resume from.
        seed: Seed of the episode stream (seed the weights' initialisation yourself).
        device: Where to train (default :func:`~mlcourse.device.get_device`).
        progress: Show a tqdm progress bar with the running loss and accuracy.

    Returns:
        The :class:`TrainHistory`.
    """
    import time

    device = get_device(device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history, start, best_state = TrainHistory(), 0, None
    signature = _signature(n_way, k_shot, n_query, n_episodes, lr, seed)
    state = load_checkpoint(checkpoint, signature, map_location=device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, start, best_state = TrainHistory(**state["history"]), state["episode"], state["best_state"]

    def save(episode: int) -> None:
        save_checkpoint(checkpoint, signature, model=model.state_dict(), optimizer=optimizer.state_dict(),
                        episode=episode, history=asdict(history), best_state=best_state)

    sampler = EpisodeSampler(train_set, n_way, k_shot, n_query, n_tasks=n_episodes, seed=seed)
    stream = iter(sampler)
    for _ in range(start):  # skip what an earlier run already trained on
        next(stream)
    model.train()
    t0, window_loss, window_acc = time.perf_counter(), [], []
    bar = tqdm(range(start, n_episodes), initial=start, total=n_episodes, desc="training", disable=not progress)
    for episode_index in bar:
        episode = sampler.collate([train_set[i] for i in next(stream)]).to(device)
        loss, scores = model.episode_loss(episode)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window_loss.append(loss.item())
        window_acc.append((scores.argmax(1) == episode.query_y).float().mean().item())
        done = episode_index + 1
        if done % 50 == 0 or done == n_episodes:
            history.episode.append(done)
            history.train_loss.append(float(np.mean(window_loss)))
            history.train_acc.append(float(np.mean(window_acc)))
            bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", acc=f"{history.train_acc[-1]:.2f}")
            window_loss, window_acc = [], []
        if val_set is not None and (done % val_every == 0 or done == n_episodes):
            mean, half, _ = evaluate_model(model, val_set, n_way, k_shot, n_query, val_episodes, seed=seed + 1,
                                           device=device)
            history.val_episode.append(done)
            history.val_acc.append(mean)
            history.val_ci.append(half)
            if mean > history.best_val_acc:
                history.best_val_acc, history.best_episode = mean, done
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.train()
        if done % val_every == 0 or done == n_episodes:
            history.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save(done)
    if best_state is not None:
        model.load_state_dict(best_state)
    return history

"""Meta-training and evaluation for the optimization-based learners (MAML, FOMAML, Meta-SGD, Reptile).

``meta_train`` draws a meta-batch of tasks per outer step, either N-way K-shot episodes
from a labelled data set (FontGlot background) or tasks from a distribution with
``sample_tasks(n, rng)`` (:class:`~mlcourse.data.sinusoid.Sinusoids`). The tasks of step
``t`` depend only on ``(seed, t)``, so a run resumed from its checkpoint sees exactly the
tasks an uninterrupted run would.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict

import numpy as np
import torch
from torch.utils.data import Dataset
from ..progress import tqdm

from ..checkpoint import load_checkpoint, save_checkpoint
from ..device import get_device
from ..episodes import Episode, check_episode_request, labels_of, sample_episode_indices
from ..evaluation import accuracy_ci
from ..training import TrainHistory
from .maml import MAML

__all__ = ["meta_train", "evaluate_learner", "draw_episode"]


def _images(dataset: Dataset, idx: np.ndarray) -> torch.Tensor:
    images = getattr(dataset, "images", None)
    if images is not None and getattr(dataset, "transform", None) is None:
        return images[torch.as_tensor(idx)].unsqueeze(1).float().div_(255.0)
    return torch.stack([dataset[int(i)][0] for i in idx])


def draw_episode(dataset: Dataset, labels: np.ndarray, n_way: int, k_shot: int, n_query: int,
                 rng: np.random.Generator) -> Episode:
    """One episode of ``dataset`` drawn with ``rng`` (see :func:`~mlcourse.episodes.sample_episode_indices`)."""
    s, q, classes = sample_episode_indices(labels, n_way, k_shot, n_query, rng)
    return Episode(_images(dataset, s), torch.arange(n_way).repeat_interleave(k_shot), _images(dataset, q),
                   torch.arange(n_way).repeat_interleave(n_query), torch.as_tensor(classes))


def _tasks(source, labels, n_way, k_shot, n_query, n, rng):
    if hasattr(source, "sample_tasks"):
        return source.sample_tasks(n, rng)
    if not isinstance(k_shot, (int, np.integer)):  # a shot count per meta-batch, drawn from the given ones
        k_shot = int(rng.choice(k_shot))
    return [draw_episode(source, labels, n_way, k_shot, n_query, rng) for _ in range(n)]


def _shot_list(k_shot) -> list[int]:
    try:
        shots = [k_shot] if isinstance(k_shot, (int, np.integer)) else list(k_shot)
    except TypeError:
        shots = [k_shot]
    if not shots or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1 for k in shots):
        raise ValueError(f"k_shot must be a positive int or a non-empty sequence of them, got {k_shot!r}")
    return [int(k) for k in shots]


@torch.no_grad()
def evaluate_learner(learner: MAML, dataset: Dataset, n_way: int, k_shot: int, n_query: int = 15,
                     n_episodes: int = 600, steps: int | None = None, seed: int = 0,
                     device: torch.device | str | None = None, progress: bool = False) -> tuple[float, float, np.ndarray]:
    """Query accuracy after test-time adaptation, over ``n_episodes`` fixed episodes.

    Args:
        learner: A :class:`~mlcourse.optim.maml.MAML` (or subclass).
        steps: Inner steps at test time (default: the learner's ``inner_steps``).
        seed: Seed of the episodes: the same seed gives every learner the same tasks.

    Returns:
        ``(mean, 95% half-width, per-episode accuracies)``.
    """
    device = get_device(device)
    labels = labels_of(dataset)
    check_episode_request(dict(zip(*np.unique(labels, return_counts=True))), n_way, k_shot, n_query)
    rng = np.random.default_rng(seed)
    accs = np.empty(n_episodes)
    for i in tqdm(range(n_episodes), desc="evaluating", disable=not progress):
        ep = draw_episode(dataset, labels, n_way, k_shot, n_query, rng).to(device)
        accs[i] = (learner.predict(ep, steps) == ep.query_y).float().mean().item()
    mean, half = accuracy_ci(accs)
    return mean, half, accs


def meta_train(learner: MAML, train_set, n_steps: int = 1000, meta_batch: int = 4, outer_lr: float = 1e-3,
               n_way: int = 5, k_shot: int = 1, n_query: int = 15, val_set: Dataset | None = None,
               val_every: int = 100, val_episodes: int = 100, val_steps: int | None = None,
               checkpoint: str | os.PathLike | None = None, seed: int = 0,
               device: torch.device | str | None = None, progress: bool = True,
               optimizer: str = "adam", val_shot: int | None = None) -> TrainHistory:
    """Meta-train ``learner`` for ``n_steps`` outer steps of ``meta_batch`` tasks each.

    Args:
        learner: MAML, MetaSGD, Reptile, or a black-box learner (:mod:`mlcourse.blackbox`): anything
            with ``meta_step(tasks, optimizer)``, ``predict(task, steps)``, ``inner_steps`` and
            ``first_order``.
        train_set: A labelled data set (episodes of ``n_way``/``k_shot``/``n_query`` are drawn)
            or a task distribution with ``sample_tasks(n, rng)``.
        k_shot: Shots per class, or a sequence of shot counts: each meta-batch then draws its
            shot count from it (training one model for several shot counts).
        outer_lr: Outer learning rate (Adam by default; ``optimizer="sgd"`` for Reptile's plain rule).
        val_set: Labelled validation data; every ``val_every`` steps the learner is evaluated
            on ``val_episodes`` episodes (``val_shot`` shots, by default the largest of ``k_shot``)
            with ``val_steps`` inner steps, and the best weights
            are kept and loaded back at the end.
        checkpoint: File to save the full state to at each validation and to resume from.
        seed: Seed of the task stream (seed the initial weights yourself).

    Returns:
        The :class:`~mlcourse.training.TrainHistory` (``episode`` counts outer steps).
    """
    device = get_device(device)
    learner.to(device)
    if optimizer == "adam":
        opt = torch.optim.Adam(learner.parameters(), lr=outer_lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(learner.parameters(), lr=outer_lr)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    labels = None if hasattr(train_set, "sample_tasks") else labels_of(train_set)
    if labels is not None:
        check_episode_request(dict(zip(*np.unique(labels, return_counts=True))), n_way, max(_shot_list(k_shot)),
                              n_query)
    shots = _shot_list(k_shot)
    val_shot = max(shots) if val_shot is None else val_shot
    signature = dict(learner=type(learner).__name__, n_steps=n_steps, meta_batch=meta_batch, outer_lr=outer_lr,
                     n_way=n_way, k_shot=shots if len(shots) > 1 else shots[0], n_query=n_query, seed=seed,
                     inner_steps=learner.inner_steps, first_order=learner.first_order)
    history, start, best_state = TrainHistory(), 0, None
    state = load_checkpoint(checkpoint, signature, map_location=device)
    if state is not None:
        learner.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history, start, best_state = TrainHistory(**state["history"]), state["step"], state["best_state"]

    def save(step: int) -> None:
        save_checkpoint(checkpoint, signature, model=learner.state_dict(), optimizer=opt.state_dict(), step=step,
                        history=asdict(history), best_state=best_state)

    learner.train()
    t0, window_loss, window_acc = time.perf_counter(), [], []
    log_every = max(1, min(50, n_steps // 20))
    bar = tqdm(range(start, n_steps), initial=start, total=n_steps, desc=type(learner).__name__,
               disable=not progress)
    for step in bar:
        rng = np.random.default_rng([seed, step])
        tasks = [t.to(device) for t in _tasks(train_set, labels, n_way, k_shot, n_query, meta_batch, rng)]
        loss, outs = learner.meta_step(tasks, opt)
        window_loss.append(loss)
        if labels is not None:
            window_acc.append(float(np.mean([(o.argmax(-1) == t.query_y).float().mean().item()
                                             for o, t in zip(outs, tasks)])))
        done = step + 1
        if done % log_every == 0 or done == n_steps:
            history.episode.append(done)
            history.train_loss.append(float(np.mean(window_loss)))
            history.train_acc.append(float(np.mean(window_acc)) if window_acc else float("nan"))
            bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}")
            window_loss, window_acc = [], []
        if val_set is not None and (done % val_every == 0 or done == n_steps):
            mean, half, _ = evaluate_learner(learner, val_set, n_way, val_shot, n_query, val_episodes, val_steps,
                                             seed=seed + 1, device=device)
            history.val_episode.append(done)
            history.val_acc.append(mean)
            history.val_ci.append(half)
            if mean > history.best_val_acc:
                history.best_val_acc, history.best_episode = mean, done
                best_state = {k: v.detach().clone() for k, v in learner.state_dict().items()}
            learner.train()
        if done % val_every == 0 or done == n_steps:
            history.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save(done)
    if best_state is not None:
        learner.load_state_dict(best_state)
    return history

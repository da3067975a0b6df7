"""The one training loop of the course, its history, and the epoch helper of supervised training.

:func:`meta_train` trains any :class:`~mlcourse.learner.Learner`: metric, black-box and
optimization-based alike. At outer step ``t`` it draws a meta-batch of tasks that depends
only on ``(seed, t)`` (:class:`TaskStream`), and it seeds PyTorch's generator from
``(seed, t)`` before the step (for the learner's own randomness: dropout, shuffled support
sets), so a run resumed from its checkpoint repeats an uninterrupted run exactly, without
replaying the stream. It logs the training
loss, validates every ``val_every`` steps, keeps the best weights and saves the full state.

:func:`train_epoch` is the inner pass of the supervised loops (pre-training, fine-tuning,
distillation, domain adaptation): one optimizer step per batch. :class:`LossPlateau` is
their stopping rule when they are trained to convergence (``patience=``): the training loss
has stopped falling.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from .checkpoint import RunState
from .device import get_device
from .distributed import AveragedOptimizer, all_mean, average_buffers, broadcast_floats, share, world
from .episodes import Episode, check_episode_request, draw_episode, labels_of
from .evaluation import evaluate
from .learner import check_learner
from .progress import tqdm

__all__ = ["History", "TaskStream", "meta_train", "make_optimizer", "train_epoch", "LossPlateau"]


@dataclass
class History:
    """What a training run recorded: named columns of logged values, the best validation, the time.

    Every loop of the package returns one. :meth:`log` appends to columns; read a column as
    an attribute (``history.loss``, ``history.val_acc``). The episodic loop logs ``step``,
    ``loss``, ``acc`` and, at each validation, ``val_step``, ``val_acc``, ``val_ci`` and
    ``val_seconds`` (seconds spent so far, validations included); the
    supervised loops log ``epoch`` and their own columns.
    """

    columns: dict[str, list] = field(default_factory=dict)
    best_val_acc: float = -1.0
    best_step: int = 0
    seconds: float = 0.0
    stopped: str = ""  # "converged" (the stopping rule) or "budget" (n_steps reached); "" while running
    reference: tuple[float, float] = (-1.0, 0.0)  # (accuracy, half-width) of the last validation that progressed
    stale: int = 0  # validations since then

    def log(self, **values) -> None:
        """Append each value to its column."""
        for name, value in values.items():
            self.columns.setdefault(name, []).append(value)

    def __getattr__(self, name: str) -> list:
        columns = self.__dict__.get("columns", {})
        if name in columns:
            return columns[name]
        raise AttributeError(f"History has no column {name!r}; it has {sorted(columns)}")


class TaskStream:
    """The meta-batches of a run: batch ``t`` depends only on ``(seed, t)``.

    Args:
        source: A labelled data set (N-way K-shot episodes are drawn from it) or a task
            distribution with ``sample_tasks(n, rng)`` (e.g. :class:`~mlcourse.data.sinusoid.Sinusoids`).
        meta_batch_size: Tasks per batch.
        n_way, k_shot, n_query: The episode shape; ``k_shot`` may be a sequence of shot
            counts, one of which each batch draws.
        seed: Seed of the stream.
    """

    def __init__(self, source, *, meta_batch_size: int, n_way: int = 5, k_shot: int | Sequence[int] = 1,
                 n_query: int = 15, seed: int = 0) -> None:
        if isinstance(meta_batch_size, bool) or not isinstance(meta_batch_size, int) or meta_batch_size < 1:
            raise ValueError(f"meta_batch_size must be a positive int, got {meta_batch_size!r}")
        self.source, self.meta_batch_size, self.seed = source, meta_batch_size, int(seed)
        self.n_way, self.n_query = n_way, n_query
        self.shots = _shot_list(k_shot)
        self.episodic = not callable(getattr(source, "sample_tasks", None))
        self.labels = labels_of(source) if self.episodic else None
        if self.episodic:
            check_episode_request(self.labels, n_way, max(self.shots), n_query)

    def batch(self, step: int) -> list[Episode]:
        """The tasks of outer step ``step``."""
        rng = np.random.default_rng([self.seed, step])
        if not self.episodic:
            return list(self.source.sample_tasks(self.meta_batch_size, rng))
        k_shot = self.shots[0] if len(self.shots) == 1 else int(rng.choice(self.shots))
        return [draw_episode(self.source, n_way=self.n_way, k_shot=k_shot, n_query=self.n_query, rng=rng,
                             labels=self.labels) for _ in range(self.meta_batch_size)]


def _shot_list(k_shot) -> list[int]:
    shots = [k_shot] if isinstance(k_shot, (int, np.integer)) else list(k_shot) if isinstance(k_shot, Sequence) else []
    if not shots or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1 for k in shots):
        raise ValueError(f"k_shot must be a positive int or a non-empty sequence of them, got {k_shot!r}")
    return [int(k) for k in shots]


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """``"adam"`` or ``"sgd"`` (Reptile's plain outer rule) over ``params``."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def meta_train(learner: torch.nn.Module, source, *, n_steps: int, meta_batch_size: int = 1, n_way: int = 5,
               k_shot: int | Sequence[int] = 1, n_query: int = 15, outer_lr: float = 1e-3, optimizer: str = "adam",
               val_set: Dataset | None = None, val_every: int = 100, val_episodes: int = 100,
               val_shot: int | None = None, val_options: dict | None = None,
               patience: int | None = None, checkpoint: str | os.PathLike | None = None, seed: int = 0,
               device: torch.device | str | None = None, progress: bool = True) -> History:
    """Meta-train ``learner`` for ``n_steps`` outer steps of ``meta_batch_size`` tasks each.

    Args:
        learner: Any :class:`~mlcourse.learner.Learner`.
        source: A labelled data set or a task distribution (see :class:`TaskStream`).
        n_steps: Outer steps in all (including those done before a resume).
        meta_batch_size: Tasks per outer step.
        n_way, k_shot, n_query: The episode shape (``k_shot``: an int or a sequence, see :class:`TaskStream`).
        outer_lr: Learning rate of the outer optimizer.
        optimizer: ``"adam"`` or ``"sgd"``.
        val_set: Labelled validation data; every ``val_every`` steps the learner is evaluated
            on ``val_episodes`` episodes of ``val_shot`` shots (default: the largest of
            ``k_shot``), with ``val_options`` passed to its ``predict``; the best weights
            are loaded back at the end.
        checkpoint: File the full state is saved to at each validation and resumed from.
        seed: Seed of the task stream (seed the initial weights yourself).
        device: Where to train (default :func:`~mlcourse.device.get_device`).
        progress: Show a progress bar.

    Returns:
        The :class:`History` (columns ``step``, ``loss``, ``acc``; ``val_step``, ``val_acc``, ``val_ci``).
    """
    check_learner(learner)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    if patience is not None and (val_set is None or isinstance(patience, bool) or not isinstance(patience, int)
                                 or patience < 1):
        raise ValueError(f"patience must be a positive int and needs a val_set, got patience={patience!r}, "
                         f"val_set={'given' if val_set is not None else None}")
    device = get_device(device)
    learner.to(device)
    stream = TaskStream(source, meta_batch_size=meta_batch_size, n_way=n_way, k_shot=k_shot, n_query=n_query,
                        seed=seed)
    rank, size = world()  # under torchrun: this process's share of every meta-batch (mlcourse.distributed)
    part = share(meta_batch_size, rank, size)
    weight = (part.stop - part.start) / meta_batch_size
    val_shot = max(stream.shots) if val_shot is None else val_shot
    opt = make_optimizer(optimizer, learner.parameters(), outer_lr)
    signature = dict(learner=type(learner).__name__, settings=learner.extra_repr(), n_steps=n_steps,
                     meta_batch_size=meta_batch_size, n_way=n_way, k_shot=stream.shots, n_query=n_query,
                     outer_lr=outer_lr, optimizer=optimizer, seed=seed)
    if patience is not None:
        signature.update(patience=patience, val_every=val_every, val_episodes=val_episodes)
    run = RunState(checkpoint, signature, learner, opt, History, device)
    step_opt = AveragedOptimizer(opt, weight) if size > 1 else opt
    history, start = run.history, run.step
    learner.train()
    t0, window_loss, window_acc = time.perf_counter(), [], []
    log_every = max(1, min(50, n_steps // 20))
    steps = range(start, n_steps) if not history.stopped else range(0)
    bar = tqdm(steps, initial=start, total=n_steps, desc=type(learner).__name__, disable=not progress or rank != 0)
    for step in bar:
        tasks = [t.to(device) for t in stream.batch(step)[part]]
        torch.manual_seed(int(np.random.default_rng([seed, step, 1]).integers(2**62)))  # dropout, shuffles: per step too
        loss, outputs = learner.meta_step(tasks, step_opt)
        if size > 1:
            average_buffers(learner)
            loss = all_mean(loss, weight, device)
        window_loss.append(loss)
        if stream.episodic:
            acc = float(np.mean([(o.argmax(-1) == t.query_y).float().mean().item() for o, t in zip(outputs, tasks)]))
            window_acc.append(all_mean(acc, weight, device) if size > 1 else acc)
        done = step + 1
        save_point = done % val_every == 0 or done == n_steps
        if done % log_every == 0 or save_point:  # a checkpoint never holds a half-logged window
            history.log(step=done, loss=float(np.mean(window_loss)),
                        acc=float(np.mean(window_acc)) if window_acc else float("nan"))
            bar.set_postfix(loss=f"{history.loss[-1]:.3f}")
            window_loss, window_acc = [], []
        if val_set is not None and (done % val_every == 0 or done == n_steps):
            val_acc, val_ci = 0.0, 0.0
            if rank == 0:  # the other ranks get its result
                result = evaluate(learner, val_set, n_way=n_way, k_shot=val_shot, n_query=n_query,
                                  n_episodes=val_episodes, seed=seed + 1, device=device, **(val_options or {}))
                val_acc, val_ci = result.mean, result.half_width
            val_acc, val_ci = broadcast_floats([val_acc, val_ci], device) if size > 1 else (val_acc, val_ci)
            history.log(val_step=done, val_acc=val_acc, val_ci=val_ci,
                        val_seconds=round(history.seconds + time.perf_counter() - t0, 2))
            if val_acc > history.best_val_acc:
                history.best_val_acc, history.best_step = val_acc, done
                run.keep_best()
            if val_acc > sum(history.reference):
                history.reference, history.stale = (val_acc, val_ci), 0
            else:
                history.stale += 1
            if patience is not None and history.stale >= patience:
                history.stopped = "converged"
        if done == n_steps and not history.stopped:
            history.stopped = "budget"
        if save_point or history.stopped:
            history.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            if rank == 0:
                run.save(done)
            else:
                run.step = done
        if history.stopped:
            break
    bar.close()
    run.load_best()
    end_training = getattr(learner, "end_training", None)
    if callable(end_training) and isinstance(source, Dataset):  # statistics of the training data, on the best weights
        end_training(source)
    return history


def train_epoch(optimizer: torch.optim.Optimizer, batches: Iterable,
                loss_of: Callable[..., torch.Tensor]) -> float:
    """One pass of supervised training: for each batch, ``loss_of(*batch)``, backward, ``optimizer.step()``.

    Args:
        optimizer: Steps the trainable parameters.
        batches: An iterable of tuples (e.g. a :class:`~torch.utils.data.DataLoader`).
        loss_of: Maps one batch to a scalar loss; its first element's length weighs the mean.

    Returns:
        The mean loss per example over the pass.
    """
    total, n = 0.0, 0
    for batch in batches:
        batch = batch if isinstance(batch, (tuple, list)) else (batch,)
        loss = loss_of(*batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch[0])
        n += len(batch[0])
    if n == 0:
        raise ValueError("train_epoch got no batches: the training data is empty")
    return total / n



@dataclass
class LossPlateau:
    """The supervised loops' stopping rule: the mean training loss of an epoch has stopped falling.

    An epoch *progresses* when its loss is below the best so far by more than
    ``max(rel_tol * best, abs_tol)``. Training stops, *converged*, after ``patience`` epochs in
    a row without progress; with ``patience=None`` it never stops early (a fixed budget).
    Only the training data is used: no validation or test image decides when to stop.

    Example:
        >>> rule = LossPlateau(patience=2)
        >>> [rule.update(v) for v in (1.0, 0.5, 0.499, 0.4995)]
        [False, False, False, True]
    """

    patience: int | None = None
    rel_tol: float = 0.01
    abs_tol: float = 0.01  # a cross-entropy below about 0.01 is a memorised training set
    best: float = float("inf")
    stale: int = 0

    def __post_init__(self) -> None:
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 (or None for a fixed budget), got {self.patience}")

    def update(self, loss: float) -> bool:
        """Record one epoch's loss; ``True`` when training should stop."""
        if not np.isfinite(loss):
            raise FloatingPointError(f"the training loss is {loss}: lower the learning rate")
        if loss < self.best - max(self.rel_tol * self.best, self.abs_tol) or not np.isfinite(self.best):
            self.best, self.stale = float(loss), 0
        else:
            self.stale += 1
        return self.patience is not None and self.stale >= self.patience

    def verdict(self, stopped_early: bool) -> str:
        """``"converged"`` when the rule stopped training, else ``"budget"``."""
        return "converged" if stopped_early else "budget"

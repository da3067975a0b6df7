"""The learner protocol: what every few-shot method of the course does, whatever its family.

A *learner* is an :class:`torch.nn.Module` that

- **meta-trains** on a batch of tasks: ``meta_step(tasks, optimizer)`` computes the loss of
  the batch, its gradient, and takes one step of ``optimizer`` (the training loop,
  :func:`mlcourse.training.meta_train`, owns the optimizer, the task stream, validation and
  checkpoints);
- **predicts** the query labels of an episode from its support set alone:
  ``predict(episode)``; a metric learner compares embeddings, a black box reads the support
  set, MAML takes gradient steps on it.

A learner that classifies by comparing embeddings may also implement ``embed(x)`` and
``scores(support_z, support_y, query_z, n_way)``: the evaluator
(:func:`mlcourse.evaluation.evaluate`) then embeds the test set once and draws every test
episode from the embeddings, which makes 600 test episodes cost one pass over the data.

A learner that keeps statistics of its training data may also implement
``end_training(source)``: :func:`mlcourse.training.meta_train` calls it once, on the best
weights, with the labelled training data (SimpleShot's mean feature of the background classes
is computed there).

The families fill the protocol differently:

- metric-based: ``meta_step`` trains the embedding (and the scorer); ``predict`` compares
  query and support embeddings;
- model-based (black box): ``meta_step`` trains the whole network; ``predict`` is a forward
  pass over the support set;
- optimization-based: ``meta_step`` trains the initialisation; ``predict`` takes gradient
  steps on the support set.

Adding a learner means writing one class with these two methods; the loop, the evaluator,
checkpoints and the paired comparison then work for it unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import torch

from .episodes import Episode

__all__ = ["Learner", "EmbeddingLearner", "StepResult", "is_learner", "check_learner"]


class StepResult(NamedTuple):
    """What one meta-step reports: the mean loss of the batch and each task's query outputs.

    ``loss`` is the mean loss over the tasks of the batch (a float); ``outputs`` holds one
    detached tensor per task, its query outputs ``(n_query_total, n_way)`` (scores or logits;
    for regression, predictions).
    """

    loss: float
    outputs: list[torch.Tensor]


@runtime_checkable
class Learner(Protocol):
    """The contract of every learner (see the module docstring)."""

    def meta_step(self, tasks: Sequence[Episode], optimizer: torch.optim.Optimizer) -> StepResult:
        """Zero the gradients, backpropagate the loss of ``tasks``, step ``optimizer``."""
        ...

    def predict(self, episode: Episode) -> torch.Tensor:
        """Predicted query labels ``(n_way * n_query,)`` of one episode (no gradient kept)."""
        ...


@runtime_checkable
class EmbeddingLearner(Learner, Protocol):
    """A learner whose prediction compares embeddings: the evaluator can embed the data once."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, ...)`` of images ``(B, C, H, W)``."""
        ...

    def scores(self, support_z: torch.Tensor, support_y: torch.Tensor, query_z: torch.Tensor,
               n_way: int) -> torch.Tensor:
        """Score ``(Q, n_way)`` of every (query, class) pair from embeddings; higher is more likely."""
        ...


def is_learner(obj: object) -> bool:
    """True if ``obj`` is a module with ``meta_step`` and ``predict``."""
    return isinstance(obj, torch.nn.Module) and isinstance(obj, Learner)


def check_learner(obj: object) -> None:
    """Raise a :class:`TypeError` that says what is missing if ``obj`` is not a learner."""
    if not isinstance(obj, torch.nn.Module):
        raise TypeError(f"a learner must be a torch.nn.Module, got {type(obj).__name__}")
    missing = [m for m in ("meta_step", "predict") if not callable(getattr(obj, m, None))]
    if missing:
        raise TypeError(f"{type(obj).__name__} is not a learner: it lacks {', '.join(missing)} "
                        "(see mlcourse.learner.Learner)")

"""Resumable training state on disk, shared by every training loop of the package.

A checkpoint stores a *signature* (the settings that define the run) with the state. Loading
a checkpoint made with other settings raises a :class:`ValueError` instead of silently
continuing a different run. Saving writes a temporary file and renames it, so an interruption
while saving never leaves a half-written checkpoint.
"""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_checkpoint", "save_checkpoint", "RunState"]


def load_checkpoint(path: str | os.PathLike | None, signature: dict, map_location: Any = None) -> dict | None:
    """The saved state at ``path``, or ``None`` if there is none; checks that it was made with ``signature``."""
    if path is None or not Path(path).exists():
        return None
    state = torch.load(Path(path), map_location=map_location, weights_only=False)
    if state.get("signature") != signature:
        raise ValueError(f"checkpoint {path} was made with {state.get('signature')}, not {signature}: "
                         "delete it or pass another checkpoint path")
    return state


def save_checkpoint(path: str | os.PathLike | None, signature: dict, **state: Any) -> None:
    """Save ``state`` with its ``signature`` to ``path`` atomically (nothing happens when ``path`` is ``None``)."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"signature": signature, **state}, tmp)
    os.replace(tmp, path)


class RunState:
    """The resumable state of one training run: model, optimizer, step, history and best weights.

    Built at the start of a loop, it loads ``path`` if it exists (checking ``signature``) into
    the model and optimizer; the loop then reads ``step`` and ``history``, calls
    :meth:`keep_best` when validation improves, :meth:`save` at its save points and
    :meth:`load_best` at the end.

    Args:
        path: The checkpoint file, or ``None`` to keep nothing on disk.
        signature: The settings that define the run.
        model, optimizer: What is trained and how.
        history_type: The dataclass of the history (built empty for a new run).
        map_location: Where to load tensors.
    """

    def __init__(self, path: str | os.PathLike | None, signature: dict, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, history_type: type, map_location: Any = None) -> None:
        self.path, self.signature, self.model, self.optimizer = path, signature, model, optimizer
        self.history, self.step, self.best_state = history_type(), 0, None
        state = load_checkpoint(path, signature, map_location=map_location)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            self.history, self.step, self.best_state = history_type(**state["history"]), state["step"], state["best_state"]

    def keep_best(self) -> None:
        """Remember the current weights as the best so far."""
        self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_best(self) -> None:
        """Load the best weights kept (if any) back into the model."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def save(self, step: int) -> None:
        """Save the full state after ``step`` steps (nothing happens without a path)."""
        self.step = step
        save_checkpoint(self.path, self.signature, model=self.model.state_dict(),
                        optimizer=self.optimizer.state_dict(), step=step, history=asdict(self.history),
                        best_state=self.best_state)

"""Resumable training state on disk, shared by every training loop of the package.

A checkpoint stores a *signature* (the settings that define the run) with the state. Loading
a checkpoint made with other settings raises a :class:`ValueError` instead of silently
continuing a different run. Saving writes a temporary file and renames it, so an interruption
while saving never leaves a half-written checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_checkpoint", "save_checkpoint"]


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

"""Device and seeding helpers used by every training loop in the course.

The same notebook runs on a laptop CPU, on Colab and on a GPU grading runner:
code asks :func:`get_device` instead of hard-coding ``"cuda"`` or ``"cpu"``.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["get_device", "seed_everything"]


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on.

    Args:
        device: An explicit choice (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a
            :class:`torch.device`). When ``None``, the environment variable
            ``MLCOURSE_DEVICE`` decides if set, otherwise CUDA when available,
            else CPU.

    Returns:
        The :class:`torch.device` to use.

    Raises:
        ValueError: If CUDA is asked for on a machine without a usable GPU.
    """
    if device is None:
        device = os.environ.get("MLCOURSE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:<index>'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was requested but torch.cuda.is_available() is False; "
            "use device='cpu' or unset MLCOURSE_DEVICE"
        )
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) random generators."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))

"""Meta-training on several processes: each takes its share of every meta-batch.

``torchrun --nproc-per-node N -m mlcourse train SPEC`` (or any script that calls
:func:`~mlcourse.training.meta_train` under ``torchrun``) trains with ``N`` processes, the
*ranks*. :func:`init_from_env` joins them with ``torch.distributed`` (NCCL on CUDA, gloo on
CPU). Every rank draws the same meta-batch of the same step (the task stream depends only on
the seed and the step) and takes a contiguous share of its tasks (:func:`share`); its learner's
``meta_step`` computes the mean loss of that share and its gradient as on one process. The
optimizer each rank steps is wrapped in :class:`AveragedOptimizer`: before the step, it
all-reduces the gradients, each rank's weighted by its share of the tasks, into the gradient of
the mean loss over the whole meta-batch. Every rank then takes the same step from the same
weights, so the weights stay identical on every rank and equal, to float tolerance, those of one
process training on the same tasks (``tests/test_distributed.py`` checks both, and that a
checkpoint written by a distributed run resumes in one process). Buffers that a step changes
(BatchNorm's running statistics) are averaged over the ranks after each step: those are the
same as on one process only when the learner keeps none (MAML's batch statistics do not).

Rank 0 alone writes checkpoints and records, and shows progress; validation runs on rank 0 and
its result is sent to the others.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch

__all__ = ["AveragedOptimizer", "all_mean", "average_buffers", "broadcast_floats", "init_from_env", "is_main", "share",
           "world"]


def world() -> tuple[int, int]:
    """``(rank, number of ranks)``: ``(0, 1)`` unless ``torch.distributed`` is initialized."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (and on one process): the rank that writes files and shows progress."""
    return world()[0] == 0


def init_from_env(device: str | torch.device | None = None) -> bool:
    """Join the ranks that ``torchrun`` started (``WORLD_SIZE`` > 1 in the environment); False on one process.

    The backend is NCCL when ``device`` (default: CUDA if present) is CUDA, gloo otherwise; on CUDA,
    each rank takes the GPU ``LOCAL_RANK``.

    Raises:
        RuntimeError: ``torch.distributed`` is not available in this build of PyTorch.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return False
    if not torch.distributed.is_available():
        raise RuntimeError("this PyTorch has no torch.distributed: train on one process (without torchrun)")
    if torch.distributed.is_initialized():
        return True
    cuda = (torch.device(device).type == "cuda") if device is not None else torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def share(n_tasks: int, rank: int, size: int) -> slice:
    """The contiguous tasks of ``rank`` among ``n_tasks`` split over ``size`` ranks (sizes differ by at most one).

    Raises:
        ValueError: Fewer tasks than ranks (a rank would have nothing to train on).
    """
    if n_tasks < size:
        raise ValueError(f"a meta-batch of {n_tasks} tasks cannot be split over {size} processes: use a "
                         f"meta_batch_size of at least {size}, or fewer processes")
    base, extra = divmod(n_tasks, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


class AveragedOptimizer:
    """``optimizer``, whose ``step`` first turns each rank's gradient into the whole meta-batch's.

    Args:
        optimizer: The optimizer of the learner's parameters.
        weight: This rank's share of the meta-batch (its tasks over all tasks): the rank's
            gradient of its mean loss counts with this weight in the all-reduced sum.

    Everything else (``zero_grad``, ``param_groups``, ``state_dict``, ``load_state_dict``) is the
    wrapped optimizer's, so that checkpoints hold the plain optimizer's state.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, weight: float) -> None:
        self.optimizer, self.weight = optimizer, float(weight)

    def step(self, closure=None):
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads]) * self.weight
            torch.distributed.all_reduce(flat)
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
        return self.optimizer.step(closure)

    def __getattr__(self, name: str):
        return getattr(self.optimizer, name)


def average_buffers(module: torch.nn.Module) -> None:
    """Average the floating-point buffers of ``module`` over the ranks (BatchNorm's running statistics)."""
    _, size = world()
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if size > 1 and buffers:
        flat = torch.cat([b.reshape(-1) for b in buffers]) / size
        torch.distributed.all_reduce(flat)
        offset = 0
        for b in buffers:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()


def broadcast_floats(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """``values`` as rank 0 has them, on every rank (one process: unchanged)."""
    if world()[1] == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    torch.distributed.broadcast(t, src=0)
    return t.tolist()


def all_mean(value: float, weight: float, device: torch.device | str = "cpu") -> float:
    """The weighted sum over the ranks of ``value * weight`` (the mean over all tasks when weights are shares)."""
    if world()[1] == 1:
        return float(value)
    t = torch.tensor([float(value) * weight], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return float(t.item())

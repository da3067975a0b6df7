"""Meta-training a learned optimiser by truncated backpropagation through the unrolled optimisation,
and running learned and hand-designed optimisers on the same problems.

The truncated-BPTT loop is the one thing here that differs from :func:`mlcourse.training.meta_train`
(a meta-step is a segment of an unrolled trajectory, not a batch of tasks); checkpoints,
resuming and the history are the shared ones (:class:`~mlcourse.checkpoint.RunState`,
:class:`~mlcourse.training.History`).
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from ..checkpoint import RunState
from ..progress import tqdm
from ..training import History
from .lstm import LSTMOptimizer

__all__ = ["unrolled_meta_loss", "meta_train_optimizer", "run_learned", "run_torch_optimizer", "tune_learning_rate",
           "HAND_DESIGNED"]


def unrolled_meta_loss(net: LSTMOptimizer, problems, theta: torch.Tensor, state, start_step: int, unroll: int
                       ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """``unroll`` steps of the learned optimiser from ``theta``; the meta-loss of the segment.

    The meta-loss is ``mean_b sum_{t=1..unroll} f_b(theta_t)``: differentiable with respect to
    the LSTM's parameters through the updates, with the optimizee's gradients treated as
    constants (no second derivatives of ``f``).

    Returns:
        ``(meta_loss, theta_end, state_end)``; detach the last two before the next segment.
    """
    if not theta.requires_grad:
        theta = theta.detach().requires_grad_(True)
    loss = problems.losses(theta, start_step)
    meta_loss = theta.new_zeros(())
    for t in range(unroll):
        (grad,) = torch.autograd.grad(loss.sum(), theta, retain_graph=True)  # a constant: no create_graph
        update, state = net(grad, state)
        theta = theta + update
        loss = problems.losses(theta, start_step + t + 1)
        meta_loss = meta_loss + loss.mean()
    return meta_loss, theta, state


def meta_train_optimizer(net: LSTMOptimizer, make_problems: Callable[[torch.Generator], object], *,
                         n_iterations: int = 500, horizon: int = 100, unroll: int = 20, lr: float = 1e-3,
                         seed: int = 0, checkpoint: str | os.PathLike | None = None,
                         progress: bool = True) -> History:
    """Meta-train ``net`` with truncated backpropagation through the unrolled optimisation.

    Each iteration draws fresh problems with ``make_problems(generator)`` (the generator is
    seeded by ``(seed, iteration)``), runs the learned optimiser for ``horizon`` steps, and
    after every ``unroll`` steps takes an Adam step on the segment's meta-loss.

    Args:
        checkpoint: File to save to every 10% of the run and at the end, and to resume from.

    Returns:
        The :class:`~mlcourse.training.History`: columns ``iteration`` and ``meta_loss`` (the
        mean optimizee loss over the horizon).
    """
    if horizon < 1 or unroll < 1 or horizon % unroll:
        raise ValueError(f"horizon must be a positive multiple of unroll, got horizon={horizon}, unroll={unroll}")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    device = next(net.parameters()).device
    signature = dict(net=net.config, n_iterations=n_iterations, horizon=horizon, unroll=unroll, lr=lr, seed=seed)
    run = RunState(checkpoint, signature, net, opt, History, device)
    history, start = run.history, run.step
    save_every = max(1, n_iterations // 10)
    bar = tqdm(range(start, n_iterations), initial=start, total=n_iterations, desc="meta-training",
               disable=not progress)
    for it in bar:
        gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, it]).integers(2**62)))
        problems = make_problems(gen)
        theta, lstm_state, total = problems.theta0, net.initial_state(problems.theta0.numel(), device), 0.0
        for start_step in range(0, horizon, unroll):
            meta_loss, theta, lstm_state = unrolled_meta_loss(net, problems, theta, lstm_state, start_step, unroll)
            opt.zero_grad(set_to_none=True)
            meta_loss.backward()
            opt.step()
            theta, lstm_state = theta.detach(), tuple(s.detach() for s in lstm_state)
            total += meta_loss.item()
        history.log(iteration=it + 1, meta_loss=total / horizon)
        bar.set_postfix(loss=f"{history.meta_loss[-1]:.3g}")
        if (it + 1) % save_every == 0 or it + 1 == n_iterations:
            run.save(it + 1)
    return history


def run_learned(net: LSTMOptimizer, problems, *, steps: int = 100) -> tuple[np.ndarray, torch.Tensor]:
    """Optimise ``problems`` with the learned optimiser (no meta-gradient).

    Returns:
        The losses ``(steps + 1, B)`` and the final parameters.
    """
    theta = problems.theta0.detach().clone()
    state = net.initial_state(theta.numel(), theta.device)
    curve = []
    for t in range(steps + 1):
        theta.requires_grad_(True)
        loss = problems.losses(theta, t)
        curve.append(loss.detach().cpu().numpy())
        if t == steps:
            break
        (grad,) = torch.autograd.grad(loss.sum(), theta)
        with torch.no_grad():
            update, state = net(grad, state)
            theta = (theta + update).detach()
    return np.stack(curve), theta.detach()


HAND_DESIGNED = {
    "SGD": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "momentum": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "RMSprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr),
    "Adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
}


def run_torch_optimizer(name: str, problems, *, lr: float, steps: int = 100) -> tuple[np.ndarray, torch.Tensor]:
    """Optimise ``problems`` with a hand-designed optimiser from ``HAND_DESIGNED``.

    The problems of the batch are independent and these optimisers act coordinate by
    coordinate (SGD, momentum) or per coordinate statistics (RMSprop, Adam), so optimising
    the batch at once is the same as optimising each problem alone.

    Returns:
        The losses ``(steps + 1, B)`` and the final parameters.
    """
    if name not in HAND_DESIGNED:
        raise ValueError(f"unknown optimiser {name!r}; choose one of {sorted(HAND_DESIGNED)}")
    theta = problems.theta0.detach().clone().requires_grad_(True)
    opt = HAND_DESIGNED[name]([theta], lr)
    curve = []
    for t in range(steps + 1):
        loss = problems.losses(theta, t)
        curve.append(loss.detach().cpu().numpy())
        if t == steps:
            break
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    return np.stack(curve), theta.detach()


def tune_learning_rate(name: str, problems, *, grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0),
                       steps: int = 100) -> tuple[float, dict[float, float]]:
    """The learning rate of ``grid`` with the lowest mean loss over the trajectory on ``problems``.

    Tune on problems other than the test problems. Diverging runs (non-finite losses) lose.

    Returns:
        ``(best_lr, {lr: mean log-loss over the trajectory})``.
    """
    scores = {}
    for lr in grid:
        curve, _ = run_torch_optimizer(name, problems, lr=lr, steps=steps)
        with np.errstate(all="ignore"):
            score = float(np.mean(np.log(np.maximum(curve, 1e-30))))
        scores[lr] = score if np.isfinite(score) else float("inf")
    return min(scores, key=scores.get), scores

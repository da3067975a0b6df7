"""Learning to learn by gradient descent by gradient descent (Andrychowicz et al., 2016).

A hand-designed optimiser is a fixed rule ``theta_{t+1} = theta_t - lr * h(g_1..g_t)``. Here
the rule is a network: a small two-layer LSTM ``m_phi`` reads each coordinate's gradient and
outputs that coordinate's update,

    theta_{t+1} = theta_t + u_t,    (u_t, s_{t+1}) = m_phi(preprocess(g_t), s_t),

with the same weights phi for every coordinate ("coordinatewise"), each coordinate keeping its
own LSTM state s. The optimiser is trained by gradient descent on the *optimizee's* loss
along its trajectory, ``L(phi) = E_f [sum_t f(theta_t)]``, by backpropagation through the
unrolled optimisation, truncated to ``unroll`` steps at a time over a ``horizon``. As in the
paper, the optimizee's second derivatives are dropped: the gradient ``g_t`` fed to the LSTM is
a constant for the meta-gradient (``dg_t / dphi = 0``), so only first derivatives of ``f``
are needed.

Gradients span many orders of magnitude, so they are preprocessed (the paper's appendix)::

    g -> (log|g| / p, sign g)   if |g| >= e^-p,        (-1, e^p g)   otherwise.

Problems (optimizees) are batches of independent functions sharing one flat parameter
tensor, with ``theta0`` and ``losses(theta, step) -> (B,)``: :class:`QuadraticProblems`
(``f(theta) = ||W theta - y||^2``, the paper's first experiment) and :class:`DigitsMLP`
(a one-hidden-layer network on the handwritten digits that scikit-learn ships).
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from .progress import tqdm

from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["preprocess_gradients", "LSTMOptimizer", "QuadraticProblems", "DigitsMLP", "unrolled_meta_loss",
           "meta_train_optimizer", "run_learned", "run_torch_optimizer", "tune_learning_rate",
           "MetaTrainHistory", "HAND_DESIGNED"]


def preprocess_gradients(grad: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """The paper's gradient preprocessing: ``(n,)`` gradients -> ``(n, 2)`` inputs.

    ``(log|g| / p, sign g)`` where ``|g| >= exp(-p)``, else ``(-1, exp(p) * g)``. Both
    coordinates stay in a small range whatever the scale of ``g``.
    """
    if p <= 0:
        raise ValueError(f"p must be positive, got {p}")
    g = grad.reshape(-1)
    big = g.abs() >= math.exp(-p)
    first = torch.where(big, g.abs().clamp_min(math.exp(-p)).log() / p, torch.full_like(g, -1.0))
    second = torch.where(big, torch.sign(g), math.exp(p) * g)
    return torch.stack([first, second], dim=1)


class LSTMOptimizer(nn.Module):
    """Coordinatewise two-layer LSTM optimiser.

    Args:
        hidden: Hidden units per LSTM layer (20 in the paper).
        layers: LSTM layers (2 in the paper).
        preprocess: Use :func:`preprocess_gradients` (``True``) or feed the raw gradient.
        p: The preprocessing constant.
        output_scale: The LSTM output is multiplied by this (0.1 in the paper).
    """

    def __init__(self, hidden: int = 20, layers: int = 2, preprocess: bool = True, p: float = 10.0,
                 output_scale: float = 0.1) -> None:
        super().__init__()
        self.config = dict(hidden=hidden, layers=layers, preprocess=preprocess, p=p, output_scale=output_scale)
        self.hidden, self.layers, self.preprocess, self.p, self.output_scale = hidden, layers, preprocess, p, output_scale
        # LSTM cells rather than nn.LSTM: one time step at a time, about 2x faster on CPU here
        self.cells = nn.ModuleList(nn.LSTMCell(2 if preprocess else 1, hidden)
                                   if i == 0 else nn.LSTMCell(hidden, hidden) for i in range(layers))
        self.head = nn.Linear(hidden, 1)

    def initial_state(self, n: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero LSTM state for ``n`` coordinates: ``(h, c)``, each ``(layers, n, hidden)``."""
        z = torch.zeros(self.layers, n, self.hidden, device=device)
        return z, z.clone()

    def forward(self, grad: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Updates (shape of ``grad``) for every coordinate, and the new state."""
        if state[0].shape[1] != grad.numel():
            raise ValueError(f"the state is for {state[0].shape[1]} coordinates but the gradient has {grad.numel()}; "
                             "start with initial_state(grad.numel())")
        x = preprocess_gradients(grad, self.p) if self.preprocess else grad.reshape(-1, 1)
        hs, cs = [], []
        for i, cell in enumerate(self.cells):
            x, c = cell(x, (state[0][i], state[1][i]))
            hs.append(x)
            cs.append(c)
        return self.output_scale * self.head(x).view_as(grad), (torch.stack(hs), torch.stack(cs))

    def save(self, path: str | os.PathLike) -> None:
        """Save the weights and the configuration."""
        torch.save({"config": self.config, "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: torch.device | str | None = "cpu") -> "LSTMOptimizer":
        """Load an optimiser saved with :meth:`save`."""
        blob = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(blob, dict) or "config" not in blob:
            raise ValueError(f"{path} is not a file written by LSTMOptimizer.save")
        net = cls(**blob["config"])
        net.load_state_dict(blob["state_dict"])
        return net


class QuadraticProblems:
    """``B`` random quadratics ``f_b(theta) = ||W_b theta - y_b||^2`` in ``dim`` dimensions.

    ``W`` and ``y`` have standard normal entries, as does the starting point ``theta0``
    (shape ``(B * dim,)``, the problems side by side).
    """

    def __init__(self, n_problems: int = 128, dim: int = 10, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> None:
        self.n_problems, self.dim = n_problems, dim
        self.W = torch.randn(n_problems, dim, dim, generator=generator).to(device)
        self.y = torch.randn(n_problems, dim, generator=generator).to(device)
        self.theta0 = torch.randn(n_problems * dim, generator=generator).to(device)

    def losses(self, theta: torch.Tensor, step: int = 0) -> torch.Tensor:
        """The ``(B,)`` losses at ``theta`` (``step`` is unused: the problem is deterministic)."""
        t = theta.view(self.n_problems, self.dim)
        return (torch.einsum("bij,bj->bi", self.W, t) - self.y).pow(2).sum(dim=1)

    def minimum(self) -> torch.Tensor:
        """The ``(B,)`` optimal losses (least squares), to plot the gap to optimum."""
        sol = torch.linalg.lstsq(self.W, self.y[..., None]).solution[..., 0]
        return self.losses(sol.reshape(-1))


def _digits(device):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x = torch.as_tensor(x[order] / 16.0, dtype=torch.float32, device=device)
    y = torch.as_tensor(y[order], device=device)
    n_train = 1300
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


class DigitsMLP:
    """``B`` one-hidden-layer networks on scikit-learn's 8x8 handwritten digits, side by side.

    Each network maps 64 pixels to ``hidden`` units (``activation``: ``"sigmoid"`` as in the
    paper, or ``"relu"``) to 10 logits; the loss is the cross-entropy of a mini-batch of
    ``batch_size`` training digits, drawn anew at each step (the same batch for all ``B``
    networks; step ``t`` of a problem set always gets the same batch). 1,300 digits train,
    497 are held out (:meth:`test_accuracy`).
    """

    def __init__(self, n_problems: int = 16, hidden: int = 20, activation: str = "sigmoid", batch_size: int = 128,
                 generator: torch.Generator | None = None, device: torch.device | str | None = None) -> None:
        if activation not in ("sigmoid", "relu"):
            raise ValueError(f"activation must be 'sigmoid' or 'relu', got {activation!r}")
        self.n_problems, self.hidden, self.activation, self.batch_size = n_problems, hidden, activation, batch_size
        (self.x, self.y), (self.x_test, self.y_test) = _digits(device)
        self.shapes = [(64, hidden), (hidden,), (hidden, 10), (10,)]
        self.n_params = sum(math.prod(s) for s in self.shapes)
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        self.batch_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        parts = []
        for shape, fan_in in zip(self.shapes, (64, 64, hidden, hidden)):  # PyTorch's default Linear init
            bound = 1 / math.sqrt(fan_in)
            parts.append((torch.rand(n_problems, math.prod(shape), generator=gen) * 2 - 1) * bound)
        self.theta0 = torch.cat(parts, dim=1).reshape(-1).to(device)

    def _unpack(self, theta: torch.Tensor) -> list[torch.Tensor]:
        flat = theta.view(self.n_problems, self.n_params)
        out, i = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            out.append(flat[:, i:i + n].reshape(self.n_problems, *shape))
            i += n
        return out

    def logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(B, n, 10)`` logits of every network on inputs ``x`` ``(n, 64)``."""
        w1, b1, w2, b2 = self._unpack(theta)
        h = torch.einsum("ni,bih->bnh", x, w1) + b1[:, None]
        h = torch.sigmoid(h) if self.activation == "sigmoid" else torch.relu(h)
        return torch.einsum("bnh,bho->bno", h, w2) + b2[:, None]

    def losses(self, theta: torch.Tensor, step: int = 0) -> torch.Tensor:
        """The ``(B,)`` mini-batch cross-entropies at ``theta`` for step ``step``."""
        gen = torch.Generator().manual_seed(self.batch_seed + step)
        idx = torch.randint(0, len(self.y), (self.batch_size,), generator=gen).to(self.y.device)
        out = self.logits(theta, self.x[idx])
        return F.cross_entropy(out.flatten(0, 1), self.y[idx].repeat(self.n_problems), reduction="none"
                               ).view(self.n_problems, -1).mean(dim=1)

    @torch.no_grad()
    def test_accuracy(self, theta: torch.Tensor) -> torch.Tensor:
        """``(B,)`` accuracy of each network on the 497 held-out digits."""
        return (self.logits(theta, self.x_test).argmax(-1) == self.y_test).float().mean(dim=1)


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


@dataclass
class MetaTrainHistory:
    """Meta-training record: ``iteration`` and the mean optimizee loss over the horizon."""

    iteration: list[int] = field(default_factory=list)
    meta_loss: list[float] = field(default_factory=list)


def meta_train_optimizer(net: LSTMOptimizer, make_problems: Callable[[torch.Generator], object],
                         n_iterations: int = 500, horizon: int = 100, unroll: int = 20, lr: float = 1e-3,
                         seed: int = 0, checkpoint: str | os.PathLike | None = None,
                         progress: bool = True) -> MetaTrainHistory:
    """Meta-train ``net`` with truncated backpropagation through the unrolled optimisation.

    Each iteration draws fresh problems with ``make_problems(generator)`` (the generator is
    seeded by ``(seed, iteration)``), runs the learned optimiser for ``horizon`` steps, and
    after every ``unroll`` steps takes an Adam step on the segment's meta-loss.

    Args:
        checkpoint: File to save to every 10% of the run and at the end, and to resume from.

    Returns:
        The :class:`MetaTrainHistory`.
    """
    if horizon < 1 or unroll < 1 or horizon % unroll:
        raise ValueError(f"horizon must be a positive multiple of unroll, got horizon={horizon}, unroll={unroll}")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    device = next(net.parameters()).device
    signature = dict(net=net.config, n_iterations=n_iterations, horizon=horizon, unroll=unroll, lr=lr, seed=seed)
    history, start = MetaTrainHistory(), 0
    state = load_checkpoint(checkpoint, signature, map_location=device)
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history, start = MetaTrainHistory(**state["history"]), state["iteration"]
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
        history.iteration.append(it + 1)
        history.meta_loss.append(total / horizon)
        bar.set_postfix(loss=f"{history.meta_loss[-1]:.3g}")
        if (it + 1) % save_every == 0 or it + 1 == n_iterations:
            save_checkpoint(checkpoint, signature, model=net.state_dict(), optimizer=opt.state_dict(),
                            iteration=it + 1, history=asdict(history))
    return history


def run_learned(net: LSTMOptimizer, problems, steps: int = 100) -> tuple[np.ndarray, torch.Tensor]:
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


def run_torch_optimizer(name: str, lr: float, problems, steps: int = 100) -> tuple[np.ndarray, torch.Tensor]:
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


def tune_learning_rate(name: str, problems, grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0),
                       steps: int = 100) -> tuple[float, dict[float, float]]:
    """The learning rate of ``grid`` with the lowest mean loss over the trajectory on ``problems``.

    Tune on problems other than the test problems. Diverging runs (non-finite losses) lose.

    Returns:
        ``(best_lr, {lr: mean log-loss over the trajectory})``.
    """
    scores = {}
    for lr in grid:
        curve, _ = run_torch_optimizer(name, lr, problems, steps)
        with np.errstate(all="ignore"):
            score = float(np.mean(np.log(np.maximum(curve, 1e-30))))
        scores[lr] = score if np.isfinite(score) else float("inf")
    return min(scores, key=scores.get), scores

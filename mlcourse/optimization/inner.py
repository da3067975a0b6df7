"""The functional inner loop shared by MAML, first-order MAML, Meta-SGD and Reptile.

Optimization-based meta-learning adapts a copy of the parameters to each task with a
few gradient steps (the *inner loop*) and then updates the shared initialisation from
how well the adapted parameters do (the *outer loop*). Here the adapted parameters are
plain tensors in a dict ``{name: tensor}`` and the model is evaluated on them with
:func:`functional_forward` (what :func:`torch.func.functional_call` does, with less overhead):
no copies of the module, and autograd sees the whole computation.

With ``first_order=False`` the inner gradients are built with ``create_graph=True``, so
the outer gradient differentiates *through* the inner updates, Hessian-vector products
included (exact MAML). With ``first_order=True`` the inner gradients are constants: the
outer gradient of the query loss at the adapted parameters is passed straight back to
the initialisation (first-order MAML, "FOMAML").

BatchNorm: like the reference MAML code, models are run with the statistics of the
current batch, in adaptation and at test time (use ``BatchNorm2d(track_running_stats=False)``,
e.g. ``Conv4(track_running_stats=False)``). Running averages would mix tasks and make the
test-time prediction depend on the order of the tasks seen before.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Dict, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

__all__ = ["Params", "LearningRate", "parameters_of", "functional_forward", "update", "inner_step", "adapt"]

Params = Dict[str, torch.Tensor]
"""Parameters of a model by name, as in ``dict(model.named_parameters())``."""

LearningRate = Union[float, Mapping[str, torch.Tensor]]
"""One inner learning rate for all parameters, or one tensor per parameter (Meta-SGD)."""

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def parameters_of(model: nn.Module) -> Params:
    """The trainable parameters of ``model`` by name (the meta-learned initialisation)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def functional_forward(model: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` evaluated with ``params`` in place of its own parameters.

    The same as ``torch.func.functional_call(model, params, (x,))``, with less overhead per call
    (the inner loop calls it once per step and task): each given tensor is put in the place of
    the parameter of that name, in every module that holds that parameter (tied weights
    included), for the call only. Names that are not parameters (buffers, or names the model
    does not have) go through ``functional_call``, which says what is wrong with them.
    """
    own = dict(model.named_parameters())
    if any(name not in own for name in params):
        return functional_call(model, dict(params), (x,))
    by_id = {id(own[name]): tensor for name, tensor in params.items()}
    swapped = []
    try:
        for module in model.modules():  # a module shared by two parents holds its parameters once
            slots = module._parameters
            for attr, p in slots.items():
                if p is not None and id(p) in by_id:
                    swapped.append((slots, attr, p))
        for slots, attr, p in swapped:
            slots[attr] = by_id[id(p)]
        return model(x)
    finally:
        for slots, attr, p in swapped:
            slots[attr] = p


def _rate(lr: LearningRate, name: str) -> torch.Tensor | float:
    if isinstance(lr, Mapping):
        try:
            return lr[name]
        except KeyError:
            raise KeyError(f"no inner learning rate for parameter {name!r}; the rates cover {sorted(lr)}") from None
    return lr


def update(params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor | None], inner_lr: LearningRate,
           first_order: bool = False) -> Params:
    """The inner update rule, written once: ``p <- p - inner_lr * g`` for every parameter.

    Used by :func:`inner_step` (autograd) and by MAML's vectorised path (``torch.func.grad``).
    A parameter without a gradient (``None``: it does not touch the loss) is kept as it is;
    with ``first_order`` the gradient is a constant (detached). Each parameter's step is one
    operation (``torch.add`` with ``alpha=-inner_lr``, or ``torch.addcmul`` for a tensor rate), so
    autograd records one node per parameter and step instead of two.
    """
    new = {}
    for name, p in params.items():
        g = grads[name]
        if g is None:
            new[name] = p
            continue
        if first_order:
            g = g.detach()
        lr = _rate(inner_lr, name)
        new[name] = torch.addcmul(p, lr, g, value=-1) if isinstance(lr, torch.Tensor) else torch.add(p, g, alpha=-lr)
    return new


def inner_step(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, *, inner_lr: LearningRate,
               loss_fn: LossFn = F.cross_entropy, first_order: bool = False) -> tuple[Params, torch.Tensor]:
    """One gradient step on the loss of ``(x, y)``: ``p <- p - inner_lr * dL/dp`` for every parameter.

    Args:
        model: The network; only its structure (and buffers) are used.
        params: Current parameters by name.
        x, y: The task's support inputs and targets.
        inner_lr: A float, or a tensor per parameter name (Meta-SGD's learned rates).
        loss_fn: ``loss_fn(model_output, y)`` -> scalar.
        first_order: Treat the gradient as a constant (no second-order terms).

    Returns:
        ``(new_params, loss)`` where ``loss`` is the support loss before the step.
    """
    loss = loss_fn(functional_forward(model, params, x), y)
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=not first_order, allow_unused=True)
    return update(params, dict(zip(names, grads)), inner_lr, first_order), loss


def adapt(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, *, inner_lr: LearningRate,
          inner_steps: int, loss_fn: LossFn = F.cross_entropy, first_order: bool = False,
          track_meta_grad: bool = True) -> Params:
    """``inner_steps`` gradient steps from ``params`` on ``(x, y)``; returns the adapted parameters.

    Args:
        model, params, x, y, inner_lr, loss_fn, first_order: As in :func:`inner_step`.
        inner_steps: Number of steps (0 returns ``params``).
        track_meta_grad: Keep the graph back to ``params`` (for the outer gradient). With
            ``False`` each step starts from detached tensors: test-time adaptation with
            memory that does not grow with ``inner_steps``.

    Works inside ``torch.no_grad()`` too: the inner gradients are always computed.
    """
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 0:
        raise ValueError(f"inner_steps must be an int >= 0, got {inner_steps!r}")
    with torch.enable_grad():
        if not track_meta_grad:
            params = {n: p.detach().requires_grad_() for n, p in params.items()}
        for _ in range(inner_steps):
            params, _ = inner_step(model, params, x, y, inner_lr=inner_lr, loss_fn=loss_fn,
                                   first_order=first_order or not track_meta_grad)
            if not track_meta_grad:
                params = {n: p.detach().requires_grad_() for n, p in params.items()}
    return params

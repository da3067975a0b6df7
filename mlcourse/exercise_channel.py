"""The kernel's side of grading: what the student's functions returned, sent as data.

Before each test cell the grader has the kernel run :func:`begin_test`, which seeds the
random generators and wraps the student's functions. While the test runs, every call of a
wrapped function (calls it makes to other wrapped functions excepted) is sent to the grader
as one ``display_data`` output of the type :data:`MIME`:

- the function's name and a :func:`~mlcourse.wire.digest` of its inputs, taken
  before the call;
- what it returned (see :func:`~mlcourse.wire.encode`), or the exception it raised;
- the new state of each input it changed: a module's weights, flags and gradients, a
  random generator's state, a tensor changed in place.

The random generators are restored after each call, so that a student's function that
draws random numbers leaves the test's own stream as the grader replays it.

Nothing here decides a verdict: the grader runs the test again in its own process on these
values (:mod:`mlcourse.grading.replay`). A student who alters this module only alters what
the grader is told their functions returned.
"""
from __future__ import annotations

import functools
import random
import sys

import numpy as np

from . import wire

__all__ = ["MIME", "SEED", "begin_test", "record", "seed_all"]

#: The output type of the kernel's record of one call.
MIME = "application/vnd.mlcourse.call+json"
#: The seed of every random generator at the start of every test, in the kernel and in the grader.
SEED = 0
_state = {"active": False, "depth": 0}


def _rng_state():
    torch = sys.modules.get("torch")
    return random.getstate(), np.random.get_state(), torch.random.get_rng_state() if torch else None


def _set_rng_state(state) -> None:
    torch = sys.modules.get("torch")
    random.setstate(state[0])
    np.random.set_state(state[1])
    if torch is not None and state[2] is not None:
        torch.random.set_rng_state(state[2])


def seed_all(seed: int = SEED) -> None:
    """The same random streams in the kernel and in the grader, at the start of every test."""
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _inputs(args, kwargs) -> dict:
    """``path -> value`` for the inputs of a call (and the items of list, tuple and dict inputs)."""
    out = {}
    for key, value in [*((f"a{i}", a) for i, a in enumerate(args)), *((f"k{k}", v) for k, v in kwargs.items())]:
        out[key] = value
        if isinstance(value, (list, tuple)):
            out.update({f"{key}.{j}": v for j, v in enumerate(value)})
        elif isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if isinstance(k, str)})
    return out


def _mutable(value) -> bool:
    torch = sys.modules.get("torch")
    if isinstance(value, np.random.Generator):
        return True
    return torch is not None and isinstance(value, (torch.nn.Module, torch.Generator, torch.Tensor))


def module_state(module) -> dict:
    """The encoded state of a module: weights, buffers, gradients, ``requires_grad`` and training flags."""
    return {"t": "module",
            "training": {n: m.training for n, m in module.named_modules()},
            "params": {n: wire.encode(p) for n, p in module.named_parameters()},
            "requires_grad": {n: p.requires_grad for n, p in module.named_parameters()},
            "grads": {n: wire.encode(p.grad) for n, p in module.named_parameters()},
            "buffers": {n: wire.encode(b) for n, b in module.named_buffers()}}


def _state_of(value) -> dict:
    torch = sys.modules.get("torch")
    if isinstance(value, np.random.Generator):
        return {"t": "npgen", "state": wire.encode(value.bit_generator.state)}
    if isinstance(value, torch.Generator):
        return {"t": "torchgen", "state": wire.encode(value.get_state())}
    if isinstance(value, torch.nn.Module):
        return module_state(value)
    return {"t": "tensor", "value": wire.encode(value)}


def _publish(entry: dict) -> None:
    try:
        from IPython.display import display
    except ImportError:
        return
    display({MIME: entry}, raw=True)


def record(fn, name: str | None = None):
    """``fn`` wrapped so that its calls are sent to the grader while a test runs."""
    if getattr(fn, "__mlcourse_recorded__", False) or not callable(fn) or isinstance(fn, type):
        return fn
    name = name or getattr(fn, "__name__", "function")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not _state["active"] or _state["depth"]:
            return fn(*args, **kwargs)
        inputs = _inputs(args, kwargs)
        before = {k: wire.digest(v) for k, v in inputs.items() if _mutable(v)}
        entry = {"name": name, "inputs": wire.digest((list(args), kwargs))}
        rng = _rng_state()
        _state["depth"] += 1
        try:
            result = fn(*args, **kwargs)
        except Exception as err:
            entry["raised"] = {"type": type(err).__name__, "message": str(err)[:4000],
                               "bases": [c.__name__ for c in type(err).__mro__ if c.__module__ == "builtins"]}
            raise
        else:
            try:
                entry["result"] = wire.encode(result, refs={id(v): k for k, v in inputs.items()})
            except Exception as err:  # a value that cannot be described: the grader gets a marker
                entry["result"] = {"t": "opaque", "type": f"unencodable ({type(err).__name__})"}
            return result
        finally:
            _state["depth"] -= 1
            _set_rng_state(rng)
            if "result" in entry or "raised" in entry:
                entry["changed"] = {k: _state_of(inputs[k]) for k, d in before.items()
                                    if wire.digest(inputs[k]) != d}
                _publish(entry)

    wrapper.__mlcourse_recorded__ = True
    return wrapper


def begin_test(namespace: dict, names: list[str], seed: int = SEED) -> None:
    """Start a test cell in the kernel: seed the generators and wrap the student's functions."""
    _state.update(active=True, depth=0)
    for name in names:
        if name in namespace and callable(namespace[name]) and not isinstance(namespace[name], type):
            namespace[name] = record(namespace[name], name)
    seed_all(seed)

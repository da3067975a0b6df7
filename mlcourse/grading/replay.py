"""Verdicts decided in the grader's process, on values the student's kernel sent as data.

A test cell of an exercise calls the student's functions and checks what they return. Run
as it is inside the student's kernel, its verdict ("the cell raised no error") would be the
student's to forge: code in an answer cell can change how the kernel runs the cells that
follow (input and AST transformers, exception handlers, tracing hooks, patched assertion
helpers). So every test runs twice:

1. **In the student's kernel** (sandboxed), with the student's functions wrapped by
   :mod:`~mlcourse.exercise_channel`: each call's inputs (as a digest), its result and the
   inputs it changed are sent back as data (:mod:`~mlcourse.wire`, never pickle).
2. **In the grader's process**, where the same test code runs again with the real
   references and assertions, and every call of a student's function is answered by a
   stand-in that checks the inputs' digest and hands back what the kernel sent for that
   call. The test passes when this second run raises nothing.

The kernel's own outcome of the cell does not count; a forged channel can only claim that
the student's functions returned values, and those values are then checked as any others.
What a student can still do, the instructor page's threat model lists (mainly: compute the
right values with the package's code, which :mod:`~mlcourse.grading.static` looks for).

A test that needs something only the kernel has (a gradient through the student's
function, a backward pass into a module's weights) computes it in a helper decorated with
:func:`~mlcourse.exercise_checks.runs_in_your_kernel`; the grader takes the helper's
result from the kernel in the same way.
"""
from __future__ import annotations

import ast
import builtins
import json
import random
import re
from dataclasses import dataclass, field

import numpy as np

from .. import wire
from ..exercise_channel import MIME, SEED, _inputs, seed_all
from .assemble import _is_answer, _meta
from .static import ownership, top_level_names

__all__ = ["CallMismatch", "TestPlan", "plan_tests", "recorded_calls", "replay"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


class CallMismatch(AssertionError):
    """The kernel's record of a call does not fit the call the test makes."""


@dataclass
class TestPlan:
    """How one test cell is run in the kernel and replayed in the grader."""

    grade_id: str
    source: str  # the instructor's test cell, hidden tests included
    kernel_source: str  # what the kernel runs
    grader_source: str  # what the grader runs: the helpers run in the kernel are left out
    setup: str  # the imports of the instructor's cells before the test
    names: list[str] = field(default_factory=list)  # functions answered from the kernel
    own: dict[str, str | None] = field(default_factory=dict)  # static verdict per student function


def _helpers(source: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Top-level functions of a test decorated with ``runs_in_your_kernel``: names and line spans."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return [], []
    names, spans = [], []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
                (d.id if isinstance(d, ast.Name) else getattr(d, "attr", "")) == "runs_in_your_kernel"
                for d in node.decorator_list):
            names.append(node.name)
            spans.append((min(d.lineno for d in node.decorator_list), node.end_lineno))
    return names, spans


def _blank(source: str, spans: list[tuple[int, int]]) -> str:
    lines = source.split("\n")
    for start, end in spans:
        for i in range(start - 1, end):
            lines[i] = ""
    return "\n".join(lines)


def _imports(source: str) -> list[str]:
    try:
        tree = ast.parse(re.sub(r"^\s*[%!].*$", "", source, flags=re.M))
    except SyntaxError:
        return []
    return [ast.get_source_segment(source, n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]


def plan_tests(assembled, source) -> dict[str, TestPlan]:
    """Plan every graded test cell of ``assembled``, and put the kernel's version of each in it.

    Args:
        assembled: The notebook to execute (:func:`~mlcourse.grading.assemble.assemble`); its
            test cells are rewritten in place to start with :func:`~mlcourse.exercise_channel.begin_test`.
        source: The instructor notebook: which names are the student's comes from its answer
            cells, never from the submission.
    """
    student = {}
    for cell in source.cells:
        if cell.cell_type == "code" and _is_answer(cell):
            student.update({n: k for n, k in top_level_names(cell.source).items() if k == "function"})
    answers = [c.source for c in assembled.cells if c.cell_type == "code" and
               (_is_answer(c) or not _meta(c).get("grade_id"))]
    setups, setup = {}, []
    for cell in source.cells:  # the instructor's imports before each test (never the student's)
        if cell.cell_type == "code":
            if _meta(cell).get("grade") and _meta(cell).get("grade_id"):
                setups[_meta(cell)["grade_id"]] = "\n".join(setup)
            setup += _imports(cell.source)
    plans = {}
    for cell in assembled.cells:
        meta = _meta(cell)
        if cell.cell_type == "code" and meta.get("grade") and meta.get("grade_id") in setups \
                and not meta.get("solution"):
            gid, text = meta["grade_id"], cell.source
            helpers, spans = _helpers(text)
            prelude = ("import torch\n" if "torch" in text else "") + \
                f"__import__('mlcourse.exercise_channel', fromlist=['_']).begin_test(globals(), {sorted(student)!r})\n"
            plans[gid] = TestPlan(gid, text, prelude + text, _blank(text, spans), setups[gid],
                                  sorted(student) + helpers, {n: ownership(answers, n) for n in student})
            cell.source = prelude + text
    return plans


def recorded_calls(cell) -> tuple[list[dict], str | None]:
    """The call records among a test cell's outputs, and why they were refused (if they were)."""
    calls, size = [], 0
    for out in cell.get("outputs", []):
        data = out.get("data", {}) if out.get("output_type") in ("display_data", "execute_result") else {}
        if MIME not in data:
            continue
        entry = data[MIME]
        size += len(json.dumps(entry)) if not isinstance(entry, str) else len(entry)
        if size > wire.MAX_BYTES:
            return [], f"the kernel sent more than {wire.MAX_BYTES // 2**20} MiB of results for this test"
        if isinstance(entry, str):
            try:
                entry = json.loads(entry)
            except json.JSONDecodeError:
                return [], "the kernel sent a result that is not JSON"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return [], "the kernel sent a malformed result"
        calls.append(entry)
    return calls, None


def _exception(raised: dict) -> Exception:
    bases = [getattr(builtins, b, None) for b in raised.get("bases", []) if isinstance(b, str)]
    base = next((b for b in bases if isinstance(b, type) and issubclass(b, Exception)
                 and not issubclass(b, (SystemExit, KeyboardInterrupt))), Exception)
    name = str(raised.get("type", "Error"))
    kind = base if base.__name__ == name else type(name if _IDENT.match(name) else "StudentError", (base,), {})
    try:
        return kind(str(raised.get("message", ""))[:4000])
    except Exception:  # a base that wants other arguments (UnicodeError, ...)
        return type(name if _IDENT.match(name) else "StudentError", (Exception,), {})(str(raised.get("message", "")))


def _restore(value, state: dict) -> None:
    """Give an input of the grader's call the state the student's function left it in."""
    import torch

    kind = state.get("t")
    with torch.no_grad():
        if kind == "module" and isinstance(value, torch.nn.Module):
            params, buffers = dict(value.named_parameters()), dict(value.named_buffers())
            for name, enc in state.get("params", {}).items():
                new = wire.decode(enc)
                if name not in params or not isinstance(new, torch.Tensor) or new.shape != params[name].shape:
                    raise CallMismatch(f"the kernel changed the parameter {name!r} into something else")
                params[name].copy_(new)
            for name, flag in state.get("requires_grad", {}).items():
                if name in params:
                    params[name].requires_grad_(bool(flag))
            for name, enc in state.get("grads", {}).items():
                if name in params:
                    grad = wire.decode(enc)
                    params[name].grad = grad.to(params[name].dtype) if isinstance(grad, torch.Tensor) and \
                        grad.shape == params[name].shape else None
            for name, enc in state.get("buffers", {}).items():
                new = wire.decode(enc)
                if name in buffers and isinstance(new, torch.Tensor) and new.shape == buffers[name].shape:
                    buffers[name].copy_(new)
            modules = dict(value.named_modules())
            for name, flag in state.get("training", {}).items():
                if name in modules:
                    modules[name].training = bool(flag)
        elif kind == "npgen" and isinstance(value, np.random.Generator):
            value.bit_generator.state = wire.decode(state["state"])
        elif kind == "torchgen" and isinstance(value, torch.Generator):
            value.set_state(wire.decode(state["state"]))
        elif kind == "tensor" and isinstance(value, torch.Tensor):
            new = wire.decode(state["value"])
            if isinstance(new, torch.Tensor) and new.shape == value.shape:
                value.copy_(new)


class _Stub:
    """Stands in, in the grader, for one of the student's functions."""

    def __init__(self, name: str, calls: list[dict], own: str | None):
        self.__name__ = self.__qualname__ = name
        self.__module__ = "__main__"
        self.__mlcourse_own__ = own
        self._calls = calls

    def __call__(self, *args, **kwargs):
        number = self._calls.count_used + 1
        if not self._calls:
            raise CallMismatch(f"the test calls {self.__name__} (call {number}), and your kernel sent no result "
                               "for it: the test stopped early in your kernel")
        entry = self._calls.pop(0)
        self._calls.count_used += 1
        if entry.get("name") != self.__name__:
            raise CallMismatch(f"call {number} of the test is to {self.__name__}, and your kernel sent the result "
                               "of another function")
        if entry.get("inputs") != wire.digest((list(args), kwargs)):
            raise CallMismatch(f"call {number} ({self.__name__}): your kernel called it with other inputs than "
                               "the test makes (a test cell or an input changed in your kernel)")
        inputs = _inputs(args, kwargs)
        for path, state in (entry.get("changed") or {}).items():
            if path in inputs and isinstance(state, dict):
                _restore(inputs[path], state)
        if "raised" in entry:
            raise _exception(entry["raised"] if isinstance(entry["raised"], dict) else {})
        if "result" not in entry:
            raise CallMismatch(f"call {number} ({self.__name__}): your kernel sent no result")

        def ref(path):
            if path not in inputs:
                raise wire.WireError(f"a reference to an unknown input {path!r}")
            return inputs[path]

        return wire.decode(entry["result"], refs=ref)


class _Calls(list):
    count_used = 0


def replay(plan: TestPlan, calls: list[dict]) -> dict:
    """Run ``plan``'s test in this process on the kernel's ``calls``: ``{"status", "error", "message"}``."""
    import torch

    queue = _Calls(calls)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    saved = (random.getstate(), np.random.get_state(), torch.is_grad_enabled(), torch.get_default_dtype())
    try:
        with torch.random.fork_rng(devices=[]):
            exec(compile(plan.setup, f"<setup of {plan.grade_id}>", "exec"), namespace)
            for name in plan.names:
                namespace[name] = _Stub(name, queue, plan.own.get(name))
            seed_all(SEED)
            exec(compile(plan.grader_source, f"<test {plan.grade_id}>", "exec"), namespace)
    except Exception as err:
        return {"status": "failed", "error": type(err).__name__ if _IDENT.match(type(err).__name__) else "Error",
                "message": str(err)[:500]}
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_grad_enabled(saved[2])
        torch.set_default_dtype(saved[3])
    return {"status": "passed"}

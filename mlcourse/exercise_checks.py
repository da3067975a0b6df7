"""Helpers for the autograded tests of the exercises."""
from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable

__all__ = ["assert_own_implementation", "runs_in_your_kernel"]


def runs_in_your_kernel(fn: Callable) -> Callable:
    """Mark a helper of a test whose result the grader takes from the student's kernel.

    A test that needs what only the student's kernel has (a gradient through the student's
    function, a backward pass) computes it in a helper decorated with this. When graded, the
    helper runs in the student's kernel, and what it returns is checked in the grader's own
    process (:mod:`mlcourse.grading.replay`). Outside grading it is the function itself.
    """
    @functools.wraps(fn)
    def helper(*args, **kwargs):
        channel = sys.modules.get("mlcourse.exercise_channel")  # loaded only in a grading kernel
        return fn(*args, **kwargs) if channel is None else channel.record(fn, fn.__name__)(*args, **kwargs)

    return helper


def assert_own_implementation(fn: Callable) -> None:
    """Fail if ``fn`` is (or just calls) the package's own version instead of the student's code.

    Raises:
        AssertionError: With a message telling the student what to change.
    """
    if hasattr(fn, "__mlcourse_own__"):  # graded: the grader's check of the submitted source
        if fn.__mlcourse_own__:
            raise AssertionError(fn.__mlcourse_own__)
        return
    module = getattr(fn, "__module__", "") or ""
    if module.startswith("mlcourse"):
        raise AssertionError(f"{fn.__name__} is mlcourse's own function: write your implementation in the notebook")
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        raise AssertionError(f"cannot read the source of {getattr(fn, '__name__', fn)!r}: define it with `def` "
                             "in the notebook") from None
    if "mlcourse" in source:
        raise AssertionError(f"{fn.__name__} uses mlcourse: implement it yourself, with NumPy/PyTorch only")

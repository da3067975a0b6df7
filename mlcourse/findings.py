"""What a lecture's text claims, checked against the run that just executed, without failing it.

A measured finding (one method ahead of another, a curve that bends) can move within noise
from one machine or seed to the next. A lecture therefore never asserts it: it reports, for
each claim of its text, whether this run shows it. A claim the run does not show is *not
settled at this budget*; it is not evidence against the paper that made it.
"""
from __future__ import annotations

from collections.abc import Mapping

from .config import is_quick

__all__ = ["report_findings", "glue"]


def report_findings(findings: Mapping[str, object], *, title: str = "The text's findings, on this run") -> dict[str, bool]:
    """Print whether each finding holds in this run; return ``{finding: holds}``.

    Args:
        findings: ``{claim, in words: whether this run shows it}``; values are read with ``bool``.
        title: The heading printed above the list.

    Returns:
        The same claims with ``bool`` values. Nothing is raised when a claim does not hold.

    Example:
        >>> report_findings({"ProtoNet beats pixel 1-NN": 0.81 > 0.63})  # doctest: +SKIP
    """
    if not isinstance(findings, Mapping) or not findings:
        raise ValueError("findings must be a non-empty mapping {claim: bool}")
    out = {str(claim): bool(holds) for claim, holds in findings.items()}
    note = " (a quick run: too short to say anything)" if is_quick() else ""
    print(f"{title}{note}:")
    for claim, holds in out.items():
        print(f"  [{'seen' if holds else 'not seen'}] {claim}")
    if not all(out.values()) and not is_quick():
        print("  A finding not seen here is not settled at this budget (one run, short training).")
    return out


class _Text(str):
    """A string shown without quotes (as a glued value in the book's prose)."""

    def __repr__(self) -> str:
        return str(self)


def glue(name: str, value: object, fmt: str = "") -> str:
    """Make ``value`` available to the page's prose as ``{glue:text}`name``` (the book's myst-nb), and return it.

    The number in the text is then the one this run computed, never one typed by hand.
    Outside a book build (JupyterLab, Colab without myst-nb) nothing is displayed.

    Args:
        name: The key the prose refers to.
        value: A number or a string.
        fmt: A format spec for numbers, e.g. ``".1f"``.
    """
    text = _Text(format(value, fmt) if fmt else str(value))
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return str(text)
    myst_glue(name, text, display=False)
    return str(text)

"""Run an assembled notebook in a sandboxed kernel and score its test cells.

A test earns its points when its replay in the grader's process, on the values the kernel
sent back, raises nothing (:mod:`mlcourse.grading.replay`); the kernel's own outcome of the
cell does not count. The kernel is
started through :mod:`mlcourse.grading.sandbox` (see there for the limits and the isolation);
this module drives it cell by cell with ``nbclient``: a cell that runs longer than
``cell_timeout`` is interrupted and scores 0, and when the launcher kills the kernel (memory,
total time) or the kernel dies, the cells that did not run score 0 and the reason is kept.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .assemble import graded_cells

__all__ = ["Limits", "Execution", "execute", "interrupted_cells", "score_cells", "SANDBOX", "MAX_OUTPUT_BYTES"]

SANDBOX = Path(__file__).with_name("sandbox.py")  # run by path: the launcher must not import torch


@dataclass
class Limits:
    """Resources of one grading kernel.

    Attributes:
        cell_timeout: Seconds a cell may run before it is interrupted (it then scores 0).
        timeout: Seconds the whole notebook may run before the kernel is killed.
        memory_mb: Resident memory of the kernel and its children before it is killed.
        isolation: ``"bwrap"`` (an allow-list sandbox of bubblewrap: no network, private
            ``/tmp``; another user when root), ``"namespace"`` (hidden paths, another user, no
            network; needs root) or ``"none"``.
        hide: Paths the kernel must not see (namespace isolation only).
        uid: User id the kernel runs as (namespace isolation only).
        data: Data cache the kernel gets a private copy of.
        disk_mb: Files the kernel may write to its folders before it is killed.
        screen: Score no test of a notebook whose code drives the kernel or loads code by name
            (:func:`~mlcourse.grading.static.screen`); turned off only to test the verdicts alone.
        zygote: Socket of a warm process that forks the kernel into its bubblewrap sandbox
            (:mod:`mlcourse.grading.zygote`; the batch grader starts one when it runs as root).
    """

    cell_timeout: float = 300
    timeout: float = 1200
    memory_mb: float = 4096
    isolation: str = "none"
    hide: list[str] = field(default_factory=list)
    uid: int = 61000
    data: str | None = None
    screen: bool = True
    disk_mb: float = 1024
    zygote: str | None = None


@dataclass
class Execution:
    """What happened: replies per cell index, and why the kernel ended early (if it did)."""

    notebook: nbformat.NotebookNode
    replies: dict[int, dict] = field(default_factory=dict)
    killed: dict | None = None
    error: str | None = None
    peak_mb: float | None = None


def _kernelspec(folder: Path, limits: Limits, report: Path) -> None:
    argv = [sys.executable, str(SANDBOX), "--report", str(report), "--memory-mb", str(limits.memory_mb),
            "--root", str(folder), "--log", str(folder / "kernel.log"),
            "--wall-s", str(limits.timeout), "--disk-mb", str(limits.disk_mb), "--isolation", limits.isolation, "--uid", str(limits.uid)]
    for path in limits.hide:
        argv += ["--hide", str(path)]
    if limits.data:
        argv += ["--data", str(limits.data)]
    if limits.isolation != "none":  # no network: the kernel is reached over sockets in this folder
        argv += ["--ipc", str(folder / "ipc")]
    if limits.zygote:
        argv += ["--zygote", limits.zygote]
    argv += ["--", sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = folder / "kernels" / "mlcourse-grading"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "mlcourse grading",
                                                  "language": "python", "interrupt_mode": "signal"}))


#: Bytes of printed output kept per cell; beyond them a flood is dropped (the results a test sends have their own budget).
MAX_OUTPUT_BYTES = 2 * 2**20


def _capped_client(**kwargs):
    """An ``nbclient`` client that keeps at most :data:`MAX_OUTPUT_BYTES` of output per cell (floods are dropped)."""
    from nbclient import NotebookClient

    from ..exercise_channel import MIME
    from ..wire import MAX_BYTES

    class Capped(NotebookClient):
        sizes: dict = {}

        def output(self, outs, msg, display_id, cell_index):
            out = super().output(outs, msg, display_id, cell_index)
            if out is None:
                return out
            record = MIME in out.get("data", {})
            key = (cell_index, record)
            self.sizes[key] = self.sizes.get(key, 0) + len(json.dumps(out))
            if self.sizes[key] > (MAX_BYTES if record else MAX_OUTPUT_BYTES):
                if outs and outs[-1] is out:
                    outs.pop()
                if not record and not self.sizes.get((cell_index, "noted")):
                    self.sizes[(cell_index, "noted")] = True
                    outs.append(nbformat.v4.new_output("stream", name="stderr", text="[output truncated]\n"))
            return out

    client = Capped(**kwargs)
    client.sizes = {}
    return client


def execute(nb: nbformat.NotebookNode, limits: Limits, upto: int | None = None) -> Execution:
    """Execute the code cells of ``nb`` (in place) in a sandboxed kernel; never raises.

    ``upto``: the index of the last cell to run (the grader passes its last test: the cells
    after it cannot change a score, so they are not run); ``None`` runs every cell.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from nbclient.exceptions import DeadKernelError

    run = Execution(nb)
    last = len(nb.cells) - 1 if upto is None else min(upto, len(nb.cells) - 1)
    with tempfile.TemporaryDirectory(prefix="mlcourse-exec-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o711)  # the kernel's user may enter it to reach its own working folder
        report = folder / "report.json"
        _kernelspec(folder, limits, report)
        ksm = KernelSpecManager(kernel_dirs=[str(folder / "kernels")])
        km = AsyncKernelManager(kernel_name="mlcourse-grading", kernel_spec_manager=ksm)
        if limits.isolation != "none":
            (folder / "ipc").mkdir()
            km.transport, km.ip = "ipc", str(folder / "ipc" / "k")
        client = _capped_client(
            nb=nb, km=km, timeout=max(1, round(limits.cell_timeout)), interrupt_on_timeout=True, allow_errors=True,
            startup_timeout=120, record_timing=False, kernel_name="mlcourse-grading",
            error_on_timeout={"ename": "CellTimeout", "traceback": [],
                              "evalue": f"the cell ran longer than {limits.cell_timeout:g} s and was interrupted"},
            on_cell_executed=lambda cell, cell_index, execute_reply: run.replies.__setitem__(
                cell_index, execute_reply.get("content", {})),
            resources={"metadata": {"path": tmp}})
        try:
            with client.setup_kernel():
                for index, cell in enumerate(nb.cells[:last + 1]):
                    if cell.cell_type == "code":
                        client.execute_cell(cell, index)
        except DeadKernelError:
            pass
        except Exception as err:  # a kernel that never started, a broken channel: keep the reason
            log = folder / "kernel.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            run.error = f"{type(err).__name__}: {err}" + (f"\nkernel log:\n{tail}" if tail else "")
        finally:
            try:
                if km.has_kernel:
                    run_sync(km.shutdown_kernel)(now=False)
            except Exception:
                pass
        if report.exists():
            info = json.loads(report.read_text())
            run.peak_mb = info.get("peak_mb")
            if info.get("reason") in ("memory", "timeout", "disk"):
                run.killed = info
            elif len(run.replies) < sum(c.cell_type == "code" for c in nb.cells[:last + 1]) and run.error is None:
                run.killed = {"reason": "died", "detail": f"the kernel died ({info.get('detail', 'no reason given')})"}
    return run


def interrupted_cells(run: Execution) -> list[str]:
    """Notes for ungraded cells that were interrupted at the cell timeout.

    The cell that was running when the launcher killed the kernel (memory, total time, disk)
    gets no note: which of the two limits it reached first depends on how busy the machine
    was, and the status already says why the kernel stopped.
    """
    notes = []
    last = max(run.replies, default=None) if run.killed else None
    for index, reply in sorted(run.replies.items()):
        if index == last:
            continue
        meta = run.notebook.cells[index].metadata.get("nbgrader", {})
        if reply.get("ename") == "CellTimeout" and not meta.get("grade"):
            name = meta.get("grade_id") or f"number {index + 1}"
            notes.append(f"cell {name} ran past the cell timeout and was interrupted")
    return notes


def score_cells(run: Execution, plans: dict | None = None) -> list[dict]:
    """Per graded cell: ``name``, ``score``, ``max_score``, ``status`` and, on failure, ``error``/``message``.

    With ``plans`` (:func:`~mlcourse.grading.replay.plan_tests`), a test that ran passes when
    its replay in this process on the kernel's results raises nothing; the kernel's own
    outcome of the cell is not trusted. Without, a cell passes when it ran without an error.
    """
    from .replay import CallMismatch, recorded_calls, replay

    index = {c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(run.notebook.cells)}
    cells = []
    for gid, points in graded_cells(run.notebook):
        reply = run.replies.get(index[gid])
        entry = {"name": gid, "score": 0.0, "max_score": points}
        kernel_error = (reply or {}).get("ename") if (reply or {}).get("status") != "ok" else None
        if reply is None:
            entry.update(status="not run", error=(run.killed or {}).get("reason", "not run"))
        elif kernel_error == "CellTimeout":
            entry.update(status="timeout", error="CellTimeout", message=str(reply.get("evalue", ""))[:500])
        elif plans is None or gid not in plans:
            if reply.get("status") == "ok":
                entry.update(status="passed", score=points)
            else:
                entry.update(status="failed", error=reply.get("ename") or "error",
                             message=str(reply.get("evalue", ""))[:500])
        else:
            calls, refused = recorded_calls(run.notebook.cells[index[gid]])
            verdict = {"status": "failed", "error": "CallMismatch", "message": refused} if refused else \
                replay(plans[gid], calls)
            if verdict["status"] == "passed":
                entry.update(status="passed", score=points)
            else:
                entry.update(verdict)
                if verdict["error"] == CallMismatch.__name__ and kernel_error:  # it stopped early in the kernel
                    name = str(kernel_error)
                    entry.update(error=name if name.isidentifier() and len(name) <= 40 else "error",
                                 message=str(reply.get("evalue", ""))[:500])
        cells.append(entry)
    return cells


os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")  # silence jupyter_core's deprecation warning

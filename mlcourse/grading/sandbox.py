"""A Jupyter kernel for grading untrusted notebooks: hidden paths, another user, limits.

The grader starts every student's kernel through this launcher (it is the ``argv`` of a
throw-away kernelspec)::

    python mlcourse/grading/sandbox.py --report R.json --memory-mb 4096 --wall-s 1200 \\
        --uid 61001 --hide /course/solutions --hide /course/.git --data ~/.cache/mlcourse \\
        -- python -m ipykernel_launcher -f {connection_file}

The launcher stays in the middle, as the kernel's parent, and

- starts the kernel in a fresh working folder with a clean environment (no tokens or
  secrets of the grader's environment, ``HOME`` in that folder) and a private copy of the
  data cache (hard links where possible, so that it costs nothing);
- with ``isolation="namespace"`` (the grader is root and may create a mount namespace, as in
  a container or a CI runner), mounts an empty read-only ``tmpfs`` over every ``--hide``
  path (the instructor notebooks, the repository's git objects, the other submissions) and
  then runs the kernel as the unprivileged user ``--uid``, one per worker so that
  concurrent kernels cannot signal each other;
- watches the resident memory of the kernel and of all its children and kills them when it
  exceeds ``--memory-mb``, and kills them after ``--wall-s`` seconds, writing the reason to
  ``--report`` for the grader to read;
- kills whatever the kernel started when the kernel ends (by user id in namespace mode).

Interrupts: the grader interrupts a cell that ran past its timeout with SIGINT to the
process group; the launcher ignores it, the kernel turns it into ``KeyboardInterrupt``.
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["isolation_available", "main"]

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1
ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "PYTHONHASHSEED",
            "JPY_PARENT_PID", "JPY_SESSION_NAME")
ENV_PREFIXES = ("MLCOURSE_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "TORCH_")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


@functools.lru_cache(maxsize=None)
def isolation_available() -> tuple[bool, str]:
    """Whether this process may run kernels in a mount namespace as another user, and why not."""
    if not sys.platform.startswith("linux"):
        return False, f"needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return False, "needs root (to hide the hidden tests in a mount namespace and to switch user)"
    with tempfile.TemporaryDirectory(prefix="mlcourse-probe-") as stage:
        probe = subprocess.run([sys.executable, __file__, "--probe", stage], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        return False, f"a kernel cannot start as an unprivileged user in a mount namespace here ({last})"
    return True, "ok"


def _needed() -> list[str]:
    """Folders the kernel needs: the interpreter, the environment, the package's checkout."""
    here = Path(__file__).resolve().parents[2]
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent,
             here}
    return sorted(str(p) for p in paths)


def _closed_ancestor(path: str) -> str | None:
    """The first folder on the way to ``path`` that others may not enter (e.g. ``/root``)."""
    parts = Path(path).parts
    for i in range(2, len(parts) + 1):
        folder = Path(*parts[:i])
        if not os.stat(folder).st_mode & 0o001:
            return str(folder)
    return None


def _enter_namespace(hide: list[str], stage: str | None = None) -> None:
    """A new mount namespace where the needed folders are reachable and the hidden ones empty.

    A needed folder behind a closed one (the interpreter under ``/root``) is bind-mounted to
    ``stage`` first; a read-only tmpfs then covers the closed folder, and the needed folder is
    mounted back at its own path inside it. Every hidden path gets an empty tmpfs on top.
    """
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    blocked = [(p, _closed_ancestor(p)) for p in _needed()]
    blocked = [(p, b) for p, b in blocked if b]
    if blocked:
        stage = stage or tempfile.mkdtemp(prefix="mlcourse-stage-")
        staged = []
        for i, (path, _) in enumerate(blocked):
            target = os.path.join(stage, str(i))
            os.makedirs(target, exist_ok=True)
            _check(libc.mount(os.fsencode(path), os.fsencode(target), None, MS_BIND | MS_REC, None),
                   f"bind {path}")
            staged.append(target)
        for closed in sorted({b for _, b in blocked}, key=len):
            _check(libc.mount(b"tmpfs", os.fsencode(closed), b"tmpfs", MS_NOSUID | MS_NODEV,
                              b"size=64k,mode=755"), f"mount tmpfs on {closed}")
        for (path, _), target in zip(blocked, staged):
            os.makedirs(path, exist_ok=True)
            _check(libc.mount(os.fsencode(target), os.fsencode(path), None, MS_BIND | MS_REC, None),
                   f"bind back {path}")
    for path in hide:
        p = os.fsencode(path)
        if os.path.isdir(path):
            _check(libc.mount(b"tmpfs", p, b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                              b"size=4k,mode=000"), f"mount tmpfs on {path}")
        elif os.path.exists(path):
            _check(libc.mount(b"/dev/null", p, None, MS_BIND, None), f"bind /dev/null on {path}")


def _private_data(source: str | None, target: Path) -> None:
    """Give the kernel its own data folder holding the grader's cached files (hard links or copies)."""
    target.mkdir(parents=True, exist_ok=True)
    if not source or not os.path.isdir(source):
        return
    for entry in os.scandir(source):
        if entry.is_file(follow_symlinks=False) and not entry.name.endswith(".tmp"):
            dest = target / entry.name
            try:
                os.link(entry.path, dest)
            except OSError:
                shutil.copy2(entry.path, dest)


def _environment(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ENV_KEEP or k.startswith(ENV_PREFIXES)}
    env.update(HOME=str(workdir), TMPDIR=str(workdir / "tmp"), IPYTHONDIR=str(workdir / ".ipython"),
               MPLCONFIGDIR=str(workdir / ".matplotlib"), MLCOURSE_DATA=str(workdir / "data"),
               PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1")
    return env


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [pid] + [c.pid for c in root.children(recursive=True)]
    except psutil.Error:
        return []


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total / 2**20


def _kill_user(uid: int) -> None:
    """SIGKILL every process of ``uid`` (a kernel's stray children, in namespace mode)."""
    import psutil

    for proc in psutil.process_iter(["uids"]):
        try:
            if proc.info["uids"] and proc.info["uids"].real == uid:
                proc.kill()
        except psutil.Error:
            pass


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--probe"]:  # can we isolate? (see isolation_available)
        _enter_namespace([], sys.argv[2])
        os.setgroups([])
        os.setgid(61000)
        os.setuid(61000)
        os.chdir("/")
        os.execv(sys.executable, [sys.executable, "-c", "import ipykernel, mlcourse"])
    parser = argparse.ArgumentParser(prog="sandbox.py", description=__doc__.splitlines()[0])
    parser.add_argument("--report", required=True, help="JSON file for the reason the kernel was killed")
    parser.add_argument("--memory-mb", type=float, default=4096)
    parser.add_argument("--wall-s", type=float, default=1800)
    parser.add_argument("--isolation", choices=["namespace", "none"], default="none")
    parser.add_argument("--uid", type=int, default=61000)
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("--data", help="data cache to give the kernel a private copy of")
    parser.add_argument("--root", help="folder for the kernel's working folder (default: the temp folder); "
                                       "the grader removes it, even after a SIGKILL")
    parser.add_argument("--log", help="file for the kernel's own stdout and stderr")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the kernel command after --")

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the kernel
    workdir = Path(tempfile.mkdtemp(prefix="mlcourse-kernel-", dir=args.root))
    stage = workdir.with_name(workdir.name + "-stage")  # mount points of the namespace (empty outside)
    stage.mkdir()
    for sub in ("tmp", ".ipython", ".matplotlib"):
        (workdir / sub).mkdir()
    _private_data(args.data, workdir / "data")
    isolated = args.isolation == "namespace"
    # The kernel reads its connection file after it switched user: give it its own copy.
    for i, arg in enumerate(cmd):
        if arg == "-f" and i + 1 < len(cmd) and os.path.exists(cmd[i + 1]):
            own = workdir / "connection.json"
            shutil.copy(cmd[i + 1], own)
            cmd[i + 1] = str(own)
    if isolated:  # the folders and the connection file; the data files stay the grader's (hard links)
        for path in [workdir, *(p for p in workdir.iterdir() if p.is_dir() or p.name == "connection.json")]:
            os.chown(path, args.uid, args.uid)
        os.chmod(workdir, 0o700)

    def start_kernel() -> None:  # runs in the child, before exec
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**30, 2**30))  # no file over 1 GiB
        if isolated:
            _enter_namespace(args.hide, str(stage))
            resource.setrlimit(resource.RLIMIT_NPROC, (512, 512))
            os.setgroups([])
            os.setgid(args.uid)
            os.setuid(args.uid)
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it

    reason: dict | None = None
    peak, code = 0.0, None
    try:
        log = open(args.log, "ab") if args.log else None
        kernel = subprocess.Popen(cmd, cwd=workdir, env=_environment(workdir), preexec_fn=start_kernel,
                                  stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        signal.signal(signal.SIGTERM, lambda *_: kernel.kill())
        start = time.monotonic()
        while kernel.poll() is None:
            rss = _rss_mb(_tree(kernel.pid))
            peak = max(peak, rss)
            if rss > args.memory_mb:
                reason = {"reason": "memory", "detail": f"the kernel used {rss:.0f} MiB of memory, more than the "
                                                         f"limit of {args.memory_mb:.0f} MiB"}
            elif time.monotonic() - start > args.wall_s:
                reason = {"reason": "timeout", "detail": f"the notebook ran longer than {args.wall_s:.0f} s in all"}
            if reason:
                for pid in reversed(_tree(kernel.pid)):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                break
            time.sleep(0.05)
        code = kernel.wait()
    finally:
        if isolated:
            _kill_user(args.uid)
        report = reason or {"reason": "exit", "detail": f"the kernel exited with code {code}"}
        report["peak_mb"] = round(peak, 1)
        tmp = Path(args.report + ".tmp")
        tmp.write_text(json.dumps(report))
        tmp.replace(args.report)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(stage, ignore_errors=True)
    return code if reason is None else 1


if __name__ == "__main__":
    sys.exit(main())

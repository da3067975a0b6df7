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

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
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


BWRAP_TMPFS_MB = 256  # each of the kernel's private /tmp and /dev/shm
ETC_KEEP = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group", "hosts",
            "mime.types", "fonts", "ssl/certs")


def _allow_list() -> list[str]:
    """What a bubblewrap kernel sees of the machine: the system's libraries, the interpreter, the package.

    The package's folder itself (``mlcourse/``), never the checkout around it, where the
    instructor notebooks live.
    """
    import site

    package = Path(__file__).resolve().parents[1]
    paths = {"/usr", Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
             Path(sys.executable).resolve().parent, package}
    for entry in [*sys.path, *site.getsitepackages()]:
        if entry and os.path.isdir(entry) and ("site-packages" in entry or entry.endswith("dist-packages")):
            paths.add(Path(entry).resolve())
    return sorted({str(p) for p in paths})


def bwrap_command(workdir: Path, extra_rw: list[str], uid: int | None, cmd: list[str]) -> list[str]:
    """The ``bwrap`` command that runs ``cmd`` in an allow-list sandbox (see the module's description)."""
    argv = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--unshare-net", "--unshare-ipc",
            "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "grading"]
    def parents(paths):  # bwrap makes missing folders 0700: make the way to each bound path 0755
        out = []
        for parent in sorted({str(q) for p in paths for q in Path(p).parents if str(q) != "/"}, key=len):
            out += ["--perms", "0755", "--dir", parent]
        return out

    allowed = _allow_list()
    argv += parents(allowed)
    for path in allowed:
        argv += ["--ro-bind", path, path]
    for name in ("bin", "lib", "lib64", "sbin"):  # merged-/usr systems: links into /usr
        target = f"/{name}"
        if os.path.islink(target):
            argv += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            argv += ["--ro-bind", target, target]
    for name in ETC_KEEP:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(BWRAP_TMPFS_MB * 2**20), "--tmpfs", "/tmp",
             "--size", str(BWRAP_TMPFS_MB * 2**20), "--tmpfs", "/dev/shm"]
    argv += parents([str(workdir), *extra_rw])
    for path in [str(workdir), *extra_rw]:
        argv += ["--bind", path, path]
    argv += ["--chdir", str(workdir)]
    if uid is not None:
        argv += ["--", shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}",
                 "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
    return argv + ["--", *cmd]


@functools.lru_cache(maxsize=None)
def bwrap_available() -> tuple[bool, str]:
    """Whether kernels can run in a bubblewrap sandbox here (as user 61000 when root), and why not."""
    if not sys.platform.startswith("linux"):
        return False, f"needs Linux (this is {sys.platform})"
    if not shutil.which("bwrap"):
        return False, "bubblewrap is not installed (apt install bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="mlcourse-probe-") as stage:
        os.chmod(stage, 0o777)
        uid = 61000 if os.geteuid() == 0 else None
        probe = subprocess.run(bwrap_command(Path(stage), [], uid, [sys.executable, "-c", "import ipykernel, mlcourse"]),
                               capture_output=True, text=True, cwd=stage)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        return False, f"bubblewrap cannot start a kernel here ({last})"
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


def _enter_namespace(hide: list[str], stage: str | None = None, network: bool = False) -> None:
    """A new mount namespace where the needed folders are reachable and the hidden ones empty.

    A needed folder behind a closed one (the interpreter under ``/root``) is bind-mounted to
    ``stage`` first; a read-only tmpfs then covers the closed folder, and the needed folder is
    mounted back at its own path inside it. Every hidden path gets an empty tmpfs on top.
    """
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS | (CLONE_NEWNET if network else 0)), "unshare")
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
               PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1",
               # glibc's defaults: the memory limit measures a notebook as the allocator usually runs it
               # (kept freed memory raises the peak, see mlcourse.memory), in cold and forked kernels alike
               MLCOURSE_KEEP_FREED_MEMORY="0")
    return env


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from ``/proc/PID/task/TID/children``: a few small files
    per poll instead of a scan of every process; psutil where the kernel lacks those files)."""
    if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        import psutil

        try:
            root = psutil.Process(pid)
            return [pid] + [c.pid for c in root.children(recursive=True)]
        except psutil.Error:
            return []
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                pass
    return found


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total / 2**20


UID_LOCKS = Path("/run/mlcourse-grading")  # root's; one lock per user id in use by a kernel


def _claim_uid(start: int, tries: int = 4000):
    """The first user id from ``start`` that no other grading kernel on this machine holds, and its lock.

    Kernels of two graders running at once (two shards, two tests) must not share a user id:
    the launcher kills every process of its user id when its kernel ends.
    """
    import fcntl

    UID_LOCKS.mkdir(mode=0o700, exist_ok=True)
    for uid in range(start, start + tries):
        handle = open(UID_LOCKS / f"{uid}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, handle
        except OSError:
            handle.close()
    raise RuntimeError(f"no free user id for a grading kernel in {start}..{start + tries - 1}")


def _du(folder) -> int:
    """Bytes of the files under ``folder`` (not following links)."""
    total = 0
    for base, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _kill_user(uid: int) -> None:
    """SIGKILL every process of ``uid`` (a kernel's stray children, in namespace mode)."""
    import psutil

    for proc in psutil.process_iter(["uids"]):
        try:
            if proc.info["uids"] and proc.info["uids"].real == uid:
                proc.kill()
        except psutil.Error:
            pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _fork_from_zygote(zygote: str, bwrap_pid: int, uid: int, workdir: Path, env: dict, argv: list[str],
                      log: str | None) -> int:
    """The kernel's process id, forked by the zygote into the sandbox whose placeholder ``bwrap_pid`` started.

    Waits for the placeholder (``sleep``, once bubblewrap has built the sandbox), then asks
    the zygote (:func:`mlcourse.grading.zygote.request_kernel`).
    """
    deadline = time.monotonic() + 30
    holder = None
    while holder is None:
        for pid in _tree(bwrap_pid)[1:]:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                    holder = pid
            except OSError:
                pass
        if holder is None:
            if time.monotonic() > deadline or not _running(bwrap_pid):
                raise OSError("bubblewrap did not start the placeholder of the sandbox")
            time.sleep(0.005)
    sys.path.insert(0, str(Path(__file__).parent))
    from zygote import request_kernel

    return request_kernel(zygote, {"ns_pid": holder, "uid": uid, "cwd": str(workdir), "env": env, "argv": argv,
                                   "log": log or os.devnull})


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
    parser.add_argument("--isolation", choices=["bwrap", "namespace", "none"], default="none")
    parser.add_argument("--ipc", help="folder of the kernel's sockets (ipc transport), shared with the grader")
    parser.add_argument("--disk-mb", type=float, default=1024, help="most the kernel may write to its folders")
    parser.add_argument("--uid", type=int, default=61000)
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("--data", help="data cache to give the kernel a private copy of")
    parser.add_argument("--root", help="folder for the kernel's working folder (default: the temp folder); "
                                       "the grader removes it, even after a SIGKILL")
    parser.add_argument("--log", help="file for the kernel's own stdout and stderr")
    parser.add_argument("--zygote", help="socket of a warm process to fork the kernel from, in its bubblewrap "
                                         "sandbox (mlcourse/grading/zygote.py; bwrap as root only)")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the kernel command after --")

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # until the kernel runs: clean up and go
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # a grader killed outright takes its kernel with it
    if os.getppid() == 1:
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="mlcourse-kernel-", dir=args.root))
    stage = workdir.with_name(workdir.name + "-stage")  # mount points of the namespace (empty outside)
    stage.mkdir()
    for sub in ("tmp", ".ipython", ".matplotlib"):
        (workdir / sub).mkdir()
    _private_data(args.data, workdir / "data")
    root = os.geteuid() == 0
    isolated = args.isolation == "namespace" or args.isolation == "bwrap" and root  # another user id
    if isolated:
        args.uid, _uid_lock = _claim_uid(args.uid)  # held until this launcher exits
    if args.ipc and isolated:
        os.chown(args.ipc, args.uid, args.uid)
    # The kernel reads its connection file after it switched user: give it its own copy.
    for i, arg in enumerate(cmd):
        if arg == "-f" and i + 1 < len(cmd) and os.path.exists(cmd[i + 1]):
            own = workdir / "connection.json"
            shutil.copy(cmd[i + 1], own)
            cmd[i + 1] = str(own)
    kernel_argv = cmd[cmd.index("-f"):] if "-f" in cmd else []
    warm = bool(args.zygote) and args.isolation == "bwrap" and isolated and bool(kernel_argv)
    kernel_cmd = cmd
    if args.isolation == "bwrap":
        inner = [shutil.which("sleep") or "/usr/bin/sleep", "infinity"] if warm else cmd  # warm: a placeholder
        cmd = bwrap_command(workdir, [args.ipc] if args.ipc else [], args.uid if isolated else None, inner)
    if isolated:  # the folders and the connection file; the data files stay the grader's (hard links)
        for path in [workdir, *(p for p in workdir.iterdir() if p.is_dir() or p.name == "connection.json")]:
            os.chown(path, args.uid, args.uid)
        os.chmod(workdir, 0o700)

    def start_kernel() -> None:  # runs in the child, before exec
        if args.isolation != "bwrap":  # bwrap must ignore the grader's interrupts; ipykernel takes them itself
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**28, 2**28))  # no file over 256 MiB
        if isolated:
            resource.setrlimit(resource.RLIMIT_NPROC, (512, 512))  # counted for the kernel's user, not root
        if args.isolation == "namespace":
            _enter_namespace(args.hide, str(stage), network=bool(args.ipc))
            os.setgroups([])
            os.setgid(args.uid)
            os.setuid(args.uid)
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it

    reason: dict | None = None
    peak, code = 0.0, None
    try:
        log = open(args.log, "ab") if args.log else None
        env = _environment(workdir)
        if args.isolation == "bwrap":  # in its own process namespace, the grader's pid means nothing to it
            env.pop("JPY_PARENT_PID", None)
        kernel = subprocess.Popen(cmd, cwd=workdir, env=env, preexec_fn=start_kernel,
                                  stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        signal.signal(signal.SIGTERM, lambda *_: kernel.kill())
        forked = None  # the kernel's process id when the zygote forked it into the sandbox
        if warm:
            try:
                forked = _fork_from_zygote(args.zygote, kernel.pid, args.uid, workdir, env, kernel_argv, args.log)
            except OSError as err:  # no zygote: start this kernel cold in the same sandbox
                if log:
                    log.write(f"sandbox: {err}; the kernel starts without the zygote\n".encode())
                    log.flush()
                kernel.kill()
                kernel.wait()
                cmd = bwrap_command(workdir, [args.ipc] if args.ipc else [], args.uid, kernel_cmd)
                kernel = subprocess.Popen(cmd, cwd=workdir, env=env, preexec_fn=start_kernel,
                                          stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            else:
                signal.signal(signal.SIGINT, lambda *_: _signal(forked, signal.SIGINT))  # the grader's interrupts
        start = time.monotonic()
        next_disk_check = start + 1.0
        while kernel.poll() is None:
            if forked is not None and not _running(forked):  # the kernel ended: end its sandbox
                kernel.kill()
                break
            rss = _rss_mb(_tree(kernel.pid) + (_tree(forked) if forked else []))
            peak = max(peak, rss)
            if rss > args.memory_mb:
                reason = {"reason": "memory", "detail": f"the kernel used {rss:.0f} MiB of memory, more than the "
                                                         f"limit of {args.memory_mb:.0f} MiB"}
            elif time.monotonic() - start > args.wall_s:
                reason = {"reason": "timeout", "detail": f"the notebook ran longer than {args.wall_s:.0f} s in all"}
            elif time.monotonic() >= next_disk_check:
                next_disk_check = time.monotonic() + 1.0
                used = sum(_du(p) for p in (workdir, args.ipc) if p) / 2**20
                if used > args.disk_mb:
                    reason = {"reason": "disk", "detail": f"the kernel wrote {used:.0f} MiB of files, more than the "
                                                          f"limit of {args.disk_mb:.0f} MiB"}
            if reason:
                for pid in reversed(_tree(kernel.pid) + (_tree(forked) if forked else [])):
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

"""Grading kernels forked from a warm process: the imports every kernel needs, paid once a batch.

A grading kernel spends most of its CPU importing: ipykernel, NumPy and PyTorch take about
2.5 s of a core on the course's machine, often more than the exercise's tests. A batch run
as root with bubblewrap isolation (:func:`~mlcourse.grading.batch.grade_class`) therefore
starts one *zygote*: this file run by path (so that it imports no part of the grader) in the
kernels' clean environment. It imports :data:`PRELOAD` once, then waits on a Unix socket in a
folder only root may enter. For each kernel:

1. the launcher (:mod:`mlcourse.grading.sandbox`) builds the kernel's bubblewrap sandbox exactly
   as for a kernel started cold, with a placeholder (``sleep``) where the kernel would run;
2. it sends the zygote the placeholder's process id, the kernel's user id, working folder,
   environment, log file and connection file;
3. the zygote forks; the child opens the placeholder's namespaces and joins them with
   ``setns(2)`` (IPC, UTS, network, cgroup, process and, last, mount): it then sees what the
   placeholder sees, the allow-list of files, the private ``/tmp`` and ``/dev/shm`` and no network;
4. it forks once more, so that the kernel is inside the sandbox's process namespace, and
   replies with the kernel's process id; the kernel process drops every capability and the
   bounding set, sets the kernel's limits (no core files, 256 MiB per file, 512 processes),
   becomes the kernel's user with ``no_new_privs``, closes every file the zygote had open, takes
   the kernel's environment, folder and ``sys.path``, and runs ipykernel in-process;
5. the launcher watches the kernel as any other (memory, time, disk), forwards the grader's
   interrupts to it, and when it ends kills the placeholder: the sandbox's first process then
   exits, and the kernel ends with everything it started.

What a kernel gets is what a cold kernel gets (the same mounts, user, limits and environment).
What differs: the preloaded modules are in ``sys.modules`` before the notebook imports them,
they count towards the kernel's resident memory from the start, and every kernel of a batch
has the zygote's hash seed.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import struct
import sys

__all__ = ["PRELOAD", "request_kernel", "serve", "start"]

#: Modules the zygote imports before forking kernels (each is skipped if it is not installed).
PRELOAD = ["ipykernel.kernelapp", "ipykernel.ipkernel", "IPython", "numpy", "torch", "torch.nn",
           "torch.nn.functional", "mlcourse.exercise_channel", "mlcourse.exercise_checks"]
NAMESPACES = ("ipc", "uts", "net", "cgroup", "pid", "mnt")  # the mount namespace last: it changes the root
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
LAST_CAP = 63


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _become_kernel(request: dict, conn: socket.socket) -> None:
    """In a fresh child of the zygote: join the sandbox, fork the kernel, reply with its pid."""
    libc = _libc()
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    holder = int(request["ns_pid"])
    fds = []
    for name in NAMESPACES:
        try:
            fds.append((name, os.open(f"/proc/{holder}/ns/{name}", os.O_RDONLY)))
        except FileNotFoundError:  # a kernel without cgroup namespaces
            continue
    for name, fd in fds:
        _check(libc.setns(fd, 0), f"setns {name}")
        os.close(fd)
    pid = os.fork()
    if pid:  # stays outside the process namespace: the kernel's parent, until the kernel ends
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        conn.close()
        os.close(log)
        os.close(null)
        os.waitpid(pid, 0)
        os._exit(0)
    conn.close()
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**28, 2**28))  # no file over 256 MiB
    resource.setrlimit(resource.RLIMIT_NPROC, (512, 512))  # counted for the kernel's user
    os.chdir(request["cwd"])
    uid = int(request["uid"])
    for cap in range(LAST_CAP + 1):  # nothing gained back by running a program with file capabilities
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # from root to another user: every capability is gone
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)
    os.umask(0o022)
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ["PWD"] = request["cwd"]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p not in ("", here)]  # as for `python -m ipykernel_launcher`
    sys.argv = ["ipykernel_launcher", *request["argv"]]
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False, buffering=1)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    try:
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(path: str) -> None:
    """Preload, then fork a kernel for every request on the Unix socket ``path`` (root's only)."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the system
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, peer_uid, _ = struct.unpack("3i", creds)
            data = b""
            while not data.endswith(b"\n") and len(data) < 1 << 20:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            if peer_uid != 0 or not data.endswith(b"\n"):
                conn.close()
                continue
            request = json.loads(data)
        except (OSError, ValueError):
            conn.close()
            continue
        if os.fork() == 0:
            server.close()
            try:
                _become_kernel(request, conn)
            except BaseException as err:
                try:
                    conn.sendall(json.dumps({"error": f"{type(err).__name__}: {err}"}).encode() + b"\n")
                except OSError:
                    pass
            os._exit(1)
        conn.close()


def request_kernel(path: str, request: dict, timeout: float = 30) -> int:
    """Ask the zygote on ``path`` for a kernel (see the module's description); its process id.

    Raises:
        OSError: The zygote is not there, did not answer, or could not start the kernel.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        conn.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        reply = json.loads(data)
    except ValueError:
        raise OSError("the zygote closed the connection without a kernel") from None
    if "pid" not in reply:
        raise OSError(f"the zygote could not start the kernel: {reply.get('error')}")
    return int(reply["pid"])


def start(folder: str | os.PathLike, env: dict[str, str], timeout: float = 120):
    """Start a zygote whose socket is in ``folder`` (root's only), with the kernels' environment ``env``.

    Returns:
        ``(process, socket path)`` once it has imported :data:`PRELOAD`; stop it with
        ``process.kill()`` (kernels it forked keep running until they end).

    Raises:
        OSError: It did not start (its last words are in the message).
    """
    import subprocess
    import time

    path = os.path.join(os.fspath(folder), "zygote.sock")
    proc = subprocess.Popen([sys.executable, __file__, path], env=env, cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()  # "ready" once preloaded
    if line.strip() != b"ready" or time.monotonic() > deadline:
        proc.kill()
        _, err = proc.communicate()
        raise OSError(f"the zygote did not start: {err.decode(errors='replace')[-500:]}")
    return proc, path


if __name__ == "__main__":
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the batch that started it ends it
    os.chdir("/")
    serve(sys.argv[1])

"""Kernels forked from the zygote see what kernels started cold see, and the grader falls back when it is gone."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import nbformat
import pytest

from mlcourse.config import data_dir
from mlcourse.grading import Limits
from mlcourse.grading import zygote
from mlcourse.grading.execute import execute
from mlcourse.grading.autograde import default_hidden, resolve_isolation
from mlcourse.grading.sandbox import _environment

COURSE = Path(__file__).resolve().parents[2]
PROBE = r'''
import json, os, re, socket, sys
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
view = {key: status[key].strip() for key in ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb",
                                            "NoNewPrivs", "Seccomp")}
view["root"] = sorted(os.listdir("/"))
view["course"] = os.path.exists(COURSE)
view["tmp"] = [name for name in os.listdir("/tmp") if not name.startswith("mlcourse-exec-")]
view["shm"] = os.listdir("/dev/shm")
view["in_its_folder"] = os.getcwd() == os.environ["HOME"] == os.environ["PWD"]
view["env"] = sorted(os.environ)
view["interfaces"] = sorted(name for _, name in socket.if_nameindex())
try:
    socket.create_connection(("127.0.0.1", 22), timeout=1)
    view["network"] = "reached"
except OSError as err:
    view["network"] = type(err).__name__
home = os.environ["HOME"]
files = []
for fd in os.listdir("/proc/self/fd"):
    try:
        target = os.readlink("/proc/self/fd/" + fd)
    except OSError:
        continue  # the descriptor listdir itself held
    if target.startswith(os.path.join(home, ".ipython")):
        continue  # IPython's history thread opens and closes these on its own time
    files.append(re.sub(r"\[\d+\]", "", target.replace(os.path.dirname(home), "RUN")))
view["files"] = sorted(files)
view["limits"] = [line for line in open("/proc/self/limits") if line.startswith(("Max core", "Max file size",
                                                                                 "Max processes"))]
view["processes"] = len([p for p in os.listdir("/proc") if p.isdigit()])
view["sys.path"] = sys.path[:1]
print(json.dumps(view))
'''.replace("COURSE", repr(str(COURSE / "solutions")))

needs_warm = pytest.mark.skipif(resolve_isolation()[0] != "bwrap" or os.geteuid() != 0,
                                reason="kernels are forked from a zygote only as root with bubblewrap")


def _view(limits: Limits) -> dict:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)])
    run = execute(nb, limits)
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.output_type == "stream")
    assert run.error is None and run.killed is None, (run.error, run.killed, nb.cells[0].outputs)
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def warm_socket():
    folder = tempfile.mkdtemp(prefix="mlcourse-zygote-test-")
    proc, path = zygote.start(folder, _environment(Path(folder)))
    yield proc, path
    proc.kill()
    proc.wait()


@needs_warm
def test_a_forked_kernel_sees_what_a_cold_kernel_sees(warm_socket):
    _, path = warm_socket
    limits = Limits(isolation="bwrap", hide=default_hidden(COURSE), data=str(data_dir()))
    cold = _view(limits)
    warm = _view(Limits(**{**limits.__dict__, "zygote": path}))
    assert warm.pop("processes") == cold.pop("processes") + 1  # the placeholder that holds the sandbox open
    assert warm == cold
    assert cold["Uid"].split()[0] != "0" and cold["CapEff"] == cold["CapBnd"] == "0000000000000000"
    assert cold["NoNewPrivs"] == "1" and not cold["course"] and cold["network"] != "reached"
    assert cold["interfaces"] == ["lo"] and cold["tmp"] == [] and cold["shm"] == [] and cold["in_its_folder"]


@needs_warm
def test_without_its_zygote_a_kernel_starts_cold(tmp_path):
    limits = Limits(isolation="bwrap", hide=default_hidden(COURSE), data=str(data_dir()),
                    zygote=str(tmp_path / "gone.sock"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys\nprint('torch' in sys.modules)")])
    run = execute(nb, limits)
    assert run.error is None and run.killed is None
    assert nb.cells[0].outputs[0]["text"].strip() == "False"  # started cold: nothing preloaded


@needs_warm
def test_the_zygote_preloads_and_each_kernel_is_its_own_process(warm_socket):
    _, path = warm_socket
    limits = Limits(isolation="bwrap", hide=default_hidden(COURSE), data=str(data_dir()), zygote=path)
    seen = []
    for _ in range(2):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            "import sys, numpy\nnumpy.marker = getattr(numpy, 'marker', 0) + 1\n"
            "print('torch' in sys.modules, numpy.marker)")])
        run = execute(nb, limits)
        assert run.error is None
        seen.append(nb.cells[0].outputs[0]["text"].strip())
    assert seen == ["True 1", "True 1"]  # preloaded, and nothing one kernel did reaches the next

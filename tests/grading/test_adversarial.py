"""A hostile class: each submission attacks the grader one way and must score 0 for what it does not implement.

Every attack answers neither question of exercise 1 (or only the first, scoring its 3
points honestly) and tries to get the rest some other way. The class is graded twice, as
one batch each time: with the static screen off, so that the verdicts alone (decided in the
grader's process) and the sandbox must stop every attack, and with it on, as instructors
grade (only the attacks it flags are graded again). The exercise is the course's own,
without its slow closing cells.

A batch run as root forks its kernels from a warm process (:mod:`mlcourse.grading.zygote`);
the attacks on the sandbox itself are graded again with kernels started cold, so that both
ways of starting a kernel are held to the same checks.
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path

import nbformat
import psutil
import pytest

from mlcourse.grading import Limits, grade_class
from mlcourse.grading.assemble import STUB, visible_source
from mlcourse.grading.autograde import resolve_isolation

COURSE = Path(__file__).resolve().parents[2]
TOKEN = f"mlcourse-attack-{os.getpid()}"
SECRET = f"grader-secret-{os.getpid()}"
MARKER = f"# {TOKEN} outlives its kernel"

SOLVED = {c.metadata["nbgrader"]["grade_id"]: c.source
          for c in nbformat.read(COURSE / "solutions" / "01_episodes.ipynb", 4).cells
          if c.metadata.get("nbgrader", {}).get("solution")}
WRONG_CI = "def accuracy_ci(accuracies):\n    return 0.7, 1.959963984540054 * 0.2 / 3 ** 0.5  # tuned to the visible test"

# name: (cell inserted after the imports, answers {cell id: source}, expected status, expected score)
ATTACKS = {
    "input_transformer": ("get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])", {},
                          "graded", 0),
    "ast_transformer": ("import ast\nclass Empty(ast.NodeTransformer):\n    def visit_Module(self, node):\n"
                        "        node.body = []\n        return node\nget_ipython().ast_transformers.append(Empty())",
                        {}, "graded", 0),
    "exception_handler": ("get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)", {},
                          "graded", 0),
    "tracing_hook": ("import linecache, sys\ndef skip(frame, event, arg):  # jump over every raise and assert\n"
                     "    if event == 'line':\n"
                     "        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()\n"
                     "        if line.startswith(('raise', 'assert')):\n            try:\n"
                     "                frame.f_lineno += 1\n            except ValueError:\n                pass\n"
                     "    return skip\nsys.settrace(skip)\nsys.setprofile(lambda *a: None)",
                     {"accuracy_ci": WRONG_CI}, None, 0),  # slows every line: it may run out of time
    "patched_assertions": ("import numpy as np, torch, mlcourse.exercise_checks as checks\n"
                           "for name in dir(np.testing):\n    if name.startswith('assert'):\n"
                           "        setattr(np.testing, name, lambda *a, **k: None)\n"
                           "torch.testing.assert_close = lambda *a, **k: None\n"
                           "checks.assert_own_implementation = lambda fn: None",
                           {"accuracy_ci": WRONG_CI}, "graded", 0),
    "patched_builtins": ("import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.isinstance = lambda *a: True\n"
                         "builtins.len = lambda x: 12\nbuiltins.set = lambda *a: frozenset({1})",
                         {"accuracy_ci": "def accuracy_ci(accuracies):\n    return 0.0, 0.0"}, None, 0),  # may hang the kernel
    "exit_in_test": ("", {"sample_episode_indices": SOLVED["sample_episode_indices"],
                          "accuracy_ci": "def accuracy_ci(accuracies):\n    import os\n    os._exit(0)"},
                     "died", 3),
    "signal_handlers": ("", {"sample_episode_indices":
                             "def sample_episode_indices(labels, n_way, k_shot, n_query, rng):\n    import signal\n"
                             "    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):\n"
                             "        signal.signal(s, signal.SIG_IGN)\n    while True:\n        pass"},
                        "timeout", 0),
    "outliving_fork": ("import os, subprocess, sys\n"
                       f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)  {MARKER}'],\n"
                       "                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
                       "if os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(600)\n    os._exit(0)",
                       {}, "graded", 0),
    "reads_solutions": ("import json, os, glob\nstolen = []\n"
                        "for path in [COURSE + '/solutions/01_episodes.ipynb', *glob.glob('/work/**/solutions/"
                        "01_episodes.ipynb', recursive=True), *glob.glob('/tmp/**/solutions/*.ipynb', "
                        "recursive=True)]:\n"
                        "    try:\n        cells = json.load(open(path))['cells']\n    except Exception:\n"
                        "        continue\n    for c in cells:\n"
                        "        if c.get('metadata', {}).get('nbgrader', {}).get('solution'):\n"
                        "            exec(''.join(c['source']).replace('### BEGIN SOLUTION', '').replace("
                        "'### END SOLUTION', ''))\n"
                        "secrets = [open(f'/proc/{p}/environ', 'rb').read() for p in os.listdir('/proc') if p.isdigit()\n"
                        "           and os.access(f'/proc/{p}/environ', os.R_OK)] + [str(os.environ)]",
                        {}, "graded", 0),
    "shared_tmp": ("import os\nfor folder in ('/tmp', '/dev/shm', '/var/tmp', os.path.expanduser('~/..')):\n"
                   "    try:\n"
                   f"        open(os.path.join(folder, {TOKEN!r}), 'w').write('def accuracy_ci(a): return 0.7, 0')\n"
                   "    except OSError:\n        pass", {}, "graded", 0),
    "network": ("import socket\nfor host in ('127.0.0.1', 'localhost', '10.0.2.2'):\n    try:\n"
                "        socket.create_connection((host, PORT), timeout=2).sendall(b'exfiltrated')\n"
                "    except OSError:\n        pass", {}, "graded", 0),
    "fills_the_disk": ("import os\nblock = b'x' * 2**20\nfor i in range(100000):\n"
                       "    for folder in ('.', '/tmp'):\n        try:\n"
                       "            with open(os.path.join(folder, f'fill{i}'), 'wb') as f:\n"
                       "                for _ in range(64):\n                    f.write(block)\n"
                       "        except OSError:\n            pass", {}, "disk", 0),
    "fork_bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
                  {}, None, 0),
    "output_flood": ("import sys\nwhile True:\n    sys.stdout.write('x' * 100000 + '\\n')", {}, None, 0),
    "forged_channel": ("import numpy as np\nfrom mlcourse import exercise_channel as channel, wire\n"
                       "def forged(entry):  # claim every call returned arrays that satisfy the visible asserts\n"
                       "    entry.pop('raised', None)\n"
                       "    entry['result'] = wire.encode((np.arange(6), np.arange(6, 12), np.arange(3)))\n"
                       "    from IPython.display import display\n    display({channel.MIME: entry}, raw=True)\n"
                       "channel._publish = forged", {}, "graded", 0),
    "calls_the_package": ("import mlcourse.episodes, mlcourse.evaluation", {
        "sample_episode_indices": "def sample_episode_indices(*args):\n"
                                  "    return mlcourse.episodes.sample_episode_indices(*args)",
        "accuracy_ci": "accuracy_ci = mlcourse.evaluation.accuracy_ci"}, "graded", 0),
}
#: Attacks the static screen stops before any of their code runs (their tests score 0, not graded by machine).
SCREENED = {"input_transformer", "ast_transformer", "exception_handler", "tracing_hook", "reads_solutions",
            "forged_channel", "calls_the_package", "patched_assertions", "patched_builtins"}


def _trimmed(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, 4)
    keep = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in ("predict-check",
                                                                                          "use-it-code")]
    nb.cells = keep
    return nb


def _submission(folder: Path, name: str, cell: str, answers: dict, port: int) -> None:
    nb = _trimmed(COURSE / "solutions" / "01_episodes.ipynb")
    for c in nb.cells:
        meta = c.metadata.get("nbgrader", {})
        if meta.get("solution") and c.cell_type == "code":
            c.source = answers.get(meta["grade_id"], STUB)
        elif c.cell_type == "code":
            c.source = visible_source(c.source)
    if cell:
        at = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells].index("imports") + 1
        code = cell.replace("COURSE", repr(str(COURSE))).replace("PORT", str(port))
        nb.cells.insert(at, nbformat.v4.new_code_cell(code))
    nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    if resolve_isolation()[0] == "none":
        pytest.skip("these attacks need an isolated kernel (root on Linux): see the instructor page")
    root = tmp_path_factory.mktemp("hostile")
    course = root / "course"
    (course / "solutions").mkdir(parents=True)
    shutil.copy(COURSE / "nbgrader_config.py", course / "nbgrader_config.py")
    nbformat.write(_trimmed(COURSE / "solutions" / "01_episodes.ipynb"), course / "solutions" / "01_episodes.ipynb")
    server = socket.create_server(("127.0.0.1", 0))
    port, accepted = server.getsockname()[1], []
    threading.Thread(target=lambda: [accepted.append(server.accept()) for _ in iter(int, 1)], daemon=True).start()
    subs, flagged = root / "submitted", root / "flagged"
    subs.mkdir()
    flagged.mkdir()
    for name, (cell, answers, _, _) in ATTACKS.items():
        _submission(subs, name, cell, answers, port)
        if name in SCREENED:
            shutil.copy(subs / f"{name}.ipynb", flagged)
    os.environ["MLCOURSE_GRADER_SECRET"] = SECRET  # passed to kernels (MLCOURSE_*), never shown back
    limits = Limits(cell_timeout=6, timeout=24, memory_mb=1500, disk_mb=200, screen=False)
    try:
        unscreened = grade_class(subs, course, out=root / "open", workers=2, limits=limits, progress=False)
        screened = grade_class(flagged, course, out=root / "screened", workers=2,
                               limits=Limits(cell_timeout=6, timeout=24, memory_mb=1500, disk_mb=200), progress=False)
    finally:
        os.environ.pop("MLCOURSE_GRADER_SECRET", None)
    yield root, {r.student: r for r in unscreened}, {r.student: r for r in screened}, accepted
    server.close()  # open until the module's last test: the kernels started cold try it too


#: Attacks on the sandbox rather than on the verdicts, graded again with kernels started cold.
ON_THE_SANDBOX = ("exit_in_test", "outliving_fork", "reads_solutions", "shared_tmp", "network", "fills_the_disk",
                  "fork_bomb")


@pytest.fixture(scope="module")
def hostile_cold(hostile):
    root = hostile[0]
    subs = root / "cold"
    subs.mkdir()
    for name in ON_THE_SANDBOX:
        shutil.copy(root / "submitted" / f"{name}.ipynb", subs)
    limits = Limits(cell_timeout=6, timeout=24, memory_mb=1500, disk_mb=200, screen=False)
    results = grade_class(subs, root / "course", out=root / "cold-out", workers=2, limits=limits, progress=False,
                          warm=False)
    return {r.student: r for r in results}


def test_kernels_started_cold_hold_against_the_attacks_on_the_sandbox(hostile, hostile_cold):
    _, warm, _, accepted = hostile
    assert sorted(hostile_cold) == sorted(ON_THE_SANDBOX)
    for name in ON_THE_SANDBOX:
        cold = hostile_cold[name]
        assert cold.score == ATTACKS[name][3], (name, cold.status, cold.error, cold.cells)
        assert cold.status == warm[name].status or ATTACKS[name][2] is None, (name, cold.status, warm[name].status)
    test_nothing_outlives_its_kernel_or_leaves_the_sandbox(hostile)


def test_no_attack_earns_a_point_it_did_not_implement(hostile):
    _, results, _, _ = hostile
    got = {name: r.score for name, r in results.items()}
    assert got == {name: score for name, (_, _, _, score) in ATTACKS.items()}, \
        {n: (r.status, r.score, r.error, r.cells) for n, r in results.items() if r.score != ATTACKS[n][3]}


def test_every_attack_has_one_row_and_a_clear_status(hostile):
    root, results, screened, _ = hostile
    assert sorted(results) == sorted(ATTACKS) and sorted(screened) == sorted(SCREENED)
    for name, (_, _, status, _) in ATTACKS.items():
        if status is not None:
            assert results[name].status == status, (name, results[name].status, results[name].error)
    assert results["fork_bomb"].status in ("memory", "died", "timeout"), results["fork_bomb"].error
    assert "more than the limit of 200 MiB" in results["fills_the_disk"].error
    rows = (root / "open" / "gradebook.csv").read_text().splitlines()
    assert len(rows) == 1 + len(ATTACKS)


def test_the_static_screen_stops_the_hooks_before_they_run(hostile):
    _, _, screened, _ = hostile
    for name in SCREENED:
        result = screened[name]
        assert result.score == 0 and all(c["error"] == "NotGraded" for c in result.cells), (name, result.cells)
        assert any(n.startswith("not graded automatically") for n in result.notes), result.notes


def test_nothing_outlives_its_kernel_or_leaves_the_sandbox(hostile):
    root, _, _, accepted = hostile
    assert not accepted, "a kernel reached a socket of the machine"
    private = ("/tmp", "/dev/shm", "/var/tmp") if resolve_isolation()[0] == "bwrap" else ("/var/tmp",)
    for folder in private:  # a mount namespace shares the machine's /tmp: the page says so
        assert not (Path(folder) / TOKEN).exists(), f"a kernel wrote to the machine's {folder}"
    survivors = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
                 if MARKER in " ".join(p.info["cmdline"] or [])]
    assert not survivors, survivors


def test_results_never_carry_the_graders_secrets_or_the_solutions(hostile):
    root, _, _, _ = hostile
    hidden = [line.strip() for line in nbformat.read(COURSE / "solutions" / "01_episodes.ipynb", 4).cells[6].source
              .split("### BEGIN HIDDEN TESTS")[1].splitlines() if len(line.strip()) > 30]
    for out in ("open", "screened"):
        for path in (root / out).rglob("*"):
            if path.is_file() and path.suffix in (".json", ".html", ".csv"):
                text = path.read_text(errors="replace")
                assert SECRET not in text, path
                assert not any(line in text for line in hidden), path

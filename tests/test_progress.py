"""MLCOURSE_PROGRESS picks the progress bars; "off" wins over a caller's own setting."""
import subprocess
import sys

import pytest


def _run(value: str) -> str:
    code = ("import io, sys\nfrom mlcourse.progress import tqdm, mode\n"
            "buf = io.StringIO()\nlist(tqdm(range(3), disable=False, file=buf))\n"
            "print(mode(), type(tqdm(range(1), disable=True)).__module__, len(buf.getvalue()) > 0)")
    env = {"MLCOURSE_PROGRESS": value, "PATH": ""}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()


@pytest.mark.parametrize("value, expected", [("off", "off tqdm.std False"), ("text", "text tqdm.std True")])
def test_progress_modes(value, expected):
    assert _run(value) == expected


def test_a_bad_mode_is_a_clear_error():
    out = subprocess.run([sys.executable, "-c", "import mlcourse.progress"], capture_output=True, text=True,
                         env={"MLCOURSE_PROGRESS": "fancy", "PATH": ""})
    assert "MLCOURSE_PROGRESS='fancy': use one of auto, text, off" in out.stderr

"""Every module of the package imports (with each progress-bar mode)."""
import subprocess
import sys

import pytest

CODE = """
import importlib, pkgutil, mlcourse
for m in pkgutil.walk_packages(mlcourse.__path__, "mlcourse."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
print("ok")
"""


@pytest.mark.parametrize("progress", ["auto", "off"])
def test_every_module_imports(progress):
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         env={"MLCOURSE_PROGRESS": progress, "PATH": ""})
    assert out.stdout.strip() == "ok", out.stderr[-2000:]

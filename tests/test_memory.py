"""Importing mlcourse makes glibc keep freed CPU memory for reuse: training steps fault fewer fresh pages."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from mlcourse import memory

STEPS = textwrap.dedent("""
    import resource, torch, mlcourse
    from mlcourse.backbones import Conv4
    torch.manual_seed(0)
    net, x = Conv4(), torch.randn(200, 1, 28, 28)  # activations of 40 MB
    def step():
        net.zero_grad(set_to_none=True)
        net(x).pow(2).mean().backward()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step(); step()
    before = faults()
    for _ in range(8):
        step()
    print((faults() - before) / 8)  # fresh pages per step
""")


def _faults_per_step(keep: str) -> float:
    env = {**os.environ, "MLCOURSE_KEEP_FREED_MEMORY": keep, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", STEPS], env=env, capture_output=True, text=True, check=True)
    return float(run.stdout.strip().splitlines()[-1])


def _thp_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or "LD_PRELOAD" in os.environ,
                    reason="glibc's allocator is what is tuned")
@pytest.mark.skipif(_thp_always(), reason="with transparent huge pages always on, a fault brings in 2 MiB")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    assert memory.keep_freed_memory() is True
    kept, given_back = _faults_per_step("1"), _faults_per_step("0")
    # measured: 1348-2450 fresh pages per step kept, 40368-60946 given back (torch 2.8 and 2.14)
    assert kept < given_back / 5, (kept, given_back)


def test_it_is_applied_on_import_once_and_can_be_left_off():
    code = "import mlcourse, mlcourse.memory as m; print(m._applied)"
    for value, applied in [("1", str(platform.libc_ver()[0] == "glibc")), ("0", "None"), ("off", "None")]:
        env = {**os.environ, "MLCOURSE_KEEP_FREED_MEMORY": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == applied, value
    first = memory.keep_freed_memory()
    assert memory._applied is first and memory.keep_freed_memory() is first


"""keep_freed_host_memory: a training step's freed activations are reused, not handed back to the
kernel and faulted in again on the next step."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from genforge.cpu.memory import keep_freed_host_memory
if sys.argv[1] == "keep":
    assert keep_freed_host_memory()
# 48 MB activations: above glibc's largest dynamic mmap threshold (32 MB), so by default every
# step maps them afresh and faults each page in, however long the process has run
x = torch.randn(12 << 20, requires_grad=True)
def step():
    (x * 2).exp().sum().backward()
    x.grad = None
for _ in range(10):  # past the first steps' one-off allocations (thread pools, caches)
    step()
faults = []
for _ in range(21):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[10])  # the median step: a one-off growth of the heap is not a steady cost
"""


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_steady_steps_take_no_fresh_pages():
    default, kept = _page_faults("default"), _page_faults("keep")
    assert default > 10000  # glibc's default: each step's larger activations come from fresh pages
    assert kept * 20 < default

"""keep_freed_host_memory: a training step's freed activations are reused, not handed back to the
kernel and faulted in again on the next step."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from genforge.train.device import keep_freed_host_memory
if sys.argv[1] == "keep":
    assert keep_freed_host_memory()
net = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256))
x = torch.randn(512, 256)
def step():
    net(x).square().mean().backward()
    net.zero_grad(set_to_none=True)
for _ in range(10):  # past the first steps' one-off allocations (thread pools, caches)
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_steady_steps_take_no_fresh_pages():
    default, kept = _page_faults("default"), _page_faults("keep")
    assert default > 1000  # glibc's default: each step's larger activations come from fresh pages
    assert kept * 5 < default

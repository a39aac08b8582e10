"""aime_agent.allocator: after ``retain_freed_memory`` a freed 40 MB tensor is reused, not faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from aime_agent.allocator import retain_freed_memory

def faults_per_alloc(n=20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.empty(10_000_000).fill_(1.0)  # 40 MB: above glibc's largest dynamic mmap threshold (32 MiB)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n

default = faults_per_alloc()
applied = retain_freed_memory()
faults_per_alloc()  # the heap grows to hold the block once
print(applied, default, faults_per_alloc())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_a_freed_large_tensor_is_reused_instead_of_faulted_in_again():
    # A fresh process: the allocator setting is process-wide and must not leak into the test session.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    applied, default, retained = out[0], float(out[1]), float(out[2])
    assert applied == "True"
    assert default > 5_000  # glibc's default: each 40 MB block is mmap'd afresh, ~9,800 pages of 4 KiB
    assert retained < 100  # the block stays on the heap and is reused: no new pages

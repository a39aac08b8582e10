"""What ran a benchmark: the CPU (model name and the extensions that change its speed), torch, threads, GPU, commit.

Every timing and every learning curve names its machine, because the same model name hides CPUs 3× apart."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent  # git finds the checkout that holds this package


def cpu_model() -> str:
    """The CPU's model name and its vector / bf16 extensions.

    For example ``Intel(R) Xeon(R) Processor (avx2, avx512f; 2 cores)``."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    extensions = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(extensions) or 'no AVX2'}; {os.cpu_count()} cores)"


def git_commit(cwd: Path = HERE) -> str:
    """HEAD of the checkout holding ``cwd``, with ``+dirty`` when tracked files differ from it ("unknown" outside
    git). Results under docs/benchmarks/ do not count: runs beside each other write them as they go."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(top,exclude)docs/benchmarks"], cwd=cwd, capture_output=True, text=True,
                               check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def describe() -> dict:
    """This process's machine and software, as JSON-ready values."""
    import torch

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu_model(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "commit": git_commit(),
    }

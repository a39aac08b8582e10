"""Keep freed heap memory in the process (glibc ``mallopt``), so large CPU tensors stop costing page faults.

glibc serves every allocation above its mmap threshold (at most 32 MiB with its dynamic threshold) with a fresh
``mmap`` and returns it to the kernel on ``free``; the next allocation of that size zero-fills new pages, one
page fault per 4 KiB. A CPU training step allocates such tensors every update — SB3's SAC casts a 256 × 9 × 64
× 64 uint8 batch to a 38 MB float tensor, several times per update — so on this project's 2-core machine about
40 % of SAC's time went to the kernel. Raising the mmap and trim thresholds keeps those blocks on the heap for
reuse: one SAC ``CnnPolicy`` update (batch 256, 1 thread) went from 1351 ms to 875 ms, with system time from
5.3 s to 0.0 s over 10 updates (docs/investigations/agent_learning.md#the-heap-allocator). PyTorch's CPU
tuning guide reaches the same end by preloading jemalloc or tcmalloc; this needs no extra library.

It changes the whole process's allocator, so the library never calls it on import: the entry points that
own their process do (``aime train``/``pretrain``, ``aime benchmark``). The cost is a resident set that
does not shrink after a peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
RETAIN_BYTES = 1 << 30  # blocks up to 1 GiB stay on the heap; larger ones (replay buffers) are still mmap'd


def retain_freed_memory(threshold: int = RETAIN_BYTES) -> bool:
    """Raise glibc's mmap and trim thresholds to ``threshold`` bytes; True if applied, False where the C
    library is not glibc (macOS, musl, Windows), which is left as it is."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no libc found, or one without mallopt (musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, threshold))

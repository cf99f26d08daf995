"""Keeps freed memory inside the process, so the large temporaries of CPU inference reuse warm pages
instead of page-faulting freshly zeroed ones at every layer (glibc malloc's trim and mmap thresholds)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc refuses more on 64-bit: larger blocks always come from mmap
KEPT_MIB = 512

_applied = False


def keep_freed_memory() -> bool:
    """Serve blocks up to 32 MiB from the heap and return freed memory to the system only beyond 512 MiB.

    glibc's defaults hand blocks of a few MiB back to the kernel when freed, and every new one then costs a
    page fault per page and the kernel's zeroing: for a light network at 128x128 that is a third of its
    time, and it moves from run to run (`python -m benchmarks.allocator`). The process keeps up to 512 MiB
    of freed memory instead. The engine applies it for CPU inference, `sr train` for training. Applied once
    per process; False where the C library is not glibc."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    kept = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) and mallopt(M_TRIM_THRESHOLD, KEPT_MIB << 20)
    _applied = bool(kept)
    return _applied

"""A process setting the CLI makes for long runs (never the library)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's malloc tuning knobs (malloc.h): M_TRIM_THRESHOLD -1, M_MMAP_THRESHOLD -3
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES = 64 * 2**20


def reuse_freed_memory() -> bool:
    """Let glibc keep up to 64 MiB of freed memory for reuse; whether it accepted (Linux only).

    Each render or dream step allocates and frees activations of a few to tens of MB. By default
    glibc serves such blocks with mmap and returns them (and the heap's top) to the kernel at
    once, so every step page-faults them in again: 2.7 of 10.1 CPU s of a 32-step render of 8
    channels were system time, 0.5-1.1 with these settings, for 11-17 % more peak memory
    (benchmarks/RESULTS.md). `render` and `report` call it; `dream` measured no gain (its
    steps reuse same-sized buffers). A process setting, so the CLI makes it, never the library.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
    )

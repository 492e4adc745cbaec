"""Keep freed memory in the process between rounds instead of handing it back to the kernel.

Every client's round allocates and frees the same large arrays (a model's delta, a 65,536-value encoding
under secure aggregation, activations): each 0.5 MiB float64 vector is above glibc's default mmap threshold
(128 KiB, raised dynamically only after a free) and its heap top is trimmed once 1 MiB lies free, so the same
pages are mapped, faulted in one by one and unmapped again thousands of times a round. On a virtual machine a
page fault is dear: a client's secure-aggregation encoding measured 4.3 ms with the defaults and 2.65 ms with
the thresholds below, 566 page faults against 6 (``python benchmarks/allocator.py``, BENCHMARKS.md).

:func:`keep_freed_memory` raises both thresholds once per process (``mallopt``, glibc only): blocks under
``MMAP_THRESHOLD`` come from the heap, and up to ``TRIM_THRESHOLD`` of free heap stays mapped for the next
round. A process's resident memory then stays near its peak instead of its current use. Elsewhere (macOS,
musl) it does nothing.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for this parameter on 64-bit systems
TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; whether the C library took both."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt in this C library
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

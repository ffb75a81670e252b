"""Process-wide memory allocation settings for CPU inference.

A forward pass on CPU allocates and frees maps of megabytes (E2E-MF-508M's head at 512 x 853: bands of up to
24 MiB, several per block). glibc's malloc serves blocks above a threshold with fresh ``mmap`` pages and hands
freed memory at the top of its heap back to the kernel once there is more than a trim threshold of it;
both thresholds adapt to the sizes seen, and with such allocation patterns memory keeps going back to
the kernel and coming back as new pages, each page-faulting and zeroed on its first touch. Keeping freed
memory for reuse removes that work (``benchmarks/results.md``, "Memory the process keeps").
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at 32 MiB on 64-bit systems (HEAP_MAX_SIZE / 2).
MAX_MMAP_THRESHOLD = 32 * 2**20


def keep_freed_memory(trim_threshold: int = 2**30) -> bool:
    """Has glibc's malloc keep the memory this process frees for its next allocations: blocks up to 32 MiB
    come from the heap (not fresh ``mmap`` pages), and up to ``trim_threshold`` bytes of free heap are
    kept instead of being returned to the kernel.

    For processes that run many forward passes on CPU (``tools/test.py``, ``tools/infer.py``, the
    benchmark's workers call it): the same allocations, without a page fault per page of every large
    map. The cost: after its peak the process's resident memory does not go down (by up to
    ``trim_threshold``). Process-wide and permanent; the library never calls it on import.

    Returns whether the setting took effect: False where the C library is not glibc (musl, macOS,
    Windows), which is then left as it is.
    """
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))


@functools.cache
def _glibc_mallopt():
    """glibc's ``mallopt``, or None where the C library is another one."""
    if not sys.platform.startswith('linux'):
        return None
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # only glibc has it  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


__all__ = ['keep_freed_memory']

"""Freed memory kept in an extraction process's heap, instead of going back to the kernel after every chunk.

glibc's malloc hands a freed block back to the kernel when it is at least a threshold that follows the largest
block freed so far (``munmap``), and trims the heap when its free top outgrows twice that. A chunk's clip and
NSS arrays are 0.2-2 MB each, so whether they page-fault back in on the next chunk depends on what the process
happened to free before: in the decode layer at 720p the same NSS code took 0 or 3,000-6,000 page faults a
chunk, 12 or 20-25 ms (BENCHMARKS.md, "The CPU feed"). Fixed thresholds, set once in each extraction process
(decoder processes and the main one), keep those blocks: at most ``_TRIM_BYTES`` of free heap stays with a
process. Thresholds chosen in the environment (the README's tip for the backbones on a CPU) are left as they
are, and so is any C library other than glibc (macOS, musl).
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["keep_freed_memory"]

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks this large or larger are still mapped on their own (glibc's upper limit on 64-bit systems).
_MMAP_BYTES = 32 << 20
# Free heap above this, at its top, is given back.
_TRIM_BYTES = 128 << 20
_CHOSEN_IN_ENVIRONMENT = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_")
_TUNABLES = ("glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold", "glibc.malloc.mmap_max")


def keep_freed_memory() -> bool:
    """Fix glibc's thresholds for this process (both: setting one stops glibc moving the other); True if set."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(name in os.environ for name in _CHOSEN_IN_ENVIRONMENT) or any(name in tunables for name in _TUNABLES):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process runs on
    except (OSError, TypeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):
        return False  # not glibc: its allocator has its own policy
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES))

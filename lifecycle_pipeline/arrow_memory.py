"""Arrow allocates from the same heap as pandas and NumPy, and the heap is given back between
stages.

The data path alternates between Arrow and pandas: the CSV or Parquet is read into Arrow
buffers, handed to pandas, and each artifact is written through Arrow again. With Arrow's
own allocator (mimalloc in the wheels), memory Arrow had freed stayed in its pool, where the
next stage's NumPy arrays could not reuse it: at 1M rows the lifecycle run's peak was 975 MiB
above its start with mimalloc and 811 MiB with the system allocator (bench figure 3 at 1M
measures this). A deployment that sets ``ARROW_DEFAULT_MEMORY_POOL`` keeps its choice.
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

# Blocks from this size up are mapped on their own and unmapped when freed (glibc).
MMAP_THRESHOLD = 4 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h


def use_system_allocator() -> None:
    """Make the system allocator Arrow's default pool, unless the environment chose one, and
    fix glibc's mmap threshold (``MMAP_THRESHOLD``) unless ``MALLOC_MMAP_THRESHOLD_`` did.

    glibc raises its threshold to the size of each large block freed, up to 32 MiB: after
    Arrow's CSV reader freed its first 16 MiB block, every later block and every 8 MB column
    of 1M rows came from the heap, where the freed ones stayed between live ones. Parsing 1M
    rows then peaked at +691 MiB for a 240 MiB frame; with the threshold fixed at 4 MiB,
    +487 MiB (measured in one process, as `data_snapshot` parses).
    """
    if not os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        _fix_mmap_threshold()
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow as pa

    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


@functools.cache
def _fix_mmap_threshold() -> None:
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


@functools.cache
def _glibc() -> Any:
    """The C library when it is glibc, else None (musl, macOS: nothing here applies)."""
    try:  # glibc answers with its version; other C libraries have no such name
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        return ctypes.CDLL("libc.so.6")
    except (ValueError, OSError):
        return None


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system between stages.

    Blocks under the mmap threshold (Arrow's parsed CSV chunks, the columns of smaller
    frames) come from the heap, and what a stage frees there stays in the process while
    anything above it in the heap is still held; a 1M-row run measured before this (and
    before the threshold was fixed) started its stages up to 664 MiB above the run's start
    though each held much less, and each stage's own peak stacked on top. ``malloc_trim(0)``
    returns every free page, not only the top of the heap, in a few milliseconds; where the
    C library is not glibc it is a no-op.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)

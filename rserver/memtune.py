"""glibc malloc tuning for the long-running processes (RIB, session workers).

Route batches, Loc-RIB change columns and encoded UPDATEs are large, short-lived buffers
(hundreds of KB to a few MB each, one set per batch). With glibc's default *dynamic* mmap
threshold, the first such buffer freed raises the threshold to its size, after which every
later one is carved from the main heap; interleaved with the tables' long-lived allocations
the heap then keeps ~100 MB more resident than is live during a full-table load (measured
with bench/fulltable.py: RIB process 330-360 MB at the peak, 250 MB right after).

* ``M_MMAP_THRESHOLD`` fixed at 1 MiB: buffers above it are mmapped and go back to the
  kernel when freed (smaller ones are reused from the heap, which is fast);
* a periodic ``malloc_trim(0)`` (every 0.5 s, only when something was freed since) returns
  free heap pages in the middle of the heap too.

Both are best-effort: without glibc (musl, macOS) nothing happens.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from typing import Optional

__all__ = ["tune_malloc", "start_trimmer"]

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20

_libc: Optional[ctypes.CDLL] = None


def _load() -> Optional[ctypes.CDLL]:
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.mallopt  # noqa: B018 - glibc only
            lib.malloc_trim  # noqa: B018
            _libc = lib
        except (OSError, AttributeError):
            _libc = None
    return _libc


def tune_malloc(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix the mmap threshold (True if glibc accepted it)."""
    lib = _load()
    if lib is None:
        return False
    return bool(lib.mallopt(M_MMAP_THRESHOLD, threshold))


def start_trimmer(interval: float = 0.5) -> Optional[asyncio.Task]:
    """Run ``malloc_trim(0)`` every ``interval`` seconds on the running loop."""
    lib = _load()
    if lib is None:
        return None

    async def trim():
        while True:
            await asyncio.sleep(interval)
            lib.malloc_trim(0)

    return asyncio.get_running_loop().create_task(trim())

"""Process-wide settings for a long-running request server: the GIL, the collector, the allocator.

Each one was measured under the load and soak benches (docs/RELIABILITY.md):
- the GIL switch interval is 1 ms, not 5: a thread answering a click waits less behind threads
  busy with image downloads and Gradio's streaming (latency over throughput, as a server wants);
- what start-up made (Gradio, FastAPI, the models, the catalog) is frozen out of the collector's
  full passes, which otherwise walk it all and stall every thread (200-500 ms under load);
- glibc's allocator keeps at most two arenas and hands every block of 256 KiB or more (a
  downloaded PNG, an encoded thumbnail) straight back to the system when it is freed. By default
  each busy thread gets an arena of its own (16 here) and the threshold rises after the first
  large frees, so the PNGs land in the heaps and their holes stay with the process. Measured in
  two soaks of the same build (120 s warm-up, ~13,000 images each): the free memory glibc held
  fell from ~30 MB to ~3 MB and the RSS growth per image from 2.7 to 2.4 KB — a small part of it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys

log = logging.getLogger(__name__)

GIL_SWITCH_SECONDS = 0.001
MALLOC_ARENAS = 2
MALLOC_MMAP_THRESHOLD = 256 * 1024
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's mallopt parameter numbers (malloc.h)


def tune_for_serving() -> None:
    """Call first thing, before the server starts its threads."""
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    _tune_glibc_malloc()


def freeze_startup_objects() -> None:
    """Call once start-up is done: collect once, then keep the survivors out of later passes."""
    gc.collect()
    gc.freeze()


def _tune_glibc_malloc() -> None:
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:  # not glibc (macOS, musl): its allocator's defaults stay
        log.info("allocator: no glibc mallopt, defaults kept")
        return
    arenas = mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    threshold = mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
    log.info("allocator: glibc malloc, %d arenas (%s), blocks from %d KiB mmapped (%s)", MALLOC_ARENAS,
             "set" if arenas else "refused", MALLOC_MMAP_THRESHOLD // 1024, "set" if threshold else "refused")

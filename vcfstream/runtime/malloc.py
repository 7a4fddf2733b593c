"""glibc malloc arenas of vcfstream's processes.

With glibc's default, an arena per thread (up to 8 per core), memory that a native library's
threads free stays mapped: a LanceDB writer grew by 50 to 150 MB with each 250k-allele merge and
stayed flat with 2 arenas at the same speed; the flow process of a 1M-record ingest peaked 90 to
160 MiB lower (docs/benchmarks.md). So the processes ``runtime.frames.spawn`` starts get
``MALLOC_ARENA_MAX``, a worker's flow runs inherit it (``devservices.workers``) and the CLI sets
it on itself (``limit_malloc_arenas``); a value already in the environment wins everywhere.
"""

from __future__ import annotations

import ctypes
import os

MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def limit_malloc_arenas() -> bool:
    """Give this process ``MALLOC_ARENAS`` arenas (glibc's ``mallopt``) unless ``MALLOC_ARENA_MAX``
    is in the environment (glibc read it at start). Arenas made before stay: call it before
    threads start. Returns whether the limit was set (False on a C library without it)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return mallopt(_M_ARENA_MAX, MALLOC_ARENAS) == 1

"""The malloc arena limit vcfstream's processes run with (``vcfstream.runtime.malloc``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vcfstream.runtime.malloc import MALLOC_ARENAS

# Eight threads allocate at once, then glibc's malloc_stats (to stderr) lists one "Arena N:" per
# arena; the last line says whether the limit was set.
_PROBE = """
import ctypes, sys, threading
from vcfstream.runtime.malloc import limit_malloc_arenas
applied = limit_malloc_arenas() if sys.argv[1] == "limit" else None
barrier = threading.Barrier(8)
def allocate():
    barrier.wait()
    kept = [bytearray(100_000) for _ in range(20)]
    barrier.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL(None).malloc_stats()
print(applied)
"""


def _arenas(mode: str, environment: str | None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    if environment is not None:
        env["MALLOC_ARENA_MAX"] = environment
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, capture_output=True, text=True,
                          check=True, timeout=60)
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines()), done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas")
def test_the_limit_holds_the_arenas_of_many_threads_to_two() -> None:
    unlimited, _ = _arenas("none", None)
    limited, applied = _arenas("limit", None)
    assert unlimited > MALLOC_ARENAS  # else the probe shows nothing: every thread got an arena
    assert (limited, applied) == (MALLOC_ARENAS, "True")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas")
def test_a_limit_in_the_environment_wins() -> None:
    assert _arenas("limit", "3") == (3, "False")

"""What a worker process keeps between chunks and runs, in one object with one ``close()``.

``ProcessRuntime`` owns the routers (one per distinct settings: their publishers and breakers
are long-lived connections), the reader pool, the store writers, the process's telemetry, the
staged store groups and the progress hooks a CLI listens with. ``process_runtime()`` is this
process's one instance; a forked child gets its own.

Example:
    >>> from vcfstream.settings import Settings
    >>> runtime = process_runtime()
    >>> runtime.read_pool(0) is None  # 0 readers: chunks are parsed in the calling thread
    True
    >>> runtime.close()
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from vcfstream.publish.breakers import on_transition
from vcfstream.publish.routing import Router, build_router
from vcfstream.runtime import readpool
from vcfstream.runtime.telemetry import Telemetry, setup_telemetry
from vcfstream.settings import Settings
from vcfstream.stores.writer import close_writers

ProgressHook = Callable[[int, int], None]  # (chunks done, chunks planned)


class ProcessRuntime:
    """Routers, reader pool, telemetry, staged groups and progress hooks of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routers: dict[str, Router] = {}
        self._listening: set[int] = set()  # telemetry objects that hear breaker transitions
        self._unsubscribe: list[Callable[[], None]] = []
        self.progress_hooks: list[ProgressHook] = []

    def telemetry(self, settings: Settings) -> Telemetry:
        """The process's telemetry, made from the first settings that ask (exporters and the
        Prometheus port belong to the process, not to one run)."""
        return setup_telemetry(settings)

    def router(self, settings: Settings) -> Router:
        """The router for these settings; its breaker states and health scores feed telemetry."""
        key = router_key(settings)
        with self._lock:
            router = self._routers.get(key)
            if router is None:
                router = self._routers[key] = build_router(settings)
                telemetry = self.telemetry(settings)
                telemetry.register_breaker_state_source(router.breakers.states)
                telemetry.register_health_source(router.health.scores)
                if id(telemetry) not in self._listening:
                    self._listening.add(id(telemetry))
                    self._unsubscribe.append(on_transition(telemetry.record_breaker_transition))
            return router

    def read_pool(self, workers: int) -> readpool.ReadPool | None:
        """The pool of ``workers`` reader processes (None for 0: read in the calling thread)."""
        return readpool.read_pool(workers)

    def notify_progress(self, done: int, total: int) -> None:
        for hook in list(self.progress_hooks):
            hook(done, total)

    def close(self) -> None:
        """Close the routers, stop the readers and store writers and forget staged groups; safe to
        call twice."""
        with self._lock:
            routers, self._routers = list(self._routers.values()), {}
            unsubscribe, self._unsubscribe = self._unsubscribe, []
            self._listening.clear()
        for router in routers:
            router.close()
        for stop in unsubscribe:
            stop()
        readpool.close_pools()
        close_writers()


def router_key(settings: Settings) -> str:
    """Settings identity with secrets included (``model_dump_json`` masks them, so two passwords
    would share one router), hashed so the secrets are not kept in clear as dict keys."""

    def revealed(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):  # a settings group
            return sorted((name, revealed(item)) for name, item in value.items())
        return value

    return hashlib.sha256(repr(revealed(settings.model_dump())).encode()).hexdigest()


_runtime: tuple[int, ProcessRuntime] | None = None
_runtime_lock = threading.Lock()


def process_runtime() -> ProcessRuntime:
    """This process's runtime, made on first use (a forked child makes its own)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None or _runtime[0] != os.getpid():
            _runtime = (os.getpid(), ProcessRuntime())
        return _runtime[1]

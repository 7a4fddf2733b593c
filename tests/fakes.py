"""Test-only in-process publisher behind the ``Publisher`` interface, for routing logic.

Fail modes: ``succeed`` (stores the batch, acknowledges it), ``refuse`` (``PublishUnavailable``
of kind ``refused``: nothing stored), ``timeout`` (``PublishInDoubt`` of kind ``timeout`` after
``delay_s``; ``stores_on_timeout`` says whether the batch was in fact stored, as a real broker
might have), and one per other ``FailureKind``, raised as a publisher maps its client's error:
``disconnect`` (``PublishInDoubt``, ``disconnected``), ``unavailable`` (``PublishUnavailable``,
``unavailable``), ``invalid`` (``PublishUnavailable``, ``invalid``: the data or configuration was
refused, nothing stored). ``fail_from_call``: publish calls before that one (0-based) succeed
whatever the mode, so a platform can fail in the middle of a chunk. ``stores_before_failing``:
a call failing in doubt (``timeout``, ``disconnect``) first stores that many messages of its
batch, as a broker that took part of a batch before the connection dropped (``timeout`` with
``stores_on_timeout`` stores it all). ``batches`` keeps the ids of every publish call. Nothing here talks to a broker; it exists only to drive
``vcfstream.publish.routing`` deterministically.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Literal

from vcfstream.errors import FailureKind, PublishInDoubt, PublishUnavailable
from vcfstream.publish.base import Acks, OutgoingBatch, StoredMessage

Mode = Literal["succeed", "refuse", "timeout", "disconnect", "unavailable", "invalid"]

# Failing modes other than timeout: (kind, in doubt, message).
_FAILURES: dict[str, tuple[FailureKind, bool, str]] = {
    "refuse": (FailureKind.REFUSED, False, "connection refused (fake)"),
    "disconnect": (FailureKind.DISCONNECTED, True, "connection lost while the batch was sent (fake)"),
    "unavailable": (FailureKind.UNAVAILABLE, False, "no leader for the partition (fake)"),
    "invalid": (FailureKind.INVALID, False, "message size too large (fake)"),
}


class FakePublisher:
    def __init__(self, platform: str, mode: Mode = "succeed", *, delay_s: float = 0.0,
                 stores_on_timeout: bool = False, fail_from_call: int = 0, stores_before_failing: int = 0) -> None:
        self.platform = platform
        self.mode: Mode = mode
        self.delay_s = delay_s
        self.stores_on_timeout = stores_on_timeout
        self.fail_from_call = fail_from_call
        self.stores_before_failing = stores_before_failing
        self.calls: list[str] = []  # every protocol method called, in order
        self.batches: list[list[bytes]] = []  # the message ids of every publish call, in order
        self.stored: dict[str, list[bytes]] = {}  # dataset -> message ids, in order
        self.closed = False
        self._lock = threading.Lock()

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode

    @property
    def publish_calls(self) -> int:
        return self.calls.count("publish")

    def publish(self, batch: OutgoingBatch) -> Acks:
        with self._lock:
            self.calls.append("publish")
            self.batches.append(list(batch.message_ids))
            mode = self.mode if len(self.batches) > self.fail_from_call else "succeed"
        if self.delay_s:
            time.sleep(self.delay_s)
        if mode in ("timeout", "disconnect") and self.stores_before_failing and not self.stores_on_timeout:
            part = self.stores_before_failing
            self._store(OutgoingBatch(batch.dataset, batch.source, batch.message_ids[:part], batch.keys[:part],
                                      batch.values[:part]))
        if mode in _FAILURES:
            kind, in_doubt, message = _FAILURES[mode]
            raise (PublishInDoubt if in_doubt else PublishUnavailable)(self.platform, message, kind=kind)
        if mode == "timeout":
            if self.stores_on_timeout:
                self._store(batch)
            raise PublishInDoubt(self.platform, f"no answer within {self.delay_s:.1f}s (fake)",
                                 kind=FailureKind.TIMEOUT)
        offsets = self._store(batch)
        return Acks(self.platform, list(batch.message_ids), [0] * len(batch), offsets)

    def _store(self, batch: OutgoingBatch) -> list[int]:
        with self._lock:
            stored = self.stored.setdefault(batch.dataset, [])
            start = len(stored)
            stored.extend(batch.message_ids)
            return list(range(start, start + len(batch)))

    def healthy(self) -> bool:
        self.calls.append("healthy")
        return self.mode == "succeed"

    def read_back(self, dataset: str) -> Iterator[StoredMessage]:
        self.calls.append("read_back")
        for offset, message_id in enumerate(self.stored.get(dataset, [])):
            yield StoredMessage(self.platform, message_id, 0, offset)

    def close(self) -> None:
        self.calls.append("close")
        self.closed = True


def make_batch(dataset: str, count: int, *, start: int = 0, source: str = "/data/test.vcf.gz") -> OutgoingBatch:
    """``count`` messages with ids ``start+1 ..``, distinct variant keys, small JSON values."""
    ids = [(start + i + 1).to_bytes(16, "big") for i in range(count)]
    keys = [f"GRCh38:chr1:{start + i + 1}:A:T".encode() for i in range(count)]
    values = [b'{"n": %d}' % (start + i + 1) for i in range(count)]
    return OutgoingBatch(dataset, source, ids, keys, values)

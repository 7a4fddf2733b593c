"""Apache Iggy publisher over the official ``apache-iggy`` SDK (asyncio API on a Tokio runtime).

The SDK is asynchronous and our callers are synchronous (Prefect worker threads), so every SDK
call is created and awaited on a private event loop running in one daemon thread per publisher,
each bounded by ``asyncio.wait_for(settings.iggy_timeout_s)``.

Connection: the client is built from ``settings.iggy_url`` (``iggy://user:pass@host:8090``,
``iggy+quic://...``, ``iggy+ws://...``), whose credentials make the SDK log in again on every
reconnect. Unless the URL sets them, we add a finite reconnection policy
(``reconnection_retries=1`` / QUIC ``reconnection_max_retries=1``, ``reconnection_interval=100ms``):
the SDK default is unlimited, and then ``connect()`` to a dead server never returns.

Layout: stream ``settings.iggy_stream``, one topic per dataset with ``settings.iggy_partitions``
partitions, both created when absent. Iggy's ``messages_key`` partitioning sends a whole request
to one partition, so we pick each message's partition ourselves (CRC-32 of the variant key modulo
the partition count) and send one request per partition; a variant therefore always lands on the
same partition. Message id = our 128-bit id (u128 of the 16 big-endian bytes, never 0); headers
carry ``dataset``, ``source`` and ``variant_key`` (a value over Iggy's 255-byte header limit is
replaced by ``b2:<blake2b-128 hex>``; the payload has the full key). Iggy 0.9 keeps no server-side
dedup here: consumers dedup by message id.

Acks: the partition of every message is known (we chose it). Offsets are recorded as -1: the
send confirmation only gives a batch base offset, and with at-least-once delivery per-message
offsets derived from it are not guaranteed.

Errors: the SDK raises plain ``RuntimeError`` (or ``TimeoutError`` from our ``wait_for``). Anything
before the first message is sent (connect refused, not connected, login, stream/topic setup) is
``PublishUnavailable``; a timeout or transport error after a send began is ``PublishInDoubt``.

Exit safety (an abort at interpreter exit seen in ~1 run in 10 after a failed connect): the SDK
resolves each asyncio future from a Tokio blocking-pool thread via ``loop.call_soon_threadsafe``,
which releases the GIL around its self-pipe ``send()``. The loop can run the callback in that
gap, the program can finish, and when the Tokio thread takes the GIL back during
``Py_FinalizeEx`` CPython calls ``pthread_exit`` on it; the forced unwind through Rust frames
aborts the process (SIGABRT, exit 134). A Tokio task that first attaches after finalization
panics in pyo3 ("interpreter is not initialized") with the same result. So a publisher tracks
every SDK future (weakly) until the Tokio side has dropped it, and ``close()`` - also run at exit
through ``weakref.finalize`` - drops the client, waits for those futures to be released, and only
then stops its loop.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
import threading
import time
import weakref
import zlib
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from tasks.errors import PublishError, PublishInDoubt, PublishUnavailable
from tasks.publishers.base import Acks, OutgoingBatch, StoredMessage
from tasks.settings import Settings

PLATFORM = "iggy"
T = TypeVar("T")

_log = logging.getLogger(__name__)

# Reconnection policy added to the URL unless it sets its own (see the module docstring).
_RECONNECT_RETRIES = "1"
_RECONNECT_INTERVAL = "100ms"
_RETRY_OPTION = {"iggy": "reconnection_retries", "iggy+tcp": "reconnection_retries",
                 "iggy+ws": "reconnection_retries", "iggy+quic": "reconnection_max_retries"}

_MAX_SEND_MESSAGES = 2_000  # per request; larger partition groups are sent in several requests
_MAX_SEND_BYTES = 4 * 1024 * 1024
_POLL_COUNT = 1_000
_HEADER_MAX = 255  # Iggy header keys and values: 1..255 bytes
_DRAIN_TIMEOUT_S = 5.0

# SDK messages that mean the request was never written (client not connected / refused).
_NOT_SENT = ("cannot establish connection", "disconnected", "not connected", "unauthenticated",
             "invalid credentials", "invalid username", "invalid password", "client shutdown",
             "invalid server address", "unauthorized")


def connection_string(url: str) -> str:
    """``url`` with a finite reconnection policy added where the URL does not set one."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = dict(parse_qsl(parts.query))
    extra: list[str] = []
    retry_key = _RETRY_OPTION.get(scheme)
    if retry_key and retry_key not in options:
        extra.append(f"{retry_key}={_RECONNECT_RETRIES}")
    if retry_key and "reconnection_interval" not in options:
        extra.append(f"reconnection_interval={_RECONNECT_INTERVAL}")
    if not extra:
        return url
    return url + ("&" if parts.query else "?") + "&".join(extra)


def redacted(url: str) -> str:
    """The URL without credentials, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"


def partition_index(key: bytes, partitions: int) -> int:
    """Stable partition index of a variant key (same key, same partition, in every process)."""
    return zlib.crc32(key) % partitions


def header_value(value: str) -> str | None:
    """A header value within Iggy's limit, or None for an empty one (Iggy rejects empty values)."""
    if not value:
        return None
    if len(value.encode()) <= _HEADER_MAX:
        return value
    return "b2:" + hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


class _SdkRuntime:
    """A private asyncio loop in a daemon thread; every SDK awaitable is created and awaited on it.

    ``pending`` holds, weakly, each SDK future until the SDK's Tokio thread has released it:
    a future still alive may still be touched from a Tokio thread (see the module docstring).
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pending: weakref.WeakSet[Any] = weakref.WeakSet()
        self.client: Any = None
        self.closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, make: Callable[[], Awaitable[T]], timeout_s: float) -> T:
        """Create the SDK awaitable on the loop and wait for it, at most ``timeout_s``.

        Raises ``TimeoutError`` on timeout (the SDK call is cancelled) and whatever the SDK raises.
        """
        if self.closed:
            raise RuntimeError("Client shutdown")

        async def guarded() -> T:
            awaitable: Any = make()
            self.pending.add(awaitable)
            try:
                return await asyncio.wait_for(awaitable, timeout_s)
            finally:
                awaitable = None  # the frame must not keep the SDK future alive in a traceback cycle

        future = asyncio.run_coroutine_threadsafe(guarded(), self.loop)
        try:
            return future.result(timeout_s + 5.0)  # wait_for bounds it; the margin covers a stalled loop
        except FutureTimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout_s:.1f}s") from None

    def shutdown(self) -> None:
        """Drop the client, wait until the SDK has released every future, stop the loop."""
        if self.closed:
            return
        self.closed = True
        self.client = None  # drops the Rust client (and its heartbeat) while the interpreter is alive
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        while len(self.pending) and time.monotonic() < deadline:
            _apply_deferred_decrefs()
            gc.collect()  # an SDK future can sit in a cycle with its exception's traceback
            if len(self.pending):
                time.sleep(0.005)  # lets a Tokio thread take the GIL and finish its callback
        if len(self.pending):
            _log.warning("iggy: %d SDK calls still unresolved after %.0fs at close",
                         len(self.pending), _DRAIN_TIMEOUT_S)
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self.loop.close()


class IggyPublisher:
    """Publishes batches to stream ``settings.iggy_stream``, topic = dataset name."""

    platform = PLATFORM

    def __init__(self, settings: Settings, *, platform: str = PLATFORM) -> None:
        if settings.iggy_url is None:
            raise PublishUnavailable(platform, "Iggy is not configured (VCFSTREAM_IGGY_URL is unset)")
        self.settings = settings
        self.platform = platform
        self.timeout_s = settings.iggy_timeout_s
        self.stream = settings.iggy_stream
        self._url = connection_string(settings.iggy_url.get_secret_value())
        self.address = redacted(self._url)
        self._runtime = _SdkRuntime(name=f"iggy-sdk-{os.getpid()}")
        self._finalizer = weakref.finalize(self, self._runtime.shutdown)  # also runs at exit
        self._connected = False
        self._stream_ready = False
        self._topics: dict[str, list[int]] = {}  # dataset -> partition ids, sorted
        self._setup_lock = threading.Lock()

    # -- Publisher protocol -------------------------------------------------------------
    def publish(self, batch: OutgoingBatch) -> Acks:
        n = len(batch)
        if n == 0:
            return Acks(self.platform, [], [], [])
        partition_ids = self._ensure_topic(batch.dataset)
        from apache_iggy import SendMessage

        count = len(partition_ids)
        groups: list[list[int]] = [[] for _ in range(count)]
        for i, key in enumerate(batch.keys):
            groups[partition_index(key, count)].append(i)
        partitions = [-1] * n
        for slot, members in enumerate(groups):
            for i in members:
                partitions[i] = partition_ids[slot]

        dataset_h = header_value(batch.dataset)
        source_h = header_value(batch.source)
        base_headers = {k: v for k, v in (("dataset", dataset_h), ("source", source_h)) if v}
        ids, keys, values = batch.message_ids, batch.keys, batch.values
        sent = 0
        for slot, members in enumerate(groups):
            start = 0
            while start < len(members):
                chunk: list[Any] = []
                size = 0
                while start < len(members) and len(chunk) < _MAX_SEND_MESSAGES and size < _MAX_SEND_BYTES:
                    i = members[start]
                    headers = dict(base_headers)
                    key_h = header_value(keys[i].decode())
                    if key_h:
                        headers["variant_key"] = key_h
                    chunk.append(SendMessage(values[i], headers, id=_message_id(ids[i])))
                    size += len(values[i])
                    start += 1
                self._send(batch.dataset, partition_ids[slot], chunk, sent=sent, total=n)
                sent += len(chunk)
        return Acks(self.platform, list(ids), partitions, [-1] * n)

    def healthy(self) -> bool:
        try:
            self._ensure_connected()
            self._call(lambda c: c.ping(), "ping")
            return True
        except PublishError:
            return False

    def read_back(self, dataset: str) -> Iterator[StoredMessage]:
        """Every message of the dataset's topic: each partition polled from offset 0 to its end."""
        from apache_iggy import Consumer, PollingStrategy

        self._ensure_connected()
        topic = self._call(lambda c: c.get_topic(self.stream, dataset), "get_topic")
        if topic is None:
            return
        consumer = Consumer.Single(f"vcfstream-verify-{os.getpid()}-{time.time_ns()}")
        for partition in sorted(topic.partitions, key=lambda p: p.id):
            if partition.messages_count == 0:
                continue
            last = partition.current_offset  # snapshot: messages sent later are not waited for
            offset = 0
            while offset <= last:
                messages = self._call(
                    lambda c, o=offset, p=partition.id: c.poll_messages(
                        self.stream, dataset, consumer=consumer, polling_strategy=PollingStrategy.Offset(o),
                        count=_POLL_COUNT, auto_commit=False, partition_id=p),
                    "poll_messages")
                if not messages:
                    break
                for message in messages:
                    yield StoredMessage(self.platform, message.id().to_bytes(16, "big"), partition.id,
                                        message.offset(), _headers(message))
                offset = messages[-1].offset() + 1

    def close(self) -> None:
        self._finalizer()

    # -- internals ----------------------------------------------------------------------
    def _call(self, make: Callable[[Any], Awaitable[T]], what: str, *, sending: bool = False,
              sent: int = 0, total: int = 0) -> T:
        """One SDK call on the connected client, errors translated to ``PublishError``."""
        client = self._runtime.client
        if client is None:
            raise PublishUnavailable(self.platform, f"{what}: not connected to {self.address}")
        try:
            return self._runtime.call(lambda: make(client), self.timeout_s)
        except (TimeoutError, RuntimeError) as exc:
            raise self._classify(exc, what, sending=sending, sent=sent, total=total) from None

    def _send(self, dataset: str, partition_id: int, messages: list[Any], *, sent: int, total: int) -> None:
        from apache_iggy import Partitioning

        self._call(lambda c: c.send_messages(self.stream, dataset, Partitioning.partition_id(partition_id),
                                             messages),
                   f"send to {self.stream}/{dataset} partition {partition_id}",
                   sending=True, sent=sent, total=total)

    def _ensure_connected(self) -> None:
        if self._connected:
            return
        from apache_iggy import IggyClient

        with self._setup_lock:
            if self._connected:
                return
            runtime = self._runtime
            if runtime.closed:
                raise PublishUnavailable(self.platform, f"publisher for {self.address} is closed")
            try:
                client = IggyClient.from_connection_string(self._url)
            except RuntimeError as exc:
                raise PublishUnavailable(self.platform, f"bad connection string for {self.address}: {exc}") from None
            runtime.client = client
            try:
                runtime.call(client.connect, self.timeout_s)
            except (TimeoutError, RuntimeError) as exc:
                runtime.client = None  # a fresh client next time: no half-open state carried over
                raise self._classify(exc, "connect") from None
            self._connected = True

    def _ensure_topic(self, dataset: str) -> list[int]:
        ids = self._topics.get(dataset)
        if ids is not None and self._connected:
            return ids
        self._ensure_connected()
        with self._setup_lock:
            if not self._stream_ready:
                if self._call(lambda c: c.get_stream(self.stream), "get_stream") is None:
                    self._create(lambda c: c.create_stream(self.stream), lambda c: c.get_stream(self.stream),
                                 f"create stream {self.stream}")
                self._stream_ready = True
            topic = self._call(lambda c: c.get_topic(self.stream, dataset), "get_topic")
            if topic is None:
                topic = self._create(
                    lambda c: c.create_topic(self.stream, dataset, partitions_count=self.settings.iggy_partitions),
                    lambda c: c.get_topic(self.stream, dataset), f"create topic {self.stream}/{dataset}")
            ids = sorted(p.id for p in topic.partitions)
            if not ids:
                raise PublishUnavailable(self.platform, f"topic {self.stream}/{dataset} has no partitions")
            self._topics[dataset] = ids
            return ids

    def _create(self, create: Callable[[Any], Awaitable[None]], get: Callable[[Any], Awaitable[Any]],
                what: str) -> Any:
        """Create a stream/topic; another worker creating it first is fine."""
        try:
            self._call(create, what)
        except PublishError as exc:
            found = self._call(get, what)
            if found is None:
                raise exc from None
            return found
        found = self._call(get, what)
        if found is None:
            raise PublishUnavailable(self.platform, f"{what}: created but not found on {self.address}")
        return found

    def _classify(self, exc: BaseException, what: str, *, sending: bool = False, sent: int = 0,
                  total: int = 0) -> PublishError:
        if isinstance(exc, TimeoutError):
            text = f"{what}: no answer within {self.timeout_s:.1f}s from {self.address}"
        else:
            text = f"{what}: {exc} ({self.address})"
        if "not connected" in text.lower() or "disconnected" in text.lower() or isinstance(exc, TimeoutError):
            self._connected = False  # reconnect on the next call
        if not sending:
            return PublishUnavailable(self.platform, text)
        if sent:
            return PublishInDoubt(self.platform, f"{text}; {sent} of {total} messages were already stored")
        if isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _NOT_SENT):
            return PublishUnavailable(self.platform, text)
        return PublishInDoubt(self.platform, text)


def _apply_deferred_decrefs() -> None:
    """Enter the extension once: pyo3 then applies the reference drops that Tokio threads made
    without the GIL (they wait in pyo3's pool, keeping an SDK future alive until someone does)."""
    from apache_iggy import Partitioning

    Partitioning.balanced()


def _message_id(message_id: bytes) -> int:
    value = int.from_bytes(message_id, "big")
    if len(message_id) != 16 or value == 0:
        raise ValueError(f"message id must be 16 bytes and non-zero, got {message_id.hex() or 'empty'}")
    return value


def _headers(message: Any) -> dict[str, bytes]:
    raw = message.user_headers()
    if not raw:
        return {}
    out: dict[str, bytes] = {}
    for key, value in raw.to_scalar_dict().items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        out[name] = value if isinstance(value, bytes) else str(value).encode()
    return out

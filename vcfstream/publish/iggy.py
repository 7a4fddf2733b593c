"""Apache Iggy publisher over the official ``apache-iggy`` SDK (asyncio API on a Tokio runtime).

The SDK is asynchronous and our callers are synchronous (Prefect worker threads), so every SDK
call is created and awaited on a private event loop running in one daemon thread per publisher,
each bounded by ``asyncio.wait_for(settings.iggy.timeout_s)``.

Connection: the client is built from ``settings.iggy.url()`` (``iggy://user:pass@host:8090``,
``iggy+tcp://...``, ``iggy+quic://...``, ``iggy+ws://...``), whose credentials make the SDK log in
again on every reconnect. ``iggy+http://`` is refused: its ``connect()`` never logs in. Unless the
URL sets them, we add a finite reconnection policy (``reconnection_retries=1`` / QUIC
``reconnection_max_retries=1``, ``reconnection_interval=100ms``): the SDK default is unlimited, and
then ``connect()`` to a dead server never returns. We also add ``reestablish_after=0s`` (QUIC
``reconnection_reestablish_after=0s``): by default the SDK waits out a 5 s cooldown before it
redials. QUIC has no "connection refused", so a dead QUIC server is bounded only by the call timeout.

Layout: stream ``settings.iggy.stream``, one topic per dataset with ``settings.iggy.partitions``
partitions, both created when absent and looked up again after every new client or not-found
error. The SDK reads an identifier that parses as a u32 as a numeric id, so an all-digit stream or
dataset name (and one outside 1..255 bytes) is refused as ``PublishUnavailable``. Iggy's
``messages_key`` partitioning sends a whole request to one partition, so we pick each message's
partition ourselves (CRC-32 of the variant key modulo the partition count) and send one request
per partition; a variant therefore always lands on the same partition. Message id = our 128-bit
id (u128 of the 16 big-endian bytes, never 0); headers carry ``dataset``, ``source`` and
``variant_key`` (a value over Iggy's 255-byte header limit is replaced by ``b2:<blake2b-128 hex>``;
the payload has the full key). Iggy 0.9 keeps no server-side dedup here: consumers dedup by
message id.

Durability: topics are created with ``durability=Durability.PERSISTED``, so a send is confirmed
only once the quorum holds the messages on stable storage (``Durability.REPLICATED``, the SDK's
default, confirms on a quorum commit in memory). A topic that exists already is checked on first
use: one that reports ``replicated`` is refused (``PublishUnavailable``, ``FailureKind.INVALID``:
the batch goes to the other platform, and nothing counts toward Iggy's breaker) until it is
recreated; one that reports no durability at all (a server without topic options) is used, with a
warning once per topic.

Retention: topics are created with the server's default message expiry; ``retention_s(dataset)``
reads the topic's ``message_expiry`` (``expiry_seconds``) for ``vcfstream verify``, which reports
ids acknowledged longer ago than that as expired, not missing.

Acks: the partition of every message is known (we chose it). Offsets are recorded as -1: the
send confirmation only gives a batch base offset, and with at-least-once delivery per-message
offsets derived from it are not guaranteed.

Errors: the SDK raises ``RuntimeError`` (``ValueError``/``TypeError``/``OverflowError`` for
arguments it refuses before a request exists); our ``wait_for`` raises ``TimeoutError``. Each
becomes a ``PublishError`` in ``_classify``, where the call is made, its ``kind`` from
``_sdk_error``. apache-iggy 0.9 gives a server or transport error no type and no code: the
``RuntimeError`` carries only the text of the Rust ``IggyError`` (``Disconnected``, ``Too big
message payload``, ...; the ``ProducerSendError`` subclass is raised by the high-level producer,
which we do not use). So ``_SDK_TEXT`` is the one place that matches error text: it maps
fragments of those texts to a kind and to what the publisher does next. Nothing else reads an
error's text. Names and messages the SDK refuses locally are ``FailureKind.INVALID``, like a bad
connection string, an unsupported scheme or a name Iggy cannot use.

Anything before a batch's first send request exists (connect, login, stream/topic setup, a name
or message the SDK refuses locally) is ``PublishUnavailable``. A send that fails with a definitive
refusal (unauthorized, a message too big or invalid) is ``PublishUnavailable`` too. Any other send
error is ``PublishInDoubt``: the SDK writes the request, and on a lost reply reconnects and sends
it again, so "Disconnected", "Cannot establish connection" or a failed re-login can follow a first
copy the server stored. Once a request of the batch succeeded, every failure is in doubt.

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
from dataclasses import dataclass
from typing import Any, TypeVar

from vcfstream.errors import FailureKind, PublishError, PublishInDoubt, PublishUnavailable
from vcfstream.names import iggy_name_problem
from vcfstream.publish.base import Acks, OutgoingBatch, StoredMessage
from vcfstream.settings import Settings

PLATFORM = "iggy"
T = TypeVar("T")

_log = logging.getLogger(__name__)

# Reconnection policy added to the URL unless it sets its own (see the module docstring).
_TCP_WS_RECONNECT = {"reconnection_retries": "1", "reconnection_interval": "100ms", "reestablish_after": "0s"}
_RECONNECT: dict[str, dict[str, str]] = {
    "iggy": _TCP_WS_RECONNECT, "iggy+tcp": _TCP_WS_RECONNECT, "iggy+ws": _TCP_WS_RECONNECT,
    "iggy+quic": {"reconnection_max_retries": "1", "reconnection_interval": "100ms",
                  "reconnection_reestablish_after": "0s"},
}

_MAX_SEND_MESSAGES = 2_000  # per request; larger partition groups are sent in several requests
_MAX_SEND_BYTES = 4 * 1024 * 1024
_POLL_COUNT = 1_000
_HEADER_MAX = 255  # Iggy header keys and values: 1..255 bytes
_DRAIN_TIMEOUT_S = 5.0
_DURABILITY_OPTION = "durability"  # the topic option create_topic(durability=...) sets
PERSISTED = "persisted"  # apache_iggy.Durability.PERSISTED's value


@dataclass(frozen=True, slots=True)
class _SdkError:
    """What an SDK error means for a publish: its kind and what the publisher does next."""

    kind: FailureKind
    stored_nothing: bool = False  # a send failing with it proves nothing of the request was stored
    dead_client: bool = False  # the client is not trusted again: the next call builds and connects a new one
    layout_gone: bool = False  # the server no longer has the stream, topic or partition we cached


_UNKNOWN_SDK_ERROR = _SdkError(FailureKind.UNAVAILABLE)

# The SDK's error texts (``IggyError`` display strings, matched lowercased, as fragments) and what
# they mean. Text because apache-iggy 0.9 raises every server and transport error as a plain
# ``RuntimeError`` without a code (module docstring); the first fragment found gives the kind, the
# flags of every fragment found apply. A text not listed is a platform fault, in doubt on a send.
# ``stored_nothing`` marks the SDK's local checks and definitive server refusals (a re-sent copy is
# refused the same way); transport errors never prove it.
_SDK_TEXT: tuple[tuple[str, _SdkError], ...] = (
    # the data or the configuration
    ("unauthorized", _SdkError(FailureKind.INVALID, stored_nothing=True)),
    ("invalid credentials", _SdkError(FailureKind.INVALID)),
    ("invalid messages count", _SdkError(FailureKind.INVALID, stored_nothing=True)),
    ("too many messages", _SdkError(FailureKind.INVALID, stored_nothing=True)),
    ("too big", _SdkError(FailureKind.INVALID, stored_nothing=True)),
    ("invalid header", _SdkError(FailureKind.INVALID, stored_nothing=True)),
    ("empty message payload", _SdkError(FailureKind.INVALID, stored_nothing=True)),
    ("invalid message payload length", _SdkError(FailureKind.INVALID, stored_nothing=True)),
    # the connection
    ("cannot establish connection", _SdkError(FailureKind.REFUSED, dead_client=True)),
    ("not connected", _SdkError(FailureKind.DISCONNECTED, dead_client=True)),
    ("disconnected", _SdkError(FailureKind.DISCONNECTED, dead_client=True)),
    ("connection closed", _SdkError(FailureKind.DISCONNECTED, dead_client=True)),
    ("empty response", _SdkError(FailureKind.DISCONNECTED, dead_client=True)),
    ("stale client", _SdkError(FailureKind.DISCONNECTED, dead_client=True)),
    ("client shutdown", _SdkError(FailureKind.UNAVAILABLE, stored_nothing=True, dead_client=True)),
    # the layout we cached
    ("not found", _SdkError(FailureKind.UNAVAILABLE, layout_gone=True)),
    ("does not exist", _SdkError(FailureKind.UNAVAILABLE, layout_gone=True)),
    ("invalid partition", _SdkError(FailureKind.UNAVAILABLE, layout_gone=True)),
)


class _NotSent(Exception):
    """An SDK call that failed before its request existed: nothing of it was stored. ``kind`` is
    ``INVALID`` for an argument the SDK refused, else what kept the request from being made."""

    def __init__(self, message: str, kind: FailureKind = FailureKind.INVALID) -> None:
        super().__init__(message)
        self.kind = kind


def _sdk_error(exc: BaseException) -> _SdkError:
    """What an SDK call's exception means: the one place SDK errors are mapped."""
    if isinstance(exc, TimeoutError):
        return _SdkError(FailureKind.TIMEOUT, dead_client=True)
    if isinstance(exc, _NotSent):  # its kind was set where it was raised; its text may be the SDK's
        said = _sdk_text(str(exc))
        return _SdkError(exc.kind, stored_nothing=True, dead_client=said.dead_client, layout_gone=said.layout_gone)
    if isinstance(exc, RuntimeError):
        return _sdk_text(str(exc))
    return _UNKNOWN_SDK_ERROR  # ValueError & co. while awaiting: a reply the SDK could not read


def _sdk_text(text: str) -> _SdkError:
    """``_SDK_TEXT`` applied to an SDK error's text."""
    text = text.lower()
    found = [meaning for fragment, meaning in _SDK_TEXT if fragment in text]
    if not found:
        return _UNKNOWN_SDK_ERROR
    return _SdkError(found[0].kind, stored_nothing=any(m.stored_nothing for m in found),
                     dead_client=any(m.dead_client for m in found), layout_gone=any(m.layout_gone for m in found))


_CALL_ERRORS = (_NotSent, TimeoutError, RuntimeError, ValueError, TypeError, OverflowError)


def split_url(url: str) -> tuple[str, str, str, str]:
    """``(scheme, credentials, address, query)``, split as the SDK splits: at ``://``, ``@`` and
    the ``?`` after it, decoding nothing (a password may hold ``?``, ``#`` or ``/``)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    credentials, _, hostpart = rest.rpartition("@")  # the last @: never a piece of a password in the address
    address, _, query = hostpart.partition("?")
    return scheme, credentials, address, query


def connection_string(url: str) -> str:
    """``url`` with a finite reconnection policy added where the URL does not set one.

    Raises ``ValueError`` for a scheme the publisher cannot use (the message never shows the URL).
    """
    scheme, _, _, query = split_url(url)
    policy = _RECONNECT.get(scheme)
    if policy is None:
        why = "; iggy+http:// connects without logging in" if scheme == "iggy+http" else ""
        raise ValueError(f"unsupported scheme {scheme or '(none)'}:// (use iggy://, iggy+tcp://, iggy+ws:// "
                         f"or iggy+quic://{why})")
    given = {option.partition("=")[0] for option in query.split("&")}
    extra = [f"{key}={value}" for key, value in policy.items() if key not in given]
    if not extra:
        return url
    separator = "&" if query else ("" if url.endswith("?") else "?")
    return url + separator + "&".join(extra)


def redacted(url: str) -> str:
    """The URL without credentials or options, for messages and logs."""
    scheme, _, address, _ = split_url(url)
    return f"{scheme or '?'}://{address or '?'}"


def name_problem(name: str) -> str | None:
    """Why the SDK cannot address a stream or topic by ``name``, or None if it can."""
    return iggy_name_problem(name)


def topic_durability(topic: Any) -> str | None:
    """The message durability an Iggy topic reports (``persisted``, ``replicated``), or None when
    it reports none: the option set at creation (``options``), else the server's default for it
    (``derived_options``)."""
    found: object = None
    for options in (topic.derived_options, topic.options):  # the explicit option wins
        try:
            scalars = options.to_scalar_dict() if options else {}
        except (RuntimeError, ValueError, TypeError):  # a field the SDK cannot decode
            continue
        for key, value in scalars.items():
            if (key.decode() if isinstance(key, bytes) else str(key)) == _DURABILITY_OPTION:
                found = value.decode() if isinstance(value, bytes) else getattr(value, "value", value)
    return str(found).lower() if found is not None else None


def expiry_seconds(expiry: Any) -> float | None:
    """How long a topic with this ``IggyExpiry`` keeps a message, in seconds: its duration, or
    None when it never expires or reports only "the server's default" (which the server does not
    tell; verify then counts a lost id as missing, never as expired).

    Example:
        >>> from datetime import timedelta
        >>> from apache_iggy import IggyExpiry
        >>> expiry_seconds(IggyExpiry.ExpireDuration(timedelta(days=7))), expiry_seconds(IggyExpiry.NeverExpire())
        (604800.0, None)
    """
    from apache_iggy import IggyExpiry

    if isinstance(expiry, IggyExpiry.ExpireDuration):
        return float(expiry.duration.total_seconds())
    return None


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

        Raises ``TimeoutError`` on timeout (the SDK call is cancelled), ``_NotSent`` when the call
        never made a request (closed runtime, arguments the SDK refused) and whatever the SDK raises.
        """
        if self.closed:
            raise _NotSent("Client shutdown", FailureKind.UNAVAILABLE)

        async def guarded() -> T:
            try:
                awaitable: Any = make()
            except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
                kind = _sdk_text(str(exc)).kind if isinstance(exc, RuntimeError) else FailureKind.INVALID
                raise _NotSent(str(exc) or type(exc).__name__, kind) from None
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
    """Publishes batches to stream ``settings.iggy.stream``, topic = dataset name."""

    platform = PLATFORM

    def __init__(self, settings: Settings, *, platform: str = PLATFORM) -> None:
        secret_url = settings.iggy.url()
        if secret_url is None:
            raise PublishUnavailable(platform, "Iggy is not configured (VCFSTREAM_IGGY_URL is unset)",
                                     kind=FailureKind.INVALID)
        self.settings = settings
        self.platform = platform
        self.timeout_s = settings.iggy.timeout_s
        self.stream = settings.iggy.stream
        url = secret_url.get_secret_value()
        self.address = redacted(url)
        # A configuration Iggy cannot work with fails every connect, like a server that is down.
        self._config_error: str | None = None
        try:
            self._url = connection_string(url)
        except ValueError as exc:
            self._url, self._config_error = url, str(exc)
        problem = name_problem(self.stream)
        if problem and self._config_error is None:
            self._config_error = f"stream name {self.stream!r} {problem}"
        self._runtime = _SdkRuntime(name=f"iggy-sdk-{os.getpid()}")
        self._finalizer = weakref.finalize(self, self._runtime.shutdown)  # also runs at exit
        self._connected = False
        self._stream_ready = False
        self._topics: dict[str, list[int]] = {}  # dataset -> partition ids, sorted
        self._setup_lock = threading.Lock()
        self._durability_warned: set[tuple[str, str]] = set()

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
                    try:
                        key_h = header_value(keys[i].decode())
                        if key_h:
                            headers["variant_key"] = key_h
                        chunk.append(SendMessage(values[i], headers, id=_message_id(ids[i])))
                    except (ValueError, TypeError, OverflowError) as exc:  # refused here: no request exists
                        raise self._classify(_NotSent(f"message {i}: {exc}"),
                                             f"send to {self.stream}/{batch.dataset}",
                                             sending=True, sent=sent, total=n) from None
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

        self._check_topic_name(dataset)
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
                def poll(c: Any, o: int = offset, p: int = partition.id) -> Awaitable[Any]:
                    return c.poll_messages(self.stream, dataset, consumer=consumer,
                                           polling_strategy=PollingStrategy.Offset(o), count=_POLL_COUNT,
                                           auto_commit=False, partition_id=p)

                messages = self._call(poll, "poll_messages")
                if not messages:
                    break
                for message in messages:
                    yield StoredMessage(self.platform, message.id().to_bytes(16, "big"), partition.id,
                                        message.offset(), _headers(message))
                offset = messages[-1].offset() + 1

    def retention_s(self, dataset: str) -> float | None:
        """How long the dataset's topic keeps messages (``expiry_seconds`` of its message expiry);
        None when it keeps them for ever, does not say, or does not exist."""
        self._check_topic_name(dataset)
        self._ensure_connected()
        topic = self._call(lambda c: c.get_topic(self.stream, dataset), "get_topic")
        return expiry_seconds(topic.message_expiry) if topic is not None else None

    def close(self) -> None:
        self._finalizer()

    # -- internals ----------------------------------------------------------------------
    def _call(self, make: Callable[[Any], Awaitable[T]], what: str, *, sending: bool = False,
              sent: int = 0, total: int = 0) -> T:
        """One SDK call on the connected client, errors translated to ``PublishError``."""
        client = self._runtime.client
        try:
            if client is None:  # another worker's reconnect failed: this request is never made
                raise _NotSent("Not connected", FailureKind.DISCONNECTED)
            return self._runtime.call(lambda: make(client), self.timeout_s)
        except _CALL_ERRORS as exc:
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
            if self._config_error:
                raise PublishUnavailable(self.platform, f"{self._config_error} ({self.address})",
                                         kind=FailureKind.INVALID)
            try:
                client = IggyClient.from_connection_string(self._url)
            except RuntimeError as exc:
                raise PublishUnavailable(self.platform, f"bad connection string for {self.address}: {exc}",
                                         kind=FailureKind.INVALID) from None
            self._forget_layout()  # a new client: the server may have lost or recreated stream and topics
            try:
                runtime.call(client.connect, self.timeout_s)
            except _CALL_ERRORS as exc:
                runtime.client = None  # other workers fail cleanly rather than send on the dead client
                raise self._classify(exc, "connect") from None
            # Shared only once connected: no worker sends on a client that is still connecting.
            runtime.client = client
            if runtime.closed:  # closed meanwhile: shutdown() may have dropped the client before we set it
                runtime.client = None
                raise PublishUnavailable(self.platform, f"publisher for {self.address} is closed")
            self._connected = True

    def _ensure_topic(self, dataset: str) -> list[int]:
        ids = self._topics.get(dataset)
        if ids is not None and self._connected:
            return ids
        self._check_topic_name(dataset)
        self._ensure_connected()
        with self._setup_lock:
            if not self._stream_ready:
                if self._call(lambda c: c.get_stream(self.stream), "get_stream") is None:
                    self._create(lambda c: c.create_stream(self.stream), lambda c: c.get_stream(self.stream),
                                 f"create stream {self.stream}")
                self._stream_ready = True
            topic = self._call(lambda c: c.get_topic(self.stream, dataset), "get_topic")
            if topic is None:
                from apache_iggy import Durability

                topic = self._create(
                    lambda c: c.create_topic(self.stream, dataset, partitions_count=self.settings.iggy.partitions,
                                             durability=Durability.PERSISTED),
                    lambda c: c.get_topic(self.stream, dataset), f"create topic {self.stream}/{dataset}")
            self._check_durability(dataset, topic)
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

    def _check_durability(self, dataset: str, topic: Any) -> None:
        """Refuse a topic whose acknowledgements do not mean stable storage (see the module docstring)."""
        durability = topic_durability(topic)
        if durability == PERSISTED:
            return
        where = f"topic {self.stream}/{dataset} on {self.address}"
        if durability is None:
            if (self.stream, dataset) not in self._durability_warned:
                self._durability_warned.add((self.stream, dataset))
                _log.warning("iggy: %s reports no message durability; its acknowledgements are trusted as "
                             "persisted, which this server does not confirm", where)
            return
        raise PublishUnavailable(self.platform, (
            f"{where} has message durability {durability!r}: its acknowledgements do not wait for stable "
            f"storage, so a crash could lose acknowledged messages; nothing sent. Recreate the topic with "
            f"durability {PERSISTED!r} (vcfstream creates new topics so)"), kind=FailureKind.INVALID)

    def _check_topic_name(self, dataset: str) -> None:
        problem = name_problem(dataset)
        if problem:
            raise PublishUnavailable(self.platform, f"dataset {dataset!r} cannot name a topic of stream "
                                     f"{self.stream}: the name {problem}", kind=FailureKind.INVALID)

    def _forget_layout(self) -> None:
        """Look the stream and topics up again on the next batch."""
        self._stream_ready = False
        self._topics.clear()

    def _classify(self, exc: BaseException, what: str, *, sending: bool = False, sent: int = 0,
                  total: int = 0) -> PublishError:
        """``exc`` as a ``PublishError`` of its kind (``_sdk_error``): in doubt whenever a send request
        of the batch may have been stored."""
        error = _sdk_error(exc)
        if isinstance(exc, TimeoutError):
            text = f"{what}: no answer within {self.timeout_s:.1f}s from {self.address}"
        else:
            text = f"{what}: {exc} ({self.address})"
        if error.dead_client:
            self._connected = False  # a new client on the next call
        if error.layout_gone:
            self._forget_layout()  # created again if the server lost them
        if not sending:
            return PublishUnavailable(self.platform, text, kind=error.kind)
        if sent:
            return PublishInDoubt(self.platform, f"{text}; {sent} of {total} messages were already stored",
                                  kind=error.kind)
        if error.stored_nothing:
            return PublishUnavailable(self.platform, text, kind=error.kind)
        return PublishInDoubt(self.platform, text, kind=error.kind)


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

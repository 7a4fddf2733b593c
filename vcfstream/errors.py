"""One exception hierarchy; every message names the file, line, platform or store involved."""

from __future__ import annotations

from enum import StrEnum


class VcfstreamError(Exception):
    """Base of every error vcfstream raises on purpose."""

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled without calling __init__ (whose arguments differ from ``args``): errors cross
        # process boundaries (reader processes, persisted task states) intact.
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[VcfstreamError], args: tuple[object, ...], state: dict[str, object]) -> VcfstreamError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InputError(VcfstreamError):
    """An input path that cannot be ingested at all (missing, a directory, outside the roots)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class FileChanged(InputError):
    """The file is no longer the one that was planned (replaced, a symbolic link now, grown,
    cut, rewritten): its chunk is not read. An input error: retrying reads the same file."""


class VcfFormatError(VcfstreamError):
    """A file-level VCF problem: nothing of the file is claimed or published."""

    def __init__(self, path: str, line: int | None, rule: str, message: str) -> None:
        self.path, self.line, self.rule = path, line, rule
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: [{rule}] {message}")


class LedgerError(VcfstreamError):
    """The PostgreSQL ledger could not be read or written."""


class FailureKind(StrEnum):
    """Why a publish failed, set by the publisher where its client library's error arises.

    Every kind but ``INVALID`` is a fault of the platform: it counts toward the platform's circuit
    breaker and its health score. ``INVALID`` means the data or the configuration is wrong (a
    message over the size limit, a name the platform cannot use, a malformed URL, credentials or
    permissions the platform refuses): the platform answered, or was never asked, and another
    batch or another platform may well succeed. The value is the word routing shows, e.g.
    ``iggy failed (timeout)``.
    """

    REFUSED = "refused"  # the platform cannot be reached: connection refused, every broker down
    DISCONNECTED = "disconnected"  # the connection dropped while a request was out, or the client lost it
    TIMEOUT = "timeout"  # no answer within the call timeout
    UNAVAILABLE = "unavailable"  # any other fault of the platform (no leader, storage error, ...)
    INVALID = "invalid"  # the data or the configuration is wrong, not the platform

    @property
    def platform_fault(self) -> bool:
        return self is not FailureKind.INVALID


class PublishError(VcfstreamError):
    """Publishing a batch failed. ``in_doubt`` means the broker may have received it; ``kind``
    (a ``FailureKind``) says why, as the publisher mapped its client library's error."""

    def __init__(self, platform: str, message: str, *, kind: FailureKind = FailureKind.UNAVAILABLE,
                 in_doubt: bool = False) -> None:
        self.platform, self.in_doubt, self.kind = platform, in_doubt, FailureKind(kind)
        super().__init__(f"{platform}: {message}")

    @property
    def platform_fault(self) -> bool:
        """Whether the platform is at fault (not the data or the configuration)."""
        return self.kind.platform_fault


class PublishUnavailable(PublishError):
    """Failed cleanly before anything was stored (connection refused, breaker open, message refused)."""

    def __init__(self, platform: str, message: str, *, kind: FailureKind = FailureKind.UNAVAILABLE) -> None:
        super().__init__(platform, message, kind=kind)


class PublishInDoubt(PublishError):
    """Failed after sending (timeout): the broker may or may not hold the messages."""

    def __init__(self, platform: str, message: str, *, kind: FailureKind = FailureKind.UNAVAILABLE) -> None:
        super().__init__(platform, message, kind=kind, in_doubt=True)


def is_data_error(exc: BaseException) -> bool:
    """A ``PublishError`` the data or configuration caused (``FailureKind.INVALID``), not the platform."""
    return isinstance(exc, PublishError) and not exc.platform_fault


class StoreError(VcfstreamError):
    """A storage backend (LanceDB, Kuzu, PostgreSQL catalog) failed."""

    def __init__(self, store: str, message: str) -> None:
        self.store = store
        super().__init__(f"{store}: {message}")


class ServiceError(VcfstreamError):
    """A local service (PostgreSQL, Kafka, Prefect) could not be started or reached."""


class IngestFailed(VcfstreamError):
    """An ingestion run ended Failed; ``summary`` holds what it did before failing."""

    def __init__(self, message: str, summary: dict[str, object]) -> None:
        self.summary = summary
        super().__init__(message)


class ConfigurationError(VcfstreamError):
    """A setting is missing or wrong (names the setting, never a secret value)."""

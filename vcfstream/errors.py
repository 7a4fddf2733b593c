"""One exception hierarchy; every message names the file, line, platform or store involved."""

from __future__ import annotations


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


class VcfFormatError(VcfstreamError):
    """A file-level VCF problem: nothing of the file is claimed or published."""

    def __init__(self, path: str, line: int | None, rule: str, message: str) -> None:
        self.path, self.line, self.rule = path, line, rule
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: [{rule}] {message}")


class LedgerError(VcfstreamError):
    """The PostgreSQL ledger could not be read or written."""


class PublishError(VcfstreamError):
    """Publishing a batch failed. ``in_doubt`` means the broker may have received it."""

    def __init__(self, platform: str, message: str, *, in_doubt: bool = False) -> None:
        self.platform, self.in_doubt = platform, in_doubt
        super().__init__(f"{platform}: {message}")


class PublishUnavailable(PublishError):
    """Failed cleanly before anything was sent (connection refused, breaker open)."""


class PublishInDoubt(PublishError):
    """Failed after sending (timeout): the broker may or may not hold the messages."""

    def __init__(self, platform: str, message: str) -> None:
        super().__init__(platform, message, in_doubt=True)


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

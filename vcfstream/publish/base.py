"""The publisher interface every platform implements (Kafka, Iggy, and test fakes).

A batch is columnar: parallel lists of message ids, keys and values. ``publish`` returns one
acknowledgement per message it knows the broker stored, or raises a ``PublishError``:
``PublishUnavailable`` when nothing was sent, ``PublishInDoubt`` when the outcome is unknown.
The publisher sets the error's ``kind`` (``vcfstream.errors.FailureKind``) where its client
library's error arises, from that error's type or code; routing and the circuit breakers branch
on it and never read an error's text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from vcfstream.model import Acks


@dataclass(frozen=True, slots=True)
class OutgoingBatch:
    """Messages of one dataset, as parallel columns (no per-message objects)."""

    dataset: str
    source: str  # the source file path, carried in every message's headers
    message_ids: list[bytes]  # 16 bytes each, big-endian u128, never zero
    keys: list[bytes]  # variant keys, UTF-8; the partitioning key
    values: list[bytes]  # JSON documents (schemas in vcfstream/vcf/schemas/: variant-message.v1/v2)
    # The batch is a sample list (schema sample-list.v1): Kafka keeps those in a compacted topic
    # of their own (KafkaSettings.sample_list_topic); Iggy in the dataset's topic.
    sample_list: bool = False

    def __len__(self) -> int:
        return len(self.message_ids)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message read back from a broker, for ``vcfstream verify``."""

    platform: str
    message_id: bytes
    partition: int
    offset: int
    headers: dict[str, bytes] = field(default_factory=dict)


@runtime_checkable
class Publisher(Protocol):
    platform: str

    def publish(self, batch: OutgoingBatch) -> Acks:
        """Store every message of the batch, or raise a ``PublishError``."""
        ...

    def healthy(self) -> bool:
        """A cheap probe: can the platform be reached right now?"""
        ...

    def read_back(self, dataset: str) -> Iterator[StoredMessage]:
        """Every message of the dataset the platform holds now (used by verify)."""
        ...

    def close(self) -> None: ...

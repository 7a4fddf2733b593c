"""``vcfstream verify``: read every message of a dataset back from the brokers and reconcile
with the ledger by message id."""

from __future__ import annotations

from collections import Counter
from typing import Any

from vcfstream.ledger.claims import published_ids
from vcfstream.publish.base import Publisher
from vcfstream.settings import Settings


def configured_publishers(settings: Settings) -> dict[str, Publisher]:
    """The publishers this deployment writes to: Kafka always, Iggy when configured."""
    from vcfstream.publish.kafka import KafkaPublisher

    publishers: dict[str, Publisher] = {"kafka": KafkaPublisher(settings)}
    if settings.iggy.url() is not None:
        from vcfstream.publish.iggy import IggyPublisher

        publishers["iggy"] = IggyPublisher(settings)
    return publishers


def verify_dataset(settings: Settings, dataset: str,
                   publishers: dict[str, Publisher] | None = None) -> dict[str, Any]:
    """Counts of what the ledger says is published against what the brokers hold.

    ``duplicates``: extra copies of an id beyond the first, across platforms, not counting the
    second copy of an id the ledger marks in doubt (sent to both on purpose).
    ``missing``: ids the ledger says are published that no broker holds.
    """
    ledger = published_ids(settings, dataset)
    owned = publishers is None
    publishers = publishers or configured_publishers(settings)
    seen: Counter[bytes] = Counter()
    per_platform: Counter[str] = Counter()
    try:
        for name, publisher in publishers.items():
            for message in publisher.read_back(dataset):
                seen[message.message_id] += 1
                per_platform[name] += 1
    finally:
        if owned:
            for publisher in publishers.values():
                publisher.close()
    in_doubt = {mid for mid, (_, doubt) in ledger.items() if doubt}
    duplicates = sum(count - (2 if mid in in_doubt else 1) for mid, count in seen.items()
                     if count > (2 if mid in in_doubt else 1))
    missing = sum(1 for mid in ledger if mid not in seen)
    return {
        "dataset": dataset,
        "ledger_published": len(ledger),
        "messages": sum(seen.values()),
        "distinct_ids": len(seen),
        "duplicates": duplicates,
        "missing": missing,
        "unknown": sum(1 for mid in seen if mid not in ledger),
        "in_doubt": len(in_doubt),
        "by_platform": dict(per_platform),
    }

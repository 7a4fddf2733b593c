"""How large a message may be: the smallest limit among the configured platforms.

- Kafka: the producer refuses a message over its ``message.max.bytes`` (librdkafka's default
  1,000,000 bytes) and a broker one over the topic's ``max.message.bytes`` (1,048,588 by default).
  vcfstream sets both to ``KafkaSettings.message_max_bytes``: the producer's, and the topics it
  creates (a topic that exists already keeps its own: keep the setting within it).
- Iggy: a message payload is at most 64,000,000 bytes (``MAX_PAYLOAD_SIZE`` of apache-iggy's
  ``IggyMessage``; user headers at most 100,000 more).

Every message must fit every configured platform, so that failover never meets a message too big
for the fallback. A message's size is counted as its value, its key twice (Kafka's key and Iggy's
``variant_key`` header), its dataset and source headers, and ``vcfstream.vcf.encode.FRAMING_BYTES``
for the record's framing and header names (``message_sizes``).
"""

from __future__ import annotations

from vcfstream.settings import Settings
from vcfstream.vcf.encode import MessageOptions

IGGY_MAX_PAYLOAD = 64_000_000


def message_size_limit(settings: Settings) -> int:
    """The largest message (as counted above) every configured platform takes."""
    limits = [settings.kafka.message_max_bytes]
    if settings.iggy.url() is not None:
        limits.append(IGGY_MAX_PAYLOAD)
    return min(limits)


def message_options(settings: Settings) -> MessageOptions:
    """The form of a deployment's messages (``IngestSettings``) and their size limit."""
    ingest = settings.ingest
    return MessageOptions(ingest.message_form, ingest.compact_above_samples, ingest.message_format_values,
                          message_size_limit(settings))

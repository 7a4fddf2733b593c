"""``KafkaConnection``: where and how vcfstream reaches Apache Kafka (the fallback platform)."""

from __future__ import annotations

from typing import ClassVar

from blocks.base import VcfstreamBlock
from vcfstream.settings import KafkaSettings


class KafkaConnection(VcfstreamBlock, KafkaSettings):
    """Kafka bootstrap servers, security protocol, SASL credentials and TLS CA for vcfstream.

    Args:
        bootstrap_servers: comma-separated ``host:port`` list.
        security_protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
        sasl_mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL protocols only).
        sasl_username: SASL user.
        sasl_password: SASL password (kept secret; shown obfuscated in the UI).
        ssl_ca_location: path of the CA bundle that signed the brokers' certificates.
        topic_prefix: topic of a dataset = prefix + dataset name.
        partitions: partitions of topics vcfstream creates.

    Example:
        >>> from vcfstream.settings import Settings
        >>> block = KafkaConnection(bootstrap_servers="kafka-1:9093", security_protocol="SASL_SSL",
        ...                         sasl_mechanism="SCRAM-SHA-512", sasl_username="vcfstream",
        ...                         sasl_password="s3cret")
        >>> Settings().with_groups(kafka=block).kafka.sasl_password
        SecretStr('**********')
    """

    _block_type_name = "vcfstream Kafka Connection"
    _description = "Kafka brokers and credentials vcfstream publishes to (the fallback platform)."
    default_name: ClassVar[str] = "vcfstream-kafka"
    group: ClassVar[str] = "kafka"

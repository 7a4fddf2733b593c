"""``KafkaConnection``: where and how vcfstream reaches Apache Kafka (the fallback platform)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, SecretStr, model_validator

from blocks.base import SettingsBlock
from vcfstream.settings import Settings

if TYPE_CHECKING:
    from vcfstream.publish.kafka import KafkaPublisher

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaConnection(SettingsBlock):
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

    Returns:
        ``settings_overrides()`` -> the ``Settings.kafka_*`` fields; ``get_publisher(settings)`` ->
        a ``KafkaPublisher`` for these brokers.

    Example:
        >>> from vcfstream.settings import Settings
        >>> block = KafkaConnection(bootstrap_servers="kafka-1:9093", security_protocol="SASL_SSL",
        ...                         sasl_mechanism="SCRAM-SHA-512", sasl_username="vcfstream",
        ...                         sasl_password="s3cret")
        >>> settings = block.apply_to(Settings())
        >>> settings.kafka_bootstrap, settings.kafka_sasl_password
        ('kafka-1:9093', SecretStr('**********'))
    """

    _block_type_name = "vcfstream Kafka Connection"
    _description = "Kafka brokers and credentials vcfstream publishes to (the fallback platform)."
    default_name: ClassVar[str] = "vcfstream-kafka"

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Comma-separated host:port list.")
    security_protocol: SecurityProtocol = Field(default="PLAINTEXT")
    sasl_mechanism: SaslMechanism | None = Field(default=None, description="SASL protocols only.")
    sasl_username: str | None = Field(default=None)
    sasl_password: SecretStr | None = Field(default=None)
    ssl_ca_location: str | None = Field(default=None, description="CA bundle (PEM) that signed the brokers' certificates.")
    topic_prefix: str = Field(default="vcfstream.variants.", description="Topic of a dataset = prefix + dataset.")
    partitions: int = Field(default=6, ge=1, description="Partitions of the topics vcfstream creates.")

    @model_validator(mode="after")
    def _sasl_is_consistent(self) -> KafkaConnection:
        uses_sasl = self.security_protocol.startswith("SASL")
        if uses_sasl and not self.sasl_mechanism:
            raise ValueError(f"security_protocol {self.security_protocol} needs a sasl_mechanism")
        if not uses_sasl and self.sasl_mechanism:
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs a SASL security_protocol")
        return self

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaConnection:
        return cls(bootstrap_servers=settings.kafka_bootstrap, security_protocol=settings.kafka_security_protocol,
                   sasl_mechanism=settings.kafka_sasl_mechanism, sasl_username=settings.kafka_sasl_username,
                   sasl_password=settings.kafka_sasl_password, ssl_ca_location=settings.kafka_ssl_ca_location,
                   topic_prefix=settings.kafka_topic_prefix, partitions=settings.kafka_partitions)

    def settings_overrides(self) -> dict[str, Any]:
        return {
            "kafka_bootstrap": self.bootstrap_servers,
            "kafka_security_protocol": self.security_protocol,
            "kafka_sasl_mechanism": self.sasl_mechanism,
            "kafka_sasl_username": self.sasl_username,
            "kafka_sasl_password": self.sasl_password,
            "kafka_ssl_ca_location": self.ssl_ca_location,
            "kafka_topic_prefix": self.topic_prefix,
            "kafka_partitions": self.partitions,
        }

    def get_publisher(self, settings: Settings) -> KafkaPublisher:
        """An idempotent Kafka publisher for these brokers (other settings from ``settings``)."""
        from vcfstream.publish.kafka import KafkaPublisher

        return KafkaPublisher(self.apply_to(settings))

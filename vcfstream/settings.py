"""The one settings object: environment (VCFSTREAM_*) and CLI flags flow in here, code reads it.

No other module reads environment variables. Blocks (``blocks/``) and CLI flags build a
``Settings`` with overrides via ``Settings(**overrides)`` or ``settings.model_copy(update=...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, ByteSize, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

RoutingStrategy = Literal["primary_only", "fallback_only", "health", "round_robin"]


class Settings(BaseSettings):
    """Everything configurable, with defaults that match ``vcfstream services up``."""

    model_config = SettingsConfigDict(env_prefix="VCFSTREAM_", extra="ignore")

    # Where services keep state (PostgreSQL data, Kafka logs and jars, Prefect DB, stores).
    home: Path = Path(".vcfstream")

    # PostgreSQL: an explicit DSN wins; otherwise the embedded server under ``home``.
    pg_dsn: SecretStr | None = None
    pg_port: int = 5433

    # Kafka (fallback platform).
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_version: str = "4.4.0"
    kafka_topic_prefix: str = "vcfstream.variants."
    kafka_partitions: int = 6
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None

    # Apache Iggy (primary platform); absent URL = Iggy not configured.
    iggy_url: SecretStr | None = None
    iggy_stream: str = "vcfstream"
    iggy_partitions: int = 6
    iggy_timeout_s: float = 2.0

    # Prefect server started by ``services up``.
    prefect_port: int = 4200

    # Ingestion.
    chunk_size: int = 50_000
    chunk_workers: int = 3  # chunk tasks in flight at once per flow run (threads of its process)
    publish_batch_size: int = 10_000
    read_processes: int = 1  # processes parsing chunks beside the flow's (0 = parse in its threads)
    assembly: str = "GRCh38"
    input_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    # Routing and circuit breakers.
    routing_strategy: RoutingStrategy = "health"
    breaker_fail_max: int = 5
    breaker_reset_timeout_s: float = 30.0
    breaker_success_threshold: int = 3
    breaker_storage: Literal["postgres", "memory"] = "postgres"

    # Stores.
    lancedb_uri: str | None = None
    kuzu_path: Path | None = None
    store_genotypes: bool = True
    stores: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["catalog", "lancedb", "kuzu"])
    lance_index_min_rows: int = 100_000  # build the LanceDB vector index once the table is this big
    store_lock_timeout_s: float = 600.0  # wait this long for another writer of an embedded store
    store_batch_alleles: int = 250_000  # a store writes once this many alleles of a file are queued (or the file is done)
    kuzu_buffer_pool_mb: int = 1024  # Kuzu's page cache (its default is 80% of the machine's RAM)

    # Telemetry: a Prometheus endpoint on metrics_host:metrics_port (None = off), console spans,
    # and OTLP export of traces and metrics when the standard OpenTelemetry variables are set.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    trace_console: bool = False
    otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    otlp_protocol: Literal["grpc", "http/protobuf"] = Field(
        default="grpc", validation_alias=AliasChoices("otlp_protocol", "OTEL_EXPORTER_OTLP_PROTOCOL")
    )
    # Above this process RSS (e.g. "2GiB") the flow lowers chunk concurrency; None = no limit.
    rss_limit: ByteSize | None = None

    @field_validator("stores", "input_roots", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """``VCFSTREAM_STORES=catalog,kuzu`` and ``VCFSTREAM_INPUT_ROOTS=/a:/b`` style lists."""
        if isinstance(value, str):
            separator = ":" if ":" in value and "," not in value else ","
            return [part.strip() for part in value.split(separator) if part.strip()]
        return value

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def kafka_libs(self) -> Path:
        return self.home_dir / "kafka" / "libs"

    @property
    def lancedb_location(self) -> str:
        return self.lancedb_uri or str(self.home_dir / "lancedb")

    @property
    def kuzu_location(self) -> Path:
        return self.kuzu_path or self.home_dir / "kuzu" / "graph.kuzu"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def kafka_topic(self, dataset: str) -> str:
        return f"{self.kafka_topic_prefix}{dataset}"

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka settings shared by producers, consumers and admin clients."""
        config = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username or ""
            config["sasl.password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else ""
            )
        if self.kafka_ssl_ca_location:
            config["ssl.ca.location"] = self.kafka_ssl_ca_location
        return config


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags, block values) on top."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)

"""The settings, grouped per service: environment (``VCFSTREAM_*``) and the file ``vcfstream
services up`` writes flow in here; code reads ``Settings`` and its groups.

Each group is one service or concern (``postgres``, ``kafka``, ``iggy``, ``routing``, ``lancedb``,
``kuzu``, ``stores``, ``telemetry``, ``ingest``, ``dask``, ``services``). A Prefect block (``blocks/``)
IS its group: ``KafkaConnection`` subclasses ``KafkaSettings``, so a loaded block replaces the
group as it is (``settings.with_groups(kafka=block)``), with no mapping either way.

Environment variables keep one flat name per field: ``VCFSTREAM_`` + the group's ``env_prefix``
+ the field name, upper-cased, unless the group's ``env_names`` says otherwise (e.g.
``VCFSTREAM_KAFKA_BOOTSTRAP`` for ``kafka.bootstrap_servers``). An empty variable is unset.
Without a PostgreSQL DSN, ``Settings.postgres_dsn()`` takes the one ``vcfstream services up``
wrote to ``<home>/services.env`` (mode 0600). The same file carries the local services'
generated credentials: a Kafka group that points at the local broker (its bootstrap servers
not set, or set to the broker the file names) and is not configured for SASL takes the broker's
address, protocol, mechanism, user and password from it, and ``services.prefect_auth_string``
the Prefect server's basic auth; the environment and explicit values win over the file.

Example:
    >>> settings = load_settings(ingest={"chunk_size": 10_000})
    >>> settings.ingest.chunk_size, settings.kafka.topic("cohort_a")
    (10000, 'vcfstream.variants.cohort_a')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ByteSize, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from vcfstream.errors import ConfigurationError
from vcfstream.names import iggy_name_problem, topic_prefix_problem
from vcfstream.vcf.encode import COMPACT_ABOVE_SAMPLES, MessageForm
from vcfstream.vcf.limits import ALT_INDEX_MAX, DEFAULT_LIMITS, ReadLimits

RoutingStrategy = Literal["primary_only", "fallback_only", "health", "round_robin"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
Transport = Literal["tcp", "quic", "ws"]

ENV_PREFIX = "VCFSTREAM_"
SERVICES_FILE = "services.env"  # under home, written by `vcfstream services up`

# Iggy connection strings: scheme and default port per transport (apache-iggy 0.9).
_IGGY_SCHEME = {"tcp": "iggy", "quic": "iggy+quic", "ws": "iggy+ws"}
_IGGY_DEFAULT_PORT = {"tcp": 8090, "quic": 8080, "ws": 8092}
# The SDK splits user:pass@host on these and decodes no escapes: such values need connection_string.
_UNSAFE_IN_URL = set("@:/?#&=%")
_UNSAFE_IN_HOST = _UNSAFE_IN_URL | set("[] ")  # an IPv6 literal, bracketed or not, is refused too
_UNSAFE_IN_OPTION = set("@?#&=")


class Group(BaseModel):
    """One group of settings; its environment variables are ``VCFSTREAM_<env_prefix><FIELD>``."""

    # A refused value is not repeated in the error: it may be (or hold) a secret.
    model_config = ConfigDict(hide_input_in_errors=True)

    env_prefix: ClassVar[str] = ""
    env_names: ClassVar[dict[str, str]] = {}  # field -> variable (without VCFSTREAM_), where it differs

    @classmethod
    def env_var(cls, field: str) -> str:
        """The environment variable ``field`` is read from."""
        return ENV_PREFIX + cls.env_names.get(field, cls.env_prefix + field.upper())


def _unless(problem: str | None, what: str, value: str) -> str:
    """``value``, or the ValueError naming what is wrong with it."""
    if problem:
        raise ValueError(f"{what} {value!r} {problem}")
    return value


class PostgresSettings(Group):
    """PostgreSQL: the ledger, breaker state and catalog. No DSN = the one ``services up`` wrote."""

    env_prefix: ClassVar[str] = "PG_"

    dsn: SecretStr | None = Field(default=None, description="postgresql://user:password@host:port/db (secret).")


class KafkaSettings(Group):
    """Apache Kafka, the fallback platform: brokers, security and the topics vcfstream creates."""

    env_prefix: ClassVar[str] = "KAFKA_"
    env_names: ClassVar[dict[str, str]] = {"bootstrap_servers": "KAFKA_BOOTSTRAP"}

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Comma-separated host:port list.")
    security_protocol: SecurityProtocol = Field(default="PLAINTEXT")
    sasl_mechanism: SaslMechanism | None = Field(default=None, description="SASL protocols only.")
    sasl_username: str | None = Field(default=None)
    sasl_password: SecretStr | None = Field(default=None)
    ssl_ca_location: str | None = Field(default=None, description="CA bundle (PEM) that signed the brokers' certificates.")
    topic_prefix: str = Field(default="vcfstream.variants.", description="Topic of a dataset = prefix + dataset.")
    partitions: int = Field(default=6, ge=1, description="Partitions of the topics vcfstream creates.")
    replication_factor: int | None = Field(
        default=None, ge=1, description="Replicas of the topics vcfstream creates; empty = 3, or the broker count below 3.")
    min_insync_replicas: int | None = Field(
        default=None, ge=1, description="min.insync.replicas of the topics vcfstream creates; empty = 2 when "
                                        "the replication factor is 3 or more, else 1.")
    message_max_bytes: int = Field(
        default=1_000_000, ge=10_000, description="The producer's message.max.bytes, and max.message.bytes of "
                                                  "the topics vcfstream creates: no message is larger. Keep it "
                                                  "within the brokers' message.max.bytes and an existing topic's "
                                                  "max.message.bytes.")
    sample_list_topic_prefix: str = Field(
        default="vcfstream.samples.", description="Sample lists of a dataset go to prefix + dataset, a compacted "
                                                  "topic (never expires).")

    @field_validator("topic_prefix", "sample_list_topic_prefix")
    @classmethod
    def _prefix_fits_kafka(cls, value: str) -> str:
        return _unless(topic_prefix_problem(value), "topic_prefix", value)

    @model_validator(mode="after")
    def _sample_lists_have_their_own_topics(self) -> Self:
        # Kafka reads '.' and '_' alike in topic names: prefixes that differ only so would collide.
        if self.sample_list_topic_prefix.replace(".", "_") == self.topic_prefix.replace(".", "_"):
            raise ValueError("sample_list_topic_prefix must differ from topic_prefix (Kafka reads '.' as '_')")
        return self

    @model_validator(mode="after")
    def _sasl_is_consistent(self) -> Self:
        uses_sasl = self.security_protocol.startswith("SASL")
        if uses_sasl and not self.sasl_mechanism:
            raise ValueError(f"security_protocol {self.security_protocol} needs a sasl_mechanism")
        if not uses_sasl and self.sasl_mechanism:
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs a SASL security_protocol")
        return self

    def topic(self, dataset: str) -> str:
        return f"{self.topic_prefix}{dataset}"

    def sample_list_topic(self, dataset: str) -> str:
        return f"{self.sample_list_topic_prefix}{dataset}"

    def client_config(self) -> dict[str, str]:
        """librdkafka settings shared by producers, consumers and admin clients."""
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username or ""
            config["sasl.password"] = self.sasl_password.get_secret_value() if self.sasl_password else ""
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config


class IggySettings(Group):
    """Apache Iggy, the primary platform. Neither connection_string nor host = Iggy not configured."""

    env_prefix: ClassVar[str] = "IGGY_"
    env_names: ClassVar[dict[str, str]] = {"connection_string": "IGGY_URL"}

    connection_string: SecretStr | None = Field(
        default=None, description="iggy://user:pass@host:8090 (iggy+quic://, iggy+ws://); wins over host/port.")
    host: str | None = Field(default=None, description="Empty together with connection_string = no Iggy.")
    port: int | None = Field(default=None, ge=1, le=65535, description="Default: tcp 8090, quic 8080, ws 8092.")
    transport: Transport = Field(default="tcp")
    username: str | None = Field(default=None)
    password: SecretStr | None = Field(default=None)
    tls: bool = Field(default=False)
    tls_domain: str | None = Field(default=None, description="Server name to verify (default: host); not QUIC.")
    tls_ca_file: str | None = Field(default=None, description="CA bundle (PEM) of the server certificate; not QUIC.")
    stream: str = Field(default="vcfstream")
    partitions: int = Field(default=6, ge=1)
    timeout_s: float = Field(default=2.0, gt=0, description="Bound on every Iggy SDK call, in seconds.")

    @field_validator("stream")
    @classmethod
    def _stream_fits_iggy(cls, value: str) -> str:
        return _unless(iggy_name_problem(value), "stream name", value)

    @model_validator(mode="after")
    def _fields_fit_a_connection_string(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        for what, value in (("username", self.username),
                            ("password", self.password.get_secret_value() if self.password else None)):
            if value and _UNSAFE_IN_URL & set(value):
                # The SDK parses user:pass@ without percent-decoding; say which field, never the value.
                raise ValueError(f"{what} contains one of {''.join(sorted(_UNSAFE_IN_URL))}; "
                                 "use connection_string instead")
        if not self.host or self.connection_string is not None:
            return self
        if not (self.username and self.password and self.password.get_secret_value()):
            raise ValueError("host needs username and password: the SDK logs in with them on every connect")
        if _UNSAFE_IN_HOST & set(self.host):
            raise ValueError(f"host {self.host!r} is not a host name or IPv4 address the SDK can parse")
        for what, value in (("tls_domain", self.tls_domain), ("tls_ca_file", self.tls_ca_file)):
            if value and _UNSAFE_IN_OPTION & set(value):
                raise ValueError(f"{what} contains one of {''.join(sorted(_UNSAFE_IN_OPTION))}, "
                                 "which an Iggy connection string cannot carry")
        if self.transport == "quic" and (self.tls_domain or self.tls_ca_file):
            raise ValueError("tls_domain and tls_ca_file are not available with QUIC: its connection string "
                             "takes no server name or CA file")
        return self

    @property
    def configured(self) -> bool:
        return self.url() is not None

    def url(self) -> SecretStr | None:
        """The connection string the publisher uses (secret: it may carry the password)."""
        if self.connection_string is not None:
            return self.connection_string if self.connection_string.get_secret_value() else None
        if not self.host or self.password is None:
            return None  # no Iggy (the validator refuses a host without credentials)
        options: list[str] = []
        if self.tls and self.transport == "quic":
            options.append("validate_certificate=true")  # QUIC's only TLS option
        elif self.tls:
            options += ["tls=true", f"tls_domain={self.tls_domain or self.host}"]
            if self.tls_ca_file:
                options.append(f"tls_ca_file={self.tls_ca_file}")  # verbatim: the SDK decodes no escapes
            if self.transport == "ws":
                options.append("tls_validate_certificate=true")
        query = "?" + "&".join(options) if options else ""
        port = self.port or _IGGY_DEFAULT_PORT[self.transport]
        return SecretStr(f"{_IGGY_SCHEME[self.transport]}://{self.username}:{self.password.get_secret_value()}"
                         f"@{self.host}:{port}{query}")


class RoutingSettings(Group):
    """Which platform a batch goes to, and the circuit breakers that decide it."""

    env_names: ClassVar[dict[str, str]] = {"strategy": "ROUTING_STRATEGY"}

    strategy: RoutingStrategy = Field(default="health", description="primary_only, fallback_only, health or round_robin.")
    breaker_fail_max: int = Field(default=5, ge=1, description="Failures in a row that open a platform's breaker.")
    breaker_reset_timeout_s: float = Field(default=30.0, gt=0, description="Seconds an open breaker waits before a trial.")
    breaker_success_threshold: int = Field(default=3, ge=1, description="Trial successes that close a breaker.")
    breaker_storage: Literal["postgres", "memory"] = Field(
        default="postgres", description="postgres: breaker state shared by every worker; memory: per process.")


class LanceDBSettings(Group):
    """LanceDB, the vector store."""

    env_names: ClassVar[dict[str, str]] = {"uri": "LANCEDB_URI", "index_min_rows": "LANCE_INDEX_MIN_ROWS",
                                           "lock_timeout_s": "STORE_LOCK_TIMEOUT_S"}

    uri: str | None = Field(default=None, description="Folder or s3://, gs://, az:// URI; empty = <home>/lancedb.")
    index_min_rows: int = Field(default=100_000, ge=1, description="Rows before the vector index is built.")
    lock_timeout_s: float = Field(default=600.0, gt=0, description="Wait this long for another writer.")


class KuzuSettings(Group):
    """Kuzu, the graph store."""

    env_names: ClassVar[dict[str, str]] = {"path": "KUZU_PATH", "lock_timeout_s": "STORE_LOCK_TIMEOUT_S",
                                           "buffer_pool_mb": "KUZU_BUFFER_POOL_MB",
                                           "variants_per_table": "KUZU_VARIANTS_PER_TABLE",
                                           "edges_per_table": "KUZU_EDGES_PER_TABLE"}

    path: str | None = Field(default=None, description="Database path; empty = <home>/kuzu/graph.kuzu.")
    lock_timeout_s: float = Field(default=600.0, gt=0, description="Wait this long for another writer.")
    buffer_pool_mb: int = Field(default=1024, ge=1, description="Kuzu's page cache (its own default is 80% of RAM).")
    variants_per_table: int = Field(default=1_000_000, ge=1,
                                    description="Variant nodes a Kuzu node table takes before the next one starts.")
    edges_per_table: int = Field(default=2_000_000, ge=1,
                                 description="Carrier edges of a Kuzu Variant table before the next one starts.")

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, value: object) -> object:
        return str(value) if isinstance(value, os.PathLike) else value


class StoresSettings(Group):
    """Which stores a run writes, and how much it queues per write."""

    env_names: ClassVar[dict[str, str]] = {"names": "STORES", "genotypes": "STORE_GENOTYPES",
                                           "batch_alleles": "STORE_BATCH_ALLELES", "batch_cells": "STORE_BATCH_CELLS",
                                           "call_rows_max_samples": "STORE_CALL_ROWS_MAX_SAMPLES"}

    names: list[str] = Field(default_factory=lambda: ["catalog", "lancedb", "kuzu"],
                             description="Stores to write: catalog, lancedb, kuzu (comma-separated); none = no "
                                         "stores (an empty variable is unset, so the default).")
    genotypes: bool = Field(default=True, description="Keep per-sample genotype calls in the stores.")
    call_rows_max_samples: int = Field(
        default=0, ge=0, description="Besides the packed genotypes, the catalog keeps one genotype_calls row per call "
                                     "for files of at most this many samples (0 = never).")
    batch_alleles: int = Field(default=250_000, ge=1,
                               description="A store writes once this many alleles are queued (or the run's chunks are done).")
    batch_cells: int = Field(default=4_000_000, ge=1,
                             description="... or once this many genotype cells (alleles x samples) are queued: bounds "
                                         "the memory of a wide file's store write.")

    @field_validator("names", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "none":
            return []
        return _split_list(value, ",")


class TelemetrySettings(Group):
    """Traces and metrics: a Prometheus endpoint, console spans, OTLP export."""

    env_names: ClassVar[dict[str, str]] = {"otlp_endpoint": "OTLP_ENDPOINT", "otlp_protocol": "OTLP_PROTOCOL"}
    # The standard OpenTelemetry variables, read when the VCFSTREAM_ ones are unset.
    otel_names: ClassVar[dict[str, str]] = {"otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
                                            "otlp_protocol": "OTEL_EXPORTER_OTLP_PROTOCOL"}

    metrics_port: int | None = Field(default=None, description="Prometheus endpoint port; empty = off.")
    metrics_host: str = Field(default="127.0.0.1", description="Address the Prometheus endpoint listens on.")
    trace_console: bool = Field(default=False, description="Print spans to stderr.")
    otlp_endpoint: str | None = Field(default=None, description="OTLP collector; also OTEL_EXPORTER_OTLP_ENDPOINT.")
    otlp_protocol: Literal["grpc", "http/protobuf"] = Field(default="grpc", description="Also OTEL_EXPORTER_OTLP_PROTOCOL.")

    @field_validator("otlp_endpoint")
    @classmethod
    def _no_login_in_the_endpoint(cls, value: str | None) -> str | None:
        # The endpoint is logged, by vcfstream and by the exporters (gRPC cannot even send a login).
        authority = (value or "").partition("://")[2] or (value or "")
        if "@" in authority.split("/", 1)[0]:
            raise ValueError("otlp_endpoint holds a login (user:password@): the endpoint is logged; give "
                             "credentials as headers in OTEL_EXPORTER_OTLP_HEADERS instead")
        return value


class IngestSettings(Group):
    """How a file is split and read, and which inputs a flow may read."""

    env_names: ClassVar[dict[str, str]] = {"input_roots": "INPUT_ROOTS", "input_url_schemes": "INPUT_URL_SCHEMES"}

    chunk_size: int = Field(default=50_000, ge=1, description="Records per chunk of a file of up to 3 samples; a wider "
                                                              "file's chunks hold as many genotype cells (chunk_size x 3 / "
                                                              "samples records).")
    chunk_workers: int = Field(default=3, ge=1, description="Chunk tasks in flight at once per flow run (threads).")
    publish_batch_size: int = Field(default=10_000, ge=1, description="Messages per publish batch.")
    message_form: MessageForm = Field(default="auto", description="full: per-sample objects (schema v1); compact: "
                                      "calls as arrays in sample-list order (v2); auto: compact for files with more "
                                      "than compact_above_samples sample columns.")
    compact_above_samples: int = Field(default=COMPACT_ABOVE_SAMPLES, ge=0, description="auto: files with more "
                                       "sample columns get the compact form (a full message spends 20 to 70 bytes "
                                       "per sample, a compact one 4 to 6 per call).")
    message_format_values: bool = Field(default=True, description="Compact messages carry the FORMAT values other "
                                        "than GT, one array per key (false: calls only).")
    read_processes: int = Field(default=1, ge=0, description="Processes parsing chunks beside the flow's (0 = in its threads).")
    task_runner: Literal["default", "dask"] = Field(
        default="default", description="Where chunk tasks run: default = threads of the flow's process; dask = on "
                                       "the Dask cluster of the dask settings. Store writes stay in the flow's process.")
    assembly: str = Field(default="GRCh38", description="Reference assembly recorded with each variant.")
    input_roots: list[Path] = Field(default_factory=list,
                                    description="Absolute folders a flow run may read besides the home's inbox, "
                                                "incoming (':' or ',' separated); empty = the inbox only. The CLI "
                                                "reads any file its user can (docs/security.md).")
    input_url_schemes: list[str] = Field(default_factory=list,
                                         description="URL schemes a flow run's reference FASTA may use (htslib "
                                                     "fetches it), e.g. https,s3 (comma-separated); empty = no URLs.")
    rss_limit: ByteSize | None = Field(default=None, description="Above this RSS (e.g. 2GiB) the flow lowers chunk concurrency.")
    read_timeout_s: float = Field(
        default=600.0, gt=0, description="A reader process that sends no answer for this long is killed and "
                                         "restarted; its chunk fails (and is retried).")
    plan_timeout_s: float = Field(default=3600.0, gt=0, description="Timeout of planning one file (a file "
                                  "without an index is scanned once) and of the cohort's ledger check of it.")
    chunk_timeout_s: float = Field(default=1800.0, gt=0, description="Timeout of one chunk task: read, claim, publish.")
    store_timeout_s: float = Field(default=3600.0, gt=0, description="Timeout of one store write task.")
    file_timeout_s: float = Field(default=43200.0, gt=0, description="Timeout of one ingest run in a cohort "
                                  "(its ingest-files task: one file, or a group of small files).")
    # Limits on hostile input (vcfstream/vcf/limits.py; docs/validation.md "Limits" says why these defaults)
    max_line_bytes: int = Field(default=DEFAULT_LIMITS.max_line_bytes, ge=1, description="A longer data line is "
                                "quarantined (record.line_length), its first 4 KiB kept.")
    max_alts: int = Field(default=DEFAULT_LIMITS.max_alts, ge=1, le=ALT_INDEX_MAX, description="A record with more "
                          "ALT alleles is quarantined (record.alt_count).")
    max_alt_line_bytes: int = Field(default=DEFAULT_LIMITS.max_alt_line_bytes, ge=1, description="A record whose ALT "
                                    "count times its line bytes is larger is quarantined (record.alt_line_bytes): "
                                    "each ALT is a message carrying the record's calls.")
    max_samples: int = Field(default=DEFAULT_LIMITS.max_samples, ge=1, description="A file with more sample columns "
                             "is rejected (header.sample_count).")
    max_header_lines: int = Field(default=DEFAULT_LIMITS.max_header_lines, ge=1, description="A file whose header "
                                  "has more lines is rejected (header.size).")
    max_header_bytes: int = Field(default=DEFAULT_LIMITS.max_header_bytes, ge=1, description="A file whose header "
                                  "has more bytes is rejected (header.size).")
    max_index_bytes: int = Field(default=DEFAULT_LIMITS.max_index_bytes, ge=1, description="A file whose .tbi/.csi "
                                 "index is larger decompressed is rejected (index.size).")

    @field_validator("input_roots", mode="before")
    @classmethod
    def _path_list(cls, value: object) -> object:
        if isinstance(value, str):
            return _split_list(value, ":" if ":" in value and "," not in value else ",")
        return value

    @field_validator("input_url_schemes", mode="before")
    @classmethod
    def _scheme_list(cls, value: object) -> object:
        return _split_list(value, ",")

    @property
    def read_limits(self) -> ReadLimits:
        """The limits files are read under (carried by each ``SourceFile``)."""
        return ReadLimits(self.max_line_bytes, self.max_alts, self.max_samples, self.max_header_lines,
                          self.max_header_bytes, self.max_index_bytes, self.max_alt_line_bytes)


class DaskSettings(Group):
    """The Dask cluster chunk tasks run on when ``ingest.task_runner`` is ``dask``; every connection
    of it is mutual TLS (``vcfstream.runtime.cluster``)."""

    env_prefix: ClassVar[str] = "DASK_"

    address: str | None = Field(default=None, description="Scheduler of a running cluster, tls://host:port; empty = "
                                                          "each run starts a local cluster of local_workers processes.")
    local_workers: int = Field(default=2, ge=1, description="Worker processes (one thread each) of a run's local cluster.")
    tls_ca_file: Path | None = Field(default=None, description="CA certificate (PEM) that signed the cluster's and this "
                                                               "client's certificates; needed with address.")
    tls_cert_file: Path | None = Field(default=None, description="This client's certificate (PEM); needed with address.")
    tls_key_file: Path | None = Field(default=None, description="This client's private key (PEM, keep it mode 0600); "
                                                                "needed with address.")

    @model_validator(mode="after")
    def _a_cluster_is_reached_over_mutual_tls(self) -> Self:
        if self.address is None:
            return self
        if not self.address.startswith("tls://"):
            raise ValueError("dask address must be tls://host:port: the cluster takes only mutual TLS connections")
        missing = [name for name in ("tls_ca_file", "tls_cert_file", "tls_key_file") if getattr(self, name) is None]
        if missing:
            raise ValueError(f"dask address needs {', '.join(missing)} (the cluster takes only mutual TLS connections)")
        return self


class ServicesSettings(Group):
    """The local services ``vcfstream services up`` starts (embedded PostgreSQL, Kafka, Prefect)."""

    env_names: ClassVar[dict[str, str]] = {"pg_port": "PG_PORT", "kafka_port": "KAFKA_PORT",
                                           "kafka_controller_port": "KAFKA_CONTROLLER_PORT",
                                           "kafka_version": "KAFKA_VERSION", "prefect_port": "PREFECT_PORT",
                                           "prefect_auth_string": "PREFECT_AUTH_STRING"}

    pg_port: int = Field(default=5433, description="Embedded PostgreSQL's port.")
    kafka_port: int = Field(default=9092, description="Local Kafka broker's port.")
    kafka_controller_port: int = Field(default=9093, description="Local Kafka controller's port (KRaft).")
    kafka_version: str = Field(default="4.4.0", description="Kafka release fetched from Maven Central.")
    prefect_port: int = Field(default=4200, description="Local Prefect server's port.")
    prefect_auth_string: SecretStr | None = Field(
        default=None, description="user:password of the local Prefect server's basic auth (secret); "
                                  "empty = the one `services up` generated.")

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"


GROUPS: dict[str, type[Group]] = {
    "postgres": PostgresSettings, "kafka": KafkaSettings, "iggy": IggySettings, "routing": RoutingSettings,
    "lancedb": LanceDBSettings, "kuzu": KuzuSettings, "stores": StoresSettings, "telemetry": TelemetrySettings,
    "ingest": IngestSettings, "dask": DaskSettings, "services": ServicesSettings,
}


class Settings(BaseSettings):
    """Everything configurable, with defaults that match ``vcfstream services up``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", hide_input_in_errors=True)

    home: Path = Field(default=Path(".vcfstream"),
                       description="Where services keep state: PostgreSQL data, Kafka, Prefect DB, stores.")
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    iggy: IggySettings = Field(default_factory=IggySettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    lancedb: LanceDBSettings = Field(default_factory=LanceDBSettings)
    kuzu: KuzuSettings = Field(default_factory=KuzuSettings)
    stores: StoresSettings = Field(default_factory=StoresSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    services: ServicesSettings = Field(default_factory=ServicesSettings)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _GroupedEnvironment(settings_cls, os.environ)

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def services_file(self) -> Path:
        """The values ``vcfstream services up`` wrote (mode 0600)."""
        return self.home_dir / SERVICES_FILE

    @property
    def kafka_libs(self) -> Path:
        return self.home_dir / "kafka" / "libs"

    @property
    def lancedb_location(self) -> str:
        return self.lancedb.uri or str(self.home_dir / "lancedb")

    @property
    def kuzu_location(self) -> Path:
        return Path(self.kuzu.path) if self.kuzu.path else self.home_dir / "kuzu" / "graph.kuzu"

    @model_validator(mode="after")
    def _local_services_credentials(self) -> Self:
        """Fill what ``services up`` wrote to the services file into fields left unset."""
        written = read_services_file(self.services_file)
        if not written:
            return self
        self.kafka = _local_kafka(self.kafka, written)
        auth = written.get(ServicesSettings.env_var("prefect_auth_string"))
        if auth and self.services.prefect_auth_string is None:
            self.services = _filled(self.services, {"prefect_auth_string": SecretStr(auth)})
        return self

    def postgres_dsn(self) -> str:
        """The DSN in force: ``postgres.dsn``, else the one ``services up`` wrote under home."""
        if self.postgres.dsn is not None and self.postgres.dsn.get_secret_value():
            return self.postgres.dsn.get_secret_value()
        written = read_services_file(self.services_file).get(PostgresSettings.env_var("dsn"))
        if written:
            return written
        raise ConfigurationError(
            f"postgres: no DSN configured: set {PostgresSettings.env_var('dsn')} (or a PostgreSQL block), "
            f"or start the embedded server with `vcfstream services up` (it writes {self.services_file})")

    def with_groups(self, **groups: Group | Mapping[str, Any] | None) -> Settings:
        """A validated copy with whole groups replaced (a block is its group) or updated from a mapping.

        ``None`` leaves a group as it is. Values the services file supplied are read again (from the
        new home's, if ``home`` is given), so ``with_groups()`` picks up what ``services up`` wrote;
        a group updated from a mapping keeps them unless the home changes (a proxy in front of the
        local broker still logs in).

        Example:
            >>> Settings().with_groups(ingest={"chunk_size": 7}).ingest.chunk_size
            7
        """
        values: dict[str, Any] = {name: getattr(self, name) for name in type(self).model_fields}
        home = groups.get("home")
        new_home = isinstance(home, str | os.PathLike) and Path(home) != self.home
        for name, cls in GROUPS.items():  # what the services file filled in is filled in again, from the new home's
            if type(values[name]) is cls and name not in groups:
                values[name] = cls.model_validate(values[name].model_dump(include=values[name].model_fields_set))
        for name, group in groups.items():
            if name not in GROUPS and name != "home":
                raise ConfigurationError(f"settings: no group {name!r} (groups: {', '.join(GROUPS)})")
            if group is None:
                continue
            if name == "home":
                values["home"] = group
            elif isinstance(group, Group):
                values[name] = group
            else:
                # Values the services file filled in stay (a proxy in front of the local broker needs
                # its login), unless they came from another home's file.
                current = getattr(self, name)
                kept = current.model_dump(include=current.model_fields_set if new_home else None)
                kept.update({key: value for key, value in group.items() if value is not None})
                values[name] = GROUPS[name].model_validate(kept)
        return type(self)(**values)


class _GroupedEnvironment(PydanticBaseSettingsSource):
    """``VCFSTREAM_*`` variables into the groups; an empty one is unset."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every group at once

    def __call__(self) -> dict[str, Any]:
        environ = {key: value for key, value in self.environ.items() if value != ""}
        home = environ.get(ENV_PREFIX + "HOME")
        values: dict[str, Any] = {"home": home} if home else {}
        for name, group in GROUPS.items():
            found: dict[str, Any] = {}
            for field in group.model_fields:
                var = group.env_var(field)
                otel = getattr(group, "otel_names", {}).get(field)
                value = environ.get(var) or (environ.get(otel) if otel else None)
                if value:
                    found[field] = value
            if found:
                values[name] = found
        return values


def read_services_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of the file ``services up`` writes; empty when it is absent."""
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return {}
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.startswith(ENV_PREFIX) and value:
            values[name.strip()] = value.strip()
    return values


def write_services_file(path: Path, values: Mapping[str, str]) -> None:
    """Write (or update) ``values`` in the services file, mode 0600 from its creation."""
    merged = {**read_services_file(path), **values}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# written by `vcfstream services up`; the environment wins over these\n")
        out.writelines(f"{name}={value}\n" for name, value in sorted(merged.items()))
    os.replace(path.with_suffix(".tmp"), path)


GroupT = TypeVar("GroupT", bound=Group)
_KAFKA_FROM_SERVICES_FILE = ("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password")


def _local_kafka(kafka: KafkaSettings, written: Mapping[str, str]) -> KafkaSettings:
    """``kafka`` with the local broker's address and credentials, where it points at that broker.

    Only a group without security of its own takes them: its bootstrap servers unset or the
    local broker's, its protocol PLAINTEXT (which the local broker refuses). Of the SASL fields,
    those set to a value other than their default stay (a field set to its default counts as
    unset: a saved block stores every field). A copy: a loaded block is never changed in place.
    """
    local_broker = written.get(KafkaSettings.env_var("bootstrap_servers"))
    if not local_broker:
        return kafka
    update: dict[str, Any] = {}
    if "bootstrap_servers" not in kafka.model_fields_set:
        update["bootstrap_servers"] = local_broker
    elif kafka.bootstrap_servers != local_broker:
        return kafka
    values = {field: written.get(KafkaSettings.env_var(field)) for field in _KAFKA_FROM_SERVICES_FILE}
    if kafka.security_protocol == "PLAINTEXT" and all(values.values()):
        for field, value in values.items():
            own = getattr(kafka, field)
            if own != KafkaSettings.model_fields[field].default and field in kafka.model_fields_set:
                continue
            update[field] = SecretStr(value or "") if field == "sasl_password" else value
    if not update:
        return kafka
    return _filled(kafka, update)


def _filled(group: GroupT, update: dict[str, Any]) -> GroupT:
    """A copy of ``group`` with values from the services file, which still count as unset (so a
    copy for another home takes that home's)."""
    copy = group.model_copy(update=update)
    object.__setattr__(copy, "__pydantic_fields_set__", set(group.model_fields_set))
    return copy


def _split_list(value: object, separator: str) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(separator) if part.strip()]
    return value


def load_settings(**groups: Any) -> Settings:
    """Settings from the environment (and services file), with groups or ``home`` given on top.

    Example:
        >>> load_settings(kafka={"partitions": 3}).kafka.partitions
        3
    """
    base = Settings()
    return base.with_groups(**groups) if groups else base

"""``IggyConnection``: where and how vcfstream reaches Apache Iggy (the primary platform)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, SecretStr, model_validator

from blocks.base import SettingsBlock
from vcfstream.settings import Settings

if TYPE_CHECKING:
    from vcfstream.publish.iggy import IggyPublisher

Transport = Literal["tcp", "quic", "ws"]
_SCHEME = {"tcp": "iggy", "quic": "iggy+quic", "ws": "iggy+ws"}
_DEFAULT_PORT = {"tcp": 8090, "quic": 8080, "ws": 8092}  # the server's defaults
# The SDK splits a connection string at "://", "@", ":", "?", "&" and "=" and decodes no escapes.
_UNSAFE_IN_URL = set("@:/?#&=%")
_UNSAFE_IN_HOST = _UNSAFE_IN_URL | set("[] ")  # an IPv6 literal, bracketed or not, is refused too
_UNSAFE_IN_OPTION = set("@?#&=")


class IggyConnection(SettingsBlock):
    """Iggy server address, transport, credentials and TLS for vcfstream.

    Give either ``connection_string`` (``iggy://user:pass@host:8090?tls=true``, kept secret) or
    ``host`` (+ port, transport, username, password, TLS). Neither = vcfstream runs without Iggy
    and publishes to Kafka only (the default, as ``vcfstream services up`` starts no Iggy).

    Args:
        connection_string: a complete Iggy connection string; wins over the other address fields.
        host: server host name or IPv4 address (the SDK parses no IPv6 literal).
        port: server port; default by transport, as on the server: tcp 8090, quic 8080, ws 8092.
        transport: tcp, quic or ws.
        username: Iggy user (required with ``host``: the SDK logs in on every connect).
        password: Iggy password (kept secret; shown obfuscated in the UI).
        tls: connect with TLS. QUIC always encrypts; there ``tls`` turns on certificate checks,
            which the SDK makes against the name ``localhost`` (its QUIC connection string cannot
            name the server).
        tls_domain: server name to verify (default: host); tcp and ws only.
        tls_ca_file: CA bundle (PEM) that signed the server certificate; tcp and ws only.
        stream: Iggy stream vcfstream writes to (topic = dataset).
        partitions: partitions of the topics vcfstream creates.
        timeout_s: bound on every SDK call.

    Returns:
        ``settings_overrides()`` -> ``Settings.iggy_*``; ``get_publisher(settings)`` -> an ``IggyPublisher``.

    Example:
        >>> block = IggyConnection(host="iggy.internal", username="vcfstream", password="s3cret", tls=True)
        >>> block.settings_overrides()["iggy_url"]
        SecretStr('**********')
        >>> IggyConnection().settings_overrides()["iggy_url"] is None  # no Iggy
        True
    """

    _block_type_name = "vcfstream Iggy Connection"
    _description = "Apache Iggy server and credentials vcfstream publishes to (the primary platform)."
    default_name: ClassVar[str] = "vcfstream-iggy"

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

    @model_validator(mode="after")
    def _fields_fit_a_connection_string(self) -> IggyConnection:
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
        return self.connection_string is not None or bool(self.host)

    def url(self) -> SecretStr | None:
        """The connection string the publisher uses (secret: it may carry the password)."""
        if self.connection_string is not None:
            return self.connection_string
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
        port = self.port or _DEFAULT_PORT[self.transport]
        return SecretStr(f"{_SCHEME[self.transport]}://{self.username}:{self.password.get_secret_value()}"
                         f"@{self.host}:{port}{query}")

    @classmethod
    def from_settings(cls, settings: Settings) -> IggyConnection:
        return cls(connection_string=settings.iggy_url, stream=settings.iggy_stream,
                   partitions=settings.iggy_partitions, timeout_s=settings.iggy_timeout_s)

    def settings_overrides(self) -> dict[str, Any]:
        return {
            "iggy_url": self.url(),
            "iggy_stream": self.stream,
            "iggy_partitions": self.partitions,
            "iggy_timeout_s": self.timeout_s,
        }

    def get_publisher(self, settings: Settings) -> IggyPublisher:
        """An Iggy publisher for this server; ``PublishUnavailable`` when no Iggy is configured."""
        from vcfstream.publish.iggy import IggyPublisher

        return IggyPublisher(self.apply_to(settings))

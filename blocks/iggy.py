"""``IggyConnection``: where and how vcfstream reaches Apache Iggy (the primary platform)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlencode

from pydantic import Field, SecretStr, model_validator

from blocks.base import SettingsBlock
from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.publishers.iggy import IggyPublisher

Transport = Literal["tcp", "quic", "ws"]
_SCHEME = {"tcp": "iggy", "quic": "iggy+quic", "ws": "iggy+ws"}
_UNSAFE_IN_URL = set("@:/?#&=%")


class IggyConnection(SettingsBlock):
    """Iggy server address, transport, credentials and TLS for vcfstream.

    Give either ``connection_string`` (``iggy://user:pass@host:8090?tls=true``, kept secret) or
    ``host`` (+ port, transport, username, password, TLS). Neither = vcfstream runs without Iggy
    and publishes to Kafka only (the default, as ``vcfstream services up`` starts no Iggy).

    Args:
        connection_string: a complete Iggy connection string; wins over the other address fields.
        host: server host name or address.
        port: server port (TCP 8090, QUIC 8080, WebSocket 8092 by default on the server).
        transport: tcp, quic or ws.
        username: Iggy user.
        password: Iggy password (kept secret; shown obfuscated in the UI).
        tls: connect with TLS.
        tls_domain: server name to verify (default: host).
        tls_ca_file: CA bundle (PEM) that signed the server certificate.
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
    port: int = Field(default=8090, ge=1, le=65535)
    transport: Transport = Field(default="tcp")
    username: str | None = Field(default=None)
    password: SecretStr | None = Field(default=None)
    tls: bool = Field(default=False)
    tls_domain: str | None = Field(default=None, description="Server name to verify (default: host).")
    tls_ca_file: str | None = Field(default=None, description="CA bundle (PEM) that signed the server certificate.")
    stream: str = Field(default="vcfstream")
    partitions: int = Field(default=6, ge=1)
    timeout_s: float = Field(default=2.0, gt=0, description="Bound on every Iggy SDK call, in seconds.")

    @model_validator(mode="after")
    def _credentials_fit_a_url(self) -> IggyConnection:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        for what, value in (("username", self.username),
                            ("password", self.password.get_secret_value() if self.password else None)):
            if value and _UNSAFE_IN_URL & set(value):
                # The SDK parses user:pass@ without percent-decoding; say which field, never the value.
                raise ValueError(f"{what} contains one of {''.join(sorted(_UNSAFE_IN_URL))}; "
                                 "use connection_string instead")
        return self

    @property
    def configured(self) -> bool:
        return self.connection_string is not None or bool(self.host)

    def url(self) -> SecretStr | None:
        """The connection string the publisher uses (secret: it may carry the password)."""
        if self.connection_string is not None:
            return self.connection_string
        if not self.host:
            return None
        credentials = ""
        if self.username and self.password:
            credentials = f"{self.username}:{self.password.get_secret_value()}@"
        options: dict[str, str] = {}
        if self.tls:
            options["tls"] = "true"
            options["tls_domain"] = self.tls_domain or self.host
            if self.tls_ca_file:
                options["tls_ca_file"] = self.tls_ca_file
        query = f"?{urlencode(options, safe='/')}" if options else ""
        return SecretStr(f"{_SCHEME[self.transport]}://{credentials}{self.host}:{self.port}{query}")

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
        from tasks.publishers.iggy import IggyPublisher

        return IggyPublisher(self.apply_to(settings))

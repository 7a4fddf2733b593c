"""``IggyConnection``: where and how vcfstream reaches Apache Iggy (the primary platform)."""

from __future__ import annotations

from typing import ClassVar

from blocks.base import VcfstreamBlock
from vcfstream.settings import IggySettings


class IggyConnection(VcfstreamBlock, IggySettings):
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

    Example:
        >>> IggyConnection(host="iggy.internal", username="vcfstream", password="s3cret", tls=True).url()
        SecretStr('**********')
        >>> IggyConnection().url() is None  # no Iggy
        True
    """

    _block_type_name = "vcfstream Iggy Connection"
    _description = "Apache Iggy server and credentials vcfstream publishes to (the primary platform)."
    default_name: ClassVar[str] = "vcfstream-iggy"
    group: ClassVar[str] = "iggy"

"""The local services' credentials and the home's file modes.

``ensure_credentials(settings)`` generates, on first use, one random password per account of the
local services and keeps them in ``<home>/credentials.json`` (mode 0600, never logged); later
calls read that file. ``publish_client_settings`` writes what the library needs (Kafka's address
and SASL login, the Prefect API's basic auth) to the services file ``Settings`` reads.
``private_home`` makes the home 0700 and, when an older home let others read it, takes group
and other permissions off everything below it; ``private_files`` is the umask 077 every process
of the services runs with.

Example:
    >>> from vcfstream.settings import load_settings
    >>> ensure_credentials(load_settings()).kafka_user  # doctest: +SKIP
    'vcfstream'
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from vcfstream.settings import KafkaSettings, ServicesSettings, Settings, write_services_file

CREDENTIALS_FILE = "credentials.json"  # under home, mode 0600
PRIVATE_UMASK = 0o077
KAFKA_MECHANISM = "SCRAM-SHA-512"
KAFKA_PROTOCOL = "SASL_PLAINTEXT"  # the broker listens on 127.0.0.1 only; production brokers use SASL_SSL


@dataclass(frozen=True)
class Credentials:
    """One user and password per account of the local services.

    PostgreSQL: the superuser (``services up`` only) and ``vcfstream`` (the library's DSN, owner of
    its database). Kafka: the broker's own super user, ``vcfstream`` (writes and reads its topics)
    and a read-only consumer. Prefect: the server's basic auth, also the UI login.
    """

    pg_superuser: str = "postgres"
    pg_superuser_password: str = ""
    pg_user: str = "vcfstream"
    pg_password: str = ""
    kafka_admin_user: str = "vcfstream-admin"
    kafka_admin_password: str = ""
    kafka_user: str = "vcfstream"
    kafka_password: str = ""
    kafka_reader_user: str = "vcfstream-reader"
    kafka_reader_password: str = ""
    prefect_user: str = "vcfstream"
    prefect_password: str = ""

    @property
    def prefect_auth_string(self) -> str:
        """``user:password``: the server's PREFECT_SERVER_API_AUTH_STRING, the clients'
        PREFECT_API_AUTH_STRING, and what the UI's login asks for."""
        return f"{self.prefect_user}:{self.prefect_password}"

    def kafka_client(self, user: str) -> dict[str, str]:
        """librdkafka's SASL settings for one of the Kafka accounts."""
        passwords = {self.kafka_admin_user: self.kafka_admin_password, self.kafka_user: self.kafka_password,
                     self.kafka_reader_user: self.kafka_reader_password}
        return {"security.protocol": KAFKA_PROTOCOL, "sasl.mechanism": KAFKA_MECHANISM,
                "sasl.username": user, "sasl.password": passwords[user]}


def credentials_file(settings: Settings) -> Path:
    return settings.home_dir / CREDENTIALS_FILE


def read_credentials(settings: Settings) -> Credentials | None:
    """The stored credentials, or None when ``services up`` has not generated them yet."""
    try:
        return Credentials(**json.loads(credentials_file(settings).read_text()))
    except FileNotFoundError:
        return None


def ensure_credentials(settings: Settings) -> Credentials:
    """The stored credentials; generated (random, URL- and config-safe) and stored if missing."""
    stored = read_credentials(settings)
    if stored is not None:
        return stored
    passwords = {name: secrets.token_urlsafe(24) for name in
                 ("pg_superuser_password", "pg_password", "kafka_admin_password", "kafka_password",
                  "kafka_reader_password", "prefect_password")}
    credentials = Credentials(**passwords)
    write_private(credentials_file(settings), json.dumps(asdict(credentials), indent=2) + "\n")
    return credentials


def publish_client_settings(settings: Settings, credentials: Credentials) -> None:
    """Write the local Kafka broker's address and login and the Prefect API's auth to the services file."""
    write_services_file(settings.services_file, {
        KafkaSettings.env_var("bootstrap_servers"): f"127.0.0.1:{settings.services.kafka_port}",
        KafkaSettings.env_var("security_protocol"): KAFKA_PROTOCOL,
        KafkaSettings.env_var("sasl_mechanism"): KAFKA_MECHANISM,
        KafkaSettings.env_var("sasl_username"): credentials.kafka_user,
        KafkaSettings.env_var("sasl_password"): credentials.kafka_password,
        ServicesSettings.env_var("prefect_auth_string"): credentials.prefect_auth_string,
    })


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file readable by its owner only (0600 from its creation), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)  # an earlier, looser tmp file keeps its mode through O_CREAT
    os.replace(tmp, path)


@contextmanager
def private_files() -> Iterator[None]:
    """Umask 077 while the block runs: what it creates is its owner's only."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def private_home(settings: Settings, *, traverse_gid: int | None = None) -> Path:
    """Create the home 0700 (0710 with group ``traverse_gid``, for a server account that must
    reach its folder below it); tighten an older, looser home and everything below it."""
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    wanted = 0o700 if traverse_gid is None else 0o710
    if stat.S_IMODE(home.stat().st_mode) & 0o077 & ~(wanted & 0o070):
        _take_away_group_and_other(home)
    if traverse_gid is not None and home.stat().st_gid != traverse_gid:
        os.chown(home, -1, traverse_gid)
    home.chmod(wanted)
    return home


def _take_away_group_and_other(home: Path) -> None:
    """chmod go-rwx below ``home`` (not following symbolic links)."""
    for folder, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            try:
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                    os.chmod(path, stat.S_IMODE(mode) & 0o700)
            except FileNotFoundError:  # a file a running service just removed
                continue

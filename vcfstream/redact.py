"""Secrets out of texts: the forms a secret takes (raw, percent-encoded, base64) and the
redaction of a PostgreSQL connection error, whose text may quote pieces of a malformed DSN.

Example:
    >>> mask("login vcf:p%40ss failed", ["p@ss"])
    'login vcf:*** failed'
    >>> dsn_error_text(ValueError('unexpected spaces found in "p@ss w"'), "postgresql://u:p@ss w@db/x")
    'unexpected spaces found in "***"'
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable

from psycopg.conninfo import conninfo_to_dict

MASK = "***"
# A quoted piece of a libpq or psycopg message: "..." or '...'.
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
# A fragment that can be shown when the DSN names it: a host name, address, port, user or database.
_PLAIN = re.compile(r"[A-Za-z0-9._:-]+")
# password=value (quoted or not) in libpq key/value connection strings.
_KEY_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE)
_SHOWN_KEYS = ("host", "hostaddr", "port", "user", "dbname")


def secret_forms(secret: str) -> list[str]:
    """``secret`` as it may appear in a text: raw, percent-encoded (as in a URL's path or its
    query), and base64 (standard and URL-safe); longest first."""
    raw = secret.encode()
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret),
             urllib.parse.quote_plus(secret), base64.b64encode(raw).decode().rstrip("="),
             base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return sorted((form for form in forms if form), key=len, reverse=True)


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of each secret replaced by ``***`` (secrets under 3 characters
    are left alone: they would mask ordinary words)."""
    forms = sorted({form for secret in secrets if len(secret) >= 3 for form in secret_forms(secret)},
                   key=len, reverse=True)
    for form in forms:
        text = text.replace(form, MASK)
    return text


def dsn_passwords(dsn: str) -> list[str]:
    """Every text of ``dsn`` that may be its password, also when the DSN is malformed: the
    password libpq parses, and everything between a URI's ``user:`` and its last ``@``."""
    found: list[str] = []
    _, separator, rest = dsn.partition("://")
    if separator and "@" in rest:
        userinfo = rest.rpartition("@")[0]
        found += [userinfo.partition(":")[2], urllib.parse.unquote(userinfo.partition(":")[2])]
    found += [match.group(1).strip("'") for match in _KEY_PASSWORD.finditer(dsn)]
    parsed = _parsed(dsn)
    if parsed.get("password"):
        found.append(parsed["password"])
    return [text for text in found if text]


def dsn_error_text(exc: BaseException, dsn: str) -> str:
    """The first line of a connection error's text, safe to show: a quoted piece stays only if
    it is one character (``"="``), or the DSN parses, names it as host, port, user or database
    and no possible password holds it (a malformed DSN's password can land in any of them); then
    every form of the DSN and of its possible passwords is masked."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    passwords = dsn_passwords(dsn)
    parsed = _parsed(dsn)
    shown = {value for key in _SHOWN_KEYS for value in str(parsed.get(key) or "").split(",") if value}

    def hide(match: re.Match[str]) -> str:
        quote, inner = match.group(0)[0], match.group(0)[1:-1]
        keep = len(inner) <= 1 or (inner in shown and _PLAIN.fullmatch(inner) is not None
                                   and not any(inner in password for password in passwords))
        return match.group(0) if keep else f"{quote}{MASK}{quote}"

    return mask(_QUOTED.sub(hide, first), [dsn, *passwords])


def _parsed(dsn: str) -> dict[str, str]:
    try:
        return {key: str(value) for key, value in conninfo_to_dict(dsn).items()}
    except Exception:  # malformed: nothing in it can be trusted to be what it seems
        return {}

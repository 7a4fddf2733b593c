"""Names checked at the door: dataset names, and the topic names and artifact keys made from them.

A dataset name becomes a Kafka topic (``KafkaSettings.topic_prefix`` + name), an Iggy topic of
the stream ``IggySettings.stream``, a Prefect flow run name and, through ``artifact_key``, a
Prefect artifact key. The rule is the intersection of what each of them accepts, so a name that
passes works everywhere and two distinct names never share a topic or an artifact:

- ``^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`` (``DATASET_RULE``): ASCII letters, digits, ``_`` and
  ``-``, a letter or digit first, 1 to 100 characters; and not digits only.
- Kafka topic names allow ``[a-zA-Z0-9._-]``, at most 249 characters, and Kafka refuses a topic
  whose name equals an existing one once ``.`` and ``_`` are both read as ``_`` (their metric
  names would collide). Leaving ``.`` out of dataset names keeps ``a.b`` and ``a_b`` from
  fighting over one topic; 100 characters leave 149 for ``topic_prefix``.
- Iggy names are 1..255 bytes, and the SDK reads a name that parses as an unsigned 32-bit number
  as a numeric id (it would address another topic): hence no all-digit names.
- Prefect artifact keys allow lowercase letters, digits and dashes only, so ``artifact_key``
  lowercases, turns ``_`` into ``-`` and appends a short hash of the exact name: ``Cohort_A``
  and ``cohort-a`` get distinct keys.

Example:
    >>> check_dataset("cohort_2024")
    'cohort_2024'
    >>> artifact_key("vcfstream-chunks", "Cohort_A")
    'vcfstream-chunks-cohort-a-7d9ed84f'
"""

from __future__ import annotations

import hashlib
import re

from vcfstream.errors import ConfigurationError

DATASET_RULE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
DATASET_MAX = 100
KAFKA_TOPIC_MAX = 249  # Kafka's limit on a topic name
KAFKA_TOPIC_CHARS = r"[A-Za-z0-9._-]"
IGGY_NAME_MAX = 255  # bytes, for stream and topic names
RULE_TEXT = ("1 to 100 characters of A-Z, a-z, 0-9, '_' and '-', starting with a letter or digit, "
             "not digits only")

_DATASET = re.compile(DATASET_RULE)
_KAFKA_TOPIC = re.compile(f"{KAFKA_TOPIC_CHARS}+")
_DIGITS = re.compile(r"\+?[0-9]+")  # what the Iggy SDK's u32 parser takes


class InvalidName(ConfigurationError):
    """A dataset (or stream, or topic prefix) name outside its rule; the message names the rule."""


def dataset_problem(name: str) -> str | None:
    """Why ``name`` cannot be a dataset name, or None if it can."""
    if not isinstance(name, str) or not name:
        return "is empty"
    if len(name) > DATASET_MAX:
        return f"is {len(name)} characters long"
    if not _DATASET.fullmatch(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_-"))})
        if bad:
            return "contains " + ", ".join(repr(c) for c in bad)
        return "does not start with a letter or digit"
    if name.isdigit():
        return "is digits only (Iggy would read it as a numeric topic id)"
    return None


def check_dataset(name: str) -> str:
    """``name`` if it is a valid dataset name; else ``InvalidName`` naming the rule.

    Checked once, before anything is claimed: by the CLI, the flows and the publishers."""
    problem = dataset_problem(name)
    if problem:
        raise InvalidName(f"dataset name {name!r} {problem}: a dataset name must be {RULE_TEXT} "
                          f"({DATASET_RULE}), so that it can name a Kafka topic, an Iggy topic and a "
                          f"Prefect artifact")
    return name


def topic_prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot start Kafka topic names of every valid dataset, or None."""
    if prefix and not _KAFKA_TOPIC.fullmatch(prefix):
        return f"holds characters outside {KAFKA_TOPIC_CHARS} (Kafka's topic name characters)"
    if len(prefix) + DATASET_MAX > KAFKA_TOPIC_MAX:
        return (f"is {len(prefix)} characters: with a {DATASET_MAX}-character dataset the topic would "
                f"pass Kafka's {KAFKA_TOPIC_MAX}")
    return None


def iggy_name_problem(name: str) -> str | None:
    """Why the Iggy SDK cannot address a stream or topic by ``name``, or None if it can."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= IGGY_NAME_MAX:
        return f"is {size} bytes (Iggy names are 1..{IGGY_NAME_MAX} bytes)"
    if _DIGITS.fullmatch(name) and int(name) < 2**32:
        return "is all digits (the SDK would take it for a numeric id and address another stream or topic)"
    return None


def artifact_key(prefix: str, dataset: str) -> str:
    """A Prefect artifact key for ``dataset``, distinct for distinct names: ``prefix`` + the
    name lowercased with every other character than a-z and 0-9 as ``-``, + 8 hex digits of
    the exact name's BLAKE2b hash."""
    readable = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-")
    digest = hashlib.blake2b(dataset.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{prefix}-{readable}-{digest}" if readable else f"{prefix}-{digest}"

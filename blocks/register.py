"""``vcfstream blocks register``: register the block types and save defaults matching
``vcfstream services up``.

Defaults are saved only where no block of that name exists yet, so re-running the command (or
``deploy``) never resets a block someone pointed at production; ``overwrite=True`` does.

Example:
    >>> from vcfstream.settings import load_settings
    >>> register_blocks(load_settings())  # doctest: +SKIP
    ['vcfstream-kafka', 'vcfstream-iggy', 'vcfstream-postgres', 'vcfstream-lancedb', 'vcfstream-kuzu', 'vcfstream-routing']
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from blocks import BLOCK_TYPES, VcfstreamBlock
from vcfstream.errors import ServiceError
from vcfstream.settings import Settings

_log = logging.getLogger(__name__)


@contextmanager
def prefect_api(settings: Settings) -> Iterator[str]:
    """Talk to the configured Prefect API (``PREFECT_API_URL``), else to ``services up``'s server.

    Raises ``ServiceError`` when that server does not answer, instead of silently registering
    into a throw-away ephemeral server. The local server is talked to with its own basic auth
    (``settings.services.prefect_auth_string``); any other with ``PREFECT_API_AUTH_STRING``.
    """
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    url = PREFECT_API_URL.value() or settings.services.prefect_api_url
    try:
        healthy = httpx.get(f"{url.rstrip('/')}/health", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        healthy = False
    if not healthy:
        raise ServiceError(f"prefect: no Prefect API answers on {url}; start it with `vcfstream services up`")
    updates: dict[Any, Any] = {PREFECT_API_URL: url}
    local_auth = settings.services.prefect_auth_string
    if local_auth is not None and url.rstrip("/") == settings.services.prefect_api_url:
        updates[PREFECT_API_AUTH_STRING] = local_auth.get_secret_value()
    with temporary_settings(updates=updates):
        yield url


def default_blocks(settings: Settings) -> dict[str, VcfstreamBlock]:
    """Block document name -> block holding the values ``settings`` (i.e. ``services up``) uses."""
    return {cls.default_name: cls.from_settings(settings) for cls in BLOCK_TYPES.values()}


def register_blocks(settings: Settings, *, overwrite: bool = False) -> list[str]:
    """Register the vcfstream block types and save the default block documents.

    Args:
        settings: the settings the defaults are taken from (environment of ``services up``).
        overwrite: replace existing documents of the default names (default: keep them).

    Returns:
        The names of the default block documents, in ``BLOCK_TYPES`` order.
    """
    with prefect_api(settings):
        for cls in BLOCK_TYPES.values():
            cls.register_type_and_schema()
        names = []
        for name, block in default_blocks(settings).items():
            if overwrite or not _exists(type(block), name):
                block.save(name, overwrite=overwrite)
                _log.info("saved block %s/%s", block.get_block_type_slug(), name)
            names.append(name)
        return names


def _exists(cls: type[VcfstreamBlock], name: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_block_document_by_name(name=name, block_type_slug=cls.get_block_type_slug())
            return True
        except ObjectNotFound:
            return False

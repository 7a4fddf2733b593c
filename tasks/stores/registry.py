"""Opening a store by the name the flow uses ("catalog", "lancedb", "kuzu").

Example:
    >>> with open_store("lancedb", settings) as store:  # doctest: +SKIP
    ...     store.write(batch)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from tasks.errors import StoreError
from tasks.settings import Settings
from tasks.stores.base import Store

STORE_NAMES = ("catalog", "lancedb", "kuzu")


@contextmanager
def open_store(name: str, settings: Settings, *, csq_fields: Sequence[str] | None = None) -> Iterator[Store]:
    """The named store, closed on exit. ``csq_fields``: the file's VEP CSQ order (kuzu only).

    Backends are imported here, so a flow that writes no graph never loads Kuzu.
    """
    store: Store
    if name == "catalog":
        from tasks.stores.catalog import CatalogStore

        store = CatalogStore(settings)
    elif name == "lancedb":
        from tasks.stores.lance import LanceStore

        store = LanceStore(settings)
    elif name == "kuzu":
        from tasks.stores.graph import GraphStore

        store = GraphStore(settings, csq_fields=csq_fields)
    else:
        raise StoreError(name, f"no such store; expected one of {', '.join(STORE_NAMES)}")
    try:
        yield store
    finally:
        store.close()

"""Opening a store by the name the flow uses ("catalog", "lancedb", "kuzu").

Example:
    >>> with open_store("lancedb", settings) as store:  # doctest: +SKIP
    ...     store.write(batch)
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from vcfstream.errors import StoreError
from vcfstream.settings import Settings
from vcfstream.stores.base import Store

STORE_NAMES = ("catalog", "lancedb", "kuzu")
_NO_SUCH_STORE = f"no such store; expected one of {', '.join(STORE_NAMES)}"
_MODULES = {"catalog": "vcfstream.stores.catalog", "lancedb": "vcfstream.stores.lance", "kuzu": "vcfstream.stores.graph"}


def check_store_names(names: Iterable[str]) -> list[str]:
    """``names`` as a list; ``StoreError`` naming every unknown one. The flow checks before it
    reads a record: a misspelt store would otherwise fail only at its first write, after the
    chunks were published."""
    wanted = list(names)
    unknown = [name for name in wanted if name not in STORE_NAMES]
    if unknown:
        raise StoreError(", ".join(map(repr, unknown)), _NO_SUCH_STORE)
    return wanted


def preload_stores(names: Iterable[str]) -> None:
    """Import the named stores' backends in a background thread, started as the flow begins.

    Importing LanceDB holds the GIL for 1-2 s: in a flow's first seconds a core is idle (reader
    processes are starting), while its first store write comes when every core is busy.
    ``open_store`` imports the same modules (Python's import lock makes it wait for this one),
    and raises a failed import again in the store task that names the store.
    """
    modules = [_MODULES[name] for name in names if name in _MODULES]

    def load() -> None:
        for module in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(module)

    threading.Thread(target=load, name="vcfstream-preload-stores", daemon=True).start()


@contextmanager
def open_store(name: str, settings: Settings) -> Iterator[Store]:
    """The named store, closed on exit.

    Backends are imported here, so a flow that writes no graph never loads Kuzu.
    """
    store: Store
    if name == "catalog":
        from vcfstream.stores.catalog import CatalogStore

        store = CatalogStore(settings)
    elif name == "lancedb":
        from vcfstream.stores.lance import LanceStore

        store = LanceStore(settings)
    elif name == "kuzu":
        from vcfstream.stores.graph import GraphStore

        store = GraphStore(settings)
    else:
        raise StoreError(name, _NO_SUCH_STORE)
    try:
        yield store
    finally:
        store.close()

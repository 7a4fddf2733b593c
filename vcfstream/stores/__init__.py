"""Storage backends: LanceDB (vectors), Kuzu (graph), PostgreSQL catalog.

Every store has the same small surface (``vcfstream.stores.base.Store``): ``name``, built from
``Settings``, ``write(batch) -> int`` (new variants written now; re-writing a batch writes 0)
and ``close()``. Each backend's client calls stay in its own module: ``catalog.py``,
``lance.py``, ``graph.py``.
"""

"""vcfstream: VCF/BCF ingestion with a PostgreSQL dedup ledger, publishing to Apache Iggy or
Kafka, and fan-out to LanceDB, Kuzu and a PostgreSQL catalog.

The library is plain typed Python and imports no Prefect; ``vcfstream.cli`` and
``vcfstream.devservices`` run and deploy the flows in ``flows/``.
"""

"""Prefect flows of vcfstream and the ``vcfstream`` CLI."""

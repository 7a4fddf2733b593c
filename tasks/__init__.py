"""Prefect tasks: thin wrappers over the library (``vcfstream``), one module per stage."""

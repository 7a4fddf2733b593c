"""Prefect blocks: one per external service, each builds its configured client."""

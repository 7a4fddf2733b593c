"""The run record: what every ``ingest_vcf`` run writes to PostgreSQL's ``catalog`` schema,
whether or not the ``catalog`` store is among the stores it writes (PostgreSQL is always there,
for the ledger). Tables: migrations ``010_catalog.sql``, ``012_catalog_run_record.sql`` and
``014_catalog_chunk_digest.sql``.

When the flow calls ``RunRecord``:

* ``start``: ``ingestion_runs`` gets the run (flow run id, dataset, parameters without
  secrets, the flow run that started it: a cohort's), state ``Running``;
* ``file``: each file once it is planned (``source_files``: path, sha256, size, format, header,
  samples; ``run_files``: status ``ingesting``, chunks planned), or once it failed to plan or
  was rejected (``run_files`` only, when it could not be read);
* ``chunk``: each chunk's outcome as it finishes (``chunks``: records, alleles, new,
  duplicates, quarantined, failovers, in doubt, published per platform, state, message or
  error, and ``read_digest``: the digest of the record lines it read, see
  ``vcfstream.vcf.reader.ChunkRead``);
* ``finish``: every file's final outcome and counts (``run_files``, ``source_files.status``)
  and the run's end (``ingestion_runs``: state, ``ended_at``, the ``--json`` summary).

Writing the record never fails a run: a write that fails logs a warning; after one, only the
run's end is still written (so its state is right), and nothing at all once the run's start
failed. The ledger, brokers and stores are unaffected. Error texts
and parameters are stored with the settings' secrets (and any URL or DSN password) masked.

Which files did last night's cohort load, when, how many variants, which failed::

    SELECT r.parent_flow_run_id AS cohort_run, f.path, f.status, r.started_at, r.ended_at,
           f.records, f.alleles AS variants, f.new, f.duplicates, f.quarantined, f.failovers,
           f.error
    FROM catalog.ingestion_runs r
    JOIN catalog.run_files f USING (flow_run_id)
    WHERE r.dataset = 'cohort-2024'
      AND r.started_at >= date_trunc('day', now()) - interval '12 hours'  -- since noon yesterday
    ORDER BY r.started_at, f.path;

(``AND r.parent_flow_run_id = '<cohort flow run id>'`` narrows it to one cohort run; files a
cohort skipped as already complete were not run, so they have no row.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, SecretStr

from vcfstream.errors import ConfigurationError
from vcfstream.model import Chunk, ChunkSummary
from vcfstream.redact import MASK, dsn_passwords, mask
from vcfstream.settings import Settings
from vcfstream.stores import catalog
from vcfstream.stores.catalog import SourceFileInfo
from vcfstream.summary import FileOutcome, RunSummary

# user:password@ in URLs (postgresql://, iggy://, http://) and password=... in libpq key/values
_URL_PASSWORD = re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")
_KEY_PASSWORD = re.compile(r"(?P<keep>\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


class RunRecord:
    """The run record of one flow run; every method is safe to call (see the module doc)."""

    def __init__(self, settings: Settings, flow_run_id: str, dataset: str, warn: Callable[[str], None]) -> None:
        self.settings, self.flow_run_id, self.dataset = settings, flow_run_id, dataset
        self._warn = warn
        self._secrets = _secret_values(settings)
        self.broken: str | None = None  # why the record stopped being written
        self._started = False

    def start(self, parameters: Mapping[str, Any], parent_flow_run_id: str | None = None) -> None:
        self._write("starting the run", lambda: catalog.start_run(
            self.settings, self.flow_run_id, self.dataset, self.scrub(dict(parameters)), parent_flow_run_id))
        self._started = self.broken is None

    def file(self, outcome: FileOutcome, source: SourceFileInfo | None = None) -> None:
        """A file planned (``source`` given: its ``source_files`` row too), failed or rejected."""
        def write() -> None:
            if source is not None:
                catalog.record_source_file(self.settings, self.dataset, source, status=outcome.status)
            catalog.record_run_file(self.settings, self.flow_run_id, self.dataset, self._scrubbed(outcome))

        self._write(f"recording {outcome.path}", write)

    def chunk(self, chunk: Chunk, summary: ChunkSummary, state: str, message: str) -> None:
        self._write(f"recording chunk {chunk.chunk_id}", lambda: catalog.record_chunk(
            self.settings, self.dataset, chunk, summary, state, self.flow_run_id, message=self.scrub(message)))

    def finish(self, summary: RunSummary) -> None:
        def write() -> None:
            for outcome in summary.files:
                catalog.record_run_file(self.settings, self.flow_run_id, self.dataset, self._scrubbed(outcome))
            catalog.finish_run(self.settings, self.flow_run_id, summary.state, self.scrub(summary.to_json()))

        if self._started:
            self.broken = None  # the run's end is written even after a failed write
            self._write("finishing the run", write)

    def scrub(self, value: Any) -> Any:
        """``value`` (strings in dicts and lists too) with secrets masked."""
        if isinstance(value, str):
            value = mask(value, self._secrets)  # raw, percent-encoded and base64
            return _KEY_PASSWORD.sub(rf"\g<keep>{MASK}", _URL_PASSWORD.sub(rf"\g<keep>{MASK}@", value))
        if isinstance(value, Mapping):
            return {key: self.scrub(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(item) for item in value]
        return value

    def _scrubbed(self, outcome: FileOutcome) -> FileOutcome:
        return replace(outcome, error=self.scrub(outcome.error)) if outcome.error else outcome

    def _write(self, doing: str, action: Callable[[], None]) -> None:
        if self.broken is not None:
            return
        try:
            action()
        except Exception as exc:  # the record never fails the run
            self.broken = self.scrub(f"{doing} failed: {exc}")
            self._warn(f"run record of {self.flow_run_id} (catalog.ingestion_runs, run_files, chunks): "
                       f"{self.broken}; the run goes on, its record stays incomplete")


def _secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold (and the password of the DSN in force), longest first."""
    found: list[str] = []

    def collect(model: BaseModel) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
            elif isinstance(value, BaseModel):
                collect(value)

    collect(settings)
    try:
        found += dsn_passwords(settings.postgres_dsn())  # also a malformed DSN's possible passwords
    except ConfigurationError:  # no DSN in force: nothing more to mask
        pass
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)

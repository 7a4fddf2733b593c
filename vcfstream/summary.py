"""What a run did, typed: ``RunSummary`` for an ``ingest_vcf`` run (its chunks and files),
``CohortSummary`` for an ``ingest_cohort`` run (one ``FileOutcome`` per file). Their counts are
one ``model.ChunkSummary`` each (``counts``): chunks merge into files and runs with ``+``.

``to_json()`` is the public form: ``RunSummary.to_json()`` is what ``vcfstream ingest --json``
prints and the data of the ``ingest_vcf`` flow's final state (``IngestFailed.summary`` when it
failed); ``CohortSummary.to_json()`` the ``ingest_cohort`` flow's. Their keys and values are a
contract; ``RunSummary.from_json`` reads one back. The one-line headlines and the rows of the
Prefect table artifacts are built here too.

Example:
    >>> summary = RunSummary(ChunkSummary(records=2, alleles=3, new=3, published=Counter(kafka=3)))
    >>> summary.headline()
    '2 records, 3 alleles: 3 new, 0 duplicates, 0 quarantined; published 3 to kafka'
    >>> list(summary.to_json())[:3]
    ['records', 'alleles', 'reference_blocks']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vcfstream.errors import IngestFailed
from vcfstream.model import Chunk, ChunkSummary

# RunSummary.to_json()'s keys after the counts' (ChunkSummary.to_dict()).
RUN_KEYS = ("flow_run_id", "state", "errors", "seconds", "files")
# The counts a cohort's file outcome shows (its "outcomes" rows: file, status, digest, these, flow_run, error).
OUTCOME_COUNTS = ("records", "alleles", "new", "duplicates", "quarantined", "failovers", "published")


def platforms_text(published: Mapping[str, int]) -> str:
    """``iggy: 600, kafka: 400``, or ``-`` when nothing was published (table artifacts)."""
    return ", ".join(f"{p}: {n}" for p, n in sorted(published.items())) or "-"


def counts_from_json(data: Mapping[str, Any]) -> ChunkSummary:
    """The counts among ``data`` (a ``to_json()``): the inverse of ``ChunkSummary.to_dict``."""
    values: dict[str, Any] = {}
    for item in fields(ChunkSummary):
        if item.name in data:
            value = data[item.name]
            values[item.name] = (Counter(value or {}) if item.name in ("published", "stored", "rules")
                                 else list(value or []) if item.name == "notes" else value)
    return ChunkSummary(**values)


@dataclass(slots=True)
class ChunkRow:
    """One finished chunk: a row of the run's table artifact."""

    path: str
    index: int
    extent: str
    counts: ChunkSummary
    state: str = "Completed"  # the chunk task's final state (Completed, CompletedWithFailover, Cached)
    message: str = ""

    @classmethod
    def of(cls, chunk: Chunk, counts: ChunkSummary, state: str, message: str) -> ChunkRow:
        return cls(chunk.path, chunk.index, chunk.label, counts, state, message)

    def table_row(self) -> dict[str, Any]:
        c = self.counts
        return {
            "file": Path(self.path).name, "chunk": self.index, "extent": self.extent, "records": c.records,
            "alleles": c.alleles, "new": c.new, "duplicates": c.duplicates, "quarantined": c.quarantined,
            "platforms": platforms_text(c.published), "failovers": c.failovers, "in_doubt": c.in_doubt,
            "state": self.state, "message": self.message,
        }  # fmt: skip


@dataclass(slots=True)
class FileOutcome:
    """What became of one file: in a run (ingesting, ingested, failed, rejected) or in a cohort
    (also skipped: the ledger holds it complete). ``file`` is the name, ``path`` the full path;
    ``counts`` sums the file's finished chunks (in a cohort: its run's)."""

    file: str
    status: str
    digest: str = ""
    counts: ChunkSummary = field(default_factory=ChunkSummary)
    flow_run: str = ""
    error: str = ""
    path: str = ""
    chunks: int = 0  # planned
    failed_chunks: int = 0

    @classmethod
    def at(cls, path: str, status: str, **values: Any) -> FileOutcome:
        return cls(Path(path).name, status, path=path, **values)

    @classmethod
    def of_run(cls, path: str, digest: str, run: RunSummary) -> FileOutcome:
        """A cohort file's outcome from the summary of the run that ingested it."""
        failed = run.state != "Completed"
        return cls.at(path, "failed" if failed else "ingested", digest=digest, counts=run.counts,
                      flow_run=run.flow_run_id or "", error=("; ".join(run.errors) or run.state) if failed else "")

    def add(self, row: ChunkRow) -> None:
        """Count a finished chunk of this file."""
        self.counts = self.counts + row.counts

    def fail(self, error: str) -> None:
        self.status = "failed"
        self.error = "; ".join(filter(None, (self.error, error)))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileOutcome:
        """Read back a row of a run's ``files`` (``run_json()``)."""
        path = str(data.get("path") or data.get("file") or "")
        return cls.at(path, str(data.get("status", "")), digest=str(data.get("digest") or ""),
                      counts=counts_from_json(data), flow_run=str(data.get("flow_run") or ""),
                      error=str(data.get("error") or ""))

    def run_json(self) -> dict[str, Any]:
        """A row of a run summary's ``files``: ``to_json()`` with the full path first."""
        return {"path": self.path, **self.to_json()}

    def to_json(self) -> dict[str, Any]:
        """A row of the cohort summary's ``outcomes``."""
        counts = self.counts.to_dict()
        return {"file": self.file, "status": self.status, "digest": self.digest,
                **{key: counts[key] for key in OUTCOME_COUNTS}, "flow_run": self.flow_run, "error": self.error}

    def table_row(self) -> dict[str, Any]:
        c = self.counts
        return {
            "file": self.file, "status": self.status, "digest": self.digest[:12], "records": c.records,
            "variants": c.alleles, "new": c.new, "duplicates": c.duplicates, "quarantined": c.quarantined,
            "failovers": c.failovers, "published": platforms_text(c.published), "flow_run": self.flow_run,
            "error": self.error[:300],
        }  # fmt: skip


@dataclass(slots=True)
class RunSummary:
    """What one ``ingest_vcf`` run did: its counts, state and errors, and ``files`` (each input
    file's outcome, so a run of many files says which of them failed); ``chunks`` (the finished
    chunks) are not part of ``to_json()``."""

    counts: ChunkSummary = field(default_factory=ChunkSummary)
    flow_run_id: str | None = None
    state: str = "Completed"
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    chunks: list[ChunkRow] = field(default_factory=list)
    files: list[FileOutcome] = field(default_factory=list)

    @classmethod
    def of(cls, counts: ChunkSummary, flow_run_id: str | None, errors: list[str],
           chunks: list[ChunkRow] | None = None, files: list[FileOutcome] | None = None) -> RunSummary:
        """The summary of a run whose chunks merged into ``counts``; Failed when there are errors."""
        return cls(counts, flow_run_id, "Failed" if errors else "Completed", list(dict.fromkeys(errors)), 0.0,
                   list(chunks or []), list(files or []))

    @classmethod
    def failed(cls, error: str, flow_run_id: str | None = None) -> RunSummary:
        """A run that ended before it could summarize anything."""
        return cls(flow_run_id=flow_run_id, state="Failed", errors=[error])

    @classmethod
    def from_result(cls, data: object, error: str) -> RunSummary:
        """The summary an ``ingest_vcf`` flow run's result carries (its state's data: the
        ``to_json()`` dict, or an ``IngestFailed`` holding it); else a Failed one naming ``error``."""
        if isinstance(data, IngestFailed):
            data = data.summary
        return cls.from_json(data) if isinstance(data, Mapping) else cls.failed(error)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSummary:
        """Read back ``to_json()`` (unknown keys ignored, missing ones default)."""
        return cls(counts_from_json(data), data.get("flow_run_id"), data.get("state", "Completed"),
                   list(data.get("errors") or []), data.get("seconds", 0.0),
                   files=[FileOutcome.from_json(row) for row in data.get("files") or []])

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form: the counts (``ChunkSummary.to_dict()``), then ``RUN_KEYS``."""
        return {**self.counts.to_dict(), "flow_run_id": self.flow_run_id, "state": self.state,
                "errors": list(self.errors), "seconds": self.seconds, "files": [f.run_json() for f in self.files]}

    def headline(self) -> str:
        """One line for a run: the completed state's message, and the CLI's output."""
        c = self.counts
        published = ", ".join(f"{n:,} to {p}" for p, n in c.published.items() if n) or "nothing new"
        line = (f"{c.records:,} records, {c.alleles:,} alleles: {c.new:,} new, "
                f"{c.duplicates:,} duplicates, {c.quarantined:,} quarantined; published {published}")
        if c.stored:  # a store counts the variants new to it; a new dataset's calls are not among them
            stored = ", ".join(f"{s} {n:,}" for s, n in sorted(c.stored.items()) if n)
            line += f"; new variants stored: {stored}" if stored else "; no variant new to the stores"
        if c.failovers:
            line += f"; {c.failovers:,} batch{'es' if c.failovers != 1 else ''} failed over"
        if c.in_doubt:
            line += f"; {c.in_doubt:,} alleles in doubt (sent to more than one platform)"
        return line

    def table(self) -> list[dict[str, Any]]:
        """The table artifact: one row per finished chunk, by file name and chunk number."""
        return sorted((row.table_row() for row in self.chunks), key=lambda r: (r["file"], r["chunk"]))


@dataclass(slots=True)
class CohortSummary:
    """What one ``ingest_cohort`` run did: one outcome per file, in the cohort's order."""

    dataset: str
    files: list[FileOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def counts(self) -> ChunkSummary:
        """The files' counts summed."""
        return sum((f.counts for f in self.files), ChunkSummary())

    def to_json(self) -> dict[str, Any]:
        """The cohort flow's state data (``CohortFailed.summary`` when it failed)."""
        c = self.counts
        return {
            "files": len(self.files), "ingested_files": self.count("ingested"),
            "skipped_files": self.count("skipped"), "failed_files": self.count("failed"),
            "records": c.records, "variants": c.alleles, "new": c.new, "duplicates": c.duplicates,
            "quarantined": c.quarantined, "failovers": c.failovers, "published": dict(c.published),
            "outcomes": [f.to_json() for f in self.files],
        }  # fmt: skip

    def headline(self) -> str:
        c = self.counts
        return (f"cohort {self.dataset}: {len(self.files)} files ({self.count('ingested')} ingested, "
                f"{self.count('skipped')} skipped, {self.count('failed')} failed); "
                f"{c.alleles:,} variants, {c.new:,} new, {c.failovers} failovers, {c.quarantined:,} quarantined")

    def failure_message(self) -> str:
        """``2 of 5 file(s) failed: a.vcf.gz: reason; ...`` (at most 2,000 characters)."""
        failed = "; ".join(f"{f.file}: {f.error}" for f in self.failed)
        return f"{len(self.failed)} of {len(self.files)} file(s) failed: {failed}"[:2000]

    def table(self) -> list[dict[str, Any]]:
        """The table artifact: a row per file and a TOTAL row."""
        total = FileOutcome(f"TOTAL ({len(self.files)} files)", f"{self.count('ingested')} ingested, "
                            f"{self.count('skipped')} skipped, {self.count('failed')} failed", counts=self.counts)
        return [*(f.table_row() for f in self.files), total.table_row()]

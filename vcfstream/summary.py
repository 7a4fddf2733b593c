"""What a run did, typed: ``RunSummary`` for an ``ingest_vcf`` run (its chunks and files),
``CohortSummary`` for an ``ingest_cohort`` run (one ``FileOutcome`` per file).

``to_json()`` is the public form: ``RunSummary.to_json()`` is what ``vcfstream ingest --json``
prints and the data of the ``ingest_vcf`` flow's final state (``IngestFailed.summary`` when it
failed); ``CohortSummary.to_json()`` the ``ingest_cohort`` flow's. Their keys and values are a
contract; ``from_json`` reads them back. The one-line headlines and the Prefect table artifact
rows are built here too.

Example:
    >>> summary = RunSummary(records=2, alleles=3, new=3, published={"kafka": 3})
    >>> summary.headline()
    '2 records, 3 alleles: 3 new, 0 duplicates, 0 quarantined; published 3 to kafka'
    >>> list(summary.to_json())[:3]
    ['records', 'alleles', 'reference_blocks']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcfstream.errors import IngestFailed
from vcfstream.model import Chunk, ChunkSummary

# RunSummary.to_json()'s keys, in order: the counts of ChunkSummary, then the run's.
RUN_KEYS = ("records", "alleles", "reference_blocks", "new", "duplicates", "quarantined", "in_doubt",
            "failovers", "published", "stored", "rules", "notes", "flow_run_id", "state", "errors", "seconds")
# FileOutcome.to_json()'s keys: a row of the cohort summary's "outcomes".
OUTCOME_KEYS = ("file", "status", "digest", "records", "alleles", "new", "duplicates", "quarantined",
                "failovers", "published", "flow_run", "error")


def platforms_text(published: Mapping[str, int]) -> str:
    """``iggy: 600, kafka: 400``, or ``-`` when nothing was published (table artifacts)."""
    return ", ".join(f"{p}: {n}" for p, n in sorted(published.items())) or "-"


@dataclass(slots=True)
class ChunkRow:
    """One finished chunk: a row of the run's table artifact."""

    path: str
    index: int
    extent: str
    records: int = 0
    alleles: int = 0
    new: int = 0
    duplicates: int = 0
    quarantined: int = 0
    published: dict[str, int] = field(default_factory=dict)
    failovers: int = 0
    in_doubt: int = 0
    state: str = "Completed"  # the chunk task's final state (Completed, CompletedWithFailover, Cached)
    message: str = ""

    @classmethod
    def of(cls, chunk: Chunk, summary: ChunkSummary, state: str, message: str) -> ChunkRow:
        return cls(chunk.path, chunk.index, chunk.label, summary.records, summary.alleles, summary.new,
                   summary.duplicates, summary.quarantined, dict(summary.published), summary.failovers,
                   summary.in_doubt, state, message)

    def table_row(self) -> dict[str, Any]:
        return {
            "file": Path(self.path).name, "chunk": self.index, "extent": self.extent, "records": self.records,
            "alleles": self.alleles, "new": self.new, "duplicates": self.duplicates,
            "quarantined": self.quarantined, "platforms": platforms_text(self.published),
            "failovers": self.failovers, "in_doubt": self.in_doubt, "state": self.state, "message": self.message,
        }  # fmt: skip


@dataclass(slots=True)
class FileOutcome:
    """What became of one file: in a run (ingesting, ingested, failed, rejected) or in a cohort
    (also skipped: the ledger holds it complete). ``file`` is the name, ``path`` the full path."""

    file: str
    status: str
    digest: str = ""
    records: int = 0
    alleles: int = 0
    new: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failovers: int = 0
    published: dict[str, int] = field(default_factory=dict)
    flow_run: str = ""
    error: str = ""
    path: str = ""
    in_doubt: int = 0
    chunks: int = 0  # planned
    failed_chunks: int = 0

    @classmethod
    def at(cls, path: str, status: str, **values: Any) -> FileOutcome:
        return cls(Path(path).name, status, path=path, **values)

    @classmethod
    def of_run(cls, path: str, digest: str, run: RunSummary) -> FileOutcome:
        """A cohort file's outcome from the summary of the run that ingested it."""
        failed = run.state != "Completed"
        return cls.at(path, "failed" if failed else "ingested", digest=digest, records=run.records,
                      alleles=run.alleles, new=run.new, duplicates=run.duplicates, quarantined=run.quarantined,
                      failovers=run.failovers, published=dict(run.published), flow_run=run.flow_run_id or "",
                      in_doubt=run.in_doubt,
                      error=("; ".join(run.errors) or run.state) if failed else "")

    def add(self, row: ChunkRow) -> None:
        """Count a finished chunk of this file."""
        self.records += row.records
        self.alleles += row.alleles
        self.new += row.new
        self.duplicates += row.duplicates
        self.quarantined += row.quarantined
        self.failovers += row.failovers
        self.in_doubt += row.in_doubt
        for platform, count in row.published.items():
            self.published[platform] = self.published.get(platform, 0) + count

    def fail(self, error: str) -> None:
        self.status = "failed"
        self.error = "; ".join(filter(None, (self.error, error)))

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) if key != "published" else dict(self.published) for key in OUTCOME_KEYS}

    def table_row(self) -> dict[str, Any]:
        return {
            "file": self.file, "status": self.status, "digest": self.digest[:12], "records": self.records,
            "variants": self.alleles, "new": self.new, "duplicates": self.duplicates,
            "quarantined": self.quarantined, "failovers": self.failovers,
            "published": platforms_text(self.published), "flow_run": self.flow_run, "error": self.error[:300],
        }  # fmt: skip


@dataclass(slots=True)
class RunSummary:
    """What one ``ingest_vcf`` run did: its totals, state and errors; ``chunks`` (the finished
    chunks) and ``files`` (each input file's outcome) are not part of ``to_json()``."""

    records: int = 0
    alleles: int = 0
    reference_blocks: int = 0
    new: int = 0
    duplicates: int = 0
    quarantined: int = 0
    in_doubt: int = 0
    failovers: int = 0
    published: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)  # new variants per store
    rules: dict[str, int] = field(default_factory=dict)  # quarantined records per rule
    notes: list[str] = field(default_factory=list)
    flow_run_id: str | None = None
    state: str = "Completed"
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    chunks: list[ChunkRow] = field(default_factory=list)
    files: list[FileOutcome] = field(default_factory=list)

    @classmethod
    def of(cls, total: ChunkSummary, flow_run_id: str | None, errors: list[str],
           chunks: list[ChunkRow] | None = None, files: list[FileOutcome] | None = None) -> RunSummary:
        """The summary of a run whose chunks merged into ``total``; Failed when there are errors."""
        return cls(total.records, total.alleles, total.reference_blocks, total.new, total.duplicates,
                   total.quarantined, total.in_doubt, total.failovers, dict(total.published), dict(total.stored),
                   dict(total.rules), list(total.notes), flow_run_id, "Failed" if errors else "Completed",
                   list(dict.fromkeys(errors)), 0.0, list(chunks or []), list(files or []))

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
        known = {key: data[key] for key in RUN_KEYS if key in data}
        for name in ("published", "stored", "rules"):
            if name in known:
                known[name] = dict(known[name] or {})
        for name in ("notes", "errors"):
            if name in known:
                known[name] = list(known[name] or [])
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form: ``RUN_KEYS`` in order, plain dicts and lists."""
        data = {key: getattr(self, key) for key in RUN_KEYS}
        for name in ("published", "stored", "rules", "notes", "errors"):
            data[name] = type(data[name])(data[name])  # copies: the caller may change them
        return data

    def headline(self) -> str:
        """One line for a run: the completed state's message, and the CLI's output."""
        published = ", ".join(f"{n:,} to {p}" for p, n in self.published.items() if n) or "nothing new"
        line = (f"{self.records:,} records, {self.alleles:,} alleles: {self.new:,} new, "
                f"{self.duplicates:,} duplicates, {self.quarantined:,} quarantined; published {published}")
        if self.stored:  # a store counts the variants new to it; a new dataset's calls are not among them
            stored = ", ".join(f"{s} {n:,}" for s, n in sorted(self.stored.items()) if n)
            line += f"; new variants stored: {stored}" if stored else "; no variant new to the stores"
        if self.failovers:
            line += f"; {self.failovers:,} batch{'es' if self.failovers != 1 else ''} failed over"
        if self.in_doubt:
            line += f"; {self.in_doubt:,} alleles in doubt (sent to more than one platform)"
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

    def published(self) -> dict[str, int]:
        """Alleles per platform over the files, platforms in the order first met."""
        totals: dict[str, int] = {}
        for outcome in self.files:
            for platform, count in outcome.published.items():
                totals[platform] = totals.get(platform, 0) + count
        return totals

    def _sum(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    def to_json(self) -> dict[str, Any]:
        """The cohort flow's state data (``CohortFailed.summary`` when it failed)."""
        return {
            "files": len(self.files),
            "ingested_files": self.count("ingested"),
            "skipped_files": self.count("skipped"),
            "failed_files": self.count("failed"),
            "records": self._sum("records"),
            "variants": self._sum("alleles"),
            "new": self._sum("new"),
            "duplicates": self._sum("duplicates"),
            "quarantined": self._sum("quarantined"),
            "failovers": self._sum("failovers"),
            "published": self.published(),
            "outcomes": [f.to_json() for f in self.files],
        }

    def headline(self) -> str:
        return (f"cohort {self.dataset}: {len(self.files)} files ({self.count('ingested')} ingested, "
                f"{self.count('skipped')} skipped, {self.count('failed')} failed); "
                f"{self._sum('alleles'):,} variants, {self._sum('new'):,} new, {self._sum('failovers')} failovers, "
                f"{self._sum('quarantined'):,} quarantined")

    def failure_message(self) -> str:
        """``2 of 5 file(s) failed: a.vcf.gz: reason; ...`` (at most 2,000 characters)."""
        failed = "; ".join(f"{f.file}: {f.error}" for f in self.failed)
        return f"{len(self.failed)} of {len(self.files)} file(s) failed: {failed}"[:2000]

    def table(self) -> list[dict[str, Any]]:
        """The table artifact: a row per file and a TOTAL row."""
        return [*(f.table_row() for f in self.files), {
            "file": f"TOTAL ({len(self.files)} files)",
            "status": f"{self.count('ingested')} ingested, {self.count('skipped')} skipped, "
                      f"{self.count('failed')} failed",
            "digest": "", "records": self._sum("records"), "variants": self._sum("alleles"),
            "new": self._sum("new"), "duplicates": self._sum("duplicates"),
            "quarantined": self._sum("quarantined"), "failovers": self._sum("failovers"),
            "published": platforms_text(self.published()), "flow_run": "", "error": "",
        }]  # fmt: skip

"""A cohort's files: which files a cohort is (a manifest or a folder and globs), whether the
ledger already holds each one whole for a dataset (so the nightly run skips it), and how the
files to run are grouped into runs (``group_files``: many small files share one run).

A file is *complete* for a dataset when every chunk its plan has (at the chunk size in force) is
``completed`` in the ledger's ``ledger_chunks`` table under the file's content digest: a renamed
or copied file is still recognized, a file with a failed, running or never-started chunk is run
again (the ledger makes that a no-op for what was already published).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vcfstream.errors import VcfstreamError
from vcfstream.ledger import db
from vcfstream.settings import Settings
from vcfstream.summary import FileOutcome, RunSummary
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.confinement import ConfinementError, InputPolicy, input_policy, url_scheme
from vcfstream.vcf.source import open_source

FileState = Literal["new", "incomplete", "complete", "unreadable"]

MAX_MANIFEST_BYTES = 16 << 20  # over 100,000 paths of 150 bytes
MAX_MANIFEST_LINE = 4096  # PATH_MAX
MAX_REFUSED_LINES = 100  # more, and the file is no manifest: refused whole
# What a refused manifest line is told, by rule: never the line, nor the path it makes.
_RULE_TEXT = {"input.url": "a URL: manifests list local files", "input.outside_roots": "outside the input roots",
              "input.missing": "no such file", "input.directory": "a directory, not a VCF/BCF file",
              "input.not_a_file": "not a regular file", "input.unreadable": "not readable"}


class CohortFailed(VcfstreamError):
    """Some files of a cohort failed; ``summary`` is the cohort summary (the Failed state's data).

    Prefect expects a Failed state's data to be an exception: returning the summary dict there
    makes a deployment run's engine log a TypeError after the state is already set.
    """

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass(frozen=True, slots=True)
class FileCheck:
    """What the ledger knows about one cohort file in one dataset."""

    path: str
    digest: str | None
    state: FileState
    chunks: int = 0  # planned (complete/incomplete files)
    completed: int = 0  # of those, completed in the ledger
    reason: str = ""
    size: int = 0  # bytes on disk (0 when unreadable)


@dataclass(frozen=True, slots=True)
class Refused:
    """A manifest line or glob the run may not read: where it is and why (never the line's text)."""

    where: str  # <manifest>:<line>, or <folder>/<pattern>
    reason: str  # [rule] reason


@dataclass(frozen=True, slots=True)
class Cohort:
    """A cohort's files (absolute paths, in order, each once) and the entries refused."""

    files: list[str]
    refused: list[Refused] = field(default_factory=list)


def cohort_files(manifest: str | None, directory: str | None, glob: str, policy: InputPolicy) -> Cohort:
    """The cohort's files, each inside ``policy``'s roots, and what was refused.

    Args:
        manifest: a text file with one path per line (``#`` comments, blank lines ignored;
            relative paths are relative to the manifest's folder). A line that is not a file the
            run may read is refused by its line number and rule: a manifest line is never
            repeated (the manifest may be a file that was never meant to be one).
        directory: a folder searched with ``glob``.
        glob: comma-separated patterns, e.g. ``*.vcf.gz,*.bcf``; ``**/`` searches subfolders.
        policy: what the run may read (``vcfstream.vcf.confinement.input_policy``).

    Raises:
        ConfinementError: the manifest or folder itself may not be read, a pattern leaves the
            folder, or the manifest is too large or mostly not paths.
    """
    if (manifest is None) == (directory is None):
        raise ValueError("give exactly one of manifest or directory")
    if manifest is not None:
        return _manifest_files(manifest, policy)
    return _directory_files(directory or "", glob, policy)


def _manifest_files(manifest: str, policy: InputPolicy) -> Cohort:
    with policy.open_file(manifest, "manifest") as fh:
        path = Path(str(fh.name))
        data = fh.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ConfinementError(manifest, "manifest.size", f"larger than {MAX_MANIFEST_BYTES >> 20} MiB")
    found: list[Path] = []
    refused: list[Refused] = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        reason = None
        try:
            entry = raw.decode("utf-8").split("#", 1)[0].strip()
        except UnicodeDecodeError:
            entry, reason = "", "[manifest.encoding] not UTF-8 text"
        if entry and not entry.isprintable():
            reason = "[manifest.control] holds control characters"
        elif entry and len(raw) > MAX_MANIFEST_LINE:
            reason = f"[manifest.line_length] longer than {MAX_MANIFEST_LINE} bytes"
        elif entry and url_scheme(entry) is not None:
            reason = f"[input.url] {_RULE_TEXT['input.url']}"
        elif entry:
            listed = path.parent / Path(entry).expanduser()
            try:
                policy.check_file(str(listed))
                found.append(listed)
            except ConfinementError as exc:
                reason = f"[{exc.rule}] {_RULE_TEXT.get(exc.rule, 'refused')}"
        if reason:
            refused.append(Refused(f"{path}:{number}", reason))
            if len(refused) > MAX_REFUSED_LINES:
                raise ConfinementError(str(path), "manifest.refused", f"more than {MAX_REFUSED_LINES} lines are "
                                       f"not files the run may read (the first: line {refused[0].where.rsplit(':', 1)[1]}"
                                       f" {refused[0].reason}): is this a manifest?")
    return Cohort(list(dict.fromkeys(str(p) for p in found)), refused)


def _directory_files(directory: str, glob: str, policy: InputPolicy) -> Cohort:
    root = policy.check_directory(directory)
    found: list[Path] = []
    refused: list[Refused] = []
    for pattern in (p.strip() for p in glob.split(",")):
        if not pattern:
            continue
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise ConfinementError(directory, "cohort.glob", f"pattern {pattern!r} leaves the folder "
                                   f"(absolute, or holds ..)")
        matches = sorted(p for p in root.glob(pattern) if p.is_file())
        # A pattern through a link to a folder elsewhere lists that folder: such matches are not named.
        outside = [p for p in matches if not policy.inside(p.parent.resolve())]
        if outside:
            refused.append(Refused(f"{root}/{pattern}", f"[input.outside_roots] {len(outside)} match(es) in "
                                                        f"folders outside the input roots (a link?) left out"))
        found.extend(p for p in matches if p not in outside)
    return Cohort(list(dict.fromkeys(str(p.absolute()) for p in found)), refused)


def check_file(settings: Settings, dataset: str, path: str) -> FileCheck:
    """Is every planned chunk of this file's content ``completed`` in the ledger for ``dataset``?"""
    try:
        source = open_source(path, input_policy(settings), settings.ingest.read_limits)
    except VcfstreamError as exc:
        return FileCheck(path, None, "unreadable", reason=str(exc))
    with db.connect(settings) as conn:
        rows = conn.execute("SELECT chunk_id, state FROM ledger_chunks WHERE dataset = %s AND source_digest = %s",
                            (dataset, source.digest)).fetchall()
    if not rows:
        return FileCheck(path, source.digest, "new", size=source.size)
    done = {chunk_id for chunk_id, state in rows if state == "completed"}
    planned = [chunk.chunk_id for chunk in plan_chunks(source, settings.ingest.chunk_size)]
    completed = sum(1 for chunk_id in planned if chunk_id in done)
    state: FileState = "complete" if completed == len(planned) else "incomplete"
    reason = "" if state == "complete" else f"{completed} of {len(planned)} chunks completed"
    return FileCheck(path, source.digest, state, len(planned), completed, reason, source.size)


def group_files(checks: Sequence[FileCheck], *, files_per_run: int, bytes_per_run: int,
                runs_at_once: int = 1) -> list[list[FileCheck]]:
    """The files to run, grouped into ``ingest_vcf`` runs, in the cohort's order.

    A run has a fixed cost (a flow run, its settings, migrations and run record, a table
    artifact), paid once per run: small files share one. A file of ``bytes_per_run`` bytes or
    more runs alone; smaller ones are packed, in order, into runs of at most ``files_per_run``
    files and ``bytes_per_run`` bytes, and of at most an equal share of the small files per
    ``runs_at_once`` so that many runs can go at once. Two files of the same content (digest)
    never share a run: the later one goes to a later run, where the ledger counts its alleles as
    duplicates, as it would in a run of its own.

    Example:
        >>> small = [FileCheck(f"/c/{n}.vcf.gz", f"{n:064x}", "new", size=1000) for n in range(5)]
        >>> [len(run) for run in group_files(small, files_per_run=2, bytes_per_run=10**6)]
        [2, 2, 1]
    """
    limit = max(1, bytes_per_run)
    large = [check for check in checks if check.size >= limit]
    small = [check for check in checks if check.size < limit]
    per_run = max(1, min(files_per_run, math.ceil(len(small) / max(1, runs_at_once)))) if small else 1
    runs: list[list[FileCheck]] = [[check] for check in large]
    while small:
        later: list[FileCheck] = []  # a second file of a digest already in the run being packed
        current: list[FileCheck] = []
        current_bytes, digests = 0, set[str | None]()
        for check in small:
            if check.digest in digests:
                later.append(check)
                continue
            if current and (len(current) >= per_run or current_bytes + check.size > limit):
                runs.append(current)
                current, current_bytes, digests = [], 0, set()
            current.append(check)
            current_bytes += check.size
            digests.add(check.digest)
        runs.append(current)
        small = later
    order = {check.path: number for number, check in enumerate(checks)}
    return sorted(runs, key=lambda run: order[run[0].path])


def run_outcomes(checks: Sequence[FileCheck], run: RunSummary) -> list[FileOutcome]:
    """Each file's outcome in the run that took it (with others, maybe): its own row of the run's
    summary, so a file that failed fails alone; a file the summary does not name (the run ended
    before it could summarize) failed with the run's error."""
    own = {outcome.path: outcome for outcome in run.files}
    run_error = "; ".join(run.errors) or f"its run ended {run.state}"
    outcomes = []
    for check in checks:
        row = own.get(check.path)
        if row is None:
            outcomes.append(FileOutcome.at(check.path, "failed", digest=check.digest or "",
                                           flow_run=run.flow_run_id or "", error=run_error))
            continue
        failed = row.status != "ingested"
        outcomes.append(FileOutcome.at(check.path, "failed" if failed else "ingested",
                                       digest=check.digest or row.digest, counts=row.counts,
                                       flow_run=run.flow_run_id or row.flow_run,
                                       error=(row.error or f"{row.status} in its run") if failed else ""))
    return outcomes

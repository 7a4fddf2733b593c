"""A cohort's files: which files a cohort is (a manifest or a folder and globs), and whether
the ledger already holds each one whole for a dataset (so the nightly run skips it).

A file is *complete* for a dataset when every chunk its plan has (at the chunk size in force) is
``completed`` in the ledger's ``ledger_chunks`` table under the file's content digest: a renamed
or copied file is still recognized, a file with a failed, running or never-started chunk is run
again (the ledger makes that a no-op for what was already published).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vcfstream.errors import VcfstreamError
from vcfstream.ledger import db
from vcfstream.settings import Settings
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.source import open_source

FileState = Literal["new", "incomplete", "complete", "unreadable"]


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


def cohort_files(manifest: str | None, directory: str | None, glob: str) -> list[str]:
    """The cohort's files, in order, each once (absolute paths).

    Args:
        manifest: a text file with one path per line (``#`` comments, blank lines ignored;
            relative paths are relative to the manifest's folder).
        directory: a folder searched with ``glob``.
        glob: comma-separated patterns, e.g. ``*.vcf.gz,*.bcf``; ``**/`` searches subfolders.
    """
    if (manifest is None) == (directory is None):
        raise ValueError("give exactly one of manifest or directory")
    found: list[Path] = []
    if manifest is not None:
        manifest_path = Path(manifest).expanduser().resolve()
        try:
            lines = manifest_path.read_text().splitlines()
        except OSError as exc:
            raise VcfstreamError(f"{manifest}: cannot read the manifest: {exc.strerror}") from None
        for line in lines:
            entry = line.split("#", 1)[0].strip()
            if entry:
                found.append(manifest_path.parent / Path(entry).expanduser())
    else:
        root = Path(directory).expanduser().resolve()  # type: ignore[arg-type]
        if not root.is_dir():
            raise VcfstreamError(f"{directory}: not a directory")
        for pattern in (p.strip() for p in glob.split(",")):
            if pattern:
                found.extend(sorted(p for p in root.glob(pattern) if p.is_file()))
    return list(dict.fromkeys(str(path.absolute()) for path in found))


def check_file(settings: Settings, dataset: str, path: str) -> FileCheck:
    """Is every planned chunk of this file's content ``completed`` in the ledger for ``dataset``?"""
    try:
        source = open_source(path, settings.ingest.input_roots, settings.ingest.read_limits)
    except VcfstreamError as exc:
        return FileCheck(path, None, "unreadable", reason=str(exc))
    with db.connect(settings) as conn:
        rows = conn.execute("SELECT chunk_id, state FROM ledger_chunks WHERE dataset = %s AND source_digest = %s",
                            (dataset, source.digest)).fetchall()
    if not rows:
        return FileCheck(path, source.digest, "new")
    done = {chunk_id for chunk_id, state in rows if state == "completed"}
    planned = [chunk.chunk_id for chunk in plan_chunks(source, settings.ingest.chunk_size)]
    completed = sum(1 for chunk_id in planned if chunk_id in done)
    state: FileState = "complete" if completed == len(planned) else "incomplete"
    reason = "" if state == "complete" else f"{completed} of {len(planned)} chunks completed"
    return FileCheck(path, source.digest, state, len(planned), completed, reason)

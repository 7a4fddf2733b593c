"""``vcfstream validate``: check whole files without claiming, publishing or storing anything.

Each path gets one report ``{"path", "ok", "version", "file_errors", "record_errors", "rules",
"warnings", "warning_counts"}``: ``version`` is the rule set used ({"declared": "4.3", "used":
"4.3"}; a newer version is validated as 4.5 and a ``header.version_unknown`` warning says so);
warnings never make a file invalid. Problems
with the container (missing, a directory, empty, not VCF/BCF, corrupt or truncated compression)
are file errors with their own rule ids, never tracebacks. VCF text (plain, gzip or BGZF) is read
line by line as bytes so the validator sees what the file says; BCF is decoded by pysam and each
record checked as the text htslib prints for it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from vcfstream.errors import InputError
from vcfstream.vcf.validation.header import check_header
from vcfstream.vcf.validation.records import RecordChecker
from vcfstream.vcf.validation.rules import Violation, violation

BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_BLOCK = 1 << 20
_MAX_STRAY_HEADER_LINES = 1000  # non-'#' lines tolerated before #CHROM while looking for it


class FileRejected(Exception):
    """A file-level problem found while reading; carries the violation to report."""

    def __init__(self, found: Violation) -> None:
        super().__init__(found.message)
        self.violation = found


_MAX_REPORTED_WARNINGS = 100


def _as_dict(found: Violation) -> dict[str, Any]:
    return {"rule": found.rule, "line": found.line, "message": found.message}


@dataclass(slots=True)
class FileReport:
    path: str
    file_errors: list[Violation] = field(default_factory=list)
    record_errors: int = 0
    rules: set[str] = field(default_factory=set)
    declared_version: str | None = None
    used_version: str | None = None
    warnings: list[Violation] = field(default_factory=list)
    warning_counts: dict[str, int] = field(default_factory=dict)

    def add_file_error(self, found: Violation) -> None:
        self.file_errors.append(found)
        self.rules.add(found.rule)

    def add_warning(self, found: Violation, count: int = 1) -> None:
        self.warning_counts[found.rule] = self.warning_counts.get(found.rule, 0) + count
        if len(self.warnings) < _MAX_REPORTED_WARNINGS:
            self.warnings.append(found)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": not self.file_errors and self.record_errors == 0,
            "version": {"declared": self.declared_version, "used": self.used_version},
            "file_errors": [_as_dict(v) for v in self.file_errors],
            "record_errors": self.record_errors,
            "rules": sorted(self.rules),
            "warnings": [_as_dict(v) for v in self.warnings],
            "warning_counts": dict(sorted(self.warning_counts.items())),
        }


def validate_paths(paths: list[str], reference: str | None = None) -> dict[str, Any]:
    """Validate every path; ``reference`` (a faidx-indexed FASTA) adds the REF check.

    Example:
        >>> validate_paths(["/nonexistent.vcf"])["files"][0]["file_errors"][0]["rule"]
        'file.missing'
    """
    normalizer = None
    if reference:
        from vcfstream.vcf.normalize import Normalizer

        try:
            normalizer = Normalizer("GRCh38", reference)  # the assembly only steers contig aliases
        except (OSError, ValueError) as exc:
            raise InputError(reference, f"cannot open the reference FASTA (is it faidx-indexed?): {exc}") from None
    return {"files": [validate_file(path, normalizer).to_dict() for path in paths]}


def validate_file(path: str, normalizer: Any = None) -> FileReport:
    """The report of one file; never raises for anything wrong with the file itself."""
    report = FileReport(path)
    ending = _Ending()
    try:
        kind = _sniff(path)
        if kind == "bcf":
            header_lines, records = _bcf_source(path)
        else:
            header_lines, records = _text_source(path, kind, ending)
        header = check_header(path, header_lines)
        if header.declared_version is not None:
            report.declared_version = header.declared_version
            report.used_version = f"{header.version[0]}.{header.version[1]}"
        for warned in header.warnings:
            report.add_warning(warned)
        for error in header.errors:
            report.add_file_error(error)
        if header.errors:
            return report
        checker = RecordChecker(header)
        for line_no, fields in records:
            if isinstance(fields, Violation):
                found: Violation | None = fields
            else:
                found = checker.check(fields, line_no)
                if found is None and normalizer is not None and len(fields) > 3:
                    mismatch = normalizer.check_ref(fields[0], int(fields[1]), fields[3])
                    found = violation("ref.mismatch", line_no, mismatch) if mismatch else None
            if found is not None:
                report.record_errors += 1
                report.rules.add(found.rule)
        for warned in checker.warnings:
            report.add_warning(warned, 0)
        for rule, count in checker.warning_counts.items():
            report.warning_counts[rule] = report.warning_counts.get(rule, 0) + count
        if ending.unterminated is not None:
            report.add_warning(violation("record.final_newline", ending.unterminated,
                                         "the last line has no newline: read as a complete record"))
    except FileRejected as exc:
        report.add_file_error(exc.violation)
    return report


@dataclass(slots=True)
class _Ending:
    """How a text file ended: ``unterminated`` is the number of a last line without a newline."""

    unterminated: int | None = None


def _sniff(path: str) -> str:
    """'vcf', 'gzip', 'bgzf' or 'bcf'; raises FileRejected for anything else."""
    if not os.path.exists(path):
        raise FileRejected(violation("file.missing", None, f"{path}: no such file"))
    if os.path.isdir(path):
        raise FileRejected(violation("file.directory", None, f"{path} is a directory, not a VCF/BCF file"))
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(18)
            if size >= len(BGZF_EOF):
                fh.seek(-len(BGZF_EOF), os.SEEK_END)
                tail = fh.read()
            else:
                tail = b""
    except OSError as exc:
        raise FileRejected(violation("file.unreadable", None, f"{path}: {exc.strerror or exc}")) from None
    if size == 0:
        raise FileRejected(violation("file.empty", None, f"{path} is empty"))
    if head[:2] == b"\x1f\x8b":
        bgzf = len(head) >= 14 and bool(head[3] & 4) and head[12:14] == b"BC"
        try:
            with gzip.open(path, "rb") as gz:
                magic = gz.read(5)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileRejected(violation("file.compression", None, f"{path}: unreadable gzip data ({exc})")) from None
        if bgzf and tail != BGZF_EOF:
            raise FileRejected(violation("file.truncated", None,
                                         f"{path}: BGZF end-of-file marker missing: the file is truncated"))
        if magic.startswith(b"BCF"):
            return "bcf"
        if not magic.startswith(b"#"):
            raise FileRejected(violation("file.not_vcf", None, f"{path}: compressed data is not VCF text"))
        return "bgzf" if bgzf else "gzip"
    if head.startswith(b"BCF"):
        return "bcf"
    if head.startswith(b"#") and b"\x00" not in head:
        return "vcf"
    raise FileRejected(violation("file.not_vcf", None,
                                 f"{path}: neither VCF text (starting with ##fileformat) nor BCF"))


def _open(path: str, kind: str) -> IO[bytes]:
    if kind in ("gzip", "bgzf"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # a GzipFile is a binary IO
    return open(path, "rb")


def _raw_lines(stream: IO[bytes], path: str, ending: _Ending | None = None) -> Iterator[bytes]:
    """Lines without their line ending (LF or CRLF), read in large blocks; ``ending`` learns
    the number of a last line that has no newline."""
    tail = b""
    count = 0
    while True:
        try:
            block = stream.read(_BLOCK)
        except EOFError:
            raise FileRejected(violation("file.truncated", None,
                                         f"{path}: compressed stream ends early: the file is truncated")) from None
        except (OSError, zlib.error) as exc:
            found = violation("file.compression", None, f"{path}: corrupt compressed data ({exc})")
            raise FileRejected(found) from None
        if not block:
            if tail:
                if ending is not None and tail.strip():
                    ending.unterminated = count + 1
                yield tail.rstrip(b"\r")
            return
        lines = (tail + block).split(b"\n")
        tail = lines.pop()
        count += len(lines)
        for line in lines:
            yield line[:-1] if line.endswith(b"\r") else line


def _text_source(path: str, kind: str, ending: _Ending | None = None) -> tuple[list[str], Iterator[Record]]:
    """Header lines, and an iterator of (line number, fields or record-level Violation)."""
    stream = _open(path, kind)
    lines = _raw_lines(stream, path, ending)
    header: list[str] = []
    stray = 0
    for raw in lines:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            stream.close()
            lineno = len(header) + 1
            found = violation("header.encoding", lineno, f"header line {lineno} is not UTF-8 (byte {exc.start + 1})")
            raise FileRejected(found) from None
        header.append(text)
        if text.startswith("#CHROM"):
            break
        if not text.startswith("#"):
            stray += 1
            if stray > _MAX_STRAY_HEADER_LINES or not header[0].startswith("##"):
                break
    return header, _records(stream, lines, len(header))


Record = tuple[int, list[str] | Violation]  # (line number, fields, or the record-level problem)


def _records(stream: IO[bytes], lines: Iterator[bytes], header_count: int) -> Iterator[Record]:
    with stream:
        for line_no, raw in enumerate(lines, start=header_count + 1):
            if not raw or raw[0] == 35:  # empty lines and stray '#' lines carry no record
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                where = raw[:80].decode("utf-8", "replace").split("\t")
                name = ":".join(where[:2])
                yield line_no, violation("record.encoding", line_no,
                                         f"{name}: bytes that are not UTF-8 at column {exc.start + 1}")
                continue
            yield line_no, text.split("\t")


def _bcf_source(path: str) -> tuple[list[str], Iterator[Record]]:
    import pysam

    pysam.set_verbosity(0)
    try:
        vf = pysam.VariantFile(path)
    except (OSError, ValueError) as exc:
        raise FileRejected(violation("file.bcf", None, f"{path}: unreadable BCF ({exc})")) from None
    header_lines = str(vf.header).rstrip("\n").split("\n")

    def records() -> Iterator[Record]:
        with vf:
            line_no = len(header_lines)
            try:
                for rec in vf:
                    line_no += 1
                    yield line_no, str(rec).rstrip("\n").split("\t")
            except (OSError, ValueError) as exc:
                count = line_no - len(header_lines)
                found = violation("file.truncated", None, f"{path}: BCF stream breaks after record {count} ({exc})")
                raise FileRejected(found) from None

    return header_lines, records()

"""Opening VCF/BCF sources: format sniffing, content digest, raw header, raw record lines.

Records are read as raw text lines (BCF records are rendered to text by pysam) because the
validator must see what the file says, not what htslib made of it: htslib silently repairs or
drops much of what the specification forbids. pysam/htslib still does the container work:
BGZF, tabix/CSI region queries and BCF decoding.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, NoReturn, Protocol, Self

import pysam

from vcfstream.errors import VcfFormatError
from vcfstream.model import Chunk, FileIdentity
from vcfstream.runtime.memo import Kept
from vcfstream.vcf.confinement import UNCONFINED, InputPolicy
from vcfstream.vcf.identity import identity_of, planned_file
from vcfstream.vcf.limits import DEFAULT_LIMITS, ReadLimits

Format = Literal["vcf", "vcf.gz", "vcf.bgzf", "bcf"]

BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_READ_SIZE = 1 << 20
LONG_LINE_HEAD = 4096  # bytes kept of a data line over the length limit (what its quarantine shows)

pysam.set_verbosity(0)  # htslib warnings would interleave with our own, clearer messages


@dataclass(frozen=True, slots=True)
class SourceFile:
    """What planning and every chunk task need to know about one input file."""

    path: str
    size: int
    mtime: float
    digest: str  # sha256 of the file's bytes
    format: Format
    index: str | None  # a usable .tbi/.csi, None when absent or older than the file
    header_lines: list[str] = field(repr=False)
    notes: list[str] = field(default_factory=list)
    limits: ReadLimits = DEFAULT_LIMITS  # what reading it may take (vcfstream.vcf.limits)
    identity: FileIdentity | None = None  # the file as opened (vcfstream.vcf.identity); chunks carry it

    @property
    def samples(self) -> list[str]:
        last = self.header_lines[-1] if self.header_lines else ""
        return last.rstrip("\r\n").split("\t")[9:] if last.startswith("#CHROM") else []

    @property
    def header_text(self) -> str:
        return "".join(line if line.endswith("\n") else line + "\n" for line in self.header_lines)


def check_path(path: str, policy: InputPolicy | None = None) -> Path:
    """Resolve ``path`` and refuse what cannot be ingested, before any work is done: what
    ``policy`` refuses (``None``: any local file, for callers that checked it themselves), a
    missing, unreadable or empty file."""
    policy = policy or UNCONFINED
    resolved = policy.check_file(path)
    policy.check_indexes(path, resolved, (".csi", ".tbi"))  # htslib may open either by itself
    if resolved.stat().st_size == 0:
        raise VcfFormatError(path, None, "file.empty", "file is empty")
    return resolved


def open_source(path: str, policy: InputPolicy | None = None, limits: ReadLimits = DEFAULT_LIMITS) -> SourceFile:
    """Sniff, digest and read the header of one input file, once ``policy`` accepts it (``None``:
    any local file; a flow run passes its ``input_policy``); a header over ``limits`` (lines,
    bytes, samples) rejects the file (``VcfFormatError``, rules ``header.size``,
    ``header.sample_count``) before more of it is read."""
    resolved = check_path(path, policy)
    name = str(resolved)
    stat = resolved.stat()
    fmt = sniff_format(name)
    digest = _sha256(resolved, stat)  # of the file as stat found it (else FileChanged)
    if fmt == "bcf":
        header_lines = _bcf_header_lines(name)
        _check_header_size(name, header_lines, limits)
        for number, line in enumerate(header_lines, 1):
            if "\0" in line:
                raise VcfFormatError(name, number, "header.control", "header line holds a NUL byte")
    else:
        header_lines = _text_header_lines(name, fmt, limits)
    if not header_lines or not header_lines[-1].startswith("#CHROM"):
        raise VcfFormatError(name, len(header_lines) or 1, "header.chrom_line",
                             "no #CHROM header line: not a VCF file, or its header is cut short")
    samples = header_lines[-1].count("\t") - 8
    if samples > limits.max_samples:
        raise VcfFormatError(name, len(header_lines), "header.sample_count",
                             f"{samples:,} sample columns, over the limit of {limits.max_samples:,} "
                             f"(VCFSTREAM_MAX_SAMPLES)")
    index, notes = _find_index(name, fmt, stat.st_mtime)
    return SourceFile(name, stat.st_size, stat.st_mtime, digest, fmt, index, header_lines, notes, limits,
                      identity_of(stat))


def sniff_format(path: str) -> Format:
    with open(path, "rb") as fh:
        head = fh.read(18)
        if head[:2] == b"\x1f\x8b":
            bgzf = len(head) >= 16 and head[3] & 4 and head[12:14] == b"BC"
            try:
                with gzip.open(path, "rb") as gz:
                    magic = gz.read(5)
            except (OSError, EOFError) as exc:
                raise VcfFormatError(path, None, "file.compression", f"unreadable gzip data: {exc}") from None
            if bgzf:
                fh.seek(-len(BGZF_EOF), os.SEEK_END)
                if fh.read() != BGZF_EOF:
                    raise VcfFormatError(path, None, "file.truncated",
                                         "BGZF end-of-file marker missing: the file is truncated")
            if magic.startswith(b"BCF"):
                return "bcf"
            if not magic.startswith(b"##"):
                raise VcfFormatError(path, 1, "header.fileformat", "compressed data is not VCF text")
            return "vcf.bgzf" if bgzf else "vcf.gz"
        if head.startswith(b"BCF"):
            return "bcf"
        if head.startswith(b"##"):
            return "vcf"
    raise VcfFormatError(path, 1, "header.fileformat", "not a VCF or BCF file (no ##fileformat line)")


class ByteStream(Protocol):
    """What the readers use of a binary stream: a plain file, a GzipFile or pysam's BGZFile
    (which is not an ``IO[bytes]``)."""

    def read(self, size: int = ..., /) -> bytes: ...
    def readline(self, size: int = ..., /) -> bytes: ...
    def seek(self, offset: int, whence: int = ..., /) -> int: ...
    def tell(self) -> int: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None, /) -> object: ...


def open_text(path: str, fmt: Format) -> ByteStream:
    """A binary stream of the decompressed text; ``tell``/``seek`` use the offsets planning saw."""
    if fmt == "vcf.bgzf":
        return pysam.BGZFile(path, "rb", index=None)  # virtual offsets
    if fmt == "vcf.gz":
        return gzip.open(path, "rb")  # uncompressed offsets; seeking decompresses forward
    return open(path, "rb")


class LongLine(bytes):
    """The first ``LONG_LINE_HEAD`` bytes of a data line longer than the line length limit, in
    its place (the rest of it was skipped, never held); ``length``: the whole line's bytes."""

    length: int

    @classmethod
    def of(cls, head: bytes, length: int) -> LongLine:
        line = cls(head[:LONG_LINE_HEAD])
        line.length = length
        return line


def iter_data_lines(stream: ByteStream, limit: int | None = None,
                    max_line_bytes: int = DEFAULT_LIMITS.max_line_bytes) -> Iterator[bytes]:
    """Data lines (no header, no newline) from the stream's position, at most ``limit``; a line
    longer than ``max_line_bytes`` comes as a ``LongLine`` (its head), in linear time and memory.

    Reads large blocks and splits them: far fewer Python calls than ``readline`` per record. A
    line spanning blocks is gathered as pieces and joined once (never re-copied per block).
    """
    count = 0
    pieces: list[bytes] = []  # the line begun in earlier blocks
    size = 0  # its bytes so far
    head: bytes | None = None  # set once that line is over the limit: its head; the rest is dropped
    while limit is None or count < limit:
        block = stream.read(_READ_SIZE)
        if not block:
            if size:
                line = LongLine.of(head, size) if head is not None else b"".join(pieces)
                if line[:1] != b"#":
                    yield line
            return
        lines = block.split(b"\n")
        if len(lines) == 1:  # no line ends in this block
            size += len(block)
            if head is None:
                pieces.append(block)
                if size > max_line_bytes:
                    head, pieces = b"".join(pieces)[:LONG_LINE_HEAD], []
            continue
        if size:  # the first line ends here
            size += len(lines[0])
            if head is None and size <= max_line_bytes:
                pieces.append(lines[0])
                lines[0] = b"".join(pieces)
            else:
                lines[0] = LongLine.of(head if head is not None else b"".join(pieces) + lines[0][:LONG_LINE_HEAD],
                                       size)
        tail = lines.pop()
        pieces, size, head = ([tail], len(tail), None) if tail else ([], 0, None)
        if size > max_line_bytes:
            pieces, head = [], tail[:LONG_LINE_HEAD]
        for line in lines:
            if not line or line[0] == 35:  # '#'
                continue
            if len(line) > max_line_bytes and type(line) is bytes:
                line = LongLine.of(line, len(line))
            yield line
            count += 1
            if limit is not None and count >= limit:
                return


def _text_header_lines(path: str, fmt: Format, limits: ReadLimits = DEFAULT_LIMITS) -> list[str]:
    """The header lines, read at most ``limits.max_header_bytes`` and ``max_header_lines`` far."""
    lines: list[str] = []
    budget = limits.max_header_bytes
    with open_text(path, fmt) as stream:
        while True:
            raw = stream.readline(budget + 1)
            budget -= len(raw)
            if raw.startswith(b"#") and (budget < 0 or len(lines) >= limits.max_header_lines):
                _header_too_large(path, len(lines) + 1, limits)
            if not raw:
                break
            if not raw.startswith(b"#"):
                break
            if b"\0" in raw:
                raise VcfFormatError(path, len(lines) + 1, "header.control", "header line holds a NUL byte")
            try:
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError:
                raise VcfFormatError(path, len(lines) + 1, "header.encoding",
                                     "header line is not valid UTF-8") from None
            if raw.startswith(b"#CHROM"):
                break
    return lines


def _header_too_large(path: str, line: int, limits: ReadLimits) -> NoReturn:
    raise VcfFormatError(path, line, "header.size",
                         f"the header is larger than the limit of {limits.max_header_lines:,} lines or "
                         f"{limits.max_header_bytes:,} bytes (VCFSTREAM_MAX_HEADER_LINES, "
                         f"VCFSTREAM_MAX_HEADER_BYTES); is this line still header?")


def _check_header_size(path: str, lines: list[str], limits: ReadLimits) -> None:
    if len(lines) > limits.max_header_lines:
        _header_too_large(path, limits.max_header_lines + 1, limits)
    total = 0
    for number, line in enumerate(lines, 1):
        total += len(line) + 1
        if total > limits.max_header_bytes:
            _header_too_large(path, number, limits)


def _bcf_header_lines(path: str) -> list[str]:
    try:
        with pysam.VariantFile(path) as vf:
            return str(vf.header).rstrip("\n").split("\n")
    except (OSError, ValueError) as exc:
        raise VcfFormatError(path, None, "file.bcf", f"unreadable BCF: {exc}") from None


def _find_index(path: str, fmt: Format, mtime: float) -> tuple[str | None, list[str]]:
    if fmt not in ("vcf.bgzf", "bcf"):
        return None, []
    for suffix in (".csi", ".tbi"):
        candidate = path + suffix
        if os.path.exists(candidate):
            if os.path.getmtime(candidate) < mtime:
                return None, [f"index {candidate} is older than the file: ignored, read sequentially"]
            return candidate, []
    return None, []


def _sha256(path: Path, stat: os.stat_result) -> str:
    """The file's sha256, remembered while its inode, size and change times stay the same: one
    ingest opens a file more than once (the CLI's read-ahead, a cohort's completeness check,
    the flow's plan task), and hashing costs about 0.6 s per GB."""
    key = (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    return _digests.get(key, lambda: _hash_file(path, stat))


def _hash_file(path: Path, stat: os.stat_result) -> str:
    """The sha256 of the file ``stat`` describes: a file replaced or written to meanwhile is refused."""
    digest = hashlib.sha256()
    with planned_file(str(path), identity_of(stat), "not hashed") as planned, open(planned.name, "rb") as fh:
        for block in iter(lambda: fh.read(_READ_SIZE), b""):
            digest.update(block)
        planned.check("after hashing it")
    return digest.hexdigest()


_digests: Kept[str] = Kept(64)


def iter_chunk_lines(source: SourceFile, chunk: Chunk) -> Iterator[tuple[int | None, bytes]]:
    """(line number or None, raw line) for every record of the chunk, in file order.

    Region chunks come from the index and may include records that start before the region
    (they overlap it); the caller drops those by position. Line numbers are known for range
    chunks only (BCF: the record's ordinal plus the header length, for orientation).

    The lines come from the file as planned (``chunk.identity``): a file that is not that one
    when it is opened, or after the chunk's last line, fails with ``FileChanged``
    (``vcfstream.vcf.identity``).
    """
    with planned_file(source.path, chunk.identity, f"chunk {chunk.label} not read") as planned:
        try:
            yield from _chunk_lines(source, chunk, planned.name)
        except OSError as exc:  # htslib names the descriptor it read through: name the file
            if planned.name == source.path:
                raise
            raise OSError(f"{source.path}: chunk {chunk.label}: {str(exc).replace(planned.name, source.path)}") from exc
        planned.check("after reading the chunk")


def _chunk_lines(source: SourceFile, chunk: Chunk, name: str) -> Iterator[tuple[int | None, bytes]]:
    """``iter_chunk_lines`` from ``name``: the planned file, held open."""
    if chunk.regions:
        if source.format == "bcf":
            with pysam.VariantFile(name, index_filename=source.index) as vf:
                for contig, start, end in chunk.regions:
                    for rec in vf.fetch(contig, start, end):
                        if rec.start >= start:  # fetch also returns records overlapping from before
                            yield None, str(rec).encode()
        else:
            with pysam.TabixFile(name, index=source.index, encoding="latin-1") as tbx:
                # latin-1 round-trips every byte; UTF-8 is checked per line by the reader
                for contig, start, end in chunk.regions:
                    for text in tbx.fetch(contig, start, end):
                        # fetch also returns records that start before the region and overlap it
                        if start and int(text.split("\t", 2)[1]) - 1 < start:
                            continue
                        if len(text) > source.limits.max_line_bytes:  # htslib read it whole; kept: its head
                            yield None, LongLine.of(text[:LONG_LINE_HEAD].encode("latin-1"), len(text))
                            continue
                        yield None, text.encode("latin-1")
        return
    first_line = len(source.header_lines) + chunk.first_record + 1
    if source.format == "bcf":
        with pysam.VariantFile(name) as vf:
            if chunk.voffset is not None:
                vf.seek(chunk.voffset)
            for i, rec in enumerate(vf):
                if i >= chunk.n_records:
                    break
                yield first_line + i, str(rec).encode()
        return
    with open_text(name, source.format) as stream:
        if chunk.voffset is not None:
            stream.seek(chunk.voffset)
        else:
            skip_header(stream)
        for i, line in enumerate(iter_data_lines(stream, chunk.n_records, source.limits.max_line_bytes)):
            yield first_line + i, line


def skip_header(stream: ByteStream) -> None:
    """Position the stream at the first data line (used when no offset was planned)."""
    while True:
        pos = stream.tell()
        line = stream.readline()
        if not line or not line.startswith(b"#"):
            stream.seek(pos)
            return

"""Minimal validator (placeholder for the full rule set of issue 5): fileformat and column count."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    line: int | None
    message: str


@dataclass(slots=True)
class HeaderCheck:
    path: str
    samples: list[str]
    errors: list[Violation] = field(default_factory=list)

    def record_checker(self) -> "RecordChecker":
        return RecordChecker(self)


class RecordChecker:
    def __init__(self, header: HeaderCheck) -> None:
        self._columns = 8 if not header.samples else 9 + len(header.samples)

    def check(self, fields: list[str], line: int | None) -> Violation | None:
        if len(fields) != self._columns:
            return Violation("record.columns", line, f"expected {self._columns} columns, found {len(fields)}")
        return None


def check_header(path: str, header_lines: list[str]) -> HeaderCheck:
    errors: list[Violation] = []
    if not header_lines or not header_lines[0].startswith("##fileformat=VCF"):
        errors.append(Violation("header.fileformat", 1, "first line must be ##fileformat=VCFv4.x"))
    samples: list[str] = []
    if header_lines and header_lines[-1].startswith("#CHROM"):
        samples = header_lines[-1].rstrip("\r\n").split("\t")[9:]
    else:
        errors.append(Violation("header.chrom_line", len(header_lines), "missing #CHROM header line"))
    return HeaderCheck(path, samples, errors)

"""VCF validation: what htslib lets through, checked against the specification.

Interface used by the reader (tasks/reader.py) and ``vcfstream validate``:

- ``check_header(path, header_lines) -> HeaderCheck``: file-level rules over the raw
  ``##``/``#CHROM`` lines. Any ``errors`` reject the whole file before anything is claimed.
- ``HeaderCheck.record_checker() -> RecordChecker``; ``RecordChecker.check(fields, line)``
  returns the first ``Violation`` of a data line already split on TAB (or None). It keeps
  state across calls (sorting, duplicates), so use one per chunk, in file order.

Every rule has an id and a one-line description in ``tasks/validation/rules.py``.
"""

from tasks.validation.core import HeaderCheck, RecordChecker, Violation, check_header

__all__ = ["HeaderCheck", "RecordChecker", "Violation", "check_header"]

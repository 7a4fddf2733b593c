"""VCF validation: what htslib lets through, checked against the specification.

Interface used by the reader (vcfstream/vcf/reader.py) and ``vcfstream validate``:

- ``check_header(path, header_lines) -> HeaderCheck``: file-level rules over the raw
  ``##``/``#CHROM`` lines. Any ``errors`` reject the whole file before anything is claimed.
- ``RecordChecker(header_check)``; ``RecordChecker.check(fields, line)``
  returns the first ``Violation`` of a data line already split on TAB (or None). It keeps
  state across calls (sorting, duplicates), so use one per chunk, in file order. Compiled
  regexes are cached on the ``HeaderCheck``, so checkers of later chunks start warm.
- ``vcfstream.vcf.validation.files.validate_paths(paths, reference)``: whole files, for the CLI.

Every rule has an id and a one-line description in ``vcfstream/vcf/validation/rules.py`` (``RULES``).
"""

from vcfstream.vcf.validation.core import RULES, HeaderCheck, RecordChecker, Rule, Violation, check_header

__all__ = ["RULES", "HeaderCheck", "RecordChecker", "Rule", "Violation", "check_header"]

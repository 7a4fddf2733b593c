"""The validator's public names, gathered from the modules that implement them.

- ``Violation`` and the rule registry: ``vcfstream/vcf/validation/rules.py``
- ``check_header`` / ``HeaderCheck`` (file-level rules): ``vcfstream/vcf/validation/header.py``
- ``RecordChecker`` (record-level rules, fast and slow paths): ``vcfstream/vcf/validation/records.py``
"""

from __future__ import annotations

from vcfstream.vcf.validation.header import HeaderCheck, check_header
from vcfstream.vcf.validation.records import RecordChecker
from vcfstream.vcf.validation.rules import RULES, Rule, Violation

__all__ = ["RULES", "HeaderCheck", "RecordChecker", "Rule", "Violation", "check_header"]

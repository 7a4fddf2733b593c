"""The validator's public names, gathered from the modules that implement them.

- ``Violation`` and the rule registry: ``tasks/validation/rules.py``
- ``check_header`` / ``HeaderCheck`` (file-level rules): ``tasks/validation/header.py``
- ``RecordChecker`` (record-level rules, fast and slow paths): ``tasks/validation/records.py``
"""

from __future__ import annotations

from tasks.validation.header import HeaderCheck, check_header
from tasks.validation.records import RecordChecker
from tasks.validation.rules import RULES, Rule, Violation

__all__ = ["RULES", "HeaderCheck", "RecordChecker", "Rule", "Violation", "check_header"]

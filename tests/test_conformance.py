"""The VCF specification's own test suite (hts-specs test/vcf, 4.1 and 4.2).

Every ``passed/`` file must validate clean: no file error, no record error. Every ``failed/``
file must have a file error or at least one record error, unless it is listed, with its reason,
in ``tests/conformance_known_gaps.md``. The rates per folder are printed (``pytest -s``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vcfstream.vcf.validation.files import validate_paths

SUITE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "hts-specs-vcf"
GAPS_FILE = Path(__file__).with_name("conformance_known_gaps.md")
VERSIONS = ("4.1", "4.2")


def known_gaps() -> dict[str, str]:
    """``version/failed/file`` -> reason, from the bullet list of the known-gaps file."""
    text = GAPS_FILE.read_text()
    return {m[1]: m[2] for m in re.finditer(r"^- (\S+/failed/\S+\.vcf): (.+)$", text, re.MULTILINE)}


def caught(report: dict) -> bool:
    return bool(report["file_errors"]) or report["record_errors"] > 0


def folder(version: str, kind: str) -> list[dict]:
    paths = sorted(str(p) for p in (SUITE / version / kind).glob("*.vcf"))
    assert paths, f"no files in {SUITE / version / kind}"
    return validate_paths(paths)["files"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_passed_file_validates_clean(version: str) -> None:
    reports = folder(version, "passed")
    dirty = [(Path(r["path"]).name, r["rules"]) for r in reports if caught(r)]
    print(f"\n{version}/passed: {len(reports) - len(dirty)}/{len(reports)} clean "
          f"({100 * (len(reports) - len(dirty)) / len(reports):.1f}%)")
    assert dirty == []


@pytest.mark.parametrize("version", VERSIONS)
def test_every_failed_file_is_caught_or_a_known_gap(version: str) -> None:
    reports = folder(version, "failed")
    gaps = known_gaps()
    missed = [f"{version}/failed/{Path(r['path']).name}" for r in reports if not caught(r)]
    rate = 100 * (len(reports) - len(missed)) / len(reports)
    print(f"\n{version}/failed: {len(reports) - len(missed)}/{len(reports)} caught ({rate:.1f}%), "
          f"known gaps: {', '.join(m.split('/')[-1] for m in missed) or 'none'}")
    assert [m for m in missed if m not in gaps] == [], "caught nothing in these files; fix or list them"
    assert rate >= 95.0


def test_known_gaps_are_still_gaps() -> None:
    """A listed file that is caught now must leave the list, so the list stays true."""
    for entry in known_gaps():
        version, _, name = entry.split("/")
        report = validate_paths([str(SUITE / version / "failed" / name)])["files"][0]
        assert not caught(report), f"{entry} is caught now: remove it from {GAPS_FILE.name}"

"""The VCF specification's own test suite (hts-specs test/vcf, 4.1 and 4.2), and ours for 4.3-4.5.

Every ``passed/`` file must validate clean: no file error, no record error. Every ``failed/``
file must have a file error or at least one record error, unless it is listed, with its reason,
in ``tests/vcf/conformance_known_gaps.md``. The rates per folder are printed (``pytest -s``).

``tests/vcf/conformance/<version>/{passed,failed,warned}/<rule>.<n>.vcf`` are written from the
specification texts, one rule each (its ``##comment=rule <id>: ...`` line names the rule and the
section): ``passed/`` files validate clean without that rule's warning, ``failed/`` files break
that rule, ``warned/`` files are accepted with that rule's warning.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from paths import REPO, SUITE

from vcfstream.vcf.validation.files import validate_paths
from vcfstream.vcf.validation.rules import RULES

OURS = Path(__file__).with_name("conformance")
OUR_FILES = sorted(OURS.glob("*/*/*.vcf"))
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


def _rule_of(path: Path) -> str:
    comment = re.search(r"^##comment=rule ([a-z]+\.[a-z_]+): ", path.read_text(), re.MULTILINE)
    assert comment, f"{path.name} has no ##comment=rule <id>: line"
    assert comment[1] == path.name.rsplit(".", 2)[0], "the file name starts with the rule it tests"
    return comment[1]


@pytest.mark.parametrize("path", OUR_FILES, ids=lambda p: "/".join(p.parts[-3:]))
def test_our_conformance_file_gets_the_verdict_its_folder_names(path: Path) -> None:
    rule = _rule_of(path)
    version, kind = path.parts[-3], path.parts[-2]
    report = validate_paths([str(path)])["files"][0]
    warned = {w["rule"] for w in report["warnings"]}
    if kind == "passed":
        assert not caught(report), report
        assert rule not in warned, report
    elif kind == "failed":
        assert rule in report["rules"], report
        assert RULES[rule].severity == "error"
    else:
        assert kind == "warned"
        assert not caught(report) and rule in warned, report
        assert RULES[rule].severity == "warning"
    assert report["version"]["declared"] == version


def test_every_rule_of_4_3_to_4_5_and_every_warning_has_a_passing_and_a_failing_file() -> None:
    kinds: dict[str, set[str]] = {}
    for path in OUR_FILES:
        kinds.setdefault(_rule_of(path), set()).add(path.parts[-2])
    checked = {rule for rule, r in RULES.items() if r.since > (4, 0) or r.severity == "warning"}
    missing = {rule: sorted(kinds.get(rule, set())) for rule in checked
               if "passed" not in kinds.get(rule, set()) or not kinds.get(rule, set()) & {"failed", "warned"}}
    assert missing == {}


def test_the_validation_page_names_every_versioned_rule_and_every_warning() -> None:
    page = (REPO / "docs" / "validation.md").read_text()
    named = {rule for rule, r in RULES.items() if r.since > (4, 0) or r.severity == "warning"}
    assert {rule for rule in named if f"`{rule}`" not in page} == set()

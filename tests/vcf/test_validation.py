"""The validator, rule by rule, on small hand-written inputs; the file reader on broken files;
the fast path checked against the slow path; the real files validate clean."""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import pysam
import pytest
from paths import REAL, REPO, SUITE

from vcfstream.cli.main import main as cli_main
from vcfstream.vcf.validation import RecordChecker, check_header
from vcfstream.vcf.validation.files import validate_file, validate_paths
from vcfstream.vcf.validation.rules import RULES, Violation

SOURCES = REPO / "vcfstream" / "vcf" / "validation"

META = [
    "##fileformat=VCFv4.2",
    "##contig=<ID=1,length=10000>",
    "##contig=<ID=2,length=10000>",
    '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">',
    '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
    '##INFO=<ID=RA,Number=R,Type=Integer,Description="Per allele">',
    '##INFO=<ID=TWO,Number=2,Type=Float,Description="A pair">',
    '##INFO=<ID=CH,Number=1,Type=Character,Description="One character">',
    '##INFO=<ID=NOTE,Number=1,Type=String,Description="Free text">',
    '##INFO=<ID=F,Number=0,Type=Flag,Description="A flag">',
    '##FILTER=<ID=q10,Description="Quality below 10">',
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
    '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
    '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
    '##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Likelihoods">',
    '##FORMAT=<ID=FC,Number=1,Type=Character,Description="A character">',
]
CHROM_LINE = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2"
GOOD = "1\t100\trs1\tA\tG\t50\tPASS\tAC=1;AF=0.5\tGT:AD:DP:PL\t0/1:5,5:10:30,0,30\t0|0:9,0:9:0,30,300"


def checker(meta: list[str] | None = None, chrom_line: str = CHROM_LINE) -> RecordChecker:
    header = check_header("test.vcf", (meta or META) + [chrom_line])
    assert header.errors == []
    return RecordChecker(header)


def first_violation(*lines: str, meta: list[str] | None = None, chrom_line: str = CHROM_LINE) -> Violation | None:
    """The first violation among data lines checked in order (None when all are valid)."""
    check = checker(meta, chrom_line)
    for number, line in enumerate(lines, start=100):
        found = check.check(line.split("\t"), number)
        if found:
            return found
    return None


def with_columns(**changes: str) -> str:
    """GOOD with some columns replaced, by name."""
    names = ["chrom", "pos", "id", "ref", "alt", "qual", "filter", "info", "format", "s1", "s2"]
    fields = dict(zip(names, GOOD.split("\t")))
    fields.update(changes)
    return "\t".join(fields[name] for name in names)


def write(tmp_path: Path, text: str | bytes, name: str = "x.vcf") -> str:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return str(path)


# -- the rule registry ---------------------------------------------------------------------
def test_every_rule_has_an_id_a_level_and_a_one_line_description() -> None:
    for rule_id, rule in RULES.items():
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", rule_id)
        assert rule.level in ("file", "record")
        assert rule.description and "\n" not in rule.description


def test_every_rule_id_used_in_the_code_is_registered() -> None:
    used = set()
    for source in [*SOURCES.glob("*.py"), *SOURCES.parent.glob("*.py")]:  # validation/ and vcf/
        used |= set(re.findall(r"\"([a-z]+\.[a-z_]+)\"", source.read_text()))
    candidates = {rule for rule in used if rule.split(".")[0] in {r.split(".")[0] for r in RULES}}
    assert len(candidates) > len(RULES) // 2, f"the rule ids used under {SOURCES} were not found"
    assert candidates - set(RULES) == set()


# -- header rules ----------------------------------------------------------------------------
@pytest.mark.parametrize("lines, rule", [
    (["##fileformat=", CHROM_LINE], "header.fileformat"),
    (["##fileformat=VCF v4.2", CHROM_LINE], "header.fileformat"),
    (["##fileformat=VCFv3.3", CHROM_LINE], "header.fileformat"),
    (["##source=me", "##fileformat=VCFv4.2", CHROM_LINE], "header.fileformat"),
    (["##fileformat=VCFv4.2", "##fileformat=VCFv4.2", CHROM_LINE], "meta.fileformat_repeated"),
    (["##fileformat=VCFv4.2", "stray text", CHROM_LINE], "header.line"),
    (["##fileformat=VCFv4.2"], "header.chrom_line"),
    (["##fileformat=VCFv4.2", "#CHROM\tPOSITION\tID\tREF\tALT\tQUAL\tFILTER\tINFO"], "header.columns"),
    (["##fileformat=VCFv4.2", "#CHROM POS ID REF ALT QUAL FILTER INFO"], "header.columns"),
    (["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT"], "header.samples"),
    (["##fileformat=VCFv4.2", CHROM_LINE + "\t"], "header.samples"),
    (["##fileformat=VCFv4.2", CHROM_LINE + "\tS1"], "header.sample_duplicate"),
    (["##fileformat=VCFv4.2", "##Some plain text", CHROM_LINE], "meta.syntax"),
    (["##fileformat=VCFv4.2", "##reference=", CHROM_LINE], "meta.empty"),
    (["##fileformat=VCFv4.2", "##pedigreeDB=<>", CHROM_LINE], "meta.empty"),
    (["##fileformat=VCFv4.2", '##INFO=<ID=X,Number=1,Type=Integer,Description="d"', CHROM_LINE], "meta.unclosed"),
    (["##fileformat=VCFv4.2", '##INFO=<ID=X,Number=1,Type=Integer,Description="d>', CHROM_LINE], "meta.syntax"),
    (["##fileformat=VCFv4.2", '##ALT=<ID=DEL,Description="a "quoted" word">', CHROM_LINE], "meta.syntax"),
    (["##fileformat=VCFv4.2", '##INFO=<Number=1,Type=Integer,Description="d",ID=X>', CHROM_LINE], "meta.field_order"),
    (["##fileformat=VCFv4.2", '##INFO=<ID=X,Number=1,Description="d">', CHROM_LINE], "meta.field_order"),
    (["##fileformat=VCFv4.2", '##INFO=<ID=X,Number=N,Type=Integer,Description="d">', CHROM_LINE], "meta.number"),
    (["##fileformat=VCFv4.1", '##INFO=<ID=X,Number=R,Type=Integer,Description="d">', CHROM_LINE], "meta.number"),
    (["##fileformat=VCFv4.2", '##INFO=<ID=X,Number=1,Type=Int,Description="d">', CHROM_LINE], "meta.type"),
    (["##fileformat=VCFv4.2", '##FORMAT=<ID=X,Number=0,Type=Flag,Description="d">', CHROM_LINE], "meta.type"),
    (["##fileformat=VCFv4.2", "##INFO=<ID=X,Number=1,Type=Integer,Description=plain>", CHROM_LINE], "meta.description"),
    (["##fileformat=VCFv4.2", '##INFO=<ID="X",Number=1,Type=Integer,Description="d">', CHROM_LINE], "meta.quoted"),
    (["##fileformat=VCFv4.2", '##INFO=<ID=AC,Number=1,Type=Integer,Description="d">', CHROM_LINE], "meta.reserved"),
    (["##fileformat=VCFv4.2", '##FORMAT=<ID=GQ,Number=1,Type=Float,Description="d">', CHROM_LINE], "meta.reserved"),
    (["##fileformat=VCFv4.3", '##INFO=<ID=A B,Number=1,Type=Integer,Description="d">', CHROM_LINE], "meta.id"),
    (["##fileformat=VCFv4.2", "##contig=<length=10>", CHROM_LINE], "meta.id"),
    (["##fileformat=VCFv4.2", '##INFO=<ID=X,Number=1,Type=Integer,Description="d">',
      '##INFO=<ID=X,Number=1,Type=Integer,Description="d">', CHROM_LINE], "meta.duplicate_id"),
    (["##fileformat=VCFv4.2", '##ALT=<ID=DEL1,Description="d">', CHROM_LINE], "meta.alt_id"),
    (["##fileformat=VCFv4.2", '##ALT=<ID=DEL:A B,Description="d">', CHROM_LINE], "meta.alt_id"),
    (["##fileformat=VCFv4.2", '##ALT=<ID=THIS:IS-NOT-VALID,Description="d">', CHROM_LINE], "meta.alt_id"),
    (["##fileformat=VCFv4.3", "##META=<ID=Assay,Type=String,Number=.,Values=[WholeGenome, Exome>", CHROM_LINE],
     "meta.syntax"),
    (["##fileformat=VCFv4.2", "##contig=<ID=1 A>", CHROM_LINE], "meta.contig"),
    (["##fileformat=VCFv4.2", "##contig=<ID=1,length=ten>", CHROM_LINE], "meta.contig"),
    (["##fileformat=VCFv4.2", '##SAMPLE=<ID=S,Mixture=1;2,Description="d">', CHROM_LINE], "meta.sample"),
    (["##fileformat=VCFv4.2", "##PEDIGREE=<Name_0=a b>", CHROM_LINE], "meta.pedigree"),
    (["##fileformat=VCFv4.2", "##assembly=ftp://8080:21/x.fa", CHROM_LINE], "meta.url"),
])
def test_a_broken_header_is_a_file_error_naming_line_and_rule(lines: list[str], rule: str) -> None:
    errors = check_header("h.vcf", lines).errors
    assert errors, f"no error for {lines}"
    assert errors[0].rule == rule
    assert errors[0].line is not None and 1 <= errors[0].line <= len(lines) + 1


@pytest.mark.parametrize("line", [
    '##GATKCommandLine=<ID=HC,CommandLine="a, b=c \\"quoted\\"",Version=3.5>',
    '##AnalysisTitle=<"free text, with commas">',
    "##source=vcf-annotate -d key=INFO,ID=x,Number=0,Type",
    "##assembly=GRCh38",
    "##assembly=http://123.0.1.2:8080/a.fa",
    '##ALT=<ID=NON_REF,Description="gVCF reference block">',
    '##ALT=<ID=DUP:TANDEM,Description="d">',
    '##ALT=<ID=CN0,Description="1000 Genomes copy-number allele">',
    "##META=<ID=Assay,Type=String,Number=.,Values=[WholeGenome, Exome]>",
    "##PEDIGREE=<ID=TumourSample,Original=GermlineID>",
    "##contig=<ID=HLA-A*01:01:01:01,length=3503>",
    '##INFO=<ID=GERP++_RS,Number=1,Type=Float,Description="4.2 keys only exclude separators">',
    '##INFO=<ID=X,Type=Integer,Number=1,Description="Number and Type in either order">',
])
def test_headers_real_tools_write_are_accepted(line: str) -> None:
    assert check_header("h.vcf", ["##fileformat=VCFv4.2", line, CHROM_LINE]).errors == []


@pytest.mark.parametrize("lines, rule", [
    (["##fileformat=VCFv4.3", '##INFO=<ID=X,Number=1,Type=Flag,Description="d">', CHROM_LINE], "meta.flag_number"),
    (["##fileformat=VCFv4.2", "##contig=<ID=HLA-A*01:01:01:01,length=3503>", CHROM_LINE], "meta.contig_name"),
    (["##fileformat=VCFv4.6", CHROM_LINE], "header.version_unknown"),
])
def test_what_real_files_need_against_the_text_is_a_warning_not_an_error(lines: list[str], rule: str) -> None:
    header = check_header("h.vcf", lines)
    assert header.errors == [] and [w.rule for w in header.warnings] == [rule]


def test_a_newer_version_is_validated_by_the_newest_rules() -> None:
    header = check_header("h.vcf", ["##fileformat=VCFv4.7", CHROM_LINE])
    assert header.version == (4, 5) and header.declared_version == "4.7"


def test_every_rule_names_the_versions_it_applies_to() -> None:
    assert RULES["meta.meta"].applies((4, 3)) and not RULES["meta.meta"].applies((4, 2))
    assert RULES["sample.laa"].versions() == "4.5-4.5"
    assert RULES["record.final_newline"].severity == "warning"


def test_header_reports_samples_version_and_definitions() -> None:
    header = check_header("h.vcf", [line + "\r\n" for line in META + [CHROM_LINE]])
    assert header.errors == []
    assert header.samples == ["S1", "S2"]
    assert header.version == (4, 2)
    assert header.info["AC"].number == "A" and header.info["DP"].type == "Integer"  # DP: reserved
    assert header.contigs == {"1": 10000, "2": 10000}


# -- record rules -----------------------------------------------------------------------------
def test_a_valid_record_passes() -> None:
    assert first_violation(GOOD) is None


@pytest.mark.parametrize("line, rule", [
    (GOOD + "\textra", "record.columns"),
    (with_columns(chrom="chr 1"), "chrom.chars"),
    (with_columns(chrom="<1"), "chrom.chars"),
    (with_columns(chrom="3"), "chrom.undeclared"),
    (with_columns(pos="12a"), "pos.syntax"),
    (with_columns(pos="-1"), "pos.syntax"),
    (with_columns(pos="10002"), "pos.range"),
    (with_columns(pos="99999999999"), "pos.range"),
    (with_columns(id="rs1 rs2"), "id.syntax"),
    (with_columns(id="rs1;"), "id.syntax"),
    (with_columns(id="rs1;rs1"), "id.duplicate"),
    (with_columns(ref="B"), "ref.bases"),
    (with_columns(ref="."), "ref.bases"),
    (with_columns(ref="A,C"), "ref.bases"),
    (with_columns(alt="R"), "alt.bases"),
    (with_columns(alt="G,,T"), "alt.bases"),
    (with_columns(alt="G,."), "alt.bases"),
    (with_columns(alt="<IN S>"), "alt.symbolic"),
    (with_columns(alt="<INS>X>"), "alt.symbolic"),
    (with_columns(alt="[1:100["), "alt.breakend"),
    (with_columns(alt="A"), "alt.duplicate"),
    (with_columns(alt="G,G", info="AC=1,1", s1="0/1", s2="0/2"), "alt.duplicate"),
    (with_columns(qual="high"), "qual.syntax"),
    (with_columns(qual="5."), "qual.syntax"),
    (with_columns(qual="-1"), "qual.range"),
    (with_columns(filter="q10;."), "filter.syntax"),
    (with_columns(filter="PASS;"), "filter.syntax"),
    (with_columns(filter="my filter"), "filter.syntax"),
    (with_columns(filter="q10;0"), "filter.reserved"),
    (with_columns(filter="q10;q10"), "filter.duplicate"),
    (with_columns(filter="s50"), "filter.undeclared"),
    (with_columns(info="AC=1;;AF=0.5"), "info.syntax"),
    (with_columns(info=""), "info.syntax"),
    (with_columns(info="A C=1"), "info.key"),
    (with_columns(info="AC=1;AC=1"), "info.duplicate"),
    (with_columns(info="F=yes"), "info.flag"),
    (with_columns(info="DB=2"), "info.flag"),
    (with_columns(info="AC=1,2"), "info.number"),
    (with_columns(info="RA=1"), "info.number"),
    (with_columns(info="TWO=1.5"), "info.number"),
    (with_columns(info="AC"), "info.number"),
    (with_columns(info="NOTE=a,b"), "info.number"),
    (with_columns(info="AC=1.5"), "info.type"),
    (with_columns(info="AF=x"), "info.type"),
    (with_columns(info="CH=ab"), "info.type"),
    (with_columns(info="AC=2147483648"), "info.integer_range"),
    (with_columns(info="AC=-2147483648"), "info.integer_range"),
    (with_columns(info="AC=-1"), "info.value"),
    (with_columns(info="DP=-3"), "info.value"),
    (with_columns(info="CIGAR=12MYCIGAR"), "info.value"),
    (with_columns(info="END=50"), "info.value"),
    (with_columns(format="GT::DP"), "format.syntax"),
    (with_columns(format="DP:GT", s1="10:0/1", s2="9:0/0"), "format.syntax"),
    (with_columns(format="GT:GT"), "format.syntax"),
    (with_columns(s1="0/1:5,5:10:30,0,30:x"), "sample.fields"),
    (with_columns(s1="0/1::10"), "sample.fields"),
    (with_columns(s1="0/|1"), "gt.syntax"),
    (with_columns(s1="1/C"), "gt.syntax"),
    (with_columns(s1="0.5"), "gt.syntax"),
    (with_columns(s1="0/2"), "gt.allele_range"),
    (with_columns(s1="0/1:5:10"), "sample.number"),
    (with_columns(s1="0/1:5,5:10:30,0"), "sample.number"),
    (with_columns(s1="0:5,5:10:30,0,30"), "sample.number"),  # haploid: PL has 2 values
    (with_columns(s1="0/1:5,5:ten"), "sample.type"),
    (with_columns(format="GT:FC", s1="0/1:ab", s2="0/0:a"), "sample.type"),
    (with_columns(s1="0/1:5,5:9999999999"), "sample.integer_range"),
    (with_columns(s1="0/1:5,5:-1"), "sample.value"),
])
def test_a_broken_record_names_its_rule(line: str, rule: str) -> None:
    found = first_violation(line)
    assert found is not None, f"no violation for {line!r}"
    assert found.rule == rule, found.message
    assert found.line == 100


@pytest.mark.parametrize("line", [
    with_columns(alt="G,<NON_REF>", info="AC=1,0", s1="0/1:5,5,0:10:30,0,30,40,50,60", s2="0/0"),
    with_columns(alt="*,GT", info="AC=1,1", s1="1/2:1,2,3:6:1,2,3,4,5,6", s2="./."),
    with_columns(alt="G]2:500]"),
    with_columns(alt=".A"),
    with_columns(alt=".", info=".", s1="0/0:5:5:0", s2="./."),  # a monomorphic site
    with_columns(chrom="<1>"),  # an angle-bracketed contig is the declared contig 1
    with_columns(qual="NaN"), with_columns(qual="2e+1"), with_columns(qual=".5"),
    with_columns(filter="q10;PASS"),
    with_columns(info="F"), with_columns(info="F=1"), with_columns(info="NOTE=\"a, quoted=text\""),
    with_columns(info="UNDECLARED=anything,goes;OTHER"),
    with_columns(info="AC=.;AF=.;RA=.,3;TWO=1e-3,-Inf;CH=x;END=100;CIGAR=1M2I"),
    with_columns(s1="0|1|1:1,2:3:1,2,3,4"),  # triploid: PL has C(4,3)=4 values
    with_columns(s1="1:5,5:10:30,0"),  # haploid: PL has 2 values
    with_columns(s1="./.:.:.:."), with_columns(s1="0/1"), with_columns(s1="."),
])
def test_valid_records_pass(line: str) -> None:
    assert first_violation(line) is None


def test_crlf_line_endings_are_accepted() -> None:
    assert first_violation(GOOD + "\r") is None


def test_positions_must_increase_within_a_contig() -> None:
    found = first_violation(with_columns(pos="200"), with_columns(pos="150"))
    assert found is not None and found.rule == "pos.unsorted" and found.line == 101


def test_a_contig_must_form_one_block() -> None:
    found = first_violation(with_columns(chrom="1"), with_columns(chrom="2"), with_columns(chrom="1", pos="500"))
    assert found is not None and found.rule == "chrom.contiguous"


def test_the_same_normalized_variant_twice_is_a_duplicate() -> None:
    first = with_columns(pos="123", ref="TAT", alt="TGT")
    second = with_columns(pos="124", ref="A", alt="G")  # TAT>TGT at 123 is A>G at 124
    found = first_violation(first, second)
    assert found is not None and found.rule == "record.duplicate" and found.line == 101


def test_multiallelic_records_are_split_before_duplicates_are_looked_for() -> None:
    first = with_columns(pos="123", ref="AT", alt="AAT,AA", info="AC=1,1", s1="0/1:1,2,3:6:1,2,3,4,5,6",
                         s2="0/2:1,2,3:6:1,2,3,4,5,6")
    second = with_columns(pos="124", ref="T", alt="A")  # AT>AA at 123 is T>A at 124
    assert first_violation(first, second).rule == "record.duplicate"  # type: ignore[union-attr]


def test_symbolic_alleles_at_one_position_are_not_duplicates() -> None:
    line = with_columns(alt="<INS>")
    assert first_violation(line, line) is None


def test_different_alleles_at_one_position_are_not_duplicates() -> None:
    assert first_violation(with_columns(alt="G"), with_columns(alt="T")) is None


def test_without_a_line_number_the_message_still_names_the_record() -> None:
    found = checker().check(with_columns(info="AC=x").split("\t"), None)
    assert found is not None and found.line is None
    assert found.message.startswith("1:100: ")


def test_a_10_mb_info_value_gives_a_short_message() -> None:
    huge = "NOTE=" + "x" * 10_000_000 + ",y"
    found = checker().check(with_columns(info=huge).split("\t"), 7)
    assert found is not None and found.rule == "info.number"
    assert len(found.message) < 300


def test_sites_only_files_have_eight_columns() -> None:
    chrom_line = "\t".join(CHROM_LINE.split("\t")[:8])
    assert first_violation("\t".join(GOOD.split("\t")[:8]), chrom_line=chrom_line) is None
    assert first_violation(GOOD, chrom_line=chrom_line).rule == "record.columns"  # type: ignore[union-attr]


def test_undeclared_reserved_keys_are_checked_with_the_specification_definitions() -> None:
    meta = ["##fileformat=VCFv4.2"]
    chrom_line = CHROM_LINE
    assert first_violation("1\t5\t.\tA\tG\t.\t.\tAN=-1\tGT:PL\t0/1:1,2,3\t0/0:1,2,3", meta=meta,
                           chrom_line=chrom_line).rule == "info.value"  # type: ignore[union-attr]
    assert first_violation("1\t5\t.\tA\tG\t.\t.\t.\tGT:PL\t0/1:1,2\t0/0:1,2,3", meta=meta,
                           chrom_line=chrom_line).rule == "sample.number"  # type: ignore[union-attr]


# -- the fast path never accepts what the slow path rejects -------------------------------------
def _slow_verdict(check: RecordChecker, fields: list[str]) -> object:
    n_alt = 0 if fields[4] == "." else len(fields[4].split(","))
    info = fields[7] if fields[7] != "." else None
    problem = check._info_problem_slow(info, n_alt, int(fields[1])) if info else None
    if problem is None and len(fields) > 8:
        plan = check._plan_format(fields[8])
        if isinstance(plan, tuple):
            return plan
        problem = check._samples_problem_slow(plan, fields[9:], n_alt)
    return problem


def _mutations(line: str, rng: random.Random, count: int) -> list[str]:
    alphabet = "0123456789.,;:=/|-+eAGTCNX ab\"<>"
    out = []
    for _ in range(count):
        chars = list(line)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(chars))
            if chars[i] == "\t":
                continue
            op = rng.random()
            if op < 0.4:
                chars[i] = rng.choice(alphabet)
            elif op < 0.7:
                chars.insert(i, rng.choice(alphabet))
            else:
                del chars[i]
        out.append("".join(chars))
    return out


def test_the_fast_path_accepts_only_what_the_slow_path_accepts() -> None:
    rng = random.Random(5)
    seeds = [GOOD, with_columns(alt="G,T", info="AC=1,2;AF=0.1,0.2;RA=1,2,3;TWO=1,2;F;NOTE=x",
                                s1="0/2:1,2,3:6:1,2,3,4,5,6", s2="1:1,2,3:6:1,2,3")]
    header = check_header("fuzz.vcf", META + [CHROM_LINE])
    accepted = 0
    for seed in seeds:
        for line in _mutations(seed, rng, 3000):
            fields = line.split("\t")
            check = RecordChecker(header)  # fresh state: duplicates and sorting play no part
            if check.check(fields, 1) is None:
                accepted += 1
                assert _slow_verdict(check, fields) is None, line
    assert accepted > 100  # the mutations do exercise the fast path


def test_fast_and_slow_paths_agree_on_real_records() -> None:
    for name in ("1kg_2020_chrM.vcf.gz", "sample.vcf.gz", "chr_m_indels.vcf.gz", "mixed_ploidy.vcf.gz"):
        with pysam.VariantFile(str(REAL / name)) as vf:
            header_lines = str(vf.header).rstrip("\n").split("\n")
            rows = [str(rec).rstrip("\n").split("\t") for rec in vf]
        header = check_header(name, header_lines)
        check = RecordChecker(header)
        for fields in rows:
            assert check.check(fields, 1) is None
            assert _slow_verdict(check, fields) is None


# -- whole files ----------------------------------------------------------------------------
def test_missing_path_directory_and_empty_file_are_file_errors(tmp_path: Path) -> None:
    empty = write(tmp_path, "", "empty.vcf")
    rules = [validate_file(p).file_errors[0].rule for p in (str(tmp_path / "nope.vcf"), str(tmp_path), empty)]
    assert rules == ["file.missing", "file.directory", "file.empty"]


def test_binary_garbage_and_other_text_are_not_vcf(tmp_path: Path) -> None:
    garbage = write(tmp_path, bytes(range(256)) * 4, "garbage.vcf")
    text = write(tmp_path, "hello world\n", "hello.vcf")
    gz = tmp_path / "other.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(b"\x00\x01not a vcf")
    for path in (garbage, text, str(gz)):
        assert validate_file(path).file_errors[0].rule == "file.not_vcf"


def test_a_truncated_bgzf_file_is_a_file_error(tmp_path: Path) -> None:
    data = (REAL / "sample.vcf.gz").read_bytes()
    path = write(tmp_path, data[: len(data) - 100], "cut.vcf.gz")
    report = validate_file(path)
    assert [e.rule for e in report.file_errors] in (["file.truncated"], ["file.compression"])


def test_corrupt_compression_and_a_broken_bcf_are_file_errors(tmp_path: Path) -> None:
    corrupt = write(tmp_path, b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"garbage" * 10, "bad.vcf.gz")
    broken_bcf = write(tmp_path, b"BCF\x02\x02" + b"garbage" * 10, "bad.bcf")
    assert validate_file(corrupt).file_errors[0].rule == "file.compression"
    assert validate_file(broken_bcf).file_errors[0].rule == "file.bcf"


def test_plain_gzip_is_read_like_bgzf(tmp_path: Path) -> None:
    text = "\n".join(META + [CHROM_LINE, GOOD]) + "\n"
    path = tmp_path / "plain.vcf.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(text)
    assert validate_paths([str(path)])["files"][0]["ok"] is True


def test_a_cut_plain_gzip_stream_is_truncated(tmp_path: Path) -> None:
    body = "\n".join(META + [CHROM_LINE] + [with_columns(pos=str(p)) for p in range(1, 5000)]) + "\n"
    data = gzip.compress(body.encode())
    path = write(tmp_path, data[: len(data) // 2], "cut.vcf.gz")
    assert validate_file(path).file_errors[0].rule == "file.truncated"


def test_bcf_is_validated_through_pysam(tmp_path: Path) -> None:
    source = write(tmp_path, "\n".join(META + [CHROM_LINE, GOOD, with_columns(pos="200")]) + "\n")
    bcf = str(tmp_path / "x.bcf")
    with pysam.VariantFile(source) as vin, pysam.VariantFile(bcf, "wb", header=vin.header) as vout:
        for rec in vin:
            vout.write(rec)
    report = validate_paths([bcf])["files"][0]
    assert report == {"path": bcf, "ok": True, "version": {"declared": "4.2", "used": "4.2"}, "file_errors": [],
                      "record_errors": 0, "rules": [], "warnings": [], "warning_counts": {}}


def test_non_utf8_in_the_header_rejects_the_file(tmp_path: Path) -> None:
    body = ("\n".join(META) + "\n" + CHROM_LINE.replace("S2", "S\xe92")).encode("latin-1") + b"\n"
    report = validate_file(write(tmp_path, body))
    assert [(e.rule, e.line) for e in report.file_errors] == [("header.encoding", len(META) + 1)]


def test_non_utf8_in_a_record_quarantines_only_that_record(tmp_path: Path) -> None:
    bad = with_columns(pos="200", info="NOTE=caf\xe9").encode("latin-1")
    head = ("\n".join(META + [CHROM_LINE, GOOD]) + "\n").encode()
    body = head + bad + b"\n" + with_columns(pos="300").encode() + b"\n"
    report = validate_paths([write(tmp_path, body)])["files"][0]
    assert report["file_errors"] == [] and report["record_errors"] == 1 and report["rules"] == ["record.encoding"]


def test_crlf_files_validate_clean(tmp_path: Path) -> None:
    body = "\r\n".join(META + [CHROM_LINE, GOOD, with_columns(pos="200")]) + "\r\n"
    assert validate_paths([write(tmp_path, body)])["files"][0]["ok"] is True


def test_record_errors_are_counted_and_their_rules_listed(tmp_path: Path) -> None:
    lines = [GOOD, with_columns(pos="200", qual="-1"), with_columns(pos="300", info="AC=x"), with_columns(pos="400")]
    report = validate_paths([write(tmp_path, "\n".join(META + [CHROM_LINE] + lines) + "\n")])["files"][0]
    assert report["ok"] is False
    assert report["record_errors"] == 2
    assert report["rules"] == ["info.type", "qual.range"]


def test_a_reference_adds_the_ref_check(tmp_path: Path) -> None:
    fasta = tmp_path / "ref.fa"
    fasta.write_text(">1\n" + "C" * 99 + "A" + "C" * 300 + "\n")
    pysam.faidx(str(fasta))
    lines = [GOOD, with_columns(pos="200")]  # REF A: right at 100, wrong at 200
    report = validate_paths([write(tmp_path, "\n".join(META + [CHROM_LINE] + lines) + "\n")], str(fasta))
    assert report["files"][0]["rules"] == ["ref.mismatch"] and report["files"][0]["record_errors"] == 1


@pytest.mark.parametrize("name", ["1kg_2020_chrM.vcf.gz", "1kg_2020_chr20_annotations.bcf", "chr22.vcf.gz",
                                  "CEUTrio.20.21.gatk3.4.g.vcf.bgz", "chr_m_indels.vcf.gz", "mixed_ploidy.vcf.gz",
                                  "multi_contig.vcf.gz", "sample.vcf.gz"])
def test_the_real_files_validate_clean(name: str) -> None:
    assert validate_paths([str(REAL / name)])["files"][0]["ok"] is True


def test_field_type_combos_repeats_alt_alleles_and_those_records_are_quarantined() -> None:
    report = validate_paths([str(REAL / "field_type_combos.vcf.gz")])["files"][0]
    assert report["file_errors"] == [] and report["rules"] == ["alt.duplicate"]


def test_the_validate_command_prints_one_json_object_and_exits_by_verdict(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "\n".join(META + [CHROM_LINE, GOOD]) + "\n", "good.vcf")
    bad = write(tmp_path, "##fileformat=VCFv9\n" + CHROM_LINE + "\n", "bad.vcf")
    assert cli_main(["validate", "--json", good]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["ok"] is True
    assert cli_main(["validate", "--json", good, bad]) == 1
    out = capsys.readouterr().out
    report = json.loads(out)
    assert out.count("\n") == 1 and [f["ok"] for f in report["files"]] == [True, False]
    assert report["files"][1]["file_errors"][0] == {
        "rule": "header.fileformat", "line": 1,
        "message": "first line must be ##fileformat=VCFv4.x, found '##fileformat=VCFv9'"}


# -- chunk boundaries ---------------------------------------------------------------------------



def _quarantined_by_chunks(path: Path, chunk_size: int) -> list[tuple[int | None, str]]:
    from vcfstream.vcf.chunks import plan_chunks
    from vcfstream.vcf.reader import ReadContext, read_chunk
    from vcfstream.vcf.source import open_source

    source = open_source(str(path))
    ctx = ReadContext.open("d", "GRCh38", source)
    return [(q.line, q.rule) for chunk in plan_chunks(source, chunk_size) for q in read_chunk(ctx, chunk).quarantined]


def test_order_duplicate_and_contig_checks_continue_across_chunk_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "boundaries.vcf"  # unindexed: sequential chunks
    records = [("chr1", 10, "A", "G"), ("chr1", 20, "A", "G"), ("chr1", 15, "A", "G"),  # 15 after 20
               ("chr1", 20, "A", "G"),  # the record of two lines up again
               ("chr2", 5, "C", "T"), ("chr1", 30, "A", "G"),  # chr1 again after chr2
               ("chr2", 6, "C", "T")]
    path.write_text("".join([
        "##fileformat=VCFv4.2\n", "##contig=<ID=chr1>\n", "##contig=<ID=chr2>\n",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n",
        *(f"{c}\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for c, p, r, a in records)]))
    expected = [(7, "pos.unsorted"), (8, "record.duplicate"), (10, "chrom.contiguous")]  # 4 header lines
    for chunk_size in (1, 2, 3, 100):
        assert _quarantined_by_chunks(path, chunk_size) == expected, chunk_size


@pytest.mark.parametrize("version", ["4.1", "4.2"])
def test_what_is_quarantined_does_not_depend_on_the_chunk_size(version: str) -> None:
    from vcfstream.errors import VcfFormatError

    compared = 0
    for path in sorted((SUITE / version).glob("*/*.vcf")):
        try:
            whole = _quarantined_by_chunks(path, 10**6)
        except VcfFormatError:
            continue  # rejected as a file: never chunked
        for chunk_size in (1, 4):
            assert _quarantined_by_chunks(path, chunk_size) == whole, (path.name, chunk_size)
        compared += 1
    assert compared >= 50


@pytest.mark.parametrize("bad", [
    b"chr1 25\t.\tA\tG\t.\t.\t.\n",  # a space for a TAB: wrong column count
    b"chr1\t7\t.\tA\tG\t.\t.\t.\n",  # chr1 again inside chr2
    b"chrX\t30\t.\tA\tG\t.\t.\t.\n",  # a contig without a ##contig line
    b"chr2\t31\t.\tA\tG\t.\t.\tNOTE=\xff\n",  # not UTF-8
])
def test_one_bad_record_is_quarantined_alone_whatever_the_chunk_size(tmp_path: Path, bad: bytes) -> None:
    """Many records after the bad one: the chunks after it must not inherit its contig."""
    lines = [b"chr1\t%d\t.\tA\tG\t.\t.\t.\n" % p for p in range(1, 21)]
    lines += [b"chr2\t%d\t.\tC\tT\t.\t.\t.\n" % p for p in range(1, 31)]
    lines.insert(35, bad)
    path = tmp_path / "one_bad.vcf"
    path.write_bytes(b"##fileformat=VCFv4.2\n##contig=<ID=chr1>\n##contig=<ID=chr2>\n"
                     b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + b"".join(lines))
    whole = _quarantined_by_chunks(path, 10**6)
    assert [line for line, _ in whole] == [4 + 36]  # the bad line only
    for chunk_size in (1, 3, 10):
        assert _quarantined_by_chunks(path, chunk_size) == whole, chunk_size


# -- VCF 4.5 local alleles through the reader -------------------------------------------------
CONFORMANCE = Path(__file__).with_name("conformance")


def _messages(path: Path) -> tuple[list[dict], list[list[list[int]]]]:
    from vcfstream.vcf.chunks import plan_chunks
    from vcfstream.vcf.reader import ReadContext, read_chunk
    from vcfstream.vcf.source import open_source

    source = open_source(str(path))
    ctx = ReadContext.open("d", "GRCh38", source)
    messages, calls = [], []
    for chunk in plan_chunks(source, 10**6):
        read = read_chunk(ctx, chunk)
        assert read.quarantined == []
        messages += [json.loads(value) for value in read.batch.table.column("value").to_pylist()]
        calls += read.batch.gt.tolist()
    return messages, calls


def test_local_allele_values_are_cut_to_the_allele_through_each_samples_laa() -> None:
    # G > A,C,T,<*>; S1: GT 2/4, LAA 2,4, LAD 20,30,10, LPL over G,C,<*>; S2: LAA 4 (<*> only)
    messages, _ = _messages(CONFORMANCE / "4.5" / "passed" / "sample.local_number.0.vcf")
    by_alt = {m["variant"]["alt"]: m["samples"] for m in messages}
    assert sorted(by_alt) == ["A", "C", "T"]  # <*> is never published
    assert by_alt["C"]["S1"] == {"GT": "1/0", "LAA": [1], "LAD": [20, 30], "LPL": [90, 80, 0]}
    assert by_alt["A"]["S1"] == {"GT": "0/0", "LAA": None, "LAD": [20, None], "LPL": [90, None, None]}
    assert by_alt["C"]["S2"]["LAD"] == [30, None]


def test_a_file_with_lgt_but_no_gt_still_gives_carriers() -> None:
    # G > A,C,T; S1: LAA 2,3 LGT 1/2 (C/T); S2: LAA 1 LGT 0/1 (G/A)
    messages, calls = _messages(CONFORMANCE / "4.5" / "passed" / "sample.lgt.0.vcf")
    alts = [m["variant"]["alt"] for m in messages]
    carriers = {alt: [name for name, call in zip(("S1", "S2"), matrix) if 1 in call]
                for alt, matrix in zip(alts, calls)}
    assert carriers == {"A": ["S2"], "C": ["S1"], "T": ["S1"]}
    assert messages[alts.index("T")]["samples"]["S1"]["LGT"] == "0/1"


def test_validate_json_names_the_version_used_and_the_warnings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    newer = write(tmp_path, "##fileformat=VCFv4.6\n" + "\n".join(META[1:] + [CHROM_LINE, GOOD]), "newer.vcf")
    assert cli_main(["validate", "--json", newer]) == 0
    report = json.loads(capsys.readouterr().out)["files"][0]
    assert report["ok"] is True and report["version"] == {"declared": "4.6", "used": "4.5"}
    assert [w["rule"] for w in report["warnings"]] == ["header.version_unknown", "record.final_newline"]
    assert report["warning_counts"] == {"header.version_unknown": 1, "record.final_newline": 1}


def test_repeated_copy_number_alleles_of_4_4_get_one_key_each() -> None:
    # T > <CNV>,<CNV> with CN=1,2: valid from 4.4, a duplicate ALT before
    messages, _ = _messages(CONFORMANCE / "4.4" / "passed" / "alt.duplicate.0.vcf")
    keys = [m["variant"]["key"] for m in messages]
    assert [key.rsplit(":", 1)[1] for key in keys] == ["CN=1", "CN=2"]
    assert len({m["message_id"] for m in messages}) == 2

"""Golden digests of what the reader produces for every shared real file and conformance file
(and for the few crafted files of ``tests/vcf/golden/crafted``, see ``golden_files``).

Each file is read the way ingest reads it (``open_source``, the header check that rejects a
file whole, ``plan_chunks``, ``read_chunk`` per chunk with one ``ReadContext``), without any
service. Per file, ``tests/vcf/golden/digests.json`` holds the SHA-256 of:

* ``messages``: every message's bytes (the ``value`` column), in order;
* ``table``: every other column of the allele table (canonical JSON per column);
* ``matrices``: the genotype, phased, DP and GQ matrices (dtype, shape, bytes);
* ``keys``: the variant keys and message ids;
* ``quarantine``: the line number and rule of every quarantined record;

and the record, allele and quarantined counts; a file rejected whole records its error's rule.
Files are read with the default message options (``MessageOptions()``: ``auto``, so every file
here but the compact ones below gets the full form); a few are read again in the compact form,
with and without FORMAT values (labels ``compact/...``, ``compact-calls/...``).
The source path inside messages is replaced by the file's name under ../shared, so the digests
do not depend on where the checkout is. Every file is read whole (the largest, the NA12878 gVCF,
takes a few seconds).

A mismatch names the file and the part that changed. An intended change of the message format
(or of the table) must regenerate the digests in the same commit and bump the message schema
version (``MESSAGE_SCHEMA`` and ``vcfstream/vcf/schemas/variant-message.v*.json``):

    .venv/bin/python tests/vcf/test_golden.py --update
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson

if __name__ == "__main__":  # run as a script (--update): the repository and tests/ on the path
    sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]

from paths import REAL, SHARED, SUITE

from vcfstream.errors import InputError, VcfFormatError
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.encode import DEFAULT_OPTIONS, MessageOptions
from vcfstream.vcf.reader import ReadContext, read_chunk
from vcfstream.vcf.source import open_source
from vcfstream.vcf.validation import check_header

DIGESTS = Path(__file__).with_name("golden") / "digests.json"
CHUNK_SIZE = 10_000  # smaller than ingest's default, so the larger files are read in several chunks
DATASET, ASSEMBLY = "golden", "GRCh38"
ODD_ASSEMBLY = 'GRCh38"\\x'  # needs escaping in JSON
PARTS = ("messages", "table", "matrices", "keys", "quarantine")


CRAFTED = Path(__file__).with_name("golden") / "crafted"


COMPACT = ("chr22.vcf.gz", "mixed_ploidy.vcf.gz", "1kg_2020_chrM.vcf.gz", "field_type_combos.vcf.gz",
           "CEUTrio.20.21.gatk3.4.g.vcf.bgz")  # real files read in the compact form too


def golden_files() -> dict[str, tuple[Path, str, bool, MessageOptions]]:
    """Label -> (file, assembly, whether a header error rejects it as in ingest, message options), for every file
    covered: the shared real files and conformance suite (labelled by their path under those
    folders), and the crafted files of ``tests/vcf/golden/crafted`` (values that need escaping in
    JSON, symbolic ALTs, repeated sample names: the reader's rarer cases), read past their header
    errors, and once more with an assembly name that needs escaping."""
    auto, compact = MessageOptions(), MessageOptions(form="compact")
    files = {f"real/{p.name}": (p, ASSEMBLY, True, auto)
             for p in sorted(REAL.iterdir()) if p.name.endswith((".vcf.gz", ".bcf", ".bgz"))}
    for version in ("4.1", "4.2"):
        for kind in ("passed", "failed"):
            files.update({f"{version}/{kind}/{p.name}": (p, ASSEMBLY, True, auto)
                          for p in sorted((SUITE / version / kind).glob("*.vcf"))})
    for p in sorted(CRAFTED.glob("*.vcf")):
        files[f"crafted/{p.name}"] = (p, ASSEMBLY, False, auto)
        files[f"crafted/{p.name} (assembly {ODD_ASSEMBLY})"] = (p, ODD_ASSEMBLY, False, auto)
        files[f"compact/crafted/{p.name}"] = (p, ASSEMBLY, False, compact)
    for name in COMPACT:
        files[f"compact/real/{name}"] = (REAL / name, ASSEMBLY, True, compact)
    files["compact-calls/real/chr22.vcf.gz"] = (REAL / "chr22.vcf.gz", ASSEMBLY, True,
                                                MessageOptions(form="compact", format_values=False))
    return files


def _canonical(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value))


def digest_file(path: Path, label: str, assembly: str = ASSEMBLY, check: bool = True,
                options: MessageOptions = DEFAULT_OPTIONS) -> dict[str, Any]:
    """What the golden file holds for one input file."""
    try:
        source = open_source(str(path))
    except (VcfFormatError, InputError) as exc:
        return {"error": getattr(exc, "rule", type(exc).__name__)}
    header = check_header(source.path, source.header_lines)
    if header.errors and check:
        return {"error": header.errors[0].rule}
    ctx = ReadContext.open(DATASET, assembly, source, options=options)
    hashes = {part: hashlib.sha256() for part in PARTS}
    path_json, label_json = orjson.dumps(source.path), orjson.dumps(label)
    records = alleles = quarantined = 0
    for chunk in plan_chunks(source, CHUNK_SIZE):
        read = read_chunk(ctx, chunk)
        batch, table = read.batch, read.batch.table
        records, alleles, quarantined = records + read.records, alleles + len(batch), quarantined + len(read.quarantined)
        for value in table.column("value").to_pylist():
            hashes["messages"].update(value.replace(b'"path":' + path_json, b'"path":' + label_json) + b"\n")
        for name in table.column_names:
            if name != "value":
                hashes["table"].update(orjson.dumps([name, str(table.schema.field(name).type),
                                                     table.column(name).to_pylist()], default=_canonical))
        for matrix in ("gt", "phased", "dp", "gq"):
            array = np.ascontiguousarray(getattr(batch, matrix))
            hashes["matrices"].update(orjson.dumps([matrix, array.dtype.str, list(array.shape)]) + array.tobytes())
        hashes["keys"].update(orjson.dumps([table.column("variant_key").to_pylist(),
                                            [m.hex() for m in table.column("message_id").to_pylist()]]))
        hashes["quarantine"].update(orjson.dumps([[q.line, q.rule] for q in read.quarantined]))
        hashes["quarantine"].update(orjson.dumps([read.records, read.reference_blocks]))
    return {"records": records, "alleles": alleles, "quarantined": quarantined,
            **{part: h.hexdigest() for part, h in hashes.items()}}


def compute() -> dict[str, dict[str, Any]]:
    return {label: digest_file(path, label, assembly, check, options)
            for label, (path, assembly, check, options) in golden_files().items()}


def test_the_reader_output_matches_the_golden_digests() -> None:
    expected = json.loads(DIGESTS.read_text())
    actual = compute()
    assert len(actual) > 400, f"expected the real files and the conformance suite under {SHARED}"
    problems = []
    for label in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(label), actual.get(label)
        if want is None or got is None:
            problems.append(f"{label}: {'new file, not in' if want is None else 'missing, but in'} {DIGESTS.name}")
            continue
        changed = [key for key in sorted(want.keys() | got.keys()) if want.get(key) != got.get(key)]
        if changed:
            problems.append(f"{label}: {', '.join(f'{k} ({want.get(k)!r:.20} -> {got.get(k)!r:.20})' for k in changed)}")
    assert not problems, (
        f"the reader's output changed for {len(problems)} file(s):\n  " + "\n  ".join(problems[:40])
        + "\nAn unintended change is a bug. An intended change of the message format or table must "
        "regenerate the digests in the same commit (.venv/bin/python tests/vcf/test_golden.py --update) "
        "and bump the message schema version (MESSAGE_SCHEMA, vcfstream/vcf/schemas/variant-message.v*.json).")


def update() -> None:
    DIGESTS.parent.mkdir(exist_ok=True)
    DIGESTS.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {DIGESTS}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/vcf/test_golden.py --update   (regenerates tests/vcf/golden/digests.json)")
    update()

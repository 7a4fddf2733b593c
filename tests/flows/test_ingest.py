"""The walking skeleton, end to end on real PostgreSQL, Kafka and the Prefect server."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pyarrow as pa
import pysam
import pytest
from paths import REAL, REPO

from vcfstream.ledger import db
from vcfstream.publish.kafka import KafkaPublisher
from vcfstream.settings import Settings
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.source import iter_chunk_lines, open_source
from vcfstream.verify import verify_dataset

REAL_FILES = sorted(p for p in REAL.iterdir() if p.name.endswith((".vcf.gz", ".bcf", ".bgz")))
PLACEHOLDERS = {"<NON_REF>", "<*>"}
SCHEMA = json.loads((REPO / "vcfstream" / "vcf" / "schemas" / "variant-message.v1.json").read_text())


def _repeats_an_allele(rec: pysam.VariantRecord) -> bool:
    """ALT listed twice, or equal to REF: the spec forbids it (rule alt.duplicate)."""
    alts = rec.alts or ()
    return len(set(alts)) != len(alts) or rec.ref in alts


def expected_alleles(path: Path) -> int:
    """Independent count with pysam: ALT alleles that are not gVCF placeholders, of valid records."""
    with pysam.VariantFile(str(path)) as vf:
        return sum(sum(1 for alt in (rec.alts or ()) if alt not in PLACEHOLDERS)
                   for rec in vf if not _repeats_an_allele(rec))


def expected_quarantined(path: Path) -> int:
    with pysam.VariantFile(str(path)) as vf:
        return sum(1 for rec in vf if _repeats_an_allele(rec))


def expected_records(path: Path) -> int:
    with pysam.VariantFile(str(path)) as vf:
        return sum(1 for _ in vf)


@pytest.fixture(scope="module")
def prefect_server(services: Settings) -> Iterator[Settings]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}):
        yield services


def ingest(settings: Settings, paths: list[str], dataset: str, **kwargs: object) -> dict:
    from vcfstream.cli.run import run_ingest

    return run_ingest(paths, settings=settings, dataset=dataset, stores=kwargs.pop("stores", []), **kwargs).to_json()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vcfstream.cli.main", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=600)


def test_every_real_file_publishes_exactly_its_alleles(prefect_server: Settings, dataset: str) -> None:
    summary = ingest(prefect_server, [str(p) for p in REAL_FILES], dataset)

    assert summary["state"] == "Completed", summary["errors"]
    assert summary["records"] == sum(expected_records(p) for p in REAL_FILES)
    alleles = sum(expected_alleles(p) for p in REAL_FILES)
    assert summary["alleles"] == alleles
    assert summary["published"] == {"kafka": alleles}
    # field_type_combos.vcf.gz repeats ALTs (A -> T,T) in 168 records: quarantined, not published
    assert summary["quarantined"] == sum(expected_quarantined(p) for p in REAL_FILES) == 168
    assert summary["rules"] == {"alt.duplicate": 168}
    report = verify_dataset(prefect_server, dataset)
    assert report["ledger_published"] == alleles
    assert (report["duplicates"], report["missing"], report["unknown"]) == (0, 0, 0)


def test_rerunning_a_file_publishes_nothing_new(prefect_server: Settings, dataset: str) -> None:
    path = str(REAL / "chr22.vcf.gz")
    first = ingest(prefect_server, [path], dataset)
    second = ingest(prefect_server, [path], dataset)

    assert first["new"] == first["alleles"] == expected_alleles(REAL / "chr22.vcf.gz")
    assert second["new"] == 0
    assert second["published"] == {}
    assert second["duplicates"] == first["alleles"]
    assert verify_dataset(prefect_server, dataset)["duplicates"] == 0


def read_topic(settings: Settings, dataset: str, count: int) -> list[Any]:
    """The first ``count`` Kafka messages of the dataset's topic."""
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.kafka.topic(dataset)
    consumer = Consumer({**settings.kafka.client_config(), "group.id": dataset, "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        messages: list[Any] = []
        while len(messages) < count:
            batch = consumer.consume(100, timeout=5)
            assert batch, "timed out reading the topic back"
            messages += [m for m in batch if not m.error()]
    finally:
        consumer.close()
    return messages


def test_messages_follow_the_documented_schema(prefect_server: Settings, dataset: str) -> None:
    path = REAL / "sample.vcf.gz"
    ingest(prefect_server, [str(path)], dataset)
    messages = read_topic(prefect_server, dataset, expected_alleles(path))
    for message in messages:
        doc = orjson.loads(message.value())
        jsonschema.validate(doc, SCHEMA)
        assert message.key().decode() == doc["variant"]["key"]
        headers = dict(message.headers())
        assert headers["message_id"].hex() == doc["message_id"]
        assert headers["dataset"].decode() == dataset
    multi = [orjson.loads(m.value()) for m in messages
             if orjson.loads(m.value())["record"]["pos"] == 1110696]  # A -> G,T with 1|2 calls
    assert sorted(d["allele_index"] for d in multi) == [1, 2]
    by_alt = {d["variant"]["alt"]: d for d in multi}
    assert by_alt["G"]["samples"]["NA00001"]["GT"] == "1|0"  # 1|2 re-coded for G
    assert by_alt["T"]["samples"]["NA00001"]["GT"] == "0|1"  # 1|2 re-coded for T
    assert by_alt["G"]["info"]["AF"] == [0.333, 0.667]  # declared Number=. here: kept whole


def test_number_a_and_r_values_are_cut_to_the_allele(tmp_path: Path) -> None:
    from vcfstream.vcf.reader import ReadContext, read_chunk

    text = "\n".join([
        "##fileformat=VCFv4.2", "##contig=<ID=chr1,length=1000>",
        '##INFO=<ID=AF,Number=A,Type=Float,Description="f">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="g">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="d">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1",
        "chr1\t10\t.\tA\tG,T\t50\tPASS\tAF=0.25,0.5\tGT:AD\t1/2:3,4,5", ""])
    path = tmp_path / "multi.vcf"
    path.write_text(text)
    source = open_source(str(path))
    batch = read_chunk(ReadContext.open("d", "GRCh38", source), plan_chunks(source, 10)[0]).batch
    docs = {d["variant"]["alt"]: d for d in (orjson.loads(v) for v in batch.table.column("value").to_pylist())}
    assert docs["G"]["info"]["AF"] == [0.25] and docs["T"]["info"]["AF"] == [0.5]
    assert docs["G"]["samples"]["S1"] == {"GT": "1/0", "AD": [3, 4]}
    assert docs["T"]["samples"]["S1"] == {"GT": "0/1", "AD": [3, 5]}
    assert batch.gt[:, 0, :].tolist() == [[1, 2], [2, 1]]


_MIXED_WAYS = [
    "##fileformat=VCFv4.2", "##contig=<ID=chr1,length=100000>",
    '##INFO=<ID=END,Number=1,Type=Integer,Description="e">',
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="g">',
    '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="d">',
    '##ALT=<ID=DEL,Description="deletion">',
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1",
    "chr1\t10\trs1\tA\tG\t50\tPASS\t.\tGT:DP\t0/1:7",
    "chr1\t20\t.\tAC\t<DEL>,A\t.\t.\tEND=30\tGT:DP\t1/2:8",  # symbolic: keyed one by one
    "chr1\t30\t.\tC\tT,G\t9\tPASS\t.\tGT:DP\t2/1:9",  # two alleles
    'chr1\t40\tid\"q\tG\tA\t9\tPASS\t.\tGT:DP\t1/1:10',  # ID needs JSON escaping
    "chr1\t50\t.\tTTG\tT\t9\tPASS\t.\tGT:DP\t0/1:11", ""]


def _read_mixed(tmp_path: Path):
    from vcfstream.vcf.reader import ReadContext, read_chunk

    path = tmp_path / "mixed.vcf"
    path.write_text("\n".join(_MIXED_WAYS))
    source = open_source(str(path))
    return read_chunk(ReadContext.open("d", "GRCh38", source), plan_chunks(source, 100)[0])


def test_a_chunk_partly_published_before_publishes_the_rest_each_with_its_own_body(
        prefect_server: Settings, dataset: str) -> None:
    """An earlier attempt published every third allele: the run publishes the others, and each
    message still carries its own body (the values are picked by what the claim left)."""
    from vcfstream.ledger.claims import LedgerSession
    from vcfstream.publish.base import Acks
    from vcfstream.vcf.reader import ReadContext, read_chunk

    path = REAL / "sample.vcf.gz"
    source = open_source(str(path))
    ctx = ReadContext.open(dataset, prefect_server.ingest.assembly, source)
    table = pa.concat_tables([read_chunk(ctx, chunk).batch.table for chunk in plan_chunks(source, 10_000)])
    ids, keys = table.column("message_id").to_pylist(), table.column("variant_key").to_pylist()
    with LedgerSession(prefect_server, dataset=dataset, source_digest=source.digest, source_path=source.path,
                       chunk_id="earlier", run_id="earlier") as earlier:
        assert len(earlier.claim(ids[::3], keys[::3]).to_publish) == len(ids[::3])
        earlier.mark_published(Acks("kafka", ids[::3], [0] * len(ids[::3]), list(range(len(ids[::3])))))
    summary = ingest(prefect_server, [str(path)], dataset)
    rest = len(ids) - len(ids[::3])
    assert (summary["new"], summary["duplicates"]) == (rest, len(ids[::3]))
    messages = read_topic(prefect_server, dataset, rest)
    assert sorted(dict(m.headers())["message_id"] for m in messages) == sorted(set(ids) - set(ids[::3]))
    for message in messages:
        doc = orjson.loads(message.value())
        assert dict(message.headers())["message_id"].hex() == doc["message_id"]
        assert message.key().decode() == doc["variant"]["key"]


def test_symbolic_escaped_and_plain_alleles_keep_file_order(tmp_path: Path) -> None:
    read = _read_mixed(tmp_path)
    table = read.batch.table
    assert table.column("variant_key").to_pylist() == [
        "GRCh38:chr1:10:A:G", "GRCh38:chr1:20:AC:<DEL>:END=30", "GRCh38:chr1:20:AC:A", "GRCh38:chr1:30:C:T",
        "GRCh38:chr1:30:C:G", "GRCh38:chr1:40:G:A", "GRCh38:chr1:50:TTG:T"]
    assert table.column("variant_type").to_pylist() == [
        "SNV", "symbolic", "deletion", "SNV", "SNV", "SNV", "deletion"]
    assert read.batch.dp[:, 0].tolist() == [7, 8, 8, 9, 9, 10, 11]
    docs = [orjson.loads(v) for v in table.column("value").to_pylist()]
    assert [d["source"]["line"] for d in docs] == [8, 9, 9, 10, 10, 11, 12]
    assert docs[5]["record"]["id"] == 'id"q' and docs[0]["record"]["id"] == "rs1"
    assert [d["variant"]["end"] for d in docs] == [10, 30, 21, 30, 30, 40, 52]
    assert table.column("n_alts").to_pylist() == [1, 2, 2, 2, 2, 1, 1]


@pytest.mark.parametrize("fail_pos", [20, 30])  # a record with a symbolic ALT, one without
def test_a_record_failing_on_its_second_allele_leaves_nothing_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_pos: int) -> None:
    from vcfstream.vcf import reader

    whole = _read_mixed(tmp_path)
    typed = reader.FormatPlan.sample_entries

    def failing(self, texts, n_alts, index):  # the second allele of one record cannot be typed
        if index == 2 and ("1/2:8" if fail_pos == 20 else "2/1:9") in texts:
            raise ValueError("bad value")
        return typed(self, texts, n_alts, index)

    monkeypatch.setattr(reader.FormatPlan, "sample_entries", failing)
    read = _read_mixed(tmp_path)
    assert [(q.line, q.rule) for q in read.quarantined] == [(9 if fail_pos == 20 else 10, "record.parse")]
    kept = [i for i, p in enumerate(whole.batch.table.column("pos").to_pylist())
            if whole.batch.table.column("line")[i].as_py() != (9 if fail_pos == 20 else 10)]
    assert read.batch.table.equals(whole.batch.table.take(kept))
    assert read.batch.gt.tolist() == whole.batch.gt[kept].tolist()
    assert read.batch.dp.tolist() == whole.batch.dp[kept].tolist()


def test_index_regions_split_a_contig_without_boundary_duplicates() -> None:
    source = open_source(str(REAL / "NA12878.prod.chr20snippet.g.vcf.gz"))
    chunks = plan_chunks(source, 10_000)
    assert len(chunks) > 5 and all(len(c.regions) == 1 for c in chunks)
    seen: list[bytes] = [line for chunk in chunks for _, line in iter_chunk_lines(source, chunk)]
    # Reference blocks span region boundaries: fetch returns them in both regions.
    assert len(seen) == expected_records(REAL / "NA12878.prod.chr20snippet.g.vcf.gz")
    assert len(set(seen)) == len(seen)


def _vcf_with_index(folder: Path, records: dict[str, int], *, csi: bool = False, name: str = "x.vcf") -> Path:
    """A bgzipped VCF with ``records[contig]`` SNVs per contig (1 kb apart) and its index."""
    lines = ["##fileformat=VCFv4.2", *(f"##contig=<ID={c},length=100000000>" for c in records),
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1"]
    lines += [f"{c}\t{1000 * (i + 1)}\t.\tA\tG\t.\tPASS\t.\tGT\t0/1" for c, n in records.items() for i in range(n)]
    (folder / name).write_text("\n".join(lines) + "\n")
    return Path(pysam.tabix_index(str(folder / name), preset="vcf", csi=csi, force=True))


def _strip_pseudo_bins(index: Path) -> None:
    """Rewrite a TBI/CSI index without its metadata pseudo-bin (as older htslib and some other
    writers leave it): per reference, n_bin and the bins, the pseudo-bin left out; the rest as it was."""
    import gzip
    import struct

    data = gzip.decompress(index.read_bytes())
    tbi = data[:4] == b"TBI\x01"
    if tbi:
        (n_ref,) = struct.unpack_from("<i", data, 4)
        pos, depth = 36 + struct.unpack_from("<i", data, 32)[0], 5
    else:
        (depth,) = struct.unpack_from("<i", data, 8)
        pos = 16 + struct.unpack_from("<i", data, 12)[0]
        (n_ref,) = struct.unpack_from("<i", data, pos)
        pos += 4
    out, stripped = [data[:pos]], 0
    pseudo_bin = ((1 << (3 * (depth + 1))) - 1) // 7 + 1  # 37450 at TBI's depth 5
    for _ in range(n_ref):
        (n_bin,) = struct.unpack_from("<i", data, pos)
        pos += 4
        bins = []
        for _ in range(n_bin):
            start = pos
            (bin_id,) = struct.unpack_from("<I", data, pos)
            pos += 4 if tbi else 12
            (n_chunk,) = struct.unpack_from("<i", data, pos)
            pos += 4 + 16 * n_chunk
            if bin_id == pseudo_bin:
                stripped += 1
            else:
                bins.append(data[start:pos])
        out += [struct.pack("<i", len(bins)), *bins]
        if tbi:
            (n_intv,) = struct.unpack_from("<i", data, pos)
            out.append(data[pos:pos + 4 + 8 * n_intv])
            pos += 4 + 8 * n_intv
    out.append(data[pos:])  # n_no_coor
    assert stripped == n_ref
    with pysam.BGZFile(str(index), "wb") as fh:
        fh.write(b"".join(out))


RECORDS_BY_CONTIG = {"chr1": 130, "chr2": 30, "chr3": 5, "chrM": 1}


@pytest.mark.parametrize("csi", [False, True], ids=["tbi", "csi"])
def test_an_index_without_the_pseudo_bin_plans_every_record_by_region_queries(tmp_path: Path, csi: bool) -> None:
    from vcfstream.vcf.chunks import read_index_stats

    path = _vcf_with_index(tmp_path, RECORDS_BY_CONTIG, csi=csi)
    with_counts = plan_chunks(open_source(str(path)), 50)
    index = Path(f"{path}.{'csi' if csi else 'tbi'}")
    _strip_pseudo_bins(index)
    assert {s.counted for s in read_index_stats(str(index))} == {False}
    source = open_source(str(path))
    assert source.index == str(index)
    chunks = plan_chunks(source, 50)
    assert chunks == with_counts  # the same plan as from the counts
    lines = [line for chunk in chunks for _, line in iter_chunk_lines(source, chunk)]
    assert len(lines) == len(set(lines)) == sum(RECORDS_BY_CONTIG.values())


def test_an_index_that_lists_no_records_for_a_file_that_has_some_fails_the_plan(tmp_path: Path) -> None:
    from vcfstream.errors import VcfFormatError

    empty = _vcf_with_index(tmp_path, {"chr1": 0}, name="empty.vcf")
    path = _vcf_with_index(tmp_path, {"chr1": 3})
    Path(f"{path}.tbi").write_bytes(Path(f"{empty}.tbi").read_bytes())  # another file's index, newer than it
    with pytest.raises(VcfFormatError, match=r"\[index.no_records\] the index .*x.vcf.gz.tbi lists no records, "
                                             r"but the file has records"):
        plan_chunks(open_source(str(path)), 50)
    assert plan_chunks(open_source(str(empty)), 50) == []  # a file without records plans nothing, rightly


def test_a_file_whose_index_has_no_pseudo_bin_is_ingested_whole(prefect_server: Settings, dataset: str,
                                                                 tmp_path: Path) -> None:
    path = _vcf_with_index(tmp_path, RECORDS_BY_CONTIG)
    _strip_pseudo_bins(Path(f"{path}.tbi"))
    summary = ingest(prefect_server.with_groups(ingest={"chunk_size": 50}), [str(path)], dataset)
    assert summary["state"] == "Completed", summary
    assert (summary["records"], summary["new"]) == (sum(RECORDS_BY_CONTIG.values()),) * 2


def test_a_file_is_hashed_and_planned_once_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from vcfstream.vcf import chunks
    from vcfstream.vcf import source as vcfio

    calls = Counter[str]()

    def counting(name: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(vcfio.hashlib, "sha256", counting("hash", hashlib.sha256))
    monkeypatch.setattr(chunks, "_plan_by_scan", counting("scan", chunks._plan_by_scan))
    header = "##fileformat=VCFv4.2\n##contig=<ID=1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    path = tmp_path / "a.vcf"  # no index: planned by a scan of the whole file
    path.write_text(header + "".join(f"1\t{pos}\t.\tA\tG\t.\tPASS\t.\n" for pos in range(1, 11)))

    first = plan_chunks(open_source(str(path)), 4)
    first.clear()  # a caller's list is its own
    again = plan_chunks(open_source(str(path)), 4)
    assert (calls["hash"], calls["scan"], len(again)) == (1, 1, 3)

    path.write_text(header + "".join(f"1\t{pos}\t.\tA\tG\t.\tPASS\t.\n" for pos in range(1, 6)))
    changed = open_source(str(path))
    assert (calls["hash"], len(plan_chunks(changed, 4)), calls["scan"]) == (2, 2, 2)
    assert changed.digest != again[0].digest


def test_small_chunks_of_one_file_publish_each_allele_once(
        prefect_server: Settings, dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vcfstream.runtime.readpool import ReadPool

    ahead: list[tuple[int, int]] = []  # (read ahead, taken by a chunk task) per pool closed
    close = ReadPool.close
    monkeypatch.setattr(ReadPool, "close", lambda pool: (ahead.append((pool.ahead_sent, pool.ahead_taken)),
                                                         close(pool)))
    path = REAL / "NA12878.prod.chr20snippet.g.vcf.gz"
    summary = ingest(prefect_server.with_groups(ingest={"chunk_size": 20_000}), [str(path)], dataset)
    assert ahead == [(prefect_server.ingest.chunk_workers,) * 2]  # the CLI's read-ahead went to the flow's tasks

    assert summary["records"] == expected_records(path)
    assert summary["published"] == {"kafka": expected_alleles(path)}
    report = verify_dataset(prefect_server, dataset)
    assert (report["duplicates"], report["missing"]) == (0, 0)


def test_two_concurrent_ingests_of_one_file_publish_each_id_once(services: Settings, dataset: str) -> None:
    path = str(REAL / "CEUTrio.20.21.gatk3.4.g.vcf.bgz")
    args = [sys.executable, "-m", "vcfstream.cli.main", "ingest", path, "--dataset", dataset, "--chunk-size", "4000", "--json"]
    procs = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
    summaries = [json.loads(out) for out, _ in outputs]
    alleles = expected_alleles(Path(path))
    assert sum(s["published"].get("kafka", 0) for s in summaries) == alleles
    assert sum(s["new"] for s in summaries) == alleles
    report = verify_dataset(services, dataset)
    assert (report["messages"], report["duplicates"], report["missing"]) == (alleles, 0, 0)


def test_cli_ingest_json_has_the_contract_keys(services: Settings, dataset: str) -> None:
    result = cli("ingest", str(REAL / "mixed_ploidy.vcf.gz"), "--dataset", dataset, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    for key in ("records", "alleles", "reference_blocks", "new", "duplicates", "quarantined",
                "published", "seconds", "flow_run_id", "failovers", "in_doubt"):
        assert key in summary
    assert summary["published"] == {"kafka": expected_alleles(REAL / "mixed_ploidy.vcf.gz")}

    again = cli("ingest", str(REAL / "mixed_ploidy.vcf.gz"), "--dataset", dataset)
    assert again.returncode == 0, again.stderr[-2000:]
    alleles = summary["alleles"]
    assert again.stdout.startswith(f"{summary['records']:,} records, {alleles:,} alleles: 0 new, "
                                   f"{alleles:,} duplicates, 0 quarantined; published nothing new"), again.stdout

    verify = cli("verify", "--dataset", dataset, "--json")
    assert verify.returncode == 0, verify.stderr[-2000:]
    report = json.loads(verify.stdout)
    for key in ("ledger_published", "messages", "distinct_ids", "duplicates", "missing"):
        assert key in report
    assert report["missing"] == 0 and report["duplicates"] == 0


def test_trace_console_prints_the_runs_spans_on_stderr_and_stdout_stays_json(services: Settings, dataset: str) -> None:
    path = REAL / "sample.vcf.gz"
    result = cli("ingest", str(path), "--dataset", dataset, "--trace-console", "--json", env={"VCFSTREAM_STORES": "none"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["published"] == {"kafka": expected_alleles(path)}
    spans = set(re.findall(r'"name": "([^"]+)"', result.stderr))
    assert {"ingest_vcf", "chunk", "read", "validate", "claim", "publish"} <= spans, spans


def test_verify_fails_when_a_broker_holds_an_id_twice(services: Settings, dataset: str) -> None:
    from confluent_kafka import Producer

    path = REAL / "sample.vcf.gz"
    assert cli("ingest", str(path), "--dataset", dataset, env={"VCFSTREAM_STORES": "none"}).returncode == 0
    assert cli("verify", "--dataset", dataset).returncode == 0
    publisher = KafkaPublisher(services)
    try:
        first = next(iter(publisher.read_back(dataset)))
    finally:
        publisher.close()
    producer = Producer(services.kafka.client_config())  # a second copy, as a buggy producer would send it
    producer.produce(services.kafka.topic(dataset), value=b"{}", headers=list(first.headers.items()))
    assert producer.flush(30) == 0
    result = cli("verify", "--dataset", dataset, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["duplicates"] == 1


def test_cli_ledger_drop_counts_then_drops_and_a_later_ingest_publishes_again(services: Settings,
                                                                              dataset: str) -> None:
    path = REAL / "mixed_ploidy.vcf.gz"
    first = cli("ingest", str(path), "--dataset", dataset, "--json", env={"VCFSTREAM_STORES": "none"})
    assert first.returncode == 0, first.stderr[-2000:]
    alleles = json.loads(first.stdout)["alleles"]

    counted = cli("ledger", "drop", "--dataset", dataset)
    assert counted.returncode == 0, counted.stderr[-2000:]
    assert f"ledger rows: {alleles:,} published; chunk records: 1; dead letters: 0" in counted.stdout
    assert "nothing dropped: add --yes" in counted.stdout
    dropped = cli("ledger", "drop", "--dataset", dataset, "--yes", "--json")
    assert dropped.returncode == 0, dropped.stderr[-2000:]
    report = json.loads(dropped.stdout)
    assert report["ledger_rows"] == {"published": alleles} and report["dropped"] is True
    assert json.loads(cli("ledger", "drop", "--dataset", dataset, "--json").stdout)["ledger_rows"] == {}

    again = cli("ingest", str(path), "--dataset", dataset, "--json", env={"VCFSTREAM_STORES": "none"})
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["new"] == alleles  # the ledger no longer knew them
    assert json.loads(cli("verify", "--dataset", dataset, "--json").stdout)["duplicates"] == alleles  # copies from before


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    real = (REAL / "sample.vcf.gz").read_bytes()
    (tmp / "empty.vcf").write_bytes(b"")
    (tmp / "notvcf.txt").write_text("hello, this is not a VCF\n")
    (tmp / "garbage.vcf.gz").write_bytes(bytes(random.Random(7).randrange(256) for _ in range(4096)))
    (tmp / "badgzip.vcf.gz").write_bytes(b"\x1f\x8b" + bytes(range(256)) * 16)  # gzip magic, then junk
    (tmp / "truncated.vcf.gz").write_bytes(real[: len(real) // 2])
    (tmp / "adir").mkdir()
    return {
        "missing": (tmp / "missing.vcf.gz", "no such file"),
        "directory": (tmp / "adir", "is a directory"),
        "empty": (tmp / "empty.vcf", "file.empty"),
        "not a VCF": (tmp / "notvcf.txt", "not a VCF"),
        "binary garbage": (tmp / "garbage.vcf.gz", "not a VCF or BCF file"),
        "corrupt gzip": (tmp / "badgzip.vcf.gz", "file.compression"),
        "truncated bgzip": (tmp / "truncated.vcf.gz", "file.truncated"),
    }


def test_bad_input_fails_clearly_and_claims_nothing(services: Settings, dataset: str, tmp_path: Path) -> None:
    for label, (path, expected) in _bad_inputs(tmp_path).items():
        result = cli("ingest", str(path), "--dataset", dataset)
        assert result.returncode != 0, label
        last = result.stderr.strip().splitlines()[-1]
        assert str(path.name) in last and expected in last, (label, last)
    with db.connect(services) as conn:
        (claimed,) = conn.execute("SELECT count(*) FROM ledger WHERE dataset = %s", (dataset,)).fetchone()
    assert claimed == 0


def test_a_dataset_name_a_platform_refuses_fails_the_flow_at_once_naming_the_rule(prefect_server: Settings) -> None:
    from flows.ingest import ingest_vcf
    from vcfstream.names import DATASET_RULE

    started = time.monotonic()
    state = ingest_vcf(paths=[str(REAL / "sample.vcf.gz")], dataset="Müller cohort/2", stores=[],
                       return_state=True)
    assert time.monotonic() - started < 60  # was 13 minutes of retrying a topic Kafka refuses
    assert state.is_failed()
    assert "dataset name 'Müller cohort/2' contains ' ', '/', 'ü'" in (state.message or "")
    assert DATASET_RULE in (state.message or "")
    with db.connect(prefect_server) as conn:
        (claimed,) = conn.execute("SELECT count(*) FROM ledger WHERE dataset = %s", ("Müller cohort/2",)).fetchone()
    assert claimed == 0


def test_an_unknown_store_fails_the_run_before_a_record_is_claimed(services: Settings, dataset: str) -> None:
    result = cli("ingest", str(REAL / "sample.vcf.gz"), "--dataset", dataset,
                 env={"VCFSTREAM_STORES": "catalog,lancdb"})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "'lancdb': no such store; expected one of catalog, lancedb, kuzu" in last, last
    with db.connect(services) as conn:
        (claimed,) = conn.execute("SELECT count(*) FROM ledger WHERE dataset = %s", (dataset,)).fetchone()
    assert claimed == 0


def test_the_graph_store_reads_vep_csq_in_the_order_the_file_header_declares(
        prefect_server: Settings, dataset: str, tmp_path: Path) -> None:
    """Store tasks get a staged chunk, not the header: the CSQ field order travels with it."""
    from vcfstream.stores.graph import variant_genes

    pos = 10_000_000 + int(dataset[-6:], 16) % 1_000_000  # a site no other test writes
    gene = f"ENSG{dataset[-8:]}"
    path = tmp_path / "csq.vcf"
    path.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=248956422>\n"
        '##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. '
        'Format: Allele|Gene|SYMBOL|IMPACT|Consequence">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        f"chr1\t{pos}\t.\tA\tG\t50\tPASS\tCSQ=G|{gene}|MYGENE|HIGH|stop_gained\n"
    )
    summary = ingest(prefect_server, [str(path)], dataset, stores=["kuzu"])
    assert summary["state"] == "Completed" and summary["stored"] == {"kuzu": 1}, summary
    assert variant_genes(prefect_server, f"GRCh38:chr1:{pos}:A:G") == [
        {"gene_id": gene, "gene_name": "MYGENE", "consequence": "stop_gained", "impact": "HIGH"}]


def test_every_message_is_canonical_json(tmp_path: Path) -> None:
    """The reader writes messages from text pieces (``vcfstream.vcf.encode``), escaping what
    needs it; each must be the bytes orjson gives for the same document."""
    from vcfstream.vcf.reader import ReadContext, read_chunk

    crafted = tmp_path / "escapes.vcf"
    crafted.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=248956422>\n"
        '##INFO=<ID=NOTE,Number=1,Type=String,Description="free text">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        'chr1\t100\trs"q\\uote\tA\tG\t50\tPASS\tNOTE=caf\u00e9\n'
        "chr1\t200\trs2\tC\tT\t.\t.\tNOTE=tab%09free\n"
    )
    paths = [*REAL_FILES, crafted]
    checked = 0
    for path in paths:
        source = open_source(str(path), None)
        ctx = ReadContext.open("canonical", "GRCh38", source, None)
        for chunk in plan_chunks(source, 50_000):
            for value in read_chunk(ctx, chunk).batch.table.column("value").to_pylist():
                assert orjson.dumps(orjson.loads(value)) == value, value[:300]
                checked += 1
    assert checked > 4000


@pytest.mark.parametrize("name", ["sample.vcf.gz", "field_type_combos.vcf.gz", "1kg_2020_chrM.vcf.gz",
                                  "NA12878.prod.chr20snippet.g.vcf.gz", "mixed_ploidy.vcf.gz", "chr_m_indels.vcf.gz",
                                  "1kg_2020_chr20_annotations.bcf"])
def test_each_message_is_what_orjson_writes_for_its_table_row_and_record(name: str) -> None:
    # Messages are written by Arrow kernels from text pieces (vcfstream.vcf.encode). Each must be
    # the bytes orjson writes for the message as a dict, built here from the allele's table row
    # and its VCF line (only the typed sample values are taken from the message itself).
    from vcfstream.vcf.encode import MESSAGE_SCHEMA
    from vcfstream.vcf.reader import ReadContext, read_chunk

    source = open_source(str(REAL / name))
    ctx = ReadContext.open("d", "GRCh38", source)
    checked = 0
    for chunk in plan_chunks(source, 1000)[:3]:
        sites = {}  # (CHROM, POS, REF, ALT) -> the VCF line's columns (a chunk holds each site once here)
        for _, raw in iter_chunk_lines(source, chunk):
            fields = raw.decode().rstrip("\n").split("\t")
            sites[fields[0], int(fields[1]), fields[3], fields[4]] = fields
        for row in read_chunk(ctx, chunk).batch.table.to_pylist():
            doc = orjson.loads(row["value"])
            fields = sites[doc["record"]["chrom"], doc["record"]["pos"], doc["record"]["ref"],
                           ",".join(doc["record"]["alts"])]
            record = {"chrom": fields[0], "pos": int(fields[1]), "id": None if fields[2] == "." else fields[2],
                      "ref": fields[3], "alts": fields[4].split(","), "qual": row["qual"],
                      "filters": [] if fields[6] == "." else fields[6].split(";")}
            expected = {
                "schema": MESSAGE_SCHEMA, "message_id": row["message_id"].hex(), "dataset": "d",
                "source": {"path": source.path, "sha256": source.digest, "line": row["line"]},
                "variant": {"key": row["variant_key"], "assembly": "GRCh38", "contig": row["contig"],
                            "pos": row["pos"], "ref": row["ref"], "alt": row["alt"], "end": row["end"],
                            "type": row["variant_type"]},
                "record": record, "allele_index": row["allele_index"], "info": orjson.Fragment(row["info"]),
                "samples": doc["samples"]}
            assert orjson.dumps(expected) == row["value"], row["value"][:300]
            checked += 1
    assert checked > 0


def test_a_value_that_cannot_be_typed_quarantines_its_record_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each distinct INFO entry is typed once for the chunk; a record holding one that fails is
    quarantined with the error; the rest is kept."""
    from vcfstream.vcf import reader

    lines = list(_MIXED_WAYS)
    lines.insert(3, '##INFO=<ID=DP,Number=1,Type=Integer,Description="d">')
    lines[-4] = lines[-4].replace("\t.\tGT:DP\t2/1:9", "\tDP=9\tGT:DP\t2/1:9")  # line 11
    lines[-3] = lines[-3].replace("\t.\tGT:DP\t1/1:10", "\tDP=9\tGT:DP\t1/1:10")  # line 12, ID needs escaping
    path = tmp_path / "typed.vcf"
    path.write_text("\n".join(lines))
    source = open_source(str(path))

    def read() -> Any:
        return reader.read_chunk(reader.ReadContext.open("d", "GRCh38", source), plan_chunks(source, 100)[0])

    whole = read()
    typed = reader._type_entry

    def failing(entry: str, converters: Any) -> Any:
        if entry == "DP=9":
            raise ValueError("DP=9 cannot be typed")
        return typed(entry, converters)

    monkeypatch.setattr(reader, "_type_entry", failing)
    part = read()
    assert whole.quarantined == [] and len(whole.batch) == 7
    assert [(q.line, q.rule) for q in part.quarantined] == [(11, "record.parse"), (12, "record.parse")]
    assert all("DP=9 cannot be typed" in q.message for q in part.quarantined)
    kept = [i for i, line in enumerate(whole.batch.table.column("line").to_pylist()) if line not in (11, 12)]
    assert part.batch.table.equals(whole.batch.table.take(kept))
    for matrix in ("gt", "phased", "dp", "gq"):
        assert getattr(part.batch, matrix).tolist() == getattr(whole.batch, matrix)[kept].tolist(), matrix


def test_every_file_of_a_run_that_a_failed_store_did_not_write_fails_and_says_so(
    prefect_server: Settings, dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_name: Any,
) -> None:
    """Kuzu stays locked through the run: the first group's write fails (a group per chunk here;
    by default both small files would share one), the store gets no further writes, and the
    other file, published but never written to Kuzu, fails too (a cohort runs many small files
    in one run and reads each file's outcome)."""
    from flows import ingest as flow_module
    from vcfstream.stores.base import file_lock

    kuzu = tmp_path / "graph.kuzu"
    monkeypatch.setenv("VCFSTREAM_KUZU_PATH", str(kuzu))
    monkeypatch.setenv("VCFSTREAM_STORE_LOCK_TIMEOUT_S", "0.5")
    monkeypatch.setenv("VCFSTREAM_STORE_BATCH_ALLELES", "1")
    monkeypatch.setenv("VCFSTREAM_ASSEMBLY", make_name("asm"))
    monkeypatch.setattr(flow_module, "store_chunks", flow_module.store_chunks.with_options(retries=0))
    paths = [str(REAL / "sample.vcf.gz"), str(REAL / "chr22.vcf.gz")]

    with file_lock(kuzu.with_name("graph.kuzu.lock"), store="test"):
        state = flow_module.ingest_vcf(paths, dataset=dataset, stores=["kuzu"], return_state=True)

    assert state.is_failed()
    files = {row["path"]: row for row in state.result(raise_on_failure=False).summary["files"]}
    assert [files[path]["status"] for path in paths] == ["failed", "failed"]
    # Whichever file's group Kuzu refused first fails with the store's error, the other with why it was not written.
    errors = sorted(files[path]["error"] for path in paths)
    assert errors[0].startswith("not written to kuzu: store kuzu: ") and errors[1].startswith("store kuzu: ")
    assert all("still locked" in error for error in errors)
    assert [files[path]["published"] for path in paths] == [{"kafka": expected_alleles(Path(path))} for path in paths]


def test_a_retried_flow_run_redoes_only_the_store_write_that_failed(
    prefect_server: Settings, dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_name: Any,
) -> None:
    """Kuzu stays locked through the first attempt, so its first store task fails, no other
    is started for it, and the flow run ends Failed naming it; retried as the UI's Retry does
    (same flow run, AwaitingRetry), the run reuses its chunk results (nothing read or published
    again) and writes Kuzu only: every chunk is a store group of its own here."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.flow_engine import run_flow
    from prefect.states import AwaitingRetry

    from flows import ingest as flow_module
    from vcfstream.stores.base import file_lock

    kuzu = tmp_path / "graph.kuzu"
    monkeypatch.setenv("VCFSTREAM_KUZU_PATH", str(kuzu))
    monkeypatch.setenv("VCFSTREAM_LANCEDB_URI", str(tmp_path / "lancedb"))
    monkeypatch.setenv("VCFSTREAM_STORE_LOCK_TIMEOUT_S", "0.5")
    monkeypatch.setenv("VCFSTREAM_STORE_BATCH_ALLELES", "1")  # a group per chunk
    monkeypatch.setenv("VCFSTREAM_ASSEMBLY", make_name("asm"))  # new keys for every store
    monkeypatch.setattr(flow_module, "store_chunks", flow_module.store_chunks.with_options(retries=0))
    path = REAL / "sample.vcf.gz"
    params = {"paths": [str(path)], "dataset": dataset, "chunk_size": 4, "stores": ["catalog", "lancedb", "kuzu"]}

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(flow_module.ingest_vcf, parameters=params)
        with file_lock(kuzu.with_name("graph.kuzu.lock"), store="test"):
            first = run_flow(flow_module.ingest_vcf, flow_run=run, parameters=params, return_type="state")
        assert first.is_failed()
        assert "store kuzu" in (first.message or "") and "still locked" in (first.message or "")
        assert "no further writes to it in this run" in (first.message or "")
        failed = first.result(raise_on_failure=False).summary
        alleles = expected_alleles(path)
        assert failed["published"] == {"kafka": alleles}
        assert failed["stored"] == {"catalog": alleles, "lancedb": alleles}

        client.set_flow_run_state(run.id, AwaitingRetry(), force=True)
        second = run_flow(flow_module.ingest_vcf, flow_run=client.read_flow_run(run.id), parameters=params,
                          return_type="state")
        assert second.is_completed(), second.message
        summary = second.result()
        chunks = len(plan_chunks(open_source(str(path)), 4))
        expected = {("ingest-chunk", "Completed"): chunks, ("ingest-chunk", "Cached"): chunks,
                    ("store-catalog", "Completed"): chunks, ("store-lancedb", "Completed"): chunks,
                    ("store-kuzu", "Failed"): 1, ("store-kuzu", "Completed"): chunks}
        # Task runs and their states reach the server as events, after the flow has returned:
        # read them until they match or a minute has passed.
        deadline = time.monotonic() + 60
        while True:
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            runs = Counter((t.name.rsplit("-", 1)[0] if t.name.startswith("ingest-chunk") else t.name, t.state_name)
                           for t in task_runs if t.name.startswith(("ingest-chunk", "store-")))
            if runs == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)

    assert summary["flow_run_id"] == str(run.id)
    assert summary["published"] == {"kafka": alleles}  # the first attempt's, reported again
    assert summary["stored"] == {"catalog": alleles, "lancedb": alleles, "kuzu": alleles}
    assert runs == expected
    report = verify_dataset(prefect_server, dataset)
    assert report["ledger_published"] == alleles
    assert (report["duplicates"], report["missing"], report["unknown"]) == (0, 0, 0)


def test_message_ids_leave_a_sliced_table_as_the_bytes_it_holds() -> None:
    from vcfstream.vcf.keys import message_id_bytes

    ids = [bytes([i]) * 16 for i in range(10)]
    column = pa.chunked_array([pa.array(ids[:4], pa.binary(16)), pa.array(ids[4:], pa.binary(16))])
    assert message_id_bytes(column) == ids
    assert message_id_bytes(pa.table({"m": column}).slice(3, 5).column("m")) == ids[3:8]  # across chunks
    assert message_id_bytes(column.slice(7)) == ids[7:]

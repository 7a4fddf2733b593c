"""The run record: every ingest_vcf run (and so every cohort file) writes its run, files and
chunks to the catalog schema, whichever stores it writes; a failure to write it warns and
never fails the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paths import REAL
from pydantic import SecretStr

from vcfstream.errors import StoreError
from vcfstream.ledger import db
from vcfstream.model import Chunk, ChunkSummary
from vcfstream.settings import Settings
from vcfstream.stores import catalog, runs
from vcfstream.stores.runs import RunRecord
from vcfstream.summary import FileOutcome, RunSummary
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.source import open_source

SAMPLE = REAL / "sample.vcf.gz"  # 11 alleles
MIXED = REAL / "mixed_ploidy.vcf.gz"  # 8 alleles
LAST_NIGHT = runs.__doc__.split("::", 1)[1].split(";", 1)[0] + ";"  # the query the module documents


@pytest.fixture
def prefect_server(services: Settings) -> Iterator[Settings]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}):
        yield services


def sql(settings: Settings, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with db.connect(settings) as conn:
        return conn.execute(query, params).fetchall()


def ingest(settings: Settings, paths: list[Path], dataset: str, **kwargs: Any) -> RunSummary:
    from vcfstream.cli.run import run_ingest

    settings = settings.with_groups(ingest={"chunk_size": kwargs.pop("chunk_size", 4)})
    return run_ingest([str(p) for p in paths], settings=settings, dataset=dataset, stores=kwargs.pop("stores", []),
                      **kwargs)


def test_a_run_without_the_catalog_store_records_its_run_file_and_chunks(prefect_server: Settings,
                                                                        dataset: str) -> None:
    summary = ingest(prefect_server, [SAMPLE], dataset)
    assert summary.state == "Completed", summary.errors
    source = open_source(str(SAMPLE))
    planned = plan_chunks(source, 4)

    (run,) = sql(prefect_server, "SELECT flow_run_id, state, ended_at >= started_at, parameters, summary, "
                 "parent_flow_run_id FROM catalog.ingestion_runs WHERE dataset = %s", dataset)
    assert run[:3] == (summary.flow_run_id, "Completed", True)
    assert run[3]["paths"] == [str(SAMPLE)] and run[3]["chunk_size"] == 4 and run[3]["stores"] == []
    assert run[4] == summary.to_json() and run[5] is None
    assert sql(prefect_server, "SELECT path, sha256, size_bytes, format, status FROM catalog.source_files "
               "WHERE dataset = %s", dataset) == [(source.path, source.digest, source.size, str(source.format),
                                                   "ingested")]
    assert sql(prefect_server, "SELECT path, status, chunks, failed_chunks, records, alleles, new, quarantined, "
               "published, error, finished_at IS NOT NULL FROM catalog.run_files WHERE flow_run_id = %s",
               summary.flow_run_id) == [(str(SAMPLE), "ingested", len(planned), 0, summary.counts.records, 11, 11, 0,
                                         {"kafka": 11}, None, True)]
    chunks = sql(prefect_server, "SELECT c.chunk_index, c.extent, c.records, c.alleles, c.new, c.published, "
                 "c.failovers, c.state, c.flow_run_id FROM catalog.chunks c JOIN catalog.source_files f "
                 "ON f.id = c.source_file_id WHERE f.dataset = %s ORDER BY c.chunk_index", dataset)
    assert [(c[0], c[1]) for c in chunks] == [(chunk.index, chunk.label) for chunk in planned]
    assert sum(c[3] for c in chunks) == sum(c[4] for c in chunks) == 11
    assert {(c[7], c[8]) for c in chunks} == {("Completed", summary.flow_run_id)}
    assert sum(c[5].get("kafka", 0) for c in chunks) == 11 and all(c[6] == 0 for c in chunks)


def test_a_file_that_cannot_be_read_is_recorded_failed_beside_the_one_ingested(prefect_server: Settings,
                                                                              dataset: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.vcf.gz"
    summary = ingest(prefect_server, [missing, SAMPLE], dataset)
    assert summary.state == "Failed"

    rows = sql(prefect_server, "SELECT f.path, f.status, f.source_file_id IS NULL, f.alleles, f.error, r.state "
               "FROM catalog.run_files f JOIN catalog.ingestion_runs r USING (flow_run_id) "
               "WHERE r.dataset = %s ORDER BY f.path", dataset)
    assert [row[:4] for row in sorted(rows, key=lambda r: r[0] != str(missing))] == [
        (str(missing), "failed", True, 0), (str(SAMPLE), "ingested", False, 11)]
    assert "no such file" in rows[[r[0] for r in rows].index(str(missing))][4]
    assert {row[5] for row in rows} == {"Failed"}


def test_last_nights_cohort_is_one_query(prefect_server: Settings, dataset: str, tmp_path: Path) -> None:
    from flows.cohort import ingest_cohort

    manifest = tmp_path / "cohort.txt"
    manifest.write_text(f"{SAMPLE}\n{MIXED}\n{tmp_path / 'missing.vcf.gz'}\n")
    state = ingest_cohort(manifest=str(manifest), dataset=dataset, stores=[], dispatch="subflow", return_state=True)
    assert state.is_failed()  # the missing file: the cohort names it; it never ran, so it has no row
    cohort_run = str(state.state_details.flow_run_id)

    rows = sql(prefect_server, LAST_NIGHT.replace("'cohort-2024'", "%s"), dataset)
    assert sorted((r[0], Path(r[1]).name, r[2], r[6]) for r in rows) == [  # two files ran at once
        (cohort_run, "mixed_ploidy.vcf.gz", "ingested", 8), (cohort_run, "sample.vcf.gz", "ingested", 11)]
    assert all(r[3] is not None and r[4] >= r[3] and r[-1] is None for r in rows)


def test_a_run_record_that_cannot_be_written_warns_and_the_run_completes(
        prefect_server: Settings, dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import ingest as flow_module

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise StoreError("catalog", "refused by the test")

    warnings: list[str] = []

    class Recording(RunRecord):
        def __init__(self, settings: Settings, flow_run_id: str, dataset: str, warn: Any) -> None:
            super().__init__(settings, flow_run_id, dataset, lambda text: (warnings.append(text), warn(text)))

    monkeypatch.setattr(catalog, "record_chunk", refuse)
    monkeypatch.setattr(flow_module, "RunRecord", Recording)

    summary = ingest(prefect_server, [SAMPLE], dataset)

    assert summary.state == "Completed" and summary.counts.new == 11, summary.errors
    assert len(warnings) == 1 and "refused by the test" in warnings[0], warnings
    # no chunk is recorded after the first refusal, but the file's outcome and the run's end are
    assert sql(prefect_server, "SELECT r.state, f.status, f.alleles FROM catalog.ingestion_runs r "
               "JOIN catalog.run_files f USING (flow_run_id) WHERE r.dataset = %s", dataset) == [
        ("Completed", "ingested", 11)]


def test_the_record_masks_secrets_and_stops_after_the_first_failure(services: Settings) -> None:
    secret = "s3cret-run-record"
    settings = services.with_groups(postgres={"dsn": SecretStr(f"postgresql://vcf:{secret}@127.0.0.1:9/none")},
                                    kafka={"sasl_password": SecretStr("kafka-" + secret)})
    warnings: list[str] = []
    record = RunRecord(settings, "run-x", "ds", warnings.append)

    assert record.scrub({"error": [f"kafka-{secret} at postgresql://u:pw@h/db password=pw2"]}) == {
        "error": ["*** at postgresql://u:***@h/db password=***"]}
    record.start({"paths": ["a.vcf"]})
    record.file(FileOutcome.at("a.vcf", "failed", error=f"kafka-{secret}"))
    record.chunk(Chunk("a.vcf", 0, "ab" * 32), ChunkSummary(), "Failed", "boom")
    record.finish(RunSummary.failed("boom"))

    assert len(warnings) == 1 and "starting the run failed" in warnings[0] and secret not in warnings[0]


def test_a_chunk_that_fails_is_recorded_with_its_error_and_no_secret(prefect_server: Settings, dataset: str) -> None:
    import socket
    import uuid

    from blocks import BlockNames, KafkaConnection, RoutingPolicy
    from flows.ingest import ingest_vcf

    secret, tag = "s3cret-" + uuid.uuid4().hex, uuid.uuid4().hex[:8]
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    KafkaConnection(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_PLAINTEXT",
                    sasl_mechanism="PLAIN", sasl_username="u", sasl_password=secret).save(f"kafka-{tag}")
    RoutingPolicy(strategy="fallback_only", breaker_storage="memory", breaker_fail_max=1000).save(f"routing-{tag}")

    state = ingest_vcf([str(SAMPLE)], dataset=dataset, stores=[], return_state=True,
                       blocks=BlockNames(kafka=f"kafka-{tag}", routing=f"routing-{tag}"))

    assert state.is_failed()
    run_id = str(state.state_details.flow_run_id)
    (run,) = sql(prefect_server, "SELECT state, parameters->'blocks'->>'kafka', summary::text, "
                 "(SELECT row_to_json(f)::text FROM catalog.run_files f WHERE f.flow_run_id = r.flow_run_id), "
                 "(SELECT string_agg(c.state || ': ' || c.message, '; ') FROM catalog.chunks c "
                 "WHERE c.flow_run_id = r.flow_run_id) FROM catalog.ingestion_runs r WHERE flow_run_id = %s", run_id)
    assert run[:2] == ("Failed", f"kafka-{tag}")
    assert '"status":"failed"' in run[3] and f"127.0.0.1:{port} unreachable" in run[3]
    assert run[4].startswith("Failed: ") and f"127.0.0.1:{port} unreachable" in run[4]
    assert not [text for text in run if secret in str(text)]

"""The repair_dataset flow (flows/repair.py) on the local Prefect server, PostgreSQL and Kafka."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flows.repair import repair_dataset
from vcfstream.ledger import db
from vcfstream.ledger.claims import LedgerSession
from vcfstream.publish.base import Acks
from vcfstream.settings import Settings
from vcfstream.vcf.keys import message_id


@pytest.fixture
def prefect_server(services: Settings) -> Iterator[Settings]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: services.services.prefect_api_url}):
        yield services


def test_a_dataset_with_nothing_lost_repairs_to_completed(prefect_server: Settings, dataset: str) -> None:
    db.migrate(prefect_server)
    state = repair_dataset(dataset=dataset, return_state=True)
    assert state.is_completed(), state.message
    assert "republished 0 of 0 missing ids" in (state.message or "")


def test_ids_lost_from_a_file_that_is_gone_fail_the_run_naming_the_file(prefect_server: Settings,
                                                                        dataset: str) -> None:
    db.migrate(prefect_server)
    digest = "f" * 64
    keys = [f"GRCh38:chr1:{i + 1}:A:G" for i in range(3)]
    ids = [message_id(dataset, key, digest) for key in keys]
    with LedgerSession(prefect_server, dataset=dataset, source_digest=digest, source_path="/nowhere/gone.vcf.gz",
                       chunk_id="chunk-0", run_id="run-1") as ledger:
        ledger.chunk_started()
        ledger.claim(ids, keys)
        ledger.mark_published(Acks("kafka", ids, [0, 0, 0], [0, 1, 2]))  # acknowledged, then lost
    state = repair_dataset(dataset=dataset, return_state=True)
    assert state.is_failed()
    assert "missing 3" in (state.message or "") and "/nowhere/gone.vcf.gz" in (state.message or "")

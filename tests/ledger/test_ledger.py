"""The dedup ledger on the real PostgreSQL: claims, takeover of dead claims, dead letters."""

from __future__ import annotations

import threading

import pytest

from vcfstream.ledger import db
from vcfstream.ledger.claims import LedgerSession, ledger_entries
from vcfstream.model import Quarantined
from vcfstream.publish.base import Acks
from vcfstream.settings import Settings
from vcfstream.vcf.keys import message_id


@pytest.fixture(scope="module")
def ledger_settings(services: Settings) -> Settings:
    db.migrate(services)
    return services


def session(settings: Settings, dataset: str, run: str = "run-1") -> LedgerSession:
    return LedgerSession(settings, dataset=dataset, source_digest="d" * 64, source_path="/x.vcf",
                         chunk_id="chunk-0", run_id=run)


def ids_and_keys(dataset: str, n: int) -> tuple[list[bytes], list[str]]:
    keys = [f"GRCh38:chr1:{i + 1}:A:G" for i in range(n)]
    return [message_id(dataset, k, "d" * 64) for k in keys], keys


def test_first_claim_gets_everything_and_a_second_gets_nothing(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 500)
    with session(ledger_settings, dataset) as first:
        claim = first.claim(ids, keys)
        assert claim.to_publish == list(range(500))
        first.mark_published(Acks("kafka", ids, [0] * 500, list(range(500))))
    with session(ledger_settings, dataset, "run-2") as second:
        again = second.claim(ids, keys)
    assert again.to_publish == [] and again.duplicates == 500


def test_keys_with_backslashes_and_carriage_returns_are_stored_as_they_are(
        ledger_settings: Settings, dataset: str) -> None:
    keys = ["GRCh38:chr1:5:A:<INS\\x>", "GRCh38:chr1:6:A:<DEL\rx>", "GRCh38:chr1:7:A:G"]
    ids = [message_id(dataset, k, "d" * 64) for k in keys]
    with session(ledger_settings, dataset) as s:
        assert s.claim(ids, keys).to_publish == [0, 1, 2]
    with db.connect(ledger_settings) as conn:
        stored = conn.execute("SELECT variant_key FROM ledger WHERE dataset = %s ORDER BY variant_key",
                              (dataset,)).fetchall()
    assert [row[0] for row in stored] == sorted(keys)


def test_a_record_repeated_in_a_batch_is_published_once(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 3)
    with session(ledger_settings, dataset) as s:
        claim = s.claim(ids + ids[:1], keys + keys[:1])
    assert claim.to_publish == [0, 1, 2] and claim.duplicates == 1


def test_claims_of_a_live_attempt_are_left_alone(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 100)
    with session(ledger_settings, dataset) as live, session(ledger_settings, dataset, "run-2") as other:
        assert len(live.claim(ids, keys).to_publish) == 100
        assert other.claim(ids, keys).to_publish == []  # live still holds its token


def test_claims_of_a_dead_attempt_are_taken_over(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 100)
    crashed = session(ledger_settings, dataset)
    crashed.claim(ids, keys)
    crashed.mark_published(Acks("kafka", ids[:40], [0] * 40, list(range(40))))
    crashed.close()  # the connection dies with the process: its advisory lock is released

    with session(ledger_settings, dataset, "run-1-retry") as retry:
        claim = retry.claim(ids, keys)
    assert claim.to_publish == list(range(40, 100))
    assert claim.taken_over == 60 and claim.duplicates == 40


def test_a_batch_mixing_new_published_and_dead_claims_publishes_the_new_and_the_dead(
        ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 100)
    with session(ledger_settings, dataset, "run-0") as done:  # 0-29 published by an earlier run
        done.claim(ids[:30], keys[:30])
        done.mark_published(Acks("kafka", ids[:30], [0] * 30, list(range(30))))
    crashed = session(ledger_settings, dataset)  # 30-59 claimed by an attempt that died
    crashed.claim(ids[30:60], keys[30:60])
    crashed.close()
    with session(ledger_settings, dataset, "run-1-retry") as retry:
        first = retry.claim(ids[60:80], keys[60:80])  # 60-79: this attempt's own earlier batch
        retry.mark_published(Acks("kafka", ids[60:80], [0] * 20, list(range(20))))
        claim = retry.claim(ids, keys)
    assert first.to_publish == list(range(20))
    assert claim.to_publish == [*range(30, 60), *range(80, 100)]
    assert claim.taken_over == 30 and claim.duplicates == 50


def test_claiming_again_before_marking_hands_nothing_out_twice(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 50)
    with session(ledger_settings, dataset) as s:
        assert s.claim(ids[:30], keys[:30]).to_publish == list(range(30))
        again = s.claim(ids, keys)  # 0-29 claimed above and not marked yet: not handed out again
    assert again.to_publish == list(range(30, 50)) and again.duplicates == 30 and again.taken_over == 0


def test_concurrent_claims_of_the_same_ids_split_them_without_overlap(ledger_settings: Settings,
                                                                     dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 2000)
    results: list[list[int]] = []
    sessions = [session(ledger_settings, dataset, f"run-{i}") for i in range(4)]
    barrier = threading.Barrier(4)

    def claim(s: LedgerSession) -> None:
        barrier.wait()
        results.append(s.claim(ids, keys).to_publish)

    threads = [threading.Thread(target=claim, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in sessions:
        s.close()
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == list(range(2000))


def test_dead_letters_are_kept_once_per_record_and_rule(ledger_settings: Settings, dataset: str) -> None:
    bad = Quarantined("/x.vcf", 12, "info.type", "/x.vcf: line 12: [info.type] bad", "chr1\t5\t.\tA\tG\t.\t.\tDP=x")
    sql = "'); DROP TABLE variants;--"
    verbatim = Quarantined("/x.vcf", 13, "info.type", f"/x.vcf: line 13: {sql}", f"chr1\t6\t.\tA\tG\t.\t.\tX={sql}")
    with session(ledger_settings, dataset) as s:
        assert s.record_dead_letters([bad, verbatim]) == 2
        assert s.record_dead_letters([bad]) == 0
    with db.connect(ledger_settings) as conn:
        rows = conn.execute("SELECT line, raw FROM dead_letters WHERE dataset = %s ORDER BY line",
                            (dataset,)).fetchall()
    assert rows == [(12, bad.raw), (13, verbatim.raw)]


def _marks(settings: Settings, dataset: str) -> dict[bytes, tuple[str, int | None, int | None]]:
    """Each row's state (``ledger_state``) and where it went (``ledger_offsets``)."""
    with db.connect(settings) as conn:
        states = conn.execute("SELECT message_id, state FROM ledger_state WHERE dataset = %s", (dataset,)).fetchall()
        offsets = {row[0].bytes: (row[1], row[2]) for row in conn.execute(
            'SELECT message_id, "partition", "offset" FROM ledger_offsets WHERE dataset = %s', (dataset,))}
    return {row[0].bytes: (row[1], *offsets.get(row[0].bytes, (None, None))) for row in states}


def test_marking_finds_each_row_whichever_claim_made_it_ours(ledger_settings: Settings, dataset: str) -> None:
    # The last claim's batch, all new, is marked by one delivery row, any other rows one by one:
    # both must land each acknowledgement on its own row.
    ids, keys = ids_and_keys(dataset, 90)
    crashed = session(ledger_settings, dataset)
    crashed.claim(ids[60:], keys[60:])
    crashed.sending(["kafka"])  # handed to kafka, then died
    crashed.close()
    with session(ledger_settings, dataset, "run-2") as s:
        s.claim(ids[:30], keys[:30])
        s.claim(ids[30:60], keys[30:60])
        s.mark_published(Acks("kafka", ids[:30], [1] * 30, list(range(100, 130))))  # an earlier claim's rows
        s.mark_published(Acks("kafka", ids[30:60], [2] * 30, list(range(200, 230))))  # the last claim's
        taken = s.claim(ids[60:], keys[60:])  # a dead attempt's rows, taken over
        assert taken.taken_over == 30
        s.mark_published(Acks("kafka", ids[89:59:-1], [3] * 30, list(range(329, 299, -1))))  # in another order
    marks = _marks(ledger_settings, dataset)
    assert [marks[m] for m in ids] == ([("published", 1, 100 + i) for i in range(30)]
                                       + [("published", 2, 200 + i) for i in range(30)]
                                       + [("in_doubt", 3, 300 + i) for i in range(30)])  # the dead may have sent


def test_marking_refuses_acknowledgements_for_rows_this_attempt_does_not_hold(
        ledger_settings: Settings, dataset: str) -> None:
    from vcfstream.errors import LedgerError

    ids, keys = ids_and_keys(dataset, 10)
    with session(ledger_settings, dataset) as owner, session(ledger_settings, dataset, "run-2") as other:
        owner.claim(ids, keys)
        other.claim(ids[:5], keys[:5])  # gets nothing: the owner is alive
        with pytest.raises(LedgerError, match="5 acknowledgements but 0 ledger rows"):
            other.mark_published(Acks("kafka", ids[:5], [0] * 5, list(range(5))))
    assert {state for state, _, _ in _marks(ledger_settings, dataset).values()} == {"claimed"}


def test_a_batch_claimed_all_new_and_delivered_cleanly_writes_each_row_once(ledger_settings: Settings,
                                                                            dataset: str) -> None:
    n = 20_000
    ids, keys = ids_and_keys(dataset, n)
    partitions, offsets = [i % 6 for i in range(n)], [1000 + i for i in range(n)]
    with session(ledger_settings, dataset) as s:
        assert s.claim(ids, keys).to_publish == list(range(n))
        s.mark_published(Acks("kafka", ids, partitions, offsets))
    with db.connect(ledger_settings) as conn:
        # xmax is set on a row version that was updated (or deleted, or locked)
        (updated,) = conn.execute("SELECT count(*) FROM ledger WHERE dataset = %s AND xmax <> 0", (dataset,)).fetchone()
        (deliveries,) = conn.execute("SELECT count(*) FROM ledger_deliveries WHERE dataset = %s", (dataset,)).fetchone()
    assert (updated, deliveries) == (0, 1)
    marks = _marks(ledger_settings, dataset)
    assert [marks[m] for m in ids] == [("published", p, o) for p, o in zip(partitions, offsets)]
    with session(ledger_settings, dataset, "run-2") as again:  # published: nothing to take over or publish
        claim = again.claim(ids, keys)
    assert (claim.to_publish, claim.duplicates, claim.taken_over) == ([], n, 0)
    assert _marks(ledger_settings, dataset) == marks


def test_ledger_entries_read_every_row_and_share_one_entry_per_batch(ledger_settings: Settings, dataset: str) -> None:
    ids, keys = ids_and_keys(dataset, 30_000)
    with session(ledger_settings, dataset) as s:
        s.claim(ids[:20_000], keys[:20_000])
        s.mark_published(Acks("kafka", ids[:20_000], [0] * 20_000, list(range(20_000))))
        s.claim(ids[20_000:], keys[20_000:])  # claimed, not published
    entries = ledger_entries(ledger_settings, dataset)
    assert set(entries) == set(ids)
    published, claimed = entries[ids[0]], entries[ids[-1]]
    assert (published.state, published.platform, published.published) == ("published", "kafka", True)
    assert (claimed.state, claimed.platform, claimed.published) == ("claimed", None, False)
    # rows reading alike are one object: the dict holds references, not 30,000 entries
    assert {id(entry) for entry in entries.values()} == {id(published), id(claimed)}

"""Circuit breakers: the pybreaker rules with our settings, and state shared by worker processes
through PostgreSQL (real server, real separate processes)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from vcfstream.errors import FailureKind, PublishError, PublishInDoubt, PublishUnavailable
from vcfstream.ledger import db
from vcfstream.publish.breakers import Breakers, PostgresBreakerStorage, build_breakers
from vcfstream.settings import Settings


def _refuse() -> None:
    raise PublishUnavailable("iggy", "connection refused (test)")


def _fail(breakers: Breakers, platform: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(PublishUnavailable):
            breakers[platform].call(_refuse)


def _run_in_other_process(settings: Settings, prefix: str, body: str) -> str:
    """Run ``body`` in a fresh interpreter with ``breakers`` built on the same PostgreSQL."""
    script = textwrap.dedent(f"""
        from pathlib import Path
        from vcfstream.publish.breakers import Breakers
        from vcfstream.errors import PublishUnavailable
        from vcfstream.settings import load_settings
        settings = load_settings(home=Path({str(settings.home_dir)!r}), services={{"pg_port": {settings.services.pg_port}}},
                                 routing={{"breaker_storage": "postgres"}})
        breakers = Breakers(settings, ["iggy", "kafka"], name_prefix={prefix!r})
        def refuse():
            raise PublishUnavailable("iggy", "connection refused (other process)")
    """) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_memory_breaker_opens_after_five_failures_and_stays_open() -> None:
    breakers = Breakers(Settings().with_groups(routing={"breaker_storage": "memory"}), ["iggy"])
    _fail(breakers, "iggy", 4)
    assert breakers.state("iggy") == "closed"
    _fail(breakers, "iggy", 1)
    assert breakers.state("iggy") == "open"
    assert not breakers.allows("iggy")
    assert breakers.describe("iggy").startswith("open (5 failures, trial in ")


def _raise(error: PublishError) -> None:
    raise error


def _memory_breakers() -> Breakers:
    return Breakers(Settings().with_groups(routing={"breaker_storage": "memory"}), ["iggy"])


@pytest.mark.parametrize("error", [
    PublishUnavailable("iggy", "message too big (test)", kind=FailureKind.INVALID),
    PublishInDoubt("iggy", "3 of 5 stored, then a message too big (test)", kind=FailureKind.INVALID),
])
def test_data_and_configuration_errors_never_count_toward_opening(error: PublishError) -> None:
    breakers = _memory_breakers()
    for _ in range(12):
        with pytest.raises(PublishError):
            breakers["iggy"].call(_raise, error)
    assert breakers.state("iggy") == "closed" and breakers["iggy"].fail_counter == 0


@pytest.mark.parametrize("kind", [k for k in FailureKind if k.platform_fault])
@pytest.mark.parametrize("error_type", [PublishUnavailable, PublishInDoubt])
def test_every_platform_fault_counts(kind: FailureKind, error_type: type[PublishError]) -> None:
    breakers = _memory_breakers()
    for _ in range(5):
        with pytest.raises(error_type):
            breakers["iggy"].call(_raise, error_type("iggy", f"{kind} (test)", kind=kind))
    assert breakers.state("iggy") == "open"


def test_an_error_that_is_no_publish_error_counts() -> None:
    breakers = _memory_breakers()
    for _ in range(5):
        with pytest.raises(KeyError):
            breakers["iggy"].call(_raise, KeyError("a publisher bug"))
    assert breakers.state("iggy") == "open"


def test_pybreaker_takes_an_excluded_error_for_a_completed_call() -> None:
    """As documented in ``vcfstream.publish.breakers``: the platform answered, or was never asked."""
    invalid = PublishUnavailable("iggy", "message too big (test)", kind=FailureKind.INVALID)
    breakers = Breakers(Settings().with_groups(routing={"breaker_storage": "memory", "breaker_reset_timeout_s": 0.05,
                                                        "breaker_success_threshold": 1}), ["iggy"])
    _fail(breakers, "iggy", 4)
    with pytest.raises(PublishUnavailable):
        breakers["iggy"].call(_raise, invalid)
    assert breakers["iggy"].fail_counter == 0  # the failure count starts again
    _fail(breakers, "iggy", 5)
    assert breakers.state("iggy") == "open"
    time.sleep(0.06)
    with pytest.raises(PublishUnavailable):
        breakers["iggy"].call(_raise, invalid)  # the half-open trial
    assert breakers.state("iggy") == "closed"


def test_breaker_settings_come_from_settings() -> None:
    settings = Settings().with_groups(routing={"breaker_storage": "memory", "breaker_fail_max": 2, "breaker_reset_timeout_s": 7.0, "breaker_success_threshold": 4})
    breaker = Breakers(settings, ["kafka"])["kafka"]
    assert (breaker.fail_max, breaker.reset_timeout, breaker.success_threshold) == (2, 7.0, 4)


@pytest.fixture
def pg_settings(services: Settings) -> Settings:
    settings = services.with_groups(routing={"breaker_storage": "postgres"})
    db.migrate(settings)
    return settings


def test_postgres_breaker_state_survives_a_new_breaker_object(pg_settings: Settings, make_name) -> None:
    prefix = make_name("brk") + "."
    first = build_breakers(pg_settings, ["iggy", "kafka"], name_prefix=prefix)
    _fail(first, "iggy", 5)
    second = Breakers(pg_settings, ["iggy", "kafka"], name_prefix=prefix)
    assert second.state("iggy") == "open"
    assert second.state("kafka") == "closed"
    assert second["iggy"].fail_counter == 5
    first.close()
    second.close()


def test_a_success_resets_the_failure_count_and_writes_nothing_when_it_is_already_zero(
        pg_settings: Settings, make_name) -> None:
    prefix = make_name("brk") + "."
    breakers = build_breakers(pg_settings, ["kafka"], name_prefix=prefix)
    _fail(breakers, "kafka", 2)
    assert breakers["kafka"].fail_counter == 2
    breakers["kafka"].call(lambda: None)
    assert breakers["kafka"].fail_counter == 0

    def row_version() -> tuple:
        with db.connect(pg_settings) as conn:
            return conn.execute("SELECT xmin::text, updated_at FROM circuit_breakers WHERE name = %s",
                                (prefix + "kafka",)).fetchone()

    before = row_version()
    for _ in range(3):
        breakers["kafka"].call(lambda: None)
    assert row_version() == before  # pybreaker resets after every success; the row is not rewritten
    breakers.close()


def test_data_errors_do_not_count_in_postgres_either(pg_settings: Settings, make_name) -> None:
    breakers = build_breakers(pg_settings, ["iggy"], name_prefix=make_name("brk") + ".")
    invalid = PublishUnavailable("iggy", "invalid topic name (test)", kind=FailureKind.INVALID)
    for _ in range(6):
        with pytest.raises(PublishUnavailable):
            breakers["iggy"].call(_raise, invalid)
    assert (breakers.state("iggy"), breakers["iggy"].fail_counter) == ("closed", 0)
    _fail(breakers, "iggy", 5)
    assert breakers.state("iggy") == "open"
    breakers.close()


def test_breaker_state_written_by_one_process_is_seen_by_another(pg_settings: Settings, make_name) -> None:
    prefix = make_name("brk") + "."
    here = Breakers(pg_settings, ["iggy", "kafka"], name_prefix=prefix)
    assert here.state("iggy") == "closed"
    out = _run_in_other_process(pg_settings, prefix, """
        for _ in range(5):
            try:
                breakers["iggy"].call(refuse)
            except PublishUnavailable:
                pass
        print(breakers.state("iggy"))
    """)
    assert out == "open"
    assert here.state("iggy") == "open"  # this process notices on its next look
    assert not here.allows("iggy")
    here.reset("iggy")
    assert _run_in_other_process(pg_settings, prefix, 'print(breakers.state("iggy"), breakers["iggy"].fail_counter)') \
        == "closed 0"
    here.close()


def test_concurrent_processes_never_lose_a_failure_count(pg_settings: Settings, make_name) -> None:
    prefix = make_name("brk") + "."
    setup = Breakers(pg_settings, ["iggy"], name_prefix=prefix)
    storage = PostgresBreakerStorage(pg_settings, f"{prefix}iggy")
    body = """
        from vcfstream.publish.breakers import PostgresBreakerStorage
        storage = PostgresBreakerStorage(settings, {name!r})
        for _ in range(200):
            storage.increment_counter()
    """.format(name=f"{prefix}iggy")
    scripts = [textwrap.dedent(f"""
        from pathlib import Path
        from vcfstream.settings import load_settings
        settings = load_settings(home=Path({str(pg_settings.home_dir)!r}), services={{"pg_port": {pg_settings.services.pg_port}}})
    """) + textwrap.dedent(body) for _ in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", s], stderr=subprocess.PIPE, text=True) for s in scripts]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert storage.counter == 600
    storage.close()
    setup.close()


def test_half_open_closes_after_three_successes_in_postgres(pg_settings: Settings, make_name) -> None:
    settings = pg_settings.with_groups(routing={"breaker_reset_timeout_s": 0.3})
    breakers = Breakers(settings, ["iggy"], name_prefix=make_name("brk") + ".")
    _fail(breakers, "iggy", 5)
    time.sleep(0.35)
    for expected in ("half-open", "half-open", "closed"):
        breakers["iggy"].call(lambda: None)
        assert breakers.state("iggy") == expected
    breakers.close()


def test_breaker_rows_are_keyed_by_platform_name_never_by_broker_address_or_secret(pg_settings: Settings,
                                                                                   make_name) -> None:
    """One row per platform breaker (``<namespace prefix><platform>``), whatever brokers are configured."""
    from pydantic import SecretStr

    prefix = make_name("brk") + "."
    settings = pg_settings.with_groups(kafka={"bootstrap_servers": "kafka-7.internal.example:9094", "sasl_username": "svc", "sasl_password": SecretStr("s3cret-pw")}, iggy={"connection_string": SecretStr("iggy://svc:s3cret-pw@iggy-3:8090")})
    breakers = Breakers(settings, ["iggy", "kafka"], name_prefix=prefix)
    _fail(breakers, "kafka", 2)
    with db.connect(pg_settings, autocommit=True) as conn:
        rows = conn.execute("SELECT name, fail_counter FROM circuit_breakers WHERE name LIKE %s ORDER BY name",
                            (prefix + "%",)).fetchall()
        assert rows == [(f"{prefix}iggy", 0), (f"{prefix}kafka", 2)]
        breakers.close()
        conn.execute("DELETE FROM circuit_breakers WHERE name LIKE %s", (prefix + "%",))

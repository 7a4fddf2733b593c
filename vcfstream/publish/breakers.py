"""One circuit breaker per publishing platform (pybreaker), shared by every worker process.

A breaker opens after ``settings.routing.breaker_fail_max`` consecutive failures, stays open for
``breaker_reset_timeout_s``, then lets calls through half-open; ``breaker_success_threshold``
successes in a row close it, one failure opens it again. With ``settings.routing.breaker_storage ==
"postgres"`` the state lives in table ``circuit_breakers`` (migration ``003_breakers.sql``), one
row per breaker, so a breaker opened by one worker process is open for all of them; ``"memory"``
keeps it in this process.

Only platform faults count. A ``PublishError`` whose ``kind`` is ``FailureKind.INVALID`` (the data
or the configuration is wrong: a message over the size limit, a name the platform cannot use, a
malformed URL, refused credentials) is excluded (pybreaker's ``exclude``): it neither counts toward
opening nor opens a half-open breaker. pybreaker treats an excluded error as a completed call, so
it also clears the consecutive-failure count and counts as a half-open trial's success.

Every transition is logged and handed to the callbacks registered with ``on_transition``
(``callback(platform, old_state, new_state)``, states ``closed`` / ``open`` / ``half-open``),
e.g. ``on_transition(telemetry.record_breaker_transition)``. A process notices a transition
made by another process on its next use of the breaker, and reports it then.

Example:
    >>> from vcfstream.settings import Settings
    >>> breakers = Breakers(Settings(breaker_storage="memory"), ["iggy", "kafka"])
    >>> breakers.state("iggy")
    'closed'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pybreaker

from vcfstream.errors import LedgerError, is_data_error
from vcfstream.ledger import db
from vcfstream.settings import Settings

_log = logging.getLogger(__name__)

STATE_CLOSED = pybreaker.STATE_CLOSED
STATE_OPEN = pybreaker.STATE_OPEN
STATE_HALF_OPEN = pybreaker.STATE_HALF_OPEN

TransitionCallback = Callable[[str, str, str], None]

_callbacks: list[TransitionCallback] = []
_callbacks_lock = threading.Lock()


def on_transition(callback: TransitionCallback) -> Callable[[], None]:
    """Call ``callback(platform, old_state, new_state)`` on every breaker transition in this
    process; returns a function that unsubscribes it."""
    with _callbacks_lock:
        _callbacks.append(callback)

    def unsubscribe() -> None:
        with _callbacks_lock:
            if callback in _callbacks:
                _callbacks.remove(callback)

    return unsubscribe


def _emit(platform: str, old: str, new: str) -> None:
    with _callbacks_lock:
        callbacks = list(_callbacks)
    for callback in callbacks:
        try:
            callback(platform, old, new)
        except Exception:  # a telemetry bug must not break publishing
            _log.exception("breaker transition callback %r failed", callback)


class _TransitionListener(pybreaker.CircuitBreakerListener):
    def __init__(self, platform: str) -> None:
        self.platform = platform

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else STATE_CLOSED
        new = new_state.name
        if old == new:
            return
        level = logging.WARNING if new == STATE_OPEN else logging.INFO
        _log.log(level, "breaker %s: %s -> %s (%d consecutive failures)", self.platform, old, new,
                 cb.fail_counter)
        _emit(self.platform, old, new)


class PostgresBreakerStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker storage in table ``circuit_breakers``: one row per breaker, atomic updates.

    Every read goes to PostgreSQL (a breaker is consulted once per publish batch, not per
    message), so all processes see one state. One autocommit connection per storage,
    reopened once if it breaks.
    """

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(name)
        self.settings = settings
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._execute("INSERT INTO circuit_breakers (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                      (name,))

    def _execute(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = db.connect(self.settings, autocommit=True)
                try:
                    cursor = self._conn.execute(sql, params)
                    return cursor.fetchone() if cursor.description else None
                except psycopg.OperationalError as exc:
                    self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise LedgerError(f"breaker {self.name}: PostgreSQL unreachable: {exc}") from None
        return None

    def _read(self, column: str) -> Any:
        row = self._execute(f"SELECT {column} FROM circuit_breakers WHERE name = %s", (self.name,))
        if row is None:  # the row was deleted under us: recreate it closed
            self._execute("INSERT INTO circuit_breakers (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                          (self.name,))
            row = self._execute(f"SELECT {column} FROM circuit_breakers WHERE name = %s", (self.name,))
        return row[0] if row else None

    def _update(self, assignment: str, params: tuple[Any, ...] = (), *, unless: str = "false") -> None:
        self._execute(f"UPDATE circuit_breakers SET {assignment}, updated_at = now() WHERE name = %s"
                      f" AND NOT ({unless})", (*params, self.name))

    @property
    def state(self) -> str:
        return str(self._read("state") or STATE_CLOSED)

    @state.setter
    def state(self, state: str) -> None:
        self._update("state = %s", (state,))

    def increment_counter(self) -> None:
        self._update("fail_counter = fail_counter + 1")

    def reset_counter(self) -> None:
        # pybreaker resets after every successful call: a counter already 0 writes no row version
        self._update("fail_counter = 0", unless="fail_counter = 0")

    def increment_success_counter(self) -> None:
        self._update("success_counter = success_counter + 1")

    def reset_success_counter(self) -> None:
        self._update("success_counter = 0")

    @property
    def counter(self) -> int:
        return int(self._read("fail_counter") or 0)

    @property
    def success_counter(self) -> int:
        return int(self._read("success_counter") or 0)

    @property
    def opened_at(self) -> datetime | None:
        value = self._read("opened_at")
        return value if isinstance(value, datetime) else None

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        # Two workers tripping at once keep the later time.
        self._update("opened_at = GREATEST(COALESCE(opened_at, %s), %s)", (when, when))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class Breakers:
    """The breakers of a set of platforms, built from settings."""

    def __init__(self, settings: Settings, platforms: Iterable[str], *, name_prefix: str = "") -> None:
        self.settings = settings
        self._storages: list[PostgresBreakerStorage] = []
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        for platform in platforms:
            storage: pybreaker.CircuitBreakerStorage
            if settings.routing.breaker_storage == "postgres":
                pg = PostgresBreakerStorage(settings, f"{name_prefix}{platform}")
                self._storages.append(pg)
                storage = pg
            else:
                storage = pybreaker.CircuitMemoryStorage(STATE_CLOSED)
            self._breakers[platform] = pybreaker.CircuitBreaker(
                fail_max=settings.routing.breaker_fail_max,
                reset_timeout=settings.routing.breaker_reset_timeout_s,
                success_threshold=settings.routing.breaker_success_threshold,
                state_storage=storage,
                exclude=[is_data_error],  # only platform faults count (module docstring)
                listeners=[_TransitionListener(platform)],
                name=platform,
                throw_new_error_on_trip=False,  # the caller sees the publisher's own error
            )

    def __getitem__(self, platform: str) -> pybreaker.CircuitBreaker:
        return self._breakers[platform]

    def __contains__(self, platform: object) -> bool:
        return platform in self._breakers

    @property
    def platforms(self) -> list[str]:
        return list(self._breakers)

    def state(self, platform: str) -> str:
        """``closed``, ``open`` or ``half-open``, as stored (noticing other processes' changes)."""
        return str(self._breakers[platform].state.name)

    def states(self) -> dict[str, str]:
        """{platform: state}; fits ``telemetry.register_breaker_state_source``."""
        return {platform: self.state(platform) for platform in self._breakers}

    def open_remaining_s(self, platform: str) -> float:
        """Seconds until an open breaker lets a trial call through; 0 when not open or due."""
        breaker = self._breakers[platform]
        if breaker.current_state != STATE_OPEN:
            return 0.0
        opened_at = breaker._state_storage.opened_at  # pybreaker keeps it on the storage only
        if opened_at is None:
            return 0.0
        elapsed = (datetime.now(UTC) - opened_at).total_seconds()
        return max(0.0, breaker.reset_timeout - elapsed)

    def allows(self, platform: str) -> bool:
        """Whether a call would reach the platform now (closed, half-open, or open and due)."""
        return self.open_remaining_s(platform) == 0.0

    def describe(self, platform: str) -> str:
        """e.g. ``open (5 failures, trial in 26.8s)`` or ``closed (1/5 failures)``."""
        breaker = self._breakers[platform]
        state = self.state(platform)
        if state == STATE_OPEN:
            remaining = self.open_remaining_s(platform)
            when = f"trial in {remaining:.1f}s" if remaining else "trial due"
            return f"open ({breaker.fail_counter} failures, {when})"
        if state == STATE_HALF_OPEN:
            return f"half-open ({breaker.success_counter}/{breaker.success_threshold} successes)"
        return f"closed ({breaker.fail_counter}/{breaker.fail_max} failures)"

    def reset(self, platform: str) -> None:
        """Close the breaker and clear its counters (an operator's or a test's action)."""
        breaker = self._breakers[platform]
        breaker.close()
        breaker._state_storage.reset_counter()

    def close(self) -> None:
        for storage in self._storages:
            storage.close()


def build_breakers(settings: Settings, platforms: Iterable[str] = ("iggy", "kafka"), *,
                   name_prefix: str = "") -> Breakers:
    """The breakers for ``platforms``; with PostgreSQL storage the migrations are applied first."""
    if settings.routing.breaker_storage == "postgres":
        db.migrate(settings)
    return Breakers(settings, platforms, name_prefix=name_prefix)

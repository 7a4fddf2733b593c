"""Per-batch routing between the primary platform (Iggy) and the fallback (Kafka).

``Router.route(batch)`` publishes one batch on exactly one platform and says which, and why it
was not the first choice. Every publisher call goes through that platform's circuit breaker
(``vcfstream.publish.breakers``) and is recorded in the rolling health window (``vcfstream.publish.health``).

Strategies (``settings.routing.strategy``):

- ``primary_only``: the primary only; when it cannot take a batch, the batch fails.
- ``fallback_only``: the fallback only; the primary publisher is never called.
- ``health`` (default): the primary unless its breaker is open, or it is unhealthy
  (score < ``health.UNHEALTHY``) while the fallback scores higher; the other platform is next.
- ``round_robin``: batches alternate between the platforms whose breakers let calls through;
  a batch whose platform fails goes to the other one.

A failed attempt is labelled by the error's ``kind`` (``vcfstream.errors.FailureKind``), which the
publisher set from its client library's error: ``refused``, ``disconnected``, ``timeout`` and
``unavailable`` are faults of the platform; they count toward its breaker and its health score.
``invalid`` (the data or configuration is wrong) counts toward neither; the batch still moves on
to the next platform, which may accept it (another size limit, another configuration).

A primary attempt that failed in doubt (timeout after sending) still moves the batch on; the
result then lists in ``in_doubt_platforms`` every platform that may hold it (the failed ones and
the one that acknowledged), for the ledger. A batch no platform takes raises ``BatchInDoubt``
(if any attempt was in doubt; its ``in_doubt_platforms`` are exactly the platforms whose attempt
was, never one that refused the batch cleanly or was not tried) or ``PublishUnavailable``, naming
each platform, what happened there and its breaker state; its ``kind`` is the attempts' common
kind (``unavailable`` when they differ or a breaker refused). ``in_doubt_on(error)`` gives the
platforms that may hold a batch that failed with any ``PublishError``.

``route(batch, before_send=...)`` calls ``before_send(platforms)`` right before each platform is
handed the batch, with every platform that may hold the batch once it is: that one and those
whose attempt failed in doubt. The caller records it, so that if the process dies before the
outcome is known, the ledger marks exactly those platforms in doubt.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pybreaker

from vcfstream.errors import FailureKind, PublishError, PublishInDoubt, PublishUnavailable
from vcfstream.publish.base import Acks, OutgoingBatch, Publisher
from vcfstream.publish.breakers import STATE_CLOSED, STATE_OPEN, Breakers, build_breakers
from vcfstream.publish.health import UNHEALTHY, Health
from vcfstream.settings import Settings

_log = logging.getLogger(__name__)

PRIMARY = "iggy"
FALLBACK = "kafka"
STRATEGIES = ("primary_only", "fallback_only", "health", "round_robin")


@dataclass(frozen=True, slots=True)
class RouteResult:
    """Where a batch went.

    ``failover`` is a human reason the batch is not on its first-choice platform (e.g.
    ``iggy breaker opened (timeout)``), ``failover_from`` that platform and ``failover_reason``
    a short label (``breaker_open``, ``unavailable``, ``in_doubt``, ``invalid``, ``unhealthy``) for
    metrics: ``invalid`` when the data or configuration was refused and nothing was stored.
    """

    acks: Acks
    platform: str
    failover: str | None = None
    in_doubt_platforms: list[str] = field(default_factory=list)
    failover_from: str | None = None
    failover_reason: str | None = None


@dataclass(slots=True)
class _Attempt:
    platform: str
    reason: str  # short label: breaker_open, unavailable, in_doubt, invalid, unhealthy
    label: str  # human, short: "iggy breaker opened (timeout)"
    detail: str = ""  # the error, for the message of a batch published nowhere
    in_doubt: bool = False
    kind: FailureKind | None = None  # the publisher's error kind; None when it was not called

    @property
    def text(self) -> str:
        return f"{self.label}: {self.detail}" if self.detail else self.label


class BatchInDoubt(PublishInDoubt):
    """No platform took the batch, and the attempts on ``in_doubt_platforms`` may have stored it."""

    def __init__(self, platform: str, message: str, *, kind: FailureKind, in_doubt_platforms: Sequence[str]) -> None:
        super().__init__(platform, message, kind=kind)
        self.in_doubt_platforms = sorted(in_doubt_platforms)


def in_doubt_on(error: PublishError) -> list[str]:
    """The platforms that may hold a batch whose publish failed with ``error``: none when it failed
    cleanly, a router's in-doubt attempts, else the failing publisher's own platform.

    Example:
        >>> in_doubt_on(PublishInDoubt("kafka", "timed out"))
        ['kafka']
    """
    if not error.in_doubt:
        return []
    if isinstance(error, BatchInDoubt):
        return list(error.in_doubt_platforms)
    return [error.platform]


class _BreakerOpen(Exception):
    """The breaker refused the call (opened by another worker since we looked)."""


class Router:
    """Routes batches over ``publishers`` ({platform: Publisher}) by ``settings.routing.strategy``."""

    def __init__(self, settings: Settings, publishers: Mapping[str, Publisher], breakers: Breakers,
                 health: Health, *, primary: str = PRIMARY, fallback: str = FALLBACK,
                 strategy: str | None = None) -> None:
        self.settings = settings
        self.publishers = dict(publishers)
        self.breakers = breakers
        self.health = health
        self.primary, self.fallback = primary, fallback
        self.strategy = strategy or settings.routing.strategy
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown routing strategy {self.strategy!r}; one of {', '.join(STRATEGIES)}")
        needed = {"primary_only": [primary], "fallback_only": [fallback]}.get(self.strategy, [])
        for platform in needed:
            if platform not in self.publishers:
                raise PublishUnavailable(platform, f"routing strategy {self.strategy} needs {platform}, "
                                         f"which is not configured")
        if not self.publishers:
            raise PublishUnavailable(f"{primary}+{fallback}", "no publishing platform configured")
        for platform in self.publishers:
            if platform not in breakers:
                raise ValueError(f"no circuit breaker for platform {platform!r}")
        self._turn = itertools.count()
        self._turn_lock = threading.Lock()

    # -- routing -------------------------------------------------------------------------
    def route(self, batch: OutgoingBatch, *,
              before_send: Callable[[list[str]], None] | None = None) -> RouteResult:
        """Publish ``batch`` on one platform; raises ``PublishError`` when none takes it.
        ``before_send(platforms)`` runs before each platform is handed the batch (module docstring)."""
        candidates, attempts = self._plan()
        for platform in candidates:
            if not self.breakers.allows(platform):
                attempts.append(_Attempt(platform, "breaker_open", f"{platform} breaker open"))
                continue
            if before_send is not None:
                before_send(sorted({platform, *(a.platform for a in attempts if a.in_doubt)}))
            try:
                acks = self._publish(platform, batch)
            except _BreakerOpen:
                attempts.append(_Attempt(platform, "breaker_open", f"{platform} breaker open"))
                continue
            except PublishError as exc:
                attempts.append(self._failed(platform, exc))
                continue
            return self._result(acks, platform, attempts)
        raise self._nowhere(batch, candidates, attempts)

    def _plan(self) -> tuple[list[str], list[_Attempt]]:
        """Platforms to try in order, and the health skips that already count as failover."""
        primary, fallback = self.primary, self.fallback
        if self.strategy == "primary_only":
            return [primary], []
        if self.strategy == "fallback_only":
            return [fallback], []
        available = [p for p in (primary, fallback) if p in self.publishers]
        if self.strategy == "round_robin":
            open_now = [p for p in available if self.breakers.allows(p)]
            if len(open_now) > 1:
                with self._turn_lock:
                    first = open_now[next(self._turn) % len(open_now)]
                return [first] + [p for p in available if p != first], []
            return available, []
        # health
        if len(available) < 2:
            return available, []
        primary_health = self.health.snapshot(primary)
        # Only a closed breaker defers to the score: a half-open one needs its trial calls.
        if primary_health.score < UNHEALTHY and self.breakers.state(primary) == STATE_CLOSED:
            fallback_health = self.health.snapshot(fallback)
            if fallback_health.score > primary_health.score and self.breakers.allows(fallback):
                skip = _Attempt(primary, "unhealthy", f"{primary} unhealthy (score {primary_health.score:.2f})",
                                primary_health.summary())
                return [fallback, primary], [skip]
        return [primary, fallback], []

    def _publish(self, platform: str, batch: OutgoingBatch) -> Acks:
        """One attempt through the platform's breaker, timed into the health window."""
        publisher = self.publishers[platform]
        breaker = self.breakers[platform]
        recovering = breaker.current_state != STATE_CLOSED
        started = time.monotonic()
        try:
            acks = breaker.call(publisher.publish, batch)
        except pybreaker.CircuitBreakerError:
            raise _BreakerOpen(platform) from None
        except PublishError as exc:
            if exc.platform_fault:  # a data or configuration error says nothing of the platform's health
                self.health.record(platform, time.monotonic() - started, ok=False)
            raise
        except Exception as exc:  # a publisher bug: it may have sent something
            self.health.record(platform, time.monotonic() - started, ok=False)
            raise PublishInDoubt(platform, f"unexpected {type(exc).__name__}: {exc}") from exc
        elapsed = time.monotonic() - started
        if recovering and breaker.current_state == STATE_CLOSED:
            self.health.reset(platform)  # recovered: the outage's failures no longer describe it
        self.health.record(platform, elapsed, ok=True, messages=len(acks))
        return acks

    def _failed(self, platform: str, exc: PublishError) -> _Attempt:
        kind = exc.kind
        tripped = kind.platform_fault and self.breakers[platform].current_state == STATE_OPEN
        label = f"{platform} breaker opened ({kind})" if tripped else f"{platform} failed ({kind})"
        detail = str(exc).removeprefix(f"{platform}: ")
        _log.warning("%s: %s", label, detail)
        if exc.in_doubt:
            reason = "in_doubt"
        else:
            reason = "unavailable" if kind.platform_fault else "invalid"
        return _Attempt(platform, reason, label, detail, in_doubt=exc.in_doubt, kind=kind)

    def _result(self, acks: Acks, platform: str, attempts: list[_Attempt]) -> RouteResult:
        first = next((a for a in attempts if a.platform != platform), None)
        in_doubt = [a.platform for a in attempts if a.in_doubt and a.platform != platform]
        failover = None
        if first is not None:
            failover = "; ".join(dict.fromkeys(a.label for a in attempts if a.platform != platform))
        return RouteResult(
            acks=acks, platform=platform, failover=failover,
            in_doubt_platforms=sorted({*in_doubt, platform}) if in_doubt else [],
            failover_from=first.platform if first else None,
            failover_reason=first.reason if first else None)

    def _nowhere(self, batch: OutgoingBatch, candidates: list[str], attempts: list[_Attempt]) -> PublishError:
        tried = {a.platform: a.text for a in attempts}
        parts = []
        for platform in dict.fromkeys([self.primary, self.fallback, *candidates]):
            if platform in tried:
                what = tried[platform]
            elif platform in candidates:
                what = f"{platform} not tried"
            elif platform in self.publishers:
                what = f"{platform} not used (routing strategy {self.strategy})"
            else:
                what = f"{platform} not configured"
            state = self.breakers.describe(platform) if platform in self.breakers else "no breaker"
            parts.append(f"{what} [breaker {state}]")
        message = (f"batch of {len(batch)} messages of dataset {batch.dataset} was published nowhere: "
                   + "; ".join(parts))
        where = "+".join(dict.fromkeys([self.primary, self.fallback]))
        kinds = {a.kind for a in attempts if a.reason != "unhealthy"}  # None: a breaker refused the call
        shared = kinds.pop() if len(kinds) == 1 else None
        kind = shared if shared is not None else FailureKind.UNAVAILABLE
        doubted = [a.platform for a in attempts if a.in_doubt]
        if doubted:
            return BatchInDoubt(where, message, kind=kind, in_doubt_platforms=doubted)
        return PublishUnavailable(where, message, kind=kind)

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        for platform, publisher in self.publishers.items():
            try:
                publisher.close()
            except Exception:
                _log.exception("closing the %s publisher failed", platform)
        self.breakers.close()


def build_router(settings: Settings) -> Router:
    """The router the pipeline uses: Kafka always, Iggy when ``settings.iggy.url()`` is set and the
    strategy may use it; breakers per ``settings.routing.breaker_storage``; a fresh health window."""
    from vcfstream.publish.kafka import KafkaPublisher

    publishers: dict[str, Publisher] = {FALLBACK: KafkaPublisher(settings)}
    if settings.iggy.url() is not None and settings.routing.strategy != "fallback_only":
        from vcfstream.publish.iggy import IggyPublisher

        publishers[PRIMARY] = IggyPublisher(settings)
    breakers = build_breakers(settings, [PRIMARY, FALLBACK])
    health = Health(latency_budget_s=settings.iggy.timeout_s / 2)
    return Router(settings, publishers, breakers, health)

"""Rolling per-platform health of publish calls, read by the ``health`` routing strategy.

Each publish attempt is recorded with its elapsed time, outcome and message count. Over the
last ``window_s`` seconds (at most ``max_samples`` attempts) a platform has:

- ``p50_s`` / ``p99_s``: latency percentiles of all attempts, failed ones included with the time
  they took (a black-holed platform shows up as latency near the call timeout);
- ``error_rate``: failed attempts / attempts;
- ``throughput``: messages acknowledged per second over the span of the window.

Score, in [0, 1]::

    score = (1 - error_rate) * min(1, latency_budget_s / p99_s)

``latency_budget_s`` defaults to half the Iggy call timeout (1 s with the 2 s default): a platform
whose p99 is within budget and that never fails scores 1; twice over budget halves it. With fewer
than ``min_samples`` attempts in the window the score is 1: too little evidence, and hard failures
are the circuit breaker's business. Old attempts age out, so a platform avoided for a bad score
is tried again after at most ``window_s``.

Thresholds: ``score >= HEALTHY`` (0.8) is healthy, ``score < UNHEALTHY`` (0.5) is unhealthy;
the ``health`` strategy moves a batch to the fallback only when the primary is unhealthy and the
fallback scores higher.

Example:
    >>> health = Health(latency_budget_s=1.0, min_samples=1)
    >>> health.record("kafka", 0.05, ok=True, messages=100)
    >>> health.score("kafka")
    1.0
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

HEALTHY = 0.8
UNHEALTHY = 0.5


@dataclass(frozen=True, slots=True)
class PlatformHealth:
    platform: str
    samples: int
    p50_s: float
    p99_s: float
    error_rate: float
    throughput: float  # acknowledged messages per second
    score: float

    def summary(self) -> str:
        """e.g. ``score 0.31: error rate 40%, p99 1.90s, 1200 msg/s (25 calls)``."""
        return (f"score {self.score:.2f}: error rate {self.error_rate:.0%}, p99 {self.p99_s:.2f}s, "
                f"{self.throughput:.0f} msg/s ({self.samples} calls)")


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    elapsed_s: float
    ok: bool
    messages: int


class Health:
    """Thread-safe rolling windows, one per platform."""

    def __init__(self, *, window_s: float = 60.0, max_samples: int = 1_000, latency_budget_s: float = 1.0,
                 min_samples: int = 5, clock: Callable[[], float] | None = None) -> None:
        self.window_s = window_s
        self.max_samples = max_samples
        self.latency_budget_s = latency_budget_s
        self.min_samples = min_samples
        self._clock = clock or time.monotonic
        self._samples: dict[str, deque[_Sample]] = {}
        self._lock = threading.Lock()

    def record(self, platform: str, elapsed_s: float, *, ok: bool, messages: int = 0) -> None:
        """One publish attempt: how long it took, whether it succeeded, messages acknowledged."""
        with self._lock:
            window = self._samples.setdefault(platform, deque(maxlen=self.max_samples))
            window.append(_Sample(self._clock(), elapsed_s, ok, messages if ok else 0))

    def snapshot(self, platform: str) -> PlatformHealth:
        now = self._clock()
        with self._lock:
            window = self._samples.get(platform)
            if window is not None:
                while window and now - window[0].at > self.window_s:
                    window.popleft()
            samples = list(window or ())
        if not samples:
            return PlatformHealth(platform, 0, 0.0, 0.0, 0.0, 0.0, 1.0)
        latencies = sorted(s.elapsed_s for s in samples)
        failures = sum(1 for s in samples if not s.ok)
        error_rate = failures / len(samples)
        p50 = _percentile(latencies, 0.50)
        p99 = _percentile(latencies, 0.99)
        span = max(now - samples[0].at + samples[0].elapsed_s, 1e-3)
        throughput = sum(s.messages for s in samples) / span
        if len(samples) < self.min_samples:
            score = 1.0
        else:
            latency_factor = min(1.0, self.latency_budget_s / p99) if p99 > 0 else 1.0
            score = (1.0 - error_rate) * latency_factor
        return PlatformHealth(platform, len(samples), p50, p99, error_rate, throughput, round(score, 4))

    def score(self, platform: str) -> float:
        return self.snapshot(platform).score

    def scores(self) -> dict[str, float]:
        """{platform: score}; fits ``telemetry.register_health_source``."""
        with self._lock:
            platforms = list(self._samples)
        return {platform: self.score(platform) for platform in platforms}

    def reset(self, platform: str | None = None) -> None:
        with self._lock:
            if platform is None:
                self._samples.clear()
            else:
                self._samples.pop(platform, None)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, min(len(sorted_values), int(q * len(sorted_values) + 0.999999)))
    return sorted_values[rank - 1]

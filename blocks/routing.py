"""``RoutingPolicy``: how vcfstream chooses between Iggy and Kafka, and when a breaker opens."""

from __future__ import annotations

from typing import ClassVar

from blocks.base import VcfstreamBlock
from vcfstream.settings import RoutingSettings


class RoutingPolicy(VcfstreamBlock, RoutingSettings):
    """Routing strategy and circuit-breaker thresholds.

    Args:
        strategy: health (Iggy while healthy, else Kafka), round_robin, primary_only, fallback_only.
        breaker_fail_max: consecutive failures that open a platform's breaker.
        breaker_reset_timeout_s: seconds an open breaker waits before letting a probe through.
        breaker_success_threshold: successful probes that close a half-open breaker.
        breaker_storage: postgres (shared by every worker) or memory (one process; tests).

    Example:
        >>> from vcfstream.settings import Settings
        >>> Settings().with_groups(routing=RoutingPolicy(strategy="fallback_only")).routing.strategy
        'fallback_only'
    """

    _block_type_name = "vcfstream Routing Policy"
    _description = "How vcfstream routes messages between Iggy and Kafka, and its circuit-breaker thresholds."
    default_name: ClassVar[str] = "vcfstream-routing"
    group: ClassVar[str] = "routing"

"""``RoutingPolicy``: how vcfstream chooses between Iggy and Kafka, and when a breaker opens."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from blocks.base import SettingsBlock
from vcfstream.settings import RoutingStrategy, Settings


class RoutingPolicy(SettingsBlock):
    """Routing strategy and circuit-breaker thresholds.

    Args:
        strategy: health (Iggy while healthy, else Kafka), round_robin, primary_only, fallback_only.
        breaker_fail_max: consecutive failures that open a platform's breaker.
        breaker_reset_timeout_s: seconds an open breaker waits before letting a probe through.
        breaker_success_threshold: successful probes that close a half-open breaker.
        breaker_storage: postgres (shared by every worker) or memory (one process; tests).

    Returns:
        ``settings_overrides()`` -> ``routing_strategy`` and ``breaker_*``; ``get_router(settings)``
        -> the router with its publishers and breakers.

    Example:
        >>> from vcfstream.settings import Settings
        >>> RoutingPolicy(strategy="fallback_only").apply_to(Settings()).routing_strategy
        'fallback_only'
    """

    _block_type_name = "vcfstream Routing Policy"
    _description = "How vcfstream routes messages between Iggy and Kafka, and its circuit-breaker thresholds."
    default_name: ClassVar[str] = "vcfstream-routing"

    strategy: RoutingStrategy = Field(default="health")
    breaker_fail_max: int = Field(default=5, ge=1)
    breaker_reset_timeout_s: float = Field(default=30.0, gt=0)
    breaker_success_threshold: int = Field(default=3, ge=1)
    breaker_storage: Literal["postgres", "memory"] = Field(default="postgres")

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutingPolicy:
        return cls(strategy=settings.routing_strategy, breaker_fail_max=settings.breaker_fail_max,
                   breaker_reset_timeout_s=settings.breaker_reset_timeout_s,
                   breaker_success_threshold=settings.breaker_success_threshold,
                   breaker_storage=settings.breaker_storage)

    def settings_overrides(self) -> dict[str, Any]:
        return {
            "routing_strategy": self.strategy,
            "breaker_fail_max": self.breaker_fail_max,
            "breaker_reset_timeout_s": self.breaker_reset_timeout_s,
            "breaker_success_threshold": self.breaker_success_threshold,
            "breaker_storage": self.breaker_storage,
        }

    def get_router(self, settings: Settings) -> Any:
        """The router (publishers + breakers) for ``settings`` under this policy; close it when done."""
        from vcfstream.publish.routing import build_router

        return build_router(self.apply_to(settings))

"""Retry policy of invocations: exponential backoff, then pause or kill.

The schema registry works out each handler's effective policy (handler > service > server
defaults); the engine only computes delays and decides when attempts are exhausted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_interval_ms: int = 500
    factor: float = 2.0
    max_interval_ms: int = 60_000
    max_attempts: int | None = 70  # None: retry forever
    on_max_attempts: str = "pause"  # pause | kill

    def delay_ms(self, retry_count: int) -> int:
        """Delay before the attempt that follows the `retry_count`-th failure (1-based)."""
        exponent = max(retry_count - 1, 0)
        delay = self.initial_interval_ms * (self.factor**exponent)
        return int(min(delay, self.max_interval_ms))

    def exhausted(self, attempts_made: int) -> bool:
        return self.max_attempts is not None and attempts_made >= self.max_attempts

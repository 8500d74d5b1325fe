"""Retry policy of invocations: exponential backoff, then pause or kill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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

    def with_overrides(self, options: dict[str, Any]) -> RetryPolicy:
        """Apply the manifest's `retryPolicy*` fields (missing fields keep their value)."""
        initial = options.get("retryPolicyInitialInterval")
        max_interval = options.get("retryPolicyMaxInterval")
        factor = options.get("retryPolicyExponentiationFactor")
        attempts = options.get("retryPolicyMaxAttempts")
        on_max = options.get("retryPolicyOnMaxAttempts")
        return RetryPolicy(
            initial_interval_ms=int(initial) if initial is not None else self.initial_interval_ms,
            factor=float(factor) if factor is not None else self.factor,
            max_interval_ms=int(max_interval) if max_interval is not None else self.max_interval_ms,
            max_attempts=int(attempts) if attempts is not None else self.max_attempts,
            on_max_attempts=str(on_max).lower() if on_max is not None else self.on_max_attempts,
        )

"""What the engine tells an observer of invocations' lifecycles (see durably.tracing).

The engine holds ``observer: Observer | None`` and calls it only when it is set, so that
nothing is paid on the hot path when tracing is off. The calls happen inside the engine's
step, before the commit: an observer must not block, and must not change the invocation
except for ``row.extra`` and ``attempt.additional_headers`` (which it may replace).
"""

from __future__ import annotations

from typing import Protocol

from durably.engine.attempt import Attempt
from durably.engine.model import ActiveInvocation, Failure


class Observer(Protocol):
    def invocation_created(
        self,
        inv: ActiveInvocation,
        headers: list[tuple[str, str]],
        caller: ActiveInvocation | None,
    ) -> None:
        """A new invocation (not a deduplicated repeat); `headers` are its request's."""

    def attempt_started(self, inv: ActiveInvocation, attempt: Attempt) -> None:
        """An attempt is about to be handed to the invoker."""

    def journal_message(
        self, inv: ActiveInvocation, attempt: Attempt, msg_type: int, msg: object
    ) -> None:
        """The SDK sent a message (a command, a run proposal, End...) during `attempt`."""

    def notification(self, inv: ActiveInvocation, msg_type: int) -> None:
        """A completion or signal was stored in the invocation's journal."""

    def attempt_ended(
        self, inv: ActiveInvocation, attempt: Attempt, outcome: str, error: str | None
    ) -> None:
        """`outcome`: 'completed', 'suspended' or 'failed' (with `error`)."""

    def invocation_completed(self, inv: ActiveInvocation, failure: Failure | None) -> None:
        """The invocation has its result (a success when `failure` is None)."""

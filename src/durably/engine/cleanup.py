"""Removing completed invocations whose retention has passed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from durably.engine.model import now_ms

if TYPE_CHECKING:
    from durably.engine.engine import Engine

BATCH = 1000


def sweep_expired(engine: Engine) -> int:
    """Delete expired completed invocations (and a finished workflow's state and promises)."""
    removed = 0
    while True:
        rows = engine.store.expired_invocations(now_ms(), BATCH)
        if not rows:
            break
        for row in rows:
            if row.id in engine.active:
                continue
            engine.purge_row(row)
            removed += 1
        engine.flush()
        if len(rows) < BATCH:
            break
    return removed

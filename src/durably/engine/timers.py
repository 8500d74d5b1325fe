"""Durable timers held in memory as one heap, with a single loop callback for the earliest.

Rows live in storage (so they survive a restart); this class only decides when to fire.
Heap entries are tuples of plain values (not the `TimerRow`s): a million pending timers are
then nothing the garbage collector has to scan.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable

from durably.storage.base import TimerRow


class TimerQueue:
    def __init__(self, fire: Callable[[TimerRow], None]) -> None:
        self._fire = fire
        # (fire_at, id, kind, invocation_id, completion_id)
        self._heap: list[tuple[int, int, str, str, int]] = []
        self._cancelled: set[int] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at: int | None = None

    def __len__(self) -> int:
        return len(self._heap) - len(self._cancelled)

    def add(self, row: TimerRow) -> None:
        heapq.heappush(
            self._heap, (row.fire_at, row.id, row.kind, row.invocation_id, row.completion_id)
        )
        self._arm()

    def cancel(self, timer_id: int) -> None:
        self._cancelled.add(timer_id)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:
        if not self._heap:
            return
        first = self._heap[0][0]
        if self._handle is not None and self._armed_at is not None and self._armed_at <= first:
            return
        if self._handle is not None:
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, first / 1000.0 - time.time())
        self._armed_at = first
        self._handle = loop.call_later(delay, self._run)

    def _run(self) -> None:
        self._handle = None
        self._armed_at = None
        now = int(time.time() * 1000)
        while self._heap and self._heap[0][0] <= now:
            fire_at, timer_id, kind, invocation_id, completion_id = heapq.heappop(self._heap)
            if timer_id in self._cancelled:
                self._cancelled.discard(timer_id)
                continue
            self._fire(TimerRow(timer_id, fire_at, kind, invocation_id, completion_id))
        self._arm()

"""Releasing effects once the commits before them are on disk, without blocking the loop.

SQLite in WAL mode with `synchronous=FULL` fsyncs the WAL inside every COMMIT, on the
event loop: while the disk flushes, no request is parsed and no frame is read. Instead the
store commits with `synchronous=NORMAL` (the WAL is written, not flushed: a process crash
loses nothing, a power loss could) and this gate flushes the WAL file from a worker thread.
The effects of every commit (HTTP answers, notifications, run acks) wait for the first
fsync that *started* after their commit; while one fsync runs, the loop keeps working and
the next fsync covers everything committed meanwhile. Durability is that of FULL: the
only difference from FULL is that the WAL's fsync happens after COMMIT returns instead of
inside it, and nothing is released before it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("durably.storage")

Effect = Callable[[], None]


class EffectGate(Protocol):
    """What holds the engine's effects until the commits before them are durable: this
    module's gate for SQLite, the commit writer's for PostgreSQL (storage.postgres)."""

    def after_sync(self, effects: list[Effect], run: Callable[[list[Effect]], None]) -> None: ...

    def close(self) -> None: ...


class DurabilityGate:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sync: Callable[[], None],
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self._loop = loop
        self._sync = sync
        self._on_fatal = on_fatal
        self._waiting: list[Effect] = []
        self._in_flight: list[Effect] | None = None
        self._run: Callable[[list[Effect]], None] | None = None
        self._failed = False
        self.syncs = 0
        # one long-lived thread fed through a lock-free queue: a thread pool's futures and
        # locks cost the loop more than the fsync itself (about 0.2 ms on a local disk)
        self._requests: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._flusher, name="durably-fsync", daemon=True)
        self._thread.start()

    def after_sync(self, effects: list[Effect], run: Callable[[list[Effect]], None]) -> None:
        """Run `effects` (with `run`) once everything committed so far is on disk."""
        if self._failed:
            return
        self._run = run
        self._waiting.extend(effects)
        if self._in_flight is None:
            self._start()

    def _start(self) -> None:
        self._in_flight, self._waiting = self._waiting, []
        self._requests.put(True)

    def _flusher(self) -> None:
        while self._requests.get():
            try:
                self._sync()
                error: BaseException | None = None
            except BaseException as e:  # reported on the loop
                error = e
            try:
                self._loop.call_soon_threadsafe(self._done, error)
            except RuntimeError:
                return  # the loop is closed: the server is gone

    def _done(self, error: BaseException | None) -> None:
        batch, self._in_flight = self._in_flight or [], None
        if error is not None:
            log.critical("flushing the write-ahead log to disk failed: %s", error)
            self._failed = True
            self._waiting.clear()
            self._on_fatal(error)
            return
        self.syncs += 1
        assert self._run is not None
        self._run(batch)
        if self._waiting and self._in_flight is None:
            self._start()

    def close(self) -> None:
        self._requests.put(False)
        self._thread.join(timeout=5)

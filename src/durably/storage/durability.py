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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("durably.storage")

Effect = Callable[[], None]


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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durably-fsync")
        self._waiting: list[Effect] = []
        self._run: Callable[[list[Effect]], None] | None = None
        self._in_flight = False
        self._failed = False
        self.syncs = 0

    def after_sync(self, effects: list[Effect], run: Callable[[list[Effect]], None]) -> None:
        """Run `effects` (with `run`) once everything committed so far is on disk."""
        if self._failed:
            return
        self._run = run
        self._waiting.extend(effects)
        if not self._in_flight:
            self._start()

    def _start(self) -> None:
        batch, self._waiting = self._waiting, []
        self._in_flight = True
        fut = self._loop.run_in_executor(self._executor, self._sync)
        fut.add_done_callback(lambda f: self._done(f, batch))

    def _done(self, fut: asyncio.Future[None], batch: list[Effect]) -> None:
        self._in_flight = False
        error = fut.exception() if not fut.cancelled() else None
        if error is not None:
            log.critical("flushing the write-ahead log to disk failed: %s", error)
            self._failed = True
            self._waiting.clear()
            self._on_fatal(error)
            return
        self.syncs += 1
        assert self._run is not None
        self._run(batch)
        if self._waiting and not self._in_flight:
            self._start()

    def close(self) -> None:
        self._executor.shutdown(wait=True)

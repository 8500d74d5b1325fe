"""A node's side connection to PostgreSQL: its occasional reads that belong to neither the
store's writer, the lease keeper nor the outbox reader (a registry read a request asks
for, the live nodes a registry change is announced to, the deadlock search's hops).

One connection per node, opened when first needed and kept while it is used: opening one
costs PostgreSQL a backend (a fork and the authentication), far more than the reads
themselves, so a node must not open one per request; one unused for `IDLE_CLOSE_S` is
closed, so an idle node holds no backend for it. One use at a time; each use gives up after
`QUERY_TIMEOUT_S` (a connection whose bytes are black-holed by a network cut neither
answers nor fails) and a failed use drops the connection, so the next one reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

QUERY_TIMEOUT_S = 5.0
IDLE_CLOSE_S = 30.0


class SideConnection:
    def __init__(self, connect: Callable[[], Awaitable[Any]]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._used = 0.0  # the loop's time of the last use
        self._closer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None

    async def run(self, use: Callable[[Any], Awaitable[T]]) -> T:
        """`use(connection)`, alone on it, within `QUERY_TIMEOUT_S` (opening it included)."""
        async with self._lock:
            try:
                async with asyncio.timeout(QUERY_TIMEOUT_S):
                    if self._conn is None or self._conn.is_closed():
                        self._conn = await self._connect()
                    result = await use(self._conn)
                self._used = asyncio.get_running_loop().time()
                if self._closer is None:
                    self._closer = asyncio.get_running_loop().call_later(
                        IDLE_CLOSE_S, self._close_if_idle
                    )
                return result
            except BaseException:
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.terminate()  # (a graceful close waits on a black-holed connection)
                raise

    def _close_if_idle(self) -> None:
        self._closer = None
        self._closing = asyncio.get_running_loop().create_task(self._close_when_idle())

    async def _close_when_idle(self) -> None:
        async with self._lock:  # (never under a use)
            loop = asyncio.get_running_loop()
            idle = loop.time() - self._used
            if self._conn is None:
                return
            if idle < IDLE_CLOSE_S:
                self._closer = loop.call_later(IDLE_CLOSE_S - idle, self._close_if_idle)
                return
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    async def close(self) -> None:
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

"""A node's side connection to PostgreSQL: its occasional reads that belong to neither the
store's writer, the lease keeper nor the outbox reader (a registry read a request asks
for, the live nodes a registry change is announced to, the deadlock search's hops).

One connection per node, opened when first needed and kept: opening one costs PostgreSQL a
backend (a fork and the authentication), far more than the reads themselves, so a node
must not open one per request. One use at a time; each use gives up after
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


class SideConnection:
    def __init__(self, connect: Callable[[], Awaitable[Any]]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def run(self, use: Callable[[Any], Awaitable[T]]) -> T:
        """`use(connection)`, alone on it, within `QUERY_TIMEOUT_S` (opening it included)."""
        async with self._lock:
            try:
                async with asyncio.timeout(QUERY_TIMEOUT_S):
                    if self._conn is None or self._conn.is_closed():
                        self._conn = await self._connect()
                    return await use(self._conn)
            except BaseException:
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.terminate()  # (a graceful close waits on a black-holed connection)
                raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

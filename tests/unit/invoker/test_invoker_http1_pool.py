"""Http1Transport's connection pool (cap, FIFO wait, idle timeout) against a real hypercorn."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from _transport_test_server import ServerProcess

from durably.invoker.http1 import Http1Stream, Http1Transport
from durably.invoker.transport import TransportError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().start()
    yield proc
    proc.kill()


async def until(condition: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    """Wait for `condition` (a state, not a duration: `limit` only stops a hung test)."""
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


async def exchange(
    transport: Http1Transport, path: str, body: bytes = b""
) -> tuple[dict[str, str], bytes]:
    stream = await transport.open_stream("POST", path, [])
    await stream.send(body)
    await stream.end()
    status, headers = await stream.response_head()
    assert status == 200
    chunks = []
    while (chunk := await stream.receive()) is not None:
        chunks.append(chunk)
    return dict(headers), b"".join(chunks)


async def test_cap_limits_open_connections(server: ServerProcess) -> None:
    transport = Http1Transport(server.url, max_connections=4)
    most_open = 0

    async def one(i: int) -> dict[str, str]:
        nonlocal most_open
        headers, body = await exchange(transport, "/slow?delay=0.05", b"%d" % i)
        most_open = max(most_open, transport.open_connection_count)
        assert body == b"ok"
        return headers

    try:
        tasks = [asyncio.create_task(one(i)) for i in range(20)]
        await asyncio.sleep(0)  # each task has run up to its wait for a connection
        assert transport.open_connection_count == 4
        assert transport.waiting_count == 16
        results = await asyncio.gather(*tasks)
        # the server saw 4 connections (one client port each), never more than 4 requests at once
        assert len({h["x-client-port"] for h in results}) == 4
        assert max(int(h["x-in-flight"]) for h in results) <= 4
        assert most_open == 4
        assert transport.open_connection_count == 4
        assert transport.idle_connection_count == 4
        assert transport.waiting_count == 0
        # the next burst reuses them
        again = await asyncio.gather(*(one(i) for i in range(8)))
        assert transport.open_connection_count == 4
        assert {h["x-client-port"] for h in again} <= {h["x-client-port"] for h in results}
    finally:
        await transport.close()
    assert transport.open_connection_count == 0


async def test_waiters_are_served_first_come_first_served(server: ServerProcess) -> None:
    transport = Http1Transport(server.url, max_connections=1)
    order: list[int] = []

    async def one(i: int) -> None:
        await exchange(transport, "/echo", b"%d" % i)
        order.append(i)

    try:
        tasks = []
        for i in range(10):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(0)  # start them in order
        await asyncio.gather(*tasks)
        assert order == list(range(10))
        assert transport.open_connection_count == 1
    finally:
        await transport.close()


async def start_holding(transport: Http1Transport) -> Http1Stream:
    """An exchange that keeps its connection (the server answers after 30 s)."""
    stream = await transport.open_stream("POST", "/slow?delay=30", [])
    await stream.end()
    return stream


async def test_wait_ends_with_the_callers_timeout(server: ServerProcess) -> None:
    transport = Http1Transport(server.url, max_connections=1)
    try:
        holder = await start_holding(transport)
        waiting = await transport.open_stream("POST", "/echo", [])
        await waiting.send(b"x")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await waiting.end()
        assert transport.waiting_count == 0
        assert not waiting.got_connection
        assert holder.got_connection
        with pytest.raises(TransportError):
            await waiting.response_head()
        # the place is still the holder's; once it is given back, the next exchange gets it
        holder.reset()
        assert transport.open_connection_count == 0
        _, body = await exchange(transport, "/echo", b"next")
        assert body == b"next"
        assert transport.open_connection_count == 1
    finally:
        await transport.close()


async def test_reset_ends_the_wait(server: ServerProcess) -> None:
    transport = Http1Transport(server.url, max_connections=1)
    try:
        holder = await start_holding(transport)
        waiting = await transport.open_stream("POST", "/echo", [])
        task = asyncio.create_task(waiting.end())
        await until(lambda: transport.waiting_count == 1, "the second exchange waits")
        waiting.reset()
        with pytest.raises(TransportError, match="reset"):
            await task
        assert transport.waiting_count == 0
        assert transport.open_connection_count == 1  # the holder's
        holder.reset()
        _, body = await exchange(transport, "/echo", b"after")
        assert body == b"after"
    finally:
        await transport.close()


async def test_close_fails_the_waiters(server: ServerProcess) -> None:
    transport = Http1Transport(server.url, max_connections=1)
    holder = await start_holding(transport)
    waiting = await transport.open_stream("POST", "/echo", [])
    task = asyncio.create_task(waiting.end())
    await until(lambda: transport.waiting_count == 1, "the second exchange waits")
    await transport.close()
    with pytest.raises(TransportError, match="closed"):
        await task
    holder.reset()
    assert transport.open_connection_count == 0


async def test_a_closed_connection_gives_its_place_to_a_waiter(server: ServerProcess) -> None:
    transport = Http1Transport(server.url, max_connections=2)
    try:
        holders = [await start_holding(transport), await start_holding(transport)]
        task = asyncio.create_task(exchange(transport, "/echo", b"waited"))
        await until(lambda: transport.waiting_count == 1, "the third exchange waits")
        holders[0].reset()  # its connection is closed, not reusable: the waiter opens one
        _, body = await task
        assert body == b"waited"
        assert transport.open_connection_count == 2
        holders[1].reset()
        assert transport.open_connection_count == 1
    finally:
        await transport.close()


async def test_idle_connections_are_closed_after_the_idle_timeout(server: ServerProcess) -> None:
    transport = Http1Transport(server.url, idle_timeout=0.3)
    try:
        await asyncio.gather(*(exchange(transport, "/slow?delay=0.05") for _ in range(5)))
        assert transport.idle_connection_count == 5
        idle = list(transport._idle)
        await until(lambda: transport.idle_connection_count == 0, "the idle connections close")
        assert transport.open_connection_count == 0
        assert all(conn.writer.is_closing() for conn in idle)
        # and the pool refills on demand
        await exchange(transport, "/echo", b"x")
        assert transport.open_connection_count == 1
    finally:
        await transport.close()


async def test_no_idle_timeout_keeps_connections(server: ServerProcess) -> None:
    transport = Http1Transport(server.url, idle_timeout=None, max_connections=0)
    try:
        await asyncio.gather(*(exchange(transport, "/slow?delay=0.05") for _ in range(30)))
        assert transport.idle_connection_count == 30
        assert transport._reaper is None
    finally:
        await transport.close()


async def test_idle_pool_smaller_than_cap(server: ServerProcess) -> None:
    transport = Http1Transport(server.url, max_connections=6, max_idle_connections=2)
    try:
        await asyncio.gather(*(exchange(transport, "/slow?delay=0.05") for _ in range(6)))
        assert transport.idle_connection_count == 2
        assert transport.open_connection_count == 2
    finally:
        await transport.close()


async def test_most_recently_used_connection_is_reused_first(server: ServerProcess) -> None:
    transport = Http1Transport(server.url)
    try:
        await asyncio.gather(*(exchange(transport, "/slow?delay=0.05") for _ in range(3)))
        newest = transport._idle[-1]
        oldest = transport._idle[0]
        for _ in range(5):
            await exchange(transport, "/echo", b"x")
            assert transport._idle[-1] is newest
            assert transport._idle[0] is oldest
    finally:
        await transport.close()

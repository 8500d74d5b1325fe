"""A small HTTP/1.1 server on 127.0.0.1 (h11 over asyncio, in the test's own process)
whose behaviour a test picks per request: answer, drop the connection after reading the
request, stream... It counts the connections and requests it got."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import h11

__all__ = ["Behaviour", "Peer", "answer", "drop_the", "ok"]

Behaviour = Callable[["Peer", h11.Request, bytes, asyncio.StreamWriter, h11.Connection],
                     Awaitable[bool]]


class Peer:
    """An HTTP/1.1 server on 127.0.0.1; `behaviour` answers each request (False: the
    connection is dropped after it)."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests: list[tuple[h11.Request, bytes]] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        if not data:
                            return
                        conn.receive_data(data)
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                assert request is not None
                self.requests.append((request, body))
                if not await self.behaviour(self, request, body, writer, conn):
                    return
                conn.start_next_cycle()
        finally:
            writer.close()


async def answer(writer: asyncio.StreamWriter, conn: h11.Connection, status: int,
                 body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> bool:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *(extra or [])]
    writer.write(conn.send(h11.Response(status_code=status, headers=headers))
                 + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
    await writer.drain()
    return True


async def ok(peer: Peer, request: h11.Request, body: bytes, writer: asyncio.StreamWriter,
             conn: h11.Connection) -> bool:
    return await answer(writer, conn, 200, b'{"got":' + body + b"}")


def drop_the(nth: set[int]) -> Behaviour:
    """Answers, except the requests numbered in `nth` (1-based): read, then dropped."""

    async def behaviour(peer: Peer, request: h11.Request, body: bytes,
                        writer: asyncio.StreamWriter, conn: h11.Connection) -> bool:
        if len(peer.requests) in nth:
            return False
        return await ok(peer, request, body, writer, conn)

    return behaviour

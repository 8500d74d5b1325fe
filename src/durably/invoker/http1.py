"""HTTP/1.1 request/response transport (h11 over asyncio streams), with keep-alive reuse.

For deployments registered as HTTP/1.1 (uvicorn-style Python services): no full duplex, so
`send` buffers the request body, `end` sends the whole request with a content-length, and the
response is then read incrementally. `response_head` before `end` ends the body implicitly,
since the exchange cannot make progress otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib

import h11

from durably.invoker.transport import TransportError, authority, join_path, parse_base_uri

__all__ = ["Http1Stream", "Http1Transport"]

_READ_SIZE = 64 * 1024


class _Http1Connection:
    __slots__ = ("reader", "writer", "h11", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.reused = False

    @property
    def alive(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class Http1Stream:
    """One request/response exchange. See `transport.Stream`."""

    def __init__(
        self, transport: Http1Transport, method: str, target: str, headers: list[tuple[str, str]]
    ) -> None:
        self._transport = transport
        self._method = method
        self._target = target
        self._headers = headers
        self._body: list[bytes] = []
        self._conn: _Http1Connection | None = None
        self._sent: asyncio.Future[None] | None = None
        self._head: tuple[int, list[tuple[str, str]]] | None = None
        self._done = False
        self._error: TransportError | None = None
        self._response_bytes = 0

    async def send(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._sent is not None:
            raise TransportError("request body already ended")
        if data:
            self._body.append(data)

    async def end(self) -> None:
        if self._sent is None:
            self._sent = asyncio.get_running_loop().create_future()
            try:
                await self._send_request()
            except TransportError as exc:
                self._error = exc
                raise
            except BaseException:
                self._error = TransportError("request aborted")
                raise
            finally:
                self._sent.set_result(None)
        elif not self._sent.done():
            await asyncio.shield(self._sent)

    async def response_head(self) -> tuple[int, list[tuple[str, str]]]:
        if self._head is None:
            if self._sent is None:
                await self.end()
            elif not self._sent.done():
                await asyncio.shield(self._sent)
            if self._error is not None:
                raise self._error
            # A reused keep-alive connection may have been closed by the server while idle;
            # if it dies before any response byte, resend once on a fresh connection.
            conn = self._conn
            assert conn is not None
            try:
                self._head = await self._read_head()
            except TransportError:
                if not conn.reused or self._response_bytes:
                    raise
                self._error = None
                await self._send_request(fresh=True)
                self._head = await self._read_head()
        return self._head

    async def receive(self) -> bytes | None:
        if self._error is not None:
            raise self._error
        if self._head is None:
            await self.response_head()
        while not self._done:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._done = True
                self._finish()
        return None

    def reset(self) -> None:
        if self._error is None:
            self._error = TransportError("stream reset by caller")
        self._done = True
        self._discard()

    # -- internals -----------------------------------------------------------------------

    async def _send_request(self, *, fresh: bool = False) -> None:
        conn = await self._transport._acquire(fresh=fresh)
        self._conn = conn
        body = b"".join(self._body)
        headers = [("host", self._transport._authority)]
        for name, value in self._headers:
            lname = name.lower()
            if lname in ("host", "content-length", "transfer-encoding", "connection"):
                continue
            headers.append((name, value))
        headers.append(("content-length", str(len(body))))
        try:
            out = conn.h11.send(
                h11.Request(method=self._method, target=self._target, headers=headers)
            )
            if body:
                out += conn.h11.send(h11.Data(data=body))
            out += conn.h11.send(h11.EndOfMessage())
            conn.writer.write(out)
            await conn.writer.drain()
        except (OSError, h11.LocalProtocolError) as exc:
            self._discard()
            raise TransportError(f"sending request failed: {exc}") from exc

    async def _read_head(self) -> tuple[int, list[tuple[str, str]]]:
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                headers = [
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in event.headers
                ]
                return event.status_code, headers
            # InformationalResponse (1xx): keep waiting for the final one.

    async def _next_event(self) -> h11.Event:
        if self._error is not None:
            raise self._error
        conn = self._conn
        assert conn is not None
        try:
            while True:
                event = conn.h11.next_event()
                if event is h11.NEED_DATA:
                    data = await conn.reader.read(_READ_SIZE)
                    self._response_bytes += len(data)
                    conn.h11.receive_data(data)
                    continue
                if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    raise TransportError("connection closed before the response ended")
                assert isinstance(event, h11.Event)
                return event
        except TransportError as exc:
            self._error = exc
            self._discard()
            raise
        except (OSError, h11.RemoteProtocolError) as exc:
            self._error = TransportError(f"reading response failed: {exc}")
            self._discard()
            raise self._error from exc

    def _finish(self) -> None:
        conn = self._conn
        self._conn = None
        if conn is None:
            return
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            try:
                conn.h11.start_next_cycle()
            except h11.LocalProtocolError:
                conn.close()
                return
            self._transport._release(conn)
        else:
            conn.close()

    def _discard(self) -> None:
        conn = self._conn
        self._conn = None
        if conn is not None:
            conn.close()


class Http1Transport:
    """HTTP/1.1 keep-alive pool for one deployment base URI."""

    def __init__(
        self, base_uri: str, *, connect_timeout: float = 10.0, max_idle_connections: int = 64
    ) -> None:
        self.base_uri = base_uri
        self._host, self._port, self._prefix = parse_base_uri(base_uri)
        self._authority = authority(self._host, self._port)
        self.connect_timeout = connect_timeout
        self.max_idle_connections = max_idle_connections
        self._idle: list[_Http1Connection] = []
        self._closed = False

    async def open_stream(
        self, method: str, path: str, headers: list[tuple[str, str]]
    ) -> Http1Stream:
        if self._closed:
            raise TransportError("transport closed")
        return Http1Stream(self, method, join_path(self._prefix, path), headers)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()

    @property
    def idle_connection_count(self) -> int:
        return len(self._idle)

    async def _acquire(self, *, fresh: bool = False) -> _Http1Connection:
        if self._closed:
            raise TransportError("transport closed")
        while self._idle and not fresh:
            conn = self._idle.pop()
            if conn.alive:
                conn.reused = True
                return conn
            conn.close()
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except TimeoutError:
            raise TransportError(
                f"connect to {self.base_uri} timed out after {self.connect_timeout}s"
            ) from None
        except OSError as exc:
            raise TransportError(f"connect to {self.base_uri} failed: {exc}") from exc
        return _Http1Connection(reader, writer)

    def _release(self, conn: _Http1Connection) -> None:
        if self._closed or len(self._idle) >= self.max_idle_connections or not conn.alive:
            conn.close()
        else:
            self._idle.append(conn)

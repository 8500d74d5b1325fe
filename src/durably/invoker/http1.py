"""HTTP/1.1 request/response transport (h11 over asyncio streams), with keep-alive reuse.

For deployments registered as HTTP/1.1 (uvicorn-style Python services): no full duplex, so
`send` buffers the request body, `end` sends the whole request with a content-length, and the
response is then read incrementally. `response_head` before `end` ends the body implicitly,
since the exchange cannot make progress otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import h11

from durably.invoker.transport import TransportError, authority, join_path, parse_base_uri

__all__ = ["Http1Stream", "Http1Transport"]

_READ_SIZE = 64 * 1024

# Per deployment. The cap keeps a burst of attempts from opening one connection each (a
# service process has a file descriptor limit, and hypercorn holds a connection the client
# closed while idle until its own keep_alive_timeout); the idle timeout lets the pool shrink
# after a burst without closing connections that the next burst will want.
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_IDLE_TIMEOUT_S = 60.0


class _Http1Connection:
    __slots__ = ("reader", "writer", "h11", "reused", "idle_since", "_pool")

    def __init__(
        self, pool: Http1Transport, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._pool: Http1Transport | None = pool
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.reused = False
        self.idle_since = 0.0

    @property
    def alive(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        """Close the socket (a full close) and give its place in the pool back. Idempotent."""
        self.writer.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool._connection_closed()


class Http1Stream:
    """One request/response exchange. See `transport.Stream`."""

    def __init__(
        self,
        transport: Http1Transport,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        *,
        resend_on_stale: bool = True,
    ) -> None:
        self._transport = transport
        self._resend_on_stale = resend_on_stale
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
        self._waiter: asyncio.Future[_Http1Connection | None] | None = None
        # False until the request has a connection: a deadline that ends earlier ended the
        # wait for a free one (the pool's cap), not a wait for the deployment
        self.got_connection = False
        # False while no byte of the request was handed to a socket: a failure then means
        # the peer surely never saw it (a caller that must not send a request twice may
        # send it elsewhere); True means it may have been received
        self.request_sent = False

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
                if not conn.reused or self._response_bytes or not self._resend_on_stale:
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
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._error)
        self._discard()

    # -- internals -----------------------------------------------------------------------

    async def _send_request(self, *, fresh: bool = False) -> None:
        if self._error is not None:  # reset before the request went out
            raise self._error
        conn = await self._transport._acquire(self, fresh=fresh)
        if self._error is not None:  # reset while waiting or connecting
            self._transport._release(conn)
            raise self._error
        self._conn = conn
        self.got_connection = True
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
            self.request_sent = True
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
    """HTTP/1.1 connection pool for one deployment base URI.

    At most `max_connections` connections are open at once (None or 0: no cap); an exchange
    that finds none free waits for one, first come first served. Nothing here bounds that
    wait: the caller's own deadline does (the invoker awaits `end()` and `response_head()`
    inside the attempt's inactivity timeout), and `reset()` ends it. A finished exchange
    leaves its connection idle for the next one (most recently used first), up to
    `max_idle_connections` (default: as many as `max_connections`); a connection idle for
    `idle_timeout` seconds (None: forever) is closed, so the pool shrinks after a burst.
    """

    def __init__(
        self,
        base_uri: str,
        *,
        connect_timeout: float = 10.0,
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
        max_idle_connections: int | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self.base_uri = base_uri
        self._host, self._port, self._prefix = parse_base_uri(base_uri)
        self._authority = authority(self._host, self._port)
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections or None
        if max_idle_connections is None:
            max_idle_connections = self.max_connections
        self.max_idle_connections = max_idle_connections
        self.idle_timeout = idle_timeout
        self._open = 0  # connections open or being opened, idle or in use
        self._idle: collections.deque[_Http1Connection] = collections.deque()  # oldest first
        # exchanges waiting for a connection: each future gets a connection to reuse, or
        # None for a place to open one
        self._waiters: collections.deque[asyncio.Future[_Http1Connection | None]] = (
            collections.deque()
        )
        self._reaper: asyncio.TimerHandle | None = None
        self._closed = False

    async def open_stream(
        self, method: str, path: str, headers: list[tuple[str, str]], *,
        resend_on_stale: bool = True,
    ) -> Http1Stream:
        """A new exchange. `resend_on_stale`: when a reused keep-alive connection dies
        before any byte of the response, send the request again once on a fresh one (it
        was most likely closed by the server while idle, but it may also have been
        received: pass False for a request that must not reach the server twice; the
        failure is then the caller's, with `request_sent` set). `path` may carry a query."""
        if self._closed:
            raise TransportError("transport closed")
        return Http1Stream(
            self, method, join_path(self._prefix, path), headers,
            resend_on_stale=resend_on_stale,
        )

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        waiters, self._waiters = self._waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(TransportError("transport closed"))
        idle, self._idle = self._idle, collections.deque()
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()

    @property
    def idle_connection_count(self) -> int:
        return len(self._idle)

    @property
    def open_connection_count(self) -> int:
        """Connections open (or being opened), idle or in use."""
        return self._open

    @property
    def waiting_count(self) -> int:
        """Exchanges waiting for a free connection."""
        return len(self._waiters)

    async def _acquire(self, stream: Http1Stream, *, fresh: bool = False) -> _Http1Connection:
        if self._closed:
            raise TransportError("transport closed")
        if not fresh:
            while self._idle:
                conn = self._idle.pop()
                if conn.alive:
                    conn.reused = True
                    return conn
                conn.close()
        if self._waiters or (
            self.max_connections is not None and self._open >= self.max_connections
        ):
            waiter: asyncio.Future[_Http1Connection | None]
            waiter = asyncio.get_running_loop().create_future()
            # a stream retrying on a fresh connection just gave one back: it goes first
            if fresh:
                self._waiters.appendleft(waiter)
            else:
                self._waiters.append(waiter)
            stream._waiter = waiter
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    # given a connection or a place just as the wait ended: pass it on
                    given = waiter.result()
                    if given is None:
                        self._connection_closed()
                    else:
                        self._release(given)
                else:
                    waiter.cancel()
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
            finally:
                stream._waiter = None
            if handed is not None:
                handed.reused = True
                return handed
            # handed the place of a connection that closed: open a new one in it
        else:
            self._open += 1
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except BaseException as exc:
            self._connection_closed()
            if isinstance(exc, TimeoutError):
                raise TransportError(
                    f"connect to {self.base_uri} timed out after {self.connect_timeout}s"
                ) from None
            if isinstance(exc, OSError):
                raise TransportError(f"connect to {self.base_uri} failed: {exc}") from exc
            raise
        return _Http1Connection(self, reader, writer)

    def _release(self, conn: _Http1Connection) -> None:
        """A connection ready for the next request: to the first waiter, else to the pool."""
        if self._closed or not conn.alive:
            conn.close()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if self.max_idle_connections is not None and len(self._idle) >= self.max_idle_connections:
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._reaper is None and self.idle_timeout is not None:
            self._reaper = loop.call_at(conn.idle_since + self.idle_timeout, self._reap)

    def _connection_closed(self) -> None:
        """A connection (or a place reserved for one) is gone: its place to the first waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._open -= 1

    def _reap(self) -> None:
        """Close the connections idle for `idle_timeout`; come back for the next oldest."""
        self._reaper = None
        if self.idle_timeout is None:
            return
        loop = asyncio.get_running_loop()
        # timers may fire up to a clock tick early: do not come back over and over for it
        horizon = loop.time() + 0.01
        while self._idle and self._idle[0].idle_since + self.idle_timeout <= horizon:
            self._idle.popleft().close()
        if self._idle and not self._closed:
            self._reaper = loop.call_at(self._idle[0].idle_since + self.idle_timeout, self._reap)

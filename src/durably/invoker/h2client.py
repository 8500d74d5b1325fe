"""Cleartext HTTP/2 (prior knowledge) client pool for talking to deployments.

The wire work is h2's; this module only moves bytes between h2 and an asyncio transport and
turns h2 events into per-stream state that callers await. Design choices:

* One `asyncio.Protocol` per connection is the only reader; streams own no tasks. Callers
  wait on small futures that the protocol resolves when an event arrives.
* Writes are coalesced: stream operations only feed h2 and schedule one flush with
  `call_soon`, so every stream touched in one event-loop step shares a single
  `transport.write`. Reading flushes at once (window updates, PING and SETTINGS acks).
* Received data is acknowledged when the caller consumes it, so a stalled consumer
  back-pressures its own stream instead of buffering without bound; the connection window is
  raised to 16 MiB so that one slow stream does not starve the others.
* Connection selection: the first open connection below the peer's
  SETTINGS_MAX_CONCURRENT_STREAMS (and `max_streams_per_connection`) gets the stream. When all
  are full, another connection is opened rather than queueing: a stream that waits in a queue
  is an invocation making no progress, while deployments accept connections cheaply.
  Concurrent callers share one in-progress connect. A connection is used only after the
  peer's first SETTINGS frame, so its concurrency limit is known before streams go out.
* GOAWAY: the connection stops taking streams; streams above last_stream_id fail with
  `retry_immediately=True`; the rest keep running and the connection closes when they finish.
  h2 treats a received GOAWAY as closing the connection, which would make that draining
  impossible, so `_ClientH2Connection` keeps the state machine open and the outbound buffer
  intact. After a GOAWAY the pool sends a PING: a peer that cannot drain (hypercorn, whose h2
  goes CLOSED when it sends GOAWAY) then drops the connection at once instead of at its idle
  timeout, and the streams it dropped fail with `retry_immediately=True`.
* Learned rotation: a peer that sends GOAWAY and then drops accepted streams is one that
  closes connections after a fixed number of requests (hypercorn's `keep_alive_max_requests`,
  default 1000). The pool then rotates connections itself before that point: it caps the
  streams per connection at what the failed connection completed (at least 1), never above
  the streams it had opened before the GOAWAY minus one (the peer's limit is below that),
  doubles the cap after each connection it retires cleanly, and forgets all of it after
  `_BUDGET_MEMORY` seconds in case the failure was a one-off shutdown.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import hpack.hpack
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from hpack.table import HeaderTable
from hyperframe.frame import RstStreamFrame

from durably.invoker.transport import TransportError, authority, join_path, parse_base_uri

__all__ = ["H2Pool", "H2Stream"]

# Flow-control windows we grant the peer. The per-stream window bounds what one unread
# response can buffer; the connection window is larger so unread streams don't block others.
_STREAM_WINDOW = 1 << 20
_CONNECTION_WINDOW = 16 << 20
_DEFAULT_CONNECTION_WINDOW = 65535
_BUDGET_MEMORY = 600.0

# Headers that HTTP/2 forbids (RFC 9113 8.2.2); h2 would raise on them.
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te"}
)


class _DrainingStateMachine(h2.connection.H2ConnectionStateMachine):
    """h2's connection state machine, except that a received GOAWAY does not close the
    connection: RFC 9113 6.8 lets streams up to last_stream_id finish, and only the pool
    decides not to open new ones."""

    _transitions = {
        **h2.connection.H2ConnectionStateMachine._transitions,
        (h2.connection.ConnectionState.CLIENT_OPEN, h2.connection.ConnectionInputs.RECV_GOAWAY): (
            None,
            h2.connection.ConnectionState.CLIENT_OPEN,
        ),
    }


# Static-table positions (RFC 7541 appendix A) of whole headers and of names.
_STATIC_FULL = {entry: i for i, entry in reversed(list(enumerate(HeaderTable.STATIC_TABLE, 1)))}
_STATIC_NAME = {name: i for i, (name, _) in reversed(list(enumerate(HeaderTable.STATIC_TABLE, 1)))}
# Headers whose value changes with every request: encoded each time, never cached.
_VOLATILE = frozenset(
    {b"x-restate-invocation-id", b"x-restate-service-key", b"x-restate-jwt-v1"}
)
_MAX_CACHED_FIELDS = 1024


class _RequestHeaderEncoder(hpack.Encoder):
    """HPACK for our request headers, without the dynamic table and without Huffman coding.

    Every request carries a new invocation id. With hpack's default encoder each id is
    Huffman-coded and inserted into the dynamic table, evicting the headers that repeat
    (content type, path), which then get coded and inserted again: about 0.1 ms of pure
    Python per request. Encoded statelessly, as static-table references and literals
    "without indexing" (RFC 7541 6.1, 6.2.2), every field except the id is the same bytes
    each time and is cached; the block is a few bytes longer on a local link. Dynamic table
    size updates the peer's SETTINGS call for are still emitted (by hpack's own code).
    """

    def __init__(self) -> None:
        super().__init__()
        self._fields: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers, huffman: bool = True) -> bytes:  # type: ignore[no-untyped-def,override]
        block: list[bytes] = []
        if self.header_table.resized:
            block.append(self._encode_table_size_change())
            self.header_table.resized = False
        fields = self._fields
        for header in headers:
            name, value = header[0], header[1]
            if not isinstance(name, bytes) or not isinstance(value, bytes):
                name, value = hpack.hpack._to_bytes(name), hpack.hpack._to_bytes(value)
            encoded = fields.get((name, value))
            if encoded is None:
                encoded = _encode_field(name, value)
                if name not in _VOLATILE and len(fields) < _MAX_CACHED_FIELDS:
                    fields[(name, value)] = encoded
            block.append(encoded)
        return b"".join(block)


def _encode_field(name: bytes, value: bytes) -> bytes:
    full = _STATIC_FULL.get((name, value))
    if full is not None:
        prefix = hpack.hpack.encode_integer(full, 7)
        prefix[0] |= 0x80  # indexed header field
        return bytes(prefix)
    value_part = bytes(hpack.hpack.encode_integer(len(value), 7)) + value
    index = _STATIC_NAME.get(name)
    if index is not None:
        # literal without indexing, indexed name: 0000 + 4-bit prefix
        return bytes(hpack.hpack.encode_integer(index, 4)) + value_part
    return b"\x00" + bytes(hpack.hpack.encode_integer(len(name), 7)) + name + value_part


class _ClientH2Connection(h2.connection.H2Connection):
    def __init__(self) -> None:
        super().__init__(
            config=h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                # the request headers are ours, built lowercase and well-formed: checking and
                # normalising them again costs ~5 % of the event loop under load. What the
                # deployment sends is still validated.
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.state_machine = _DrainingStateMachine()
        self.encoder = _RequestHeaderEncoder()
        # set by `_Connection`: how many streams it holds (see `open_outbound_streams`)
        self.count_open_streams: Callable[[], int] | None = None
        self._counted = 0

    @property
    def open_outbound_streams(self) -> int:
        """h2 counts open streams by scanning every stream it holds, on every request: with
        hundreds of streams on a connection, most of the cost of opening one. The
        connection's own count of its streams is at least h2's (a stream leaves it only once
        h2 has closed it, or after GOAWAY, when the connection takes no new streams), and
        streams are swept out of h2's table one by one as they are released (`sweep`); the
        full scan still runs now and then, for anything the sweeps missed."""
        count = self.count_open_streams
        self._counted += 1
        if count is None or self._counted % 256 == 0:
            return super().open_outbound_streams
        return count()

    def sweep(self, stream_id: int) -> None:
        """Move a closed stream from h2's table of streams to its record of closed ones (what
        h2's scan does to every closed stream)."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            self._closed_streams[stream_id] = stream.closed_by

    def _receive_frame(self, frame):  # type: ignore[no-untyped-def]
        """h2's `_receive_frame` minus its first line, which formats every received frame
        with `repr()` for a trace log that is a no-op (a few percent of the event loop)."""
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = h2.errors.ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events

    def clear_outbound_data_buffer(self) -> None:
        # h2 calls this only on receiving GOAWAY, dropping frames for streams that may still
        # complete (and window updates the peer needs). Keep them.
        pass


class H2Stream:
    """One request/response exchange on an `_Connection`. See `transport.Stream`."""

    __slots__ = (
        "_conn",
        "stream_id",
        "_head",
        "_chunks",
        "_remote_ended",
        "_local_ended",
        "_body_unwanted",
        "_on_idle_connection",
        "_released",
        "_error",
        "_recv_waiter",
        "_send_waiter",
    )

    def __init__(self, conn: _Connection, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self._head: tuple[int, list[tuple[str, str]]] | None = None
        # (data, flow-controlled length) pairs; acknowledged to the peer when consumed.
        self._chunks: collections.deque[tuple[bytes, int]] = collections.deque()
        self._remote_ended = False
        self._local_ended = False
        self._body_unwanted = False
        # Opened on a reused connection with no other streams: if the connection dies before
        # any answer, the peer most likely closed it for idleness as we sent the request.
        self._on_idle_connection = False
        self._released = False
        self._error: TransportError | None = None
        self._recv_waiter: asyncio.Future[None] | None = None
        self._send_waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<H2Stream {self.stream_id} on {self._conn!r}>"

    # -- caller side ---------------------------------------------------------------------

    async def response_head(self) -> tuple[int, list[tuple[str, str]]]:
        while self._head is None:
            if self._error is not None:
                raise self._error
            if self._remote_ended:
                raise TransportError("response ended without headers")
            await self._wait_recv()
        return self._head

    async def receive(self) -> bytes | None:
        while True:
            if self._chunks:
                data, flow_controlled = self._chunks.popleft()
                self._conn.acknowledge(self.stream_id, flow_controlled)
                return data
            if self._remote_ended:
                return None
            if self._error is not None:
                raise self._error
            await self._wait_recv()

    async def send(self, data: bytes) -> None:
        if self._body_unwanted:
            return
        if self._error is not None:
            raise self._error
        if self._local_ended:
            raise TransportError("request body already ended")
        conn = self._conn
        h2c = conn.h2
        total = len(data)
        offset = 0
        while offset < total:
            if conn.write_paused:
                await conn.wait_writable()
            if self._error is not None:
                raise self._error
            if self._local_ended:
                raise TransportError("request body already ended")
            try:
                window = h2c.local_flow_control_window(self.stream_id)
            except h2.exceptions.StreamClosedError:
                raise self._error or TransportError("stream closed by peer") from None
            if window <= 0:
                await self._wait_send()
                continue
            n = min(window, h2c.max_outbound_frame_size, total - offset)
            chunk = data if n == total else data[offset : offset + n]
            try:
                h2c.send_data(self.stream_id, chunk)
            except h2.exceptions.ProtocolError as exc:
                raise self._error or TransportError(f"cannot send: {exc}") from exc
            offset += n
            conn.schedule_flush()

    def send_nowait(self, data: bytes) -> bool:
        """Write `data` now if it fits the flow-control window in one frame and the
        connection is not paused; otherwise write nothing and return False (use `send`)."""
        if self._body_unwanted:
            return True
        if self._error is not None or self._local_ended:
            return False
        conn = self._conn
        if conn.write_paused:
            return False
        h2c = conn.h2
        try:
            window = h2c.local_flow_control_window(self.stream_id)
        except h2.exceptions.StreamClosedError:
            return False
        if len(data) > window or len(data) > h2c.max_outbound_frame_size:
            return False
        try:
            h2c.send_data(self.stream_id, data)
        except h2.exceptions.ProtocolError:
            return False
        conn.schedule_flush()
        return True

    async def end(self) -> None:
        if self._local_ended or self._error is not None:
            return
        self._local_ended = True
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.h2.end_stream(self.stream_id)
        self._conn.schedule_flush()
        if self._remote_ended:
            self._release()

    def reset(self) -> None:
        if self._released:
            return
        conn = self._conn
        if not conn.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                conn.h2.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
            # Unread data still counts against the connection window.
            unread = sum(n for _, n in self._chunks)
            if unread:
                conn.acknowledge(self.stream_id, unread)
            conn.schedule_flush()
        self._chunks.clear()
        self._local_ended = True
        self._fail(TransportError("stream reset by caller"))

    # -- protocol side -------------------------------------------------------------------

    async def _wait_recv(self) -> None:
        fut = self._conn.loop.create_future()
        self._recv_waiter = fut
        try:
            await fut
        finally:
            self._recv_waiter = None

    async def _wait_send(self) -> None:
        fut = self._conn.loop.create_future()
        self._send_waiter = fut
        self._conn.send_blocked.add(self)
        try:
            await fut
        finally:
            self._send_waiter = None
            self._conn.send_blocked.discard(self)

    def _wake_recv(self) -> None:
        fut = self._recv_waiter
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _wake_send(self) -> None:
        fut = self._send_waiter
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _fail(self, error: TransportError) -> None:
        if self._error is None:
            self._error = error
        self._wake_recv()
        self._wake_send()
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._conn.release(self)


def _decode_headers(raw: list[tuple[bytes, bytes]]) -> tuple[int, list[tuple[str, str]]]:
    status = 0
    headers: list[tuple[str, str]] = []
    for name, value in raw:
        if name == b":status":
            status = int(value)
        elif not name.startswith(b":"):
            # latin-1 maps every byte, so nothing a peer sends can fail to decode.
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
    return status, headers


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection: the asyncio protocol is its only reader."""

    def __init__(self, pool: H2Pool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.h2 = _ClientH2Connection()
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, H2Stream] = {}
        self.h2.count_open_streams = self.streams.__len__
        self.send_blocked: set[H2Stream] = set()
        # Resolved by the peer's first SETTINGS frame; failed if the connection dies first.
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.closed = False
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.goaway_last_stream_id: int | None = None
        self.opened = 0  # streams opened over the connection's life
        self.opened_before_goaway = 0
        self.completed = 0  # responses received in full
        self.retired = False  # reached the pool's budget: no new streams, close when idle
        self.write_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._flush_scheduled = False

    def __repr__(self) -> str:
        return f"<h2 connection to {self.pool.base_uri} streams={len(self.streams)}>"

    @property
    def usable(self) -> bool:
        return (
            not self.closed
            and not self.retired
            and self.goaway_last_stream_id is None
            and self.ready.done()
        )

    def has_capacity(self) -> bool:
        limit = self.h2.remote_settings.max_concurrent_streams
        if self.pool.max_streams_per_connection is not None:
            limit = min(limit, self.pool.max_streams_per_connection)
        return len(self.streams) < limit

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here
        self.transport = transport  # type: ignore[assignment]
        h2c = self.h2
        h2c.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
            },
        )
        h2c.initiate_connection()
        h2c.increment_flow_control_window(_CONNECTION_WINDOW - _DEFAULT_CONNECTION_WINDOW)
        self.flush()

    def data_received(self, data: bytes) -> None:
        h2c = self.h2
        try:
            events = h2c.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY; send it and drop the connection.
            self.flush()
            self.abort(TransportError(f"HTTP/2 protocol error from peer: {exc}"))
            return
        streams = self.streams
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                stream = streams.get(event.stream_id)
                if stream is not None and event.data:
                    stream._chunks.append((event.data, event.flow_controlled_length))
                    stream._wake_recv()
                elif event.flow_controlled_length:
                    h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.ResponseReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._head = _decode_headers(event.headers)
                    stream._wake_recv()
            elif isinstance(event, h2.events.StreamEnded):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    self.completed += 1
                    stream._remote_ended = True
                    stream._wake_recv()
                    if stream._local_ended:
                        stream._release()
            elif isinstance(event, h2.events.WindowUpdated):
                if event.stream_id == 0:
                    for blocked in list(self.send_blocked):
                        blocked._wake_send()
                else:
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        stream._wake_send()
            elif isinstance(event, h2.events.StreamReset):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    self._stream_reset(stream, event.error_code)
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                if not self.ready.done():
                    self.ready.set_result(None)
                if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    for blocked in list(self.send_blocked):
                        blocked._wake_send()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._goaway(event.last_stream_id or 0, event.error_code or 0)
            # Informational responses, trailers, pings, priority: nothing to do.
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = f"connection to {self.pool.base_uri} lost"
        if exc is not None:
            reason += f": {exc}"
        if not self.ready.done():
            self.ready.set_exception(TransportError(reason))
            self.ready.exception()  # retrieved: the connecting task reports it
        # After a GOAWAY the peer chose to go away; what it dropped is worth retrying now.
        # So is a request that met an idle connection's close (hypercorn closes idle
        # connections after keep_alive_timeout without GOAWAY).
        goaway = self.goaway_last_stream_id is not None
        if goaway and self.streams:
            self.pool._learn_budget(self)
        for stream in list(self.streams.values()):
            stale = stream._on_idle_connection and stream._head is None
            stream._fail(TransportError(reason, retry_immediately=goaway or stale))
        self._wake_writable()
        if not self.lost.done():
            self.lost.set_result(None)
        self.pool._forget(self)

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writable()

    # -- helpers used by streams and the pool --------------------------------------------

    def flush(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def acknowledge(self, stream_id: int, flow_controlled_length: int) -> None:
        if flow_controlled_length and not self.closed:
            self.h2.acknowledge_received_data(flow_controlled_length, stream_id)
            self.schedule_flush()

    async def wait_writable(self) -> None:
        while self.write_paused and not self.closed:
            if self._writable is None or self._writable.done():
                self._writable = self.loop.create_future()
            await self._writable

    def _wake_writable(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def open_stream(self, headers: list[tuple[bytes, bytes]]) -> H2Stream:
        """Start a request; raises h2 errors when the connection cannot take it."""
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers)
        stream = H2Stream(self, stream_id)
        stream._on_idle_connection = not self.streams and self.opened > 0
        self.streams[stream_id] = stream
        self.opened += 1
        self.schedule_flush()
        return stream

    def release(self, stream: H2Stream) -> None:
        self.streams.pop(stream.stream_id, None)
        self.h2.sweep(stream.stream_id)
        self.send_blocked.discard(stream)
        if not self.streams and not self.closed:
            if self.goaway_last_stream_id is not None:
                self.close()
            elif self.retired:
                self.close()
                self.pool._grow_budget()

    def _stream_reset(self, stream: H2Stream, error_code: int) -> None:
        if stream._remote_ended and error_code == h2.errors.ErrorCodes.NO_ERROR:
            # RFC 9113 8.1: the response is complete and the peer wants no more request body.
            stream._local_ended = True
            stream._body_unwanted = True
            stream._release()
            return
        refused = error_code == h2.errors.ErrorCodes.REFUSED_STREAM
        stream._fail(
            TransportError(
                f"stream reset by peer ({_error_name(error_code)})", retry_immediately=refused
            )
        )

    def _goaway(self, last_stream_id: int, error_code: int) -> None:
        previous = self.goaway_last_stream_id
        if previous is None:
            self.opened_before_goaway = self.opened
        self.goaway_last_stream_id = (
            last_stream_id if previous is None else min(previous, last_stream_id)
        )
        self.pool._forget(self)
        error = TransportError(
            f"stream not processed: peer sent GOAWAY ({_error_name(error_code)})",
            retry_immediately=True,
        )
        for stream_id, stream in list(self.streams.items()):
            if stream_id > self.goaway_last_stream_id:
                stream._fail(error)
        if not self.streams:
            self.close()
        elif previous is None:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.ping(b"drain?\x00\x00")

    def close(self) -> None:
        """Close gracefully: GOAWAY, then close the transport once written."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection()
        data = self.h2.data_to_send()
        if self.transport is not None:
            if data:
                self.transport.write(data)
            self.transport.close()

    def abort(self, error: TransportError) -> None:
        """Fail every stream with `error` and drop the connection."""
        for stream in list(self.streams.values()):
            stream._fail(error)
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _error_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"error {code}"


class H2Pool:
    """HTTP/2 connections to one deployment (`http://host:port/prefix`). See module doc."""

    def __init__(
        self,
        base_uri: str,
        *,
        connect_timeout: float = 10.0,
        max_streams_per_connection: int | None = None,
    ) -> None:
        self.base_uri = base_uri
        self._host, self._port, self._prefix = parse_base_uri(base_uri)
        self._authority = authority(self._host, self._port).encode()
        self.connect_timeout = connect_timeout
        self.max_streams_per_connection = max_streams_per_connection
        self._usable: list[_Connection] = []  # candidates for new streams
        self._all: set[_Connection] = set()  # including draining ones, for close()
        self._connecting: asyncio.Task[_Connection] | None = None
        self._closed = False
        # Learned rotation (see module doc): streams per connection, and the bound on it.
        self._budget: int | None = None
        self._ceiling: int | None = None
        self._learned_at = 0.0

    async def open_stream(self, method: str, path: str, headers: list[tuple[str, str]]) -> H2Stream:
        request_headers = [
            (b":method", method.encode()),
            (b":scheme", b"http"),
            (b":authority", self._authority),
            (b":path", join_path(self._prefix, path).encode()),
        ]
        for name, value in headers:
            lname = name.lower().encode()
            if lname in _HOP_BY_HOP or lname == b"host":
                continue
            request_headers.append((lname, value.encode()))
        while True:
            if self._closed:
                raise TransportError("transport closed")
            conn = self._pick()
            if conn is None:
                conn = await self._connect()
                if not conn.usable or not conn.has_capacity():
                    # Awaiting a finished connect does not yield to the loop, so its done
                    # callback has not cleared it yet: clear it here and yield, or the next
                    # round would get the same spent connection forever (a busy loop).
                    if self._connecting is not None and self._connecting.done():
                        self._connecting = None
                    await asyncio.sleep(0)
                    continue
            try:
                stream = conn.open_stream(request_headers)
            except h2.exceptions.NoAvailableStreamIDError:
                conn.goaway_last_stream_id = 0  # exhausted: drain it like a GOAWAY
                self._forget(conn)
            except h2.exceptions.TooManyStreamsError:
                # The peer lowered its limit below what we track; try elsewhere.
                self._forget(conn)
                conn.goaway_last_stream_id = conn.h2.highest_outbound_stream_id or 0
            except h2.exceptions.ProtocolError as exc:
                raise TransportError(f"cannot open stream: {exc}") from exc
            else:
                budget = self._budget
                if budget is not None and conn.opened >= budget:
                    conn.retired = True
                    self._forget(conn)
                return stream

    def _pick(self) -> _Connection | None:
        for conn in self._usable:
            if conn.usable and conn.has_capacity():
                return conn
        return None

    async def _connect(self) -> _Connection:
        task = self._connecting
        if task is None:
            task = asyncio.get_running_loop().create_task(self._dial())
            task.add_done_callback(self._connected)
            self._connecting = task
        # Shielded: one caller's cancellation must not abort the connect others share.
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and self._closed:
                raise TransportError("transport closed") from None
            raise

    def _connected(self, task: asyncio.Task[_Connection]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved here: callers get it through shield

    async def _dial(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), self._host, self._port
                )
                self._all.add(conn)
                await conn.ready
        except TimeoutError:
            if conn is not None:
                conn.abort(TransportError("timed out waiting for HTTP/2 settings"))
            raise TransportError(
                f"connect to {self.base_uri} timed out after {self.connect_timeout}s"
            ) from None
        except OSError as exc:
            raise TransportError(f"connect to {self.base_uri} failed: {exc}") from exc
        if self._closed:
            conn.close()
            raise TransportError("transport closed")
        self._usable.append(conn)
        return conn

    def _learn_budget(self, conn: _Connection) -> None:
        ceiling = max(1, conn.opened_before_goaway - 1)
        if self._ceiling is not None and not self._budget_expired():
            ceiling = min(ceiling, self._ceiling)
        self._ceiling = ceiling
        self._budget = max(1, min(conn.completed, ceiling))
        self._learned_at = time.monotonic()

    def _grow_budget(self) -> None:
        if self._budget is None:
            return
        if self._budget_expired():
            self._budget = self._ceiling = None
        else:
            self._budget = min(self._budget * 2, self._ceiling or self._budget * 2)

    def _budget_expired(self) -> bool:
        return time.monotonic() - self._learned_at > _BUDGET_MEMORY

    def _forget(self, conn: _Connection) -> None:
        """Take `conn` out of selection; when it is gone entirely, out of the pool."""
        if conn in self._usable:
            self._usable.remove(conn)
        if conn.closed and conn.lost.done():
            self._all.discard(conn)

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        error = TransportError("transport closed")
        conns = list(self._all)
        for conn in conns:
            for stream in list(conn.streams.values()):
                stream._fail(error)
            conn.close()
        self._usable.clear()
        if conns:
            await asyncio.wait([conn.lost for conn in conns], timeout=1.0)
        self._all.clear()

    # For tests and metrics.
    @property
    def connection_count(self) -> int:
        return sum(1 for conn in self._all if not conn.closed)

"""H2Pool against a real hypercorn (subprocess) serving `_transport_test_server.app`."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator

import pytest
from _transport_test_server import ServerProcess, free_port

from durably.invoker.h2client import H2Pool, H2Stream
from durably.invoker.transport import TransportError

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def goaway_server() -> Iterator[ServerProcess]:
    """hypercorn that sends GOAWAY on every connection's 6th request."""
    proc = ServerProcess(max_requests=5).start()
    yield proc
    proc.kill()


async def read_body(stream: H2Stream) -> bytes:
    chunks = []
    while (chunk := await stream.receive()) is not None:
        chunks.append(chunk)
    return b"".join(chunks)


async def echo(pool: H2Pool, payload: bytes) -> bytes:
    stream = await pool.open_stream("POST", "/echo", [("content-type", "application/x")])
    await stream.send(payload)
    await stream.end()
    status, _ = await stream.response_head()
    assert status == 200
    return await read_body(stream)


async def echo_with_immediate_retries(pool: H2Pool, payload: bytes, retries: list[str]) -> bytes:
    """What the invoker does: retry at once when the transport says so, fail otherwise."""
    for _ in range(20):
        try:
            return await echo(pool, payload)
        except TransportError as exc:
            if not exc.retry_immediately:
                raise
            retries.append(str(exc))
    raise AssertionError("no progress after 20 immediate retries")


async def test_full_duplex_echo(server: ServerProcess) -> None:
    pool = H2Pool(server.url + "/")
    try:
        stream = await pool.open_stream("POST", "/invoke/Svc/echo", [])
        # The head arrives before any request body, like the Python SDK's.
        status, headers = await asyncio.wait_for(stream.response_head(), 5)
        assert status == 200
        assert ("x-path", "/invoke/Svc/echo") in headers
        for i in range(20):
            message = b"message %d " % i * (i + 1)
            await stream.send(message)
            assert await asyncio.wait_for(stream.receive(), 5) == message
        await stream.end()
        await stream.end()  # idempotent
        assert await stream.receive() is None
        assert await stream.receive() is None
    finally:
        await pool.close()


async def test_send_nowait_writes_what_fits_and_refuses_the_rest(server: ServerProcess) -> None:
    pool = H2Pool(server.url)
    try:
        stream = await pool.open_stream("POST", "/invoke/Svc/echo", [])
        status, _ = await asyncio.wait_for(stream.response_head(), 5)
        assert status == 200
        assert stream.send_nowait(b"small")
        assert await asyncio.wait_for(stream.receive(), 5) == b"small"
        # more than one frame's worth: nothing written, the caller uses send()
        big = b"x" * (stream._conn.h2.max_outbound_frame_size + 1)
        assert not stream.send_nowait(big)
        assert stream.send_nowait(b"after")
        assert await asyncio.wait_for(stream.receive(), 5) == b"after"
        await stream.end()
        assert not stream.send_nowait(b"late")
        assert await stream.receive() is None
    finally:
        await pool.close()


async def test_base_uri_prefix_is_joined_without_double_slash(server: ServerProcess) -> None:
    for base, path, seen in [
        (server.url + "/", "/invoke/A/echo", "/invoke/A/echo"),
        (server.url, "/invoke/A/echo", "/invoke/A/echo"),
        (server.url + "/api", "/invoke/A/echo", "/api/invoke/A/echo"),
        (server.url + "/api/", "/invoke/A/echo", "/api/invoke/A/echo"),
    ]:
        pool = H2Pool(base)
        try:
            stream = await pool.open_stream("POST", path, [])
            await stream.end()
            _, headers = await stream.response_head()
            assert dict(headers)["x-path"] == seen, base
            assert await read_body(stream) == b""
        finally:
            await pool.close()


async def test_200_concurrent_streams_share_one_connection(server: ServerProcess) -> None:
    pool = H2Pool(server.url)
    try:
        streams = [await pool.open_stream("POST", "/echo", []) for _ in range(200)]
        assert pool.connection_count == 1

        async def exchange(i: int, stream: H2Stream) -> None:
            await stream.send(b"ping %d" % i)
            assert await stream.receive() == b"ping %d" % i
            await stream.send(b"again")
            await stream.end()
            assert await read_body(stream) == b"again"

        await asyncio.gather(*(exchange(i, s) for i, s in enumerate(streams)))
        assert pool.connection_count == 1
        # Finished streams free their slots: the connection takes 200 more.
        results = await asyncio.gather(*(echo(pool, b"%d" % i) for i in range(200)))
        assert results == [b"%d" % i for i in range(200)]
        assert pool.connection_count == 1
        # and h2 holds none of the finished streams any more (swept as released)
        (conn,) = pool._usable
        assert not conn.streams and not conn.h2.streams
        assert conn.h2.open_outbound_streams == 0
    finally:
        await pool.close()


async def test_streams_are_multiplexed_not_serialized(server: ServerProcess) -> None:
    pool = H2Pool(server.url)
    try:
        started = time.monotonic()

        async def slow() -> bytes:
            stream = await pool.open_stream("POST", "/slow?delay=0.3", [])
            await stream.end()
            return await read_body(stream)

        assert await asyncio.gather(*(slow() for _ in range(50))) == [b"ok"] * 50
        assert time.monotonic() - started < 2.0
        assert pool.connection_count == 1
    finally:
        await pool.close()


@pytest.mark.parametrize("request_size", [0, 100 * 1024, 3 * 1024 * 1024])
@pytest.mark.parametrize("response_size", [70 * 1024, 5 * 1024 * 1024])
async def test_big_bodies_both_directions(
    server: ServerProcess, request_size: int, response_size: int
) -> None:
    pool = H2Pool(server.url)
    try:
        body = bytes(range(256)) * (request_size // 256)
        stream = await pool.open_stream("POST", f"/big?n={response_size}", [])
        await stream.send(body)
        await stream.end()
        status, headers = await stream.response_head()
        assert status == 200
        assert dict(headers)["x-request-bytes"] == str(len(body))
        assert dict(headers)["x-sha"] == hashlib.sha256(body).hexdigest()
        assert len(await read_body(stream)) == response_size
    finally:
        await pool.close()


async def test_big_full_duplex_echo_with_concurrent_reader(server: ServerProcess) -> None:
    """Sender and receiver in separate tasks, 4 MiB each way, flow control both directions."""
    pool = H2Pool(server.url)
    try:
        stream = await pool.open_stream("POST", "/echo", [])
        chunk = b"y" * 100_000
        total = 40 * len(chunk)

        async def writer() -> None:
            for _ in range(40):
                await stream.send(chunk)
            await stream.end()

        writing = asyncio.create_task(writer())
        received = len(await read_body(stream))
        await writing
        assert received == total
    finally:
        await pool.close()


async def test_respects_max_streams_per_connection(server: ServerProcess) -> None:
    pool = H2Pool(server.url, max_streams_per_connection=10)
    try:
        streams = [await pool.open_stream("POST", "/hold", []) for _ in range(25)]
        assert pool.connection_count == 3
        for stream in streams:
            await stream.end()
        assert [await read_body(s) for s in streams] == [b"bye"] * 25
    finally:
        await pool.close()


async def test_respects_peer_max_concurrent_streams() -> None:
    proc = ServerProcess(max_streams=7).start()
    pool = H2Pool(proc.url)
    try:
        streams = [await pool.open_stream("POST", "/hold", []) for _ in range(15)]
        assert pool.connection_count == 3
        for stream in streams:
            await stream.end()
        assert [await read_body(s) for s in streams] == [b"bye"] * 15
    finally:
        await pool.close()
        proc.kill()


async def test_goaway_sequential_requests_all_succeed(goaway_server: ServerProcess) -> None:
    pool = H2Pool(goaway_server.url)
    retries: list[str] = []
    try:
        for i in range(50):
            assert await echo_with_immediate_retries(pool, b"seq %d" % i, retries) == b"seq %d" % i
        # hypercorn drops the stream that made it send GOAWAY; after that one the pool rotates
        # connections before hypercorn's limit.
        assert len(retries) <= 2, retries
    finally:
        await pool.close()


async def test_goaway_concurrent_requests_all_succeed(goaway_server: ServerProcess) -> None:
    pool = H2Pool(goaway_server.url)
    retries: list[str] = []
    try:
        for _ in range(3):
            results = await asyncio.gather(
                *(echo_with_immediate_retries(pool, b"c %d" % i, retries) for i in range(50))
            )
            assert results == [b"c %d" % i for i in range(50)]
    finally:
        await pool.close()


async def test_goaway_hypercorn_drops_running_stream_fast(goaway_server: ServerProcess) -> None:
    """hypercorn cannot finish streams after its own GOAWAY. A bidi stream running when it is
    sent fails at once (not at hypercorn's 5 s idle timeout), marked retry_immediately."""
    pool = H2Pool(goaway_server.url)
    try:
        long = await pool.open_stream("POST", "/echo", [])
        await long.send(b"first")
        assert await long.receive() == b"first"
        for i in range(4):
            assert await echo(pool, b"%d" % i) == b"%d" % i
        started = time.monotonic()
        assert await echo_with_immediate_retries(pool, b"6th", []) == b"6th"
        with pytest.raises(TransportError) as info:
            await long.send(b"second")
            await long.receive()
        assert info.value.retry_immediately
        assert time.monotonic() - started < 1
    finally:
        await pool.close()


class DrainingPeer:
    """An in-process h2c server that does GOAWAY by the book: after `goaway_after` requests
    it sends GOAWAY(last_stream_id=`last_stream_id`) and keeps serving streams up to it.
    Streams echo their body; a stream whose path is /refuse gets RST_STREAM(REFUSED_STREAM);
    on /drop the peer closes the connection without a word (like an idle timeout).
    """

    def __init__(self, goaway_after: int | None = None, last_stream_id: int = 0) -> None:
        self.goaway_after = goaway_after
        self.last_stream_id = last_stream_id
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h2.config
        import h2.connection
        import h2.errors
        import h2.events

        self.connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        requests = 0
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    path = dict(event.headers)[b":path"]
                    if path.endswith(b"/refuse"):
                        conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                        continue
                    if path.endswith(b"/drop"):
                        writer.close()
                        return
                    requests += 1
                    conn.send_headers(event.stream_id, [(":status", "200")])
                    if requests == self.goaway_after:
                        conn.close_connection(last_stream_id=self.last_stream_id)
                        # h2 closes on GOAWAY; a draining server keeps serving.
                        conn.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    if event.data and event.stream_id in conn.streams:
                        conn.send_data(event.stream_id, event.data)
                elif isinstance(event, h2.events.StreamEnded):
                    if event.stream_id in conn.streams:
                        conn.end_stream(event.stream_id)
            writer.write(conn.data_to_send())
        writer.close()


async def test_goaway_drains_accepted_streams_and_fails_the_rest() -> None:
    peer = DrainingPeer(goaway_after=3, last_stream_id=3)
    pool = H2Pool(await peer.start())
    try:
        accepted = [await pool.open_stream("POST", "/echo", []) for _ in range(2)]  # 1, 3
        for stream in accepted:
            await stream.send(b"hello")
            assert await stream.receive() == b"hello"
        beyond = await pool.open_stream("POST", "/echo", [])  # 5: triggers GOAWAY(3)
        with pytest.raises(TransportError) as info:
            await beyond.receive()
        assert info.value.retry_immediately
        draining = accepted[0]._conn
        # New streams go to a new connection ...
        assert await echo(pool, b"new") == b"new"
        assert peer.connections == 2
        # ... while the accepted ones keep running, full duplex, on the draining one.
        for round_ in range(5):
            for stream in accepted:
                await stream.send(b"round %d" % round_)
                assert await stream.receive() == b"round %d" % round_
        for stream in accepted:
            await stream.end()
            assert await read_body(stream) == b""
        await asyncio.sleep(0.05)
        assert draining.closed  # closed once drained
        assert pool.connection_count == 1
    finally:
        await pool.close()
        await peer.stop()


async def test_refused_stream_is_retry_immediately_and_isolated() -> None:
    peer = DrainingPeer()
    pool = H2Pool(await peer.start())
    try:
        other = await pool.open_stream("POST", "/echo", [])
        await other.send(b"1")
        refused = await pool.open_stream("POST", "/refuse", [])
        with pytest.raises(TransportError) as info:
            await refused.response_head()
        assert info.value.retry_immediately
        assert await other.receive() == b"1"
        await other.end()
        assert await read_body(other) == b""
        assert peer.connections == 1
    finally:
        await pool.close()
        await peer.stop()


async def test_request_meeting_idle_close_is_retry_immediately() -> None:
    peer = DrainingPeer()
    pool = H2Pool(await peer.start())
    try:
        assert await echo(pool, b"warm") == b"warm"
        # The connection is idle and reused: the peer closing it is the idle-timeout race.
        dropped = await pool.open_stream("POST", "/drop", [])
        with pytest.raises(TransportError) as info:
            await dropped.response_head()
        assert info.value.retry_immediately
        # With another stream running, the same close says nothing reassuring.
        busy = await pool.open_stream("POST", "/echo", [])
        await busy.send(b"1")
        assert await busy.receive() == b"1"
        dropped = await pool.open_stream("POST", "/drop", [])
        for stream in (dropped, busy):
            with pytest.raises(TransportError) as info:
                await stream.receive()
            assert not info.value.retry_immediately
    finally:
        await pool.close()
        await peer.stop()


async def test_server_killed_mid_stream_then_restarted() -> None:
    proc = ServerProcess().start()
    pool = H2Pool(proc.url, connect_timeout=2)
    try:
        streams = [await pool.open_stream("POST", "/hold", []) for _ in range(3)]
        for stream in streams:
            await stream.send(b"x")
            assert (await stream.response_head())[0] == 200
        waiting = asyncio.create_task(streams[0].receive())
        await asyncio.sleep(0.05)
        proc.kill()
        with pytest.raises(TransportError) as info:
            await asyncio.wait_for(waiting, 5)
        assert not info.value.retry_immediately
        for stream in streams[1:]:
            with pytest.raises(TransportError):
                await stream.receive()
            with pytest.raises(TransportError):
                await stream.send(b"more")
            await stream.end()  # no error: cleanup paths call it unconditionally
        with pytest.raises(TransportError):
            await pool.open_stream("POST", "/echo", [])
        proc.start()
        assert await echo(pool, b"back") == b"back"
        assert pool.connection_count == 1
    finally:
        await pool.close()
        proc.kill()


async def test_connection_refused_fails_fast() -> None:
    pool = H2Pool(f"http://127.0.0.1:{free_port()}", connect_timeout=5)
    started = time.monotonic()
    with pytest.raises(TransportError, match="failed"):
        await pool.open_stream("POST", "/echo", [])
    assert time.monotonic() - started < 1
    await pool.close()


async def test_reset_fails_only_that_stream(server: ServerProcess) -> None:
    pool = H2Pool(server.url)
    try:
        doomed = await pool.open_stream("POST", "/echo", [])
        other = await pool.open_stream("POST", "/echo", [])
        await doomed.send(b"a" * 200_000)  # unread data must not eat the connection window
        await other.send(b"b")
        assert await other.receive() == b"b"
        await asyncio.sleep(0.1)
        doomed.reset()
        doomed.reset()
        with pytest.raises(TransportError):
            await doomed.receive()
        with pytest.raises(TransportError):
            await doomed.send(b"x")
        await other.send(b"c")
        assert await other.receive() == b"c"
        await other.end()
        assert await other.receive() is None
        for _ in range(30):  # 30 x 200 kB unread and reset: connection window stays open
            stream = await pool.open_stream("POST", "/echo", [])
            await stream.send(b"z" * 200_000)
            await asyncio.sleep(0)
            stream.reset()
        assert await echo(pool, b"after") == b"after"
        assert pool.connection_count == 1
    finally:
        await pool.close()


async def test_close_wakes_waiters_and_refuses_new_streams(server: ServerProcess) -> None:
    pool = H2Pool(server.url)
    stream = await pool.open_stream("POST", "/hold", [])
    await stream.response_head()
    waiting = asyncio.create_task(stream.receive())
    await asyncio.sleep(0.05)
    await pool.close()
    with pytest.raises(TransportError):
        await asyncio.wait_for(waiting, 2)
    with pytest.raises(TransportError):
        await pool.open_stream("POST", "/echo", [])
    assert pool.connection_count == 0


async def test_sequential_requests_reuse_one_connection(server: ServerProcess) -> None:
    pool = H2Pool(server.url)
    try:
        for i in range(100):
            assert await echo(pool, b"%d" % i) == b"%d" % i
        assert pool.connection_count == 1
        conn = next(iter(pool._all))
        assert not conn.streams  # finished streams are released
    finally:
        await pool.close()

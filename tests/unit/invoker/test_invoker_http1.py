"""Http1Transport against a real hypercorn (subprocess) speaking HTTP/1.1."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from _transport_test_server import ServerProcess, free_port
from tests.support.http_peer import Peer, drop_the

from durably.invoker.http1 import Http1Stream, Http1Transport
from durably.invoker.transport import TransportError

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().start()
    yield proc
    proc.kill()


async def read_body(stream: Http1Stream) -> list[bytes]:
    chunks = []
    while (chunk := await stream.receive()) is not None:
        chunks.append(chunk)
    return chunks


async def test_request_response(server: ServerProcess) -> None:
    transport = Http1Transport(server.url + "/api/")
    try:
        stream = await transport.open_stream("POST", "/invoke/A/echo", [("X-Custom", "1")])
        await stream.send(b"hello ")
        await stream.send(b"world")
        await stream.end()
        await stream.end()
        status, headers = await stream.response_head()
        assert status == 200
        assert dict(headers)["x-path"] == "/api/invoke/A/echo"
        assert b"".join(await read_body(stream)) == b"hello world"
        assert await stream.receive() is None
    finally:
        await transport.close()


async def test_keep_alive_reuses_connection(server: ServerProcess) -> None:
    transport = Http1Transport(server.url)
    try:
        for i in range(20):
            stream = await transport.open_stream("POST", "/echo", [])
            await stream.send(b"%d" % i)
            await stream.end()
            assert (await stream.response_head())[0] == 200
            assert b"".join(await read_body(stream)) == b"%d" % i
            assert transport.idle_connection_count == 1
            conn = transport._idle[0]
            if i == 0:
                first = conn
            assert conn is first
    finally:
        await transport.close()


async def test_response_body_is_received_incrementally(server: ServerProcess) -> None:
    transport = Http1Transport(server.url)
    try:
        body = b"q" * 300_000
        stream = await transport.open_stream("POST", f"/big?n={3 * 1024 * 1024}", [])
        await stream.send(body)
        status, headers = await stream.response_head()  # ends the request implicitly
        assert status == 200
        assert dict(headers)["x-sha"] == hashlib.sha256(body).hexdigest()
        chunks = await read_body(stream)
        assert sum(map(len, chunks)) == 3 * 1024 * 1024
        assert len(chunks) > 1
        assert transport.idle_connection_count == 1
    finally:
        await transport.close()


async def test_stale_idle_connection_is_replaced_transparently() -> None:
    proc = ServerProcess().start()
    transport = Http1Transport(proc.url)
    try:
        stream = await transport.open_stream("GET", "/slow?delay=0", [])
        assert b"".join(await read_body(stream)) == b"ok"
        assert transport.idle_connection_count == 1
        proc.kill()
        proc.start()
        stream = await transport.open_stream("GET", "/slow?delay=0", [])
        assert b"".join(await read_body(stream)) == b"ok"
    finally:
        await transport.close()
        proc.kill()


async def test_server_killed_mid_response() -> None:
    proc = ServerProcess().start()
    transport = Http1Transport(proc.url)
    try:
        stream = await transport.open_stream("POST", "/slow?delay=5", [])
        await stream.end()
        proc.kill()
        with pytest.raises(TransportError):
            await stream.response_head()
        with pytest.raises(TransportError):
            await stream.receive()
    finally:
        await transport.close()
        proc.kill()


async def test_reset_discards_connection(server: ServerProcess) -> None:
    transport = Http1Transport(server.url)
    try:
        stream = await transport.open_stream("POST", f"/big?n={1024 * 1024}", [])
        await stream.end()
        assert await stream.receive()
        stream.reset()
        with pytest.raises(TransportError):
            await stream.receive()
        assert transport.idle_connection_count == 0
        stream = await transport.open_stream("POST", "/echo", [])
        await stream.send(b"fine")
        assert b"".join(await read_body(stream)) == b"fine"
    finally:
        await transport.close()


async def test_connection_refused_fails_fast() -> None:
    transport = Http1Transport(f"http://127.0.0.1:{free_port()}")
    stream = await transport.open_stream("POST", "/echo", [])
    await stream.send(b"x")
    started = time.monotonic()
    with pytest.raises(TransportError, match="failed"):
        await stream.end()
    with pytest.raises(TransportError):
        await stream.response_head()
    assert time.monotonic() - started < 1
    await transport.close()
    with pytest.raises(TransportError):
        await transport.open_stream("POST", "/echo", [])


async def test_request_sent_says_whether_any_byte_left(server: ServerProcess) -> None:
    refused = Http1Transport(f"http://127.0.0.1:{free_port()}")
    stream = await refused.open_stream("POST", "/echo", [])
    await stream.send(b"x")
    with pytest.raises(TransportError):
        await stream.end()
    assert stream.request_sent is False  # the peer surely never saw it
    await refused.close()
    transport = Http1Transport(server.url)
    try:
        stream = await transport.open_stream("POST", "/echo", [])
        await stream.send(b"x")
        assert stream.request_sent is False
        await stream.end()
        assert stream.request_sent is True
        assert b"".join(await read_body(stream)) == b"x"
    finally:
        await transport.close()


@pytest.mark.parametrize("resend", [True, False])
async def test_a_reused_connection_dying_is_resent_only_if_allowed(resend: bool) -> None:
    # the second request reaches the peer on the reused connection, which it then drops
    peer = Peer(drop_the({2}))
    transport = Http1Transport(await peer.start())
    try:
        stream = await transport.open_stream("POST", "/", [])
        await stream.send(b"1")
        assert b"".join(await read_body(stream)) == b'{"got":1}'
        stream = await transport.open_stream("POST", "/", [], resend_on_stale=resend)
        await stream.send(b"2")
        if resend:  # sent again on a fresh connection, which answers
            assert b"".join(await read_body(stream)) == b'{"got":2}'
            assert (len(peer.requests), peer.connections) == (3, 2)
        else:
            with pytest.raises(TransportError):
                await stream.response_head()
            assert stream.request_sent is True  # it may have been received: it was
            assert (len(peer.requests), peer.connections) == (2, 1)
    finally:
        await transport.close()
        await peer.close()

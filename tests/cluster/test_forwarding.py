"""The forwarder between nodes (`cluster.node.Forwarder`) against a real peer on a socket.

The peer is a small HTTP/1.1 server (h11 over asyncio) whose behaviour each test picks:
answer, drop the connection after reading the request, refuse as "not the leader",
stream a chunked body. The node around the forwarder is this file's `Node`: it names
the peer to send to, as a cluster node's lease view would, with no database needed.
What is checked is what a caller sees and how many times the peer received the request.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import h11
import pytest
from tests.support.http_peer import Peer, answer, drop_the, ok

from durably.cluster.node import FORWARDED, NOT_LEADER, SECRET, Forwarder
from durably.cluster.peers import Peers

pytestmark = pytest.mark.timeout(60)

class Keeper:
    ttl_s = 1.0


class Node:
    """What the forwarder asks of its node: where to send (`leader_url`), and to look
    elsewhere when the peer did not answer (`forget_leader`)."""

    def __init__(self, *bases: str, secret: str | None = None) -> None:
        self.bases = list(bases)
        self.name = "n2"
        self.secret = secret
        self.keeper = Keeper()
        self.peers = Peers(idle_timeout_s=30.0)
        self.forgotten = 0

    def leader_url(self, kind: str) -> str | None:
        return self.bases[0] if self.bases else None

    def forget_leader(self) -> None:
        self.forgotten += 1
        if len(self.bases) > 1:
            self.bases.pop(0)


class Refusing(Forwarder):
    """Counts the "not the leader" answers it got."""

    refusals = 0

    def refused(self, base: str) -> None:
        self.refusals += 1


def scope(method: str = "POST", path: str = "/Counter/k/add",
          headers: list[tuple[bytes, bytes]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
            "query_string": b"", "headers": headers or [(b"content-type", b"application/json")],
            **extra}


async def call(forwarder: Forwarder, s: dict[str, Any], body: bytes = b"1",
               on_message: Callable[[dict[str, Any]], None] | None = None,
               ) -> tuple[int, dict[bytes, bytes], bytes]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if on_message is not None:
            on_message(message)

    await forwarder(s, receive, send)
    start = messages[0]
    assert start["type"] == "http.response.start"
    assert not messages[-1].get("more_body")
    return (start["status"], dict(start["headers"]),
            b"".join(m.get("body", b"") for m in messages[1:]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_answer_and_headers_pass_through_and_the_connection_is_reused() -> None:
    peer = Peer(ok)
    node = Node(await peer.start(), secret="s3cret")
    forwarder = Forwarder(node, "ingress")
    try:
        for i in range(3):
            status, headers, body = await call(
                forwarder, scope(headers=[(b"content-type", b"application/json"),
                                          (b"x-custom", b"v")],
                                 **{"durably.authorization": b"Bearer t"}),
                body=str(i).encode(),
            )
            assert (status, body) == (200, b'{"got":%d}' % i)
            assert headers[b"content-length"] == str(len(body)).encode()
        request, _ = peer.requests[0]
        sent = dict(request.headers)
        assert sent[FORWARDED] == b"n2"
        assert sent[SECRET] == b"s3cret"
        assert sent[b"authorization"] == b"Bearer t"  # the caller's token, kept
        assert sent[b"x-custom"] == b"v"
        assert peer.connections == 1
    finally:
        await node.peers.close()
        await peer.close()


async def test_a_request_the_peer_may_have_received_is_answered_502_without_a_key() -> None:
    peer = Peer(drop_the({1}))
    node = Node(await peer.start())
    try:
        status, _, body = await call(Forwarder(node, "ingress"), scope())
        assert status == 502
        assert b"idempotency-key" in body
        assert len(peer.requests) == 1  # never sent twice
    finally:
        await node.peers.close()
        await peer.close()


async def test_a_dead_keep_alive_connection_is_not_resent_silently() -> None:
    # the first request leaves an idle pooled connection; the peer reads the second one
    # on it and drops it: the pool must not send it again on a fresh connection
    peer = Peer(drop_the({2}))
    node = Node(await peer.start())
    forwarder = Forwarder(node, "ingress")
    try:
        assert (await call(forwarder, scope()))[0] == 200
        status, _, _ = await call(forwarder, scope())
        assert status == 502
        assert len(peer.requests) == 2
    finally:
        await node.peers.close()
        await peer.close()


async def test_with_an_idempotency_key_it_is_sent_again() -> None:
    peer = Peer(drop_the({1}))
    node = Node(await peer.start())
    try:
        s = scope(headers=[(b"content-type", b"application/json"), (b"idempotency-key", b"a")])
        status, _, body = await call(Forwarder(node, "ingress"), s)
        assert (status, body) == (200, b'{"got":1}')
        assert len(peer.requests) == 2
        assert node.forgotten == 1
    finally:
        await node.peers.close()
        await peer.close()


async def test_a_peer_that_refuses_the_connection_gets_nothing_and_the_next_one_answers() -> None:
    peer = Peer(ok)
    node = Node(f"http://127.0.0.1:{free_port()}", await peer.start())
    try:
        status, _, body = await call(Forwarder(node, "ingress"), scope())
        assert (status, body) == (200, b'{"got":1}')  # not sent the first time: safe
        assert len(peer.requests) == 1
    finally:
        await node.peers.close()
        await peer.close()


async def test_nobody_reachable_is_503_after_the_deadline() -> None:
    node = Node(f"http://127.0.0.1:{free_port()}")
    try:
        status, headers, _ = await call(Forwarder(node, "ingress"), scope())
        assert status == 503
        assert headers[b"retry-after"] == b"1"
        assert node.forgotten >= 1
    finally:
        await node.peers.close()


async def test_not_the_leader_is_asked_again() -> None:
    async def refuse_first(peer: Peer, request: h11.Request, body: bytes,
                           writer: asyncio.StreamWriter, conn: h11.Connection) -> bool:
        if len(peer.requests) == 1:
            return await answer(writer, conn, 503, b"{}", [(NOT_LEADER.encode(), b"1")])
        return await ok(peer, request, body, writer, conn)

    peer = Peer(refuse_first)
    node = Node(await peer.start())
    forwarder = Refusing(node, "ingress")
    try:
        status, _, body = await call(forwarder, scope())
        assert (status, body) == (200, b'{"got":1}')
        assert forwarder.refusals == 1
        assert len(peer.requests) == 2
    finally:
        await node.peers.close()
        await peer.close()


async def test_a_chunked_response_flows_to_the_caller_as_it_comes() -> None:
    release = asyncio.Event()

    async def stream(peer: Peer, request: h11.Request, body: bytes,
                     writer: asyncio.StreamWriter, conn: h11.Connection) -> bool:
        writer.write(conn.send(h11.Response(
            status_code=200, headers=[(b"content-type", b"text/event-stream"),
                                      (b"transfer-encoding", b"chunked")])))
        writer.write(conn.send(h11.Data(data=b"first\n")))
        await writer.drain()
        await release.wait()
        writer.write(conn.send(h11.Data(data=b"second\n")) + conn.send(h11.EndOfMessage()))
        await writer.drain()
        return True

    def on_message(message: dict[str, Any]) -> None:
        if message.get("body") == b"first\n":
            release.set()  # the peer sends the rest only once the caller had the start

    peer = Peer(stream)
    node = Node(await peer.start())
    try:
        status, headers, body = await call(
            Forwarder(node, "ingress"), scope(method="GET", path="/restate/invocation/x/attach"),
            body=b"", on_message=on_message,
        )
        assert (status, body) == (200, b"first\nsecond\n")
        assert b"transfer-encoding" not in headers  # the caller's server frames it anew
        assert release.is_set()
    finally:
        await node.peers.close()
        await peer.close()

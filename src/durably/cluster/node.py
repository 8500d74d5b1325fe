"""`durably serve --node-name`: one node of a cluster on one PostgreSQL.

Two placements (`--placement`, `cluster_node` picks the class):
- *spread* (`durably.cluster.spread.SpreadNode`, the default): every live node runs the
  engine on its own share of the partitions, requests are forwarded to their partition's
  owner, and invocations reach other partitions through the outbox
  (`durably.engine.partitions`).
- *leader* (`ClusterNode`): the node that takes every partition's lease
  (`LeaseKeeper` with `spread=False`) opens the store and runs the engine; the others
  stand by and forward every ingress and admin request to it, so any node answers for the
  whole cluster. When the leader dies its leases expire (the database's clock), a standby
  takes them all at new epochs, opens the store (loading what the leader committed) and
  recovers: the fence in every commit keeps a paused or cut-off former leader from
  committing anything after that. A leader that loses its leases stops (exit 1) and,
  restarted, rejoins as a standby.

This module holds what both share: the settings check, the forwarding of a request to
another node (`Forwarder`: the caller's headers and token kept, the cluster secret added,
"not the owner" retried), and the port switch that checks forwarded requests.

What a caller sees when the leader changes during its request, on a standby's ingress
(under spread, the same when a partition's owner changes):
- not sent yet (no leader, connection refused, the target answers "not the leader"): the
  standby waits for the next leader (up to TTL + 2 s) and sends it there, or serves the
  request itself if it became the leader meanwhile;
- sent, answer lost (the leader died or lost its leases mid-request): unknown whether it
  was accepted. With an `idempotency-key` header (or a GET) the standby sends it again to
  the next leader, which answers from the stored invocation; without one it answers 502.
A caller talking to the leader directly sees its connection drop, as with one node.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import ipaddress
import logging
import signal
from typing import Any

import orjson

from durably.cluster import fence as fence_mod
from durably.cluster.keeper import LeaseKeeper
from durably.cluster.leases import Membership, NodeInfo
from durably.cluster.peers import Peers
from durably.invoker.http1 import Http1Stream
from durably.invoker.transport import TransportError
from durably.security.middleware import send_response

log = logging.getLogger("durably.cluster")

FORWARDED = b"x-durably-forwarded"
SECRET = b"x-durably-cluster-secret"
NOT_LEADER = "x-durably-not-leader"
# the caller's Authorization header, kept aside for forwarding (the ingress guard takes it
# out of the headers once checked; the owner's guard checks it again)
AUTHORIZATION = "durably.authorization"
_HOP = {
    b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade",
    b"host", b"content-length", b"proxy-authorization", b"proxy-connection",
}
# of a response (h11 gives names in lower case): its length stays when it has one
_RESPONSE_HOP = {k.decode() for k in _HOP} - {"content-length"}
_FORWARDED_STR = FORWARDED.decode()
_SECRET_STR = SECRET.decode()
# a peer that does not take the whole request within this is treated as failed mid-request
_SEND_TIMEOUT_S = 30.0


def keep_authorization(app: Any) -> Any:
    """Wraps a port's guarded app: keeps the caller's Authorization header in the scope, so
    that a forwarded request carries it to the node that serves it (and, for the web UI,
    the host the browser sent it to)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for k, v in scope.get("headers") or ():
                if k == b"authorization":
                    scope = dict(scope)
                    scope[AUTHORIZATION] = v
                    break
            if scope["path"].startswith("/ui/"):
                scope = _with_origin_host(scope)
        await app(scope, receive, send)

    return wrapped


def _with_origin_host(scope: Any) -> Any:
    """A UI request keeps the host the browser sent it to (the owner it may be forwarded to
    checks the browser's Origin against that, `durably.ui.routing`); a request forwarded
    here keeps the one its sender put in."""
    from durably.ui.routing import ORIGIN_HOST

    origin_host = ORIGIN_HOST.encode()
    headers = scope.get("headers") or []
    if any(k == FORWARDED for k, _ in headers):
        return scope
    host = next((v for k, v in headers if k == b"host"), b"")
    scope = dict(scope)
    scope["headers"] = [(k, v) for k, v in headers if k != origin_host] + [(origin_host, host)]
    return scope


def cluster_node(cfg: Any, server: Any) -> Any:
    """The node for `--placement` (`leader` or `spread`)."""
    if getattr(cfg, "placement", "spread") == "spread":
        from durably.cluster.spread import SpreadNode

        return SpreadNode(cfg, server)
    return ClusterNode(cfg, server)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(bind: str, advertise: str | None, secret: str | None, dsn: str | None) -> None:
    """Refuse a configuration that cannot form a safe cluster (one line, for the CLI)."""
    if dsn is None:
        raise ValueError("--node-name needs --store postgresql://... (the nodes share it)")
    if secret is None and not (is_loopback(bind) and is_loopback(advertise or bind)):
        raise ValueError(
            "a cluster node bound or advertised beyond loopback needs --cluster-secret "
            "(or DURABLY_CLUSTER_SECRET), the same on every node"
        )


async def _json(send: Any, status: int, message: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = orjson.dumps({"message": message})
    await send_response(send, status, body, b"application/json", extra)


async def read_body(receive: Any) -> bytes | None:
    """A request's whole body (None: the caller went away)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


def _replay(body: bytes, receive: Any) -> Any:
    """An ASGI `receive` that gives the already-read body again, then the real one."""
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class TrackedSend:
    """An ASGI `send` that remembers whether the response has started (after which an
    error can no longer be answered with a status of its own)."""

    __slots__ = ("send", "started")

    def __init__(self, send: Any) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class Switch:
    """The ASGI app a port serves: the forwarder on a standby, the real app on the leader.
    It also checks forwarded requests: their secret, and that they reach the leader."""

    def __init__(self, node: ClusterNode, forwarder: Any, local_status: bool = False) -> None:
        self.node = node
        self.app = forwarder
        self.forwarder = forwarder
        forwarder.switch = self
        self.local_status = local_status  # answer GET /cluster here (the admin port)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if self.local_status and scope["path"] == "/cluster" and scope["method"] == "GET":
                body = orjson.dumps(self.node.status())
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            headers = dict(scope.get("headers") or ())
            if FORWARDED in headers:
                secret = self.node.secret
                if secret is not None and not hmac.compare_digest(
                    headers.get(SECRET, b""), secret.encode()
                ):
                    await _json(send, 401, "forwarded request without the cluster secret", [])
                    return
                if self.app is self.forwarder:  # never a second hop
                    await _json(
                        send, 503, f"node {self.node.name} does not lead the cluster",
                        [(NOT_LEADER.encode(), b"1"), (b"retry-after", b"1")],
                    )
                    return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if tracked.started or not self.node.stopping:
                raise
            # the node is stopping with this request still on its way here or at another
            # node (a forwarded one, or one waiting for a partition): a clear 503, as a
            # stopping single server answers, rather than the HTTP server's bare 500 for a
            # cancelled request; the caller retries, with its idempotency key if it has one
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await _json(send, 503, f"node {self.node.name} is stopping; retry", [
                    (b"retry-after", b"1")])


class Forwarder:
    """Sends a request on to the leader's port of the same kind (ingress or admin)."""

    nobody = "the cluster has no leader at the moment; retry"

    def __init__(self, node: Any, kind: str) -> None:
        self.node = node
        self.kind = kind
        self.switch: Switch | None = None

    def local(self, scope: Any, body: bytes) -> Any:
        """The app that serves the request on this node, or None to forward it."""
        switch = self.switch
        if switch is not None and switch.app is not self:
            return switch.app
        return None

    def destination(self, scope: Any, body: bytes) -> str | None:
        """The base URL of the node to send it to (None: nobody yet, wait)."""
        return self.node.leader_url(self.kind)  # type: ignore[no-any-return]

    def refused(self, base: str) -> None:
        """The node at `base` answered that it is not the one for this request."""

    def _outgoing(self, scope: Any) -> tuple[str, list[tuple[str, str]], bool]:
        """The request line's target and the headers to send a request on with (the
        caller's, its token kept, this node's name and the cluster secret added), and
        whether it may be received twice (a GET, or one with an idempotency key)."""
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope.get("headers") or () if k.lower() not in _HOP
        ]
        headers.append((_FORWARDED_STR, self.node.name))
        auth = scope.get(AUTHORIZATION)
        if auth is not None and not any(k.lower() == "authorization" for k, _ in headers):
            headers.append(("authorization", auth.decode("latin-1")))
        if self.node.secret is not None:
            headers.append((_SECRET_STR, self.node.secret))
        retry_safe = scope["method"] in ("GET", "HEAD") or any(
            k.lower() == "idempotency-key" for k, _ in headers
        )
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        target = path.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
        return target, headers, retry_safe

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.node.keeper.ttl_s + 2.0
        outgoing: tuple[str, list[tuple[str, str]], bool] | None = None

        while True:
            local = self.local(scope, body)
            if local is not None:
                # this node serves it (it became the leader, or owns the partition)
                await local(scope, _replay(body, receive), send)
                return
            base = self.destination(scope, body)
            if base is None:
                if loop.time() > deadline:
                    await _json(send, 503, self.nobody, [(b"retry-after", b"1")])
                    return
                await asyncio.sleep(0.1)
                continue
            if outgoing is None:  # built once, and only for a request that leaves this node
                outgoing = self._outgoing(scope)
            target, headers, retry_safe = outgoing
            method: str = scope["method"]
            stream: Http1Stream | None = None
            try:
                # a request that must not be received twice is never resent by the pool on
                # its own: whether it was sent decides what happens next, here
                stream = await self.node.peers.pool(base).open_stream(
                    method, target, headers, resend_on_stale=retry_safe
                )
                await stream.send(body)
                async with asyncio.timeout(_SEND_TIMEOUT_S):
                    await stream.end()
                status, head = await stream.response_head()
                if loop.time() < deadline and any(k == NOT_LEADER for k, _ in head):
                    stream.reset()
                    self.refused(base)
                    await asyncio.sleep(0.1)
                    continue
                # a response with a length is read whole before the caller sees any of it,
                # so that a failure on the way is still retried or answered 502; one without
                # (chunked: a stream) flows to the caller as it comes
                whole: list[bytes] | None = None
                if any(k == "content-length" for k, _ in head):
                    whole = []
                    while (chunk := await stream.receive()) is not None:
                        whole.append(chunk)
            except (TransportError, TimeoutError):
                not_sent = stream is None or not stream.request_sent
                if stream is not None:
                    stream.reset()
                if (not_sent or retry_safe) and loop.time() < deadline:
                    self.node.forget_leader()
                    await asyncio.sleep(0.1)
                    continue
                if not_sent:
                    await _json(send, 503, "the cluster's leader cannot be reached; retry", [
                        (b"retry-after", b"1")])
                    return
                await _json(
                    send, 502,
                    "the node leading the cluster failed during this request: it may or may "
                    "not have been accepted; send it with an idempotency-key header to retry "
                    "it safely",
                    [],
                )
                return
            out = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in head if k not in _RESPONSE_HOP
            ]
            await send({"type": "http.response.start", "status": status, "headers": out})
            if whole is not None:
                await send({"type": "http.response.body", "body": b"".join(whole)})
                return
            await _relay(stream, send)
            return


async def _relay(stream: Http1Stream, send: Any) -> None:
    """The rest of a streamed response, chunk by chunk. A failure of the peer midway ends
    the caller's connection without a proper end of the body, as the peer's did."""
    try:
        while (chunk := await stream.receive()) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except BaseException:
        stream.reset()
        raise
    await send({"type": "http.response.body", "body": b""})


def _peer_idle_timeout(cfg: Any) -> float:
    """Half the keep-alive timeout this node's own ports have (and so, the nodes of a
    cluster sharing their settings, its peers'), at most 30 s."""
    keep_alive = max(1, round(cfg.security.limits.idle_timeout_s))  # as uvicorn is given it
    return min(30.0, keep_alive / 2)


def log_tasks() -> None:
    """Log the stack of every task of the running loop (on SIGUSR1)."""
    tasks = asyncio.all_tasks()
    log.warning("%d tasks (SIGUSR1):", len(tasks))
    for task in tasks:
        out = io.StringIO()
        task.print_stack(limit=12, file=out)
        log.warning("task %s: %s", task.get_name(), out.getvalue())


class NodeBase:
    """What a node of either placement has: its settings, its lease keeper (spread or not,
    with the placement's hooks), the client it reaches other nodes with, and the fence it
    attaches to the store."""

    def __init__(self, cfg: Any, server: Any, *, spread: bool, **hooks: Any) -> None:
        check_settings(cfg.bind, cfg.advertise_address, cfg.cluster_secret, cfg.postgres_dsn)
        self.cfg = cfg
        self.server = server
        self.name: str = cfg.node_name
        self.stopping = False  # set by the server as it starts to stop
        self.secret: str | None = cfg.cluster_secret
        advertise = cfg.advertise_address or cfg.bind
        self.keeper = LeaseKeeper(
            cfg.postgres_dsn,
            Membership(self.name, advertise, cfg.ingress_port, cfg.admin_port),
            ttl_s=cfg.lease_ttl_s,
            spread=spread,
            **hooks,
        )
        self.peers = Peers(idle_timeout_s=_peer_idle_timeout(cfg))

    async def _start_keeper(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # `kill -USR1 PID`: what every task of a node that seems stuck is waiting on
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, log_tasks)
        try:
            await self.keeper.start()
        except (TimeoutError, OSError) as e:
            raise RuntimeError(
                f"node {self.name} cannot reach PostgreSQL for the cluster's tables: "
                f"{str(e) or 'timed out'}"
            ) from None

    async def attach(self, store: Any) -> None:
        await fence_mod.attach(store, self.keeper.fence, self.keeper.membership.incarnation)

    def url_of(self, node: str, kind: str) -> str | None:
        """The base URL of `node`'s ingress or admin port, as it advertises it (None: a
        node this one does not know as live)."""
        info = self.keeper.nodes.get(node)
        return None if info is None else node_url(info, kind)


def node_url(info: NodeInfo, kind: str) -> str:
    """The base URL of a node's ingress or admin port, as it advertises it."""
    port = info.ingress_port if kind == "ingress" else info.admin_port
    host = f"[{info.address}]" if ":" in info.address else info.address
    return f"http://{host}:{port}"


class ClusterNode(NodeBase):
    def __init__(self, cfg: Any, server: Any) -> None:
        super().__init__(cfg, server, spread=False, on_acquired=self._acquired, on_lost=self._lost)
        self.ingress = Switch(self, Forwarder(self, "ingress"))
        self.admin = Switch(self, Forwarder(self, "admin"), local_status=True)
        self._promotion: asyncio.Task[None] | None = None
        # a leader that did not answer, and until when to not send it anything
        self._forgotten: tuple[str, float] | None = None

    def leader_url(self, kind: str) -> str | None:
        leader = self.keeper.leader
        if leader is None or leader == self.name:
            return None
        forgotten = self._forgotten
        if forgotten is not None and forgotten[0] == leader:
            if asyncio.get_running_loop().time() < forgotten[1]:
                return None
            self._forgotten = None
        return self.url_of(leader, kind)

    def status(self) -> dict[str, Any]:
        """What this node knows of the cluster (GET /cluster on its admin port; as of its
        last renewal round)."""
        keeper = self.keeper
        return {
            "node": self.name,
            "placement": "leader",
            "leader": keeper.leader,
            "role": "leader" if keeper.held and self.ingress.app is not self.ingress.forwarder
            else ("starting" if keeper.held else "standby"),
            "partitions": keeper.num_partitions,
            "partitions_held": len(keeper.held),
            "lease_ttl_s": keeper.ttl_s,
            "nodes": [
                {"name": n.name, "address": n.address, "ingress_port": n.ingress_port,
                 "admin_port": n.admin_port, "heartbeat_age_s": round(n.heartbeat_age_s, 3)}
                for n in keeper.nodes.values()
            ],
        }

    def forget_leader(self) -> None:
        """The leader did not answer: skip it for one renewal round (its lease may be
        expiring; the round names the next leader)."""
        if self.keeper.leader is not None:
            until = asyncio.get_running_loop().time() + self.keeper.interval_s
            self._forgotten = (self.keeper.leader, until)

    async def start(self) -> tuple[Any, Any]:
        await self._start_keeper()
        if self._promotion is not None:
            await self._promotion
        return self.ingress, self.admin

    def _acquired(self, got: dict[int, int]) -> None:
        if self._promotion is None:
            self._promotion = asyncio.create_task(self._promote())

    async def _promote(self) -> None:
        log.warning("node %s leads the cluster: opening the store", self.name)
        try:
            ingress_app, admin_app = await self.server.open_engine()
        except Exception as e:
            log.critical("node %s could not take over: %s", self.name, e)
            self.server._on_fatal(e)
            return
        self.ingress.app = ingress_app
        self.admin.app = admin_app

    def _lost(self, pids: set[int]) -> None:
        if self._promotion is None:
            return
        self.keeper.retire()  # never lead again with this process's memory
        self.server._on_fatal(
            RuntimeError(
                f"node {self.name} lost the leases of {len(pids)} partitions; it stops so that "
                "nothing it still holds in memory is acted upon"
            )
        )

    placement = "leader"

    def prepare_store(self, store: Any) -> None:
        pass  # the leader loads every partition

    def prepare_engine(self, engine: Any) -> None:
        pass  # and runs all of them

    async def stop(self, release: bool = True) -> None:
        if self._promotion is not None and not self._promotion.done():
            self._promotion.cancel()
        await self.keeper.stop(release=release)
        await self.peers.close()

"""Spread placement: every live node owns an even share of the partitions and runs the
engine on them alone (`durably serve --node-name N --placement spread`).

- **Ownership.** The lease keeper (`spread=True`) holds this node's share. Partitions it
  takes are loaded by the store (`load_partitions`) and recovered by the engine (`adopt`)
  before this node serves anything of theirs (`ready`); partitions it gives back on a
  rebalance are handed over first (`_hand_over`: the engine stops their attempts, commits,
  and forgets them) and only then released, so the next owner starts from everything
  this one committed. A lease lost without a hand-over (this node was paused or cut off)
  stops the node, as under the leader placement: what it still holds in memory must not
  be acted upon.
- **Messages.** The engine writes what concerns another partition into the outbox in
  its own commit (`engine.partitions`); this node reads its partitions' messages in order
  (woken by a NOTIFY at the sender's COMMIT that names the partitions written to, so only
  their owners read; otherwise one round every two seconds checks the connection), applies
  each in a step of its engine and deletes it in that step's commit: exactly once.
- **Routing.** A request is served where its partition is (`Router`): an invocation id, an
  object or workflow key, an idempotency key or an awakeable names it; a new invocation of
  a plain service without an idempotency key is created on a partition of the receiving
  node (no hop). Other requests are forwarded to the owner as the leader placement does
  (same headers, the caller's token kept, the cluster secret added); an owner that no
  longer owns the partition answers "not the owner" and the request is sent again to
  the new owner once the lease table names it.
- **Registry.** Deployments and service changes are written by the owner of partition 0
  (admin requests that change them are routed there); every node reloads the registry
  from the database when it changes: at once on the NOTIFY its commit sends
  (`schema.REGISTRY_NOTIFY`), and on the outbox reader's idle round (it reads the row's
  version, and the document only when that changed) in case a notification was lost.
  Kafka clusters and subscriptions are written and read alike; each node consumes the
  Kafka partitions whose offsets live in its partitions (`durably.kafka.service`).
- **Web UI.** Its pages and actions are routed as the admin API's are
  (`durably.ui.routing` names their partition); a bulk action acts on each invocation
  through this node's admin router (`act_on_invocation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from durably.cluster.keeper import owners
from durably.cluster.leases import NodeInfo
from durably.cluster.node import (
    AUTHORIZATION,
    FORWARDED,
    NOT_LEADER,
    Forwarder,
    NodeBase,
    Switch,
    TrackedSend,
    _json,
    _replay,
    node_url,
    read_body,
)
from durably.cluster.schema import REGISTRY_CHANNEL
from durably.cluster.side import SideConnection
from durably.cluster.waits import WaitsReader
from durably.engine.partitions import PartitionMoved, Partitions, apply
from durably.ids import InvocationId, key_range, parse_awakeable_id, partition_key_for

log = logging.getLogger("durably.cluster")

REGISTRY_PARTITION = 0  # its owner writes the schema registry
SYNC_PATH = "/cluster/sync-registry"  # admin port, between nodes: read the registry now
# The outbox reader's round when nothing woke it. Messages for this node's partitions and
# changes of the registry or the Kafka subscriptions wake it at once (a NOTIFY at the
# writer's COMMIT), so this round is only the check that its connection still answers (and
# the fallback for a notification that connection missed): an idle node costs PostgreSQL
# one statement per `_POLL_S`, and a black-holed connection is noticed within
# `_POLL_S + _QUERY_TIMEOUT_S`.
_POLL_S = 2.0
# Every statement of the outbox reader gives up after this long: a connection whose bytes
# are black-holed (the network to PostgreSQL cut and healed) neither answers nor fails, so
# without a deadline the reader would wait on it forever and this node would apply no
# message to its partitions again (callers suspended for good). On a timeout the reader
# drops the connection and opens a new one; the messages stay in the outbox meanwhile.
_QUERY_TIMEOUT_S = 5.0
_BATCH = 500
_OUTBOX_SQL = (
    "SELECT id, pid, kind, body FROM durably.outbox WHERE pid = ANY($1::integer[]) "
    "ORDER BY id LIMIT $2"
)
# the same, and the row versions of the registry and the Kafka document (pid -1, key in
# `kind`, xmin in `body`): a changed version is read whole (`_sync_registry`), an unchanged
# one costs no transfer of the document
_OUTBOX_AND_META_SQL = f"""
SELECT id, pid, kind, body FROM ({_OUTBOX_SQL}) AS messages
UNION ALL
SELECT 0, -1, key, convert_to(xmin::text, 'UTF8') FROM durably.meta WHERE key = ANY($3::text[])
"""


class Router(Forwarder):
    """Serves a request here when this node owns its partition, else sends it to the owner."""

    nobody = "the partition of this request has no owner at the moment; retry"

    def __init__(self, node: SpreadNode, kind: str) -> None:
        super().__init__(node, kind)
        self.spread = node

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.spread.may_need_registry(self.kind, scope):
            # registered through another node a moment ago: read it now rather than
            # answer 404 for up to a second
            await self.spread.sync_registry_now()
        headers = dict(scope.get("headers") or ())
        if FORWARDED in headers and scope.get("path") == SYNC_PATH and self.kind == "admin":
            # the registry's writer changed it and waits until every node has it
            self.spread.registry_syncs_asked += 1
            await self.spread.sync_registry_now()
            await _json(send, 200, "synced", [])
            return
        if FORWARDED in headers:
            # sent by another node that believes this one owns the request's partition
            body = await read_body(receive)
            if body is None:
                return
            pid = self.spread.pid_for(self.kind, scope, body)
            deadline = asyncio.get_running_loop().time() + 2.0
            while pid is not None and pid not in self.spread.ready:
                # held but still loading: wait a little; not held: the sender asks again
                if (pid not in self.spread.keeper.held
                        or asyncio.get_running_loop().time() > deadline):
                    await _json(
                        send, 503, f"node {self.spread.name} does not own partition {pid}",
                        [(NOT_LEADER.encode(), b"1"), (b"retry-after", b"1")],
                    )
                    return
                await asyncio.sleep(0.05)
            await self._serve_here(scope, _replay(body, receive), send)
            return
        await super().__call__(scope, receive, send)

    def local(self, scope: Any, body: bytes) -> Any:
        pid = self.spread.pid_for(self.kind, scope, body)
        if pid is None or pid in self.spread.ready:
            return self._serve_here
        return None

    async def _serve_here(self, scope: Any, receive: Any, send: Any) -> None:
        app = self.spread.apps[0 if self.kind == "ingress" else 1]
        tracking = TrackedSend(send)
        if self.kind == "admin" and scope.get("method") not in ("GET", "HEAD"):
            # (the body names what a UI form changes)
            body = await read_body(receive)
            if body is None:
                return
            receive = _replay(body, receive)
            if admin_partition_key(self.spread, scope, body) == -1:
                await self._change_registry(app, scope, receive, send)
                return
        try:
            await app(scope, receive, tracking)
        except PartitionMoved as e:
            if tracking.started or self.kind != "ingress":
                raise
            # the invocation exists (its creation was committed) and another node runs it
            # now: answer the caller as an attach to it at its new owner would
            attach = dict(scope)
            attach.update(
                method="GET", path=f"/restate/invocation/{e}/attach", query_string=b"",
                raw_path=f"/restate/invocation/{e}/attach".encode(),
            )
            attach["headers"] = [(k, v) for k, v in scope.get("headers") or ()
                                 if k.lower() not in (b"content-type", b"idempotency-key")]

            # an attach has no body; after it, the caller's own `receive` (whose body the
            # app read already) tells when the caller goes away. A `receive` answering
            # "no body" for ever made an attach served here again (this node took the
            # partition back meanwhile) spin in its wait for the disconnect, and the
            # node's loop answered nothing more
            await Forwarder.__call__(self, attach, _replay(b"", receive), send)

    async def _change_registry(self, app: Any, scope: Any, receive: Any, send: Any) -> None:
        """A change of the registry, answered once it is committed and every live node
        has read it: a caller's next request through any node sees it."""
        held: list[Any] = []

        async def hold(message: Any) -> None:
            held.append(message)

        await app(scope, receive, hold)
        engine = self.spread.server.engine
        if engine is not None:
            await engine.committed()
        # the caller's admin token passes the other nodes' guards as it passed this one's
        auth = scope.get(AUTHORIZATION) or dict(scope.get("headers") or ()).get(b"authorization")
        await self.spread.tell_nodes_to_sync(auth)
        for message in held:
            await send(message)

    def destination(self, scope: Any, body: bytes) -> str | None:
        pid = self.spread.pid_for(self.kind, scope, body)
        if pid is None:
            return None
        return self.spread.url_of_owner(pid, self.kind)

    def refused(self, base: str) -> None:
        self.spread.refresh_owners()


class SpreadNode(NodeBase):
    """One node of a cluster under the spread placement (see the module's doc)."""

    placement = "spread"

    def __init__(self, cfg: Any, server: Any) -> None:
        super().__init__(
            cfg, server, spread=True,
            on_acquired=self._acquired, on_lost=self._lost, before_release=self._hand_over,
        )
        self.ingress = Switch(self, Router(self, "ingress"))  # type: ignore[arg-type]
        self.admin = Switch(self, Router(self, "admin"), local_status=True)  # type: ignore[arg-type]
        for switch in (self.ingress, self.admin):
            switch.forwarder = None  # the router refuses what is not this node's itself
        self.apps: tuple[Any, Any] = (None, None)
        self.ready: set[int] = set()  # partitions loaded and run by the engine
        self._moves: asyncio.Queue[set[int]] = asyncio.Queue()
        self._lock = asyncio.Lock()  # one load or hand-over at a time
        self._tasks: list[asyncio.Task[Any]] = []
        self._wake = asyncio.Event()
        self._refresh = asyncio.Event()
        self._registry_changed = False  # a commit changed the registry (NOTIFY)
        # meta key -> row version (xmin) of the registry and Kafka documents last read
        self._meta_versions: dict[str, str] | None = None
        self.registry_syncs_asked = 0  # by the registry's writer (SYNC_PATH), for status
        self.side: SideConnection | None = None
        self.moves_done = 0  # partitions taken over since start (for status and tests)
        self.waits: WaitsReader | None = None

    # -- the server's hooks -------------------------------------------------------------

    def prepare_store(self, store: Any) -> None:
        store.load_only = (self.keeper.num_partitions, set(self.keeper.held))
        if hasattr(store, "commit_delay_s"):
            store.commit_delay_s = busy_commit_delay_s()

    def prepare_engine(self, engine: Any) -> None:
        owned = set(self.server.store.load_only[1])
        engine.partitions = Partitions(self.keeper.num_partitions, owned)
        store = self.server.store
        if getattr(store, "commit_delay_s", 0):
            # attempts running, not `engine.active` (which counts suspended and scheduled
            # invocations too: a node holding many sleeping workflows would delay a lone
            # caller); the invoker is attached after this hook, hence the lookup per call
            store.in_flight = lambda: engine.invoker.running if engine.invoker else 0
        self.ready = set(owned)
        # deadlock reports across nodes read other nodes' waits from the database, registry
        # reads asked for by requests too: on one connection kept open
        self.side = SideConnection(self.server.store.read_connection)
        store.side = self.side  # (the Kafka service's reads of every node's rows too)
        self.waits = WaitsReader(self.side)
        engine.read_waits = self.waits

    async def start(self) -> tuple[Any, Any]:
        await self._start_keeper()
        self.apps = await self.server.open_engine()
        log.warning("node %s runs %d partitions (spread placement)", self.name, len(self.ready))
        self._tasks.append(asyncio.create_task(self._mover(), name=f"durably-moves-{self.name}"))
        self._tasks.append(asyncio.create_task(self._reader(), name=f"durably-outbox-{self.name}"))
        return self.ingress, self.admin

    # -- partitions coming and going --------------------------------------------------

    def _acquired(self, got: dict[int, int]) -> None:
        self._moves.put_nowait(set(got))

    async def _mover(self) -> None:
        while True:
            pids = await self._moves.get()
            async with self._lock:
                store, engine = self.server.store, self.server.engine
                fresh = {p for p in pids if p in self.keeper.held and p not in self.ready}
                fresh -= store.load_only[1]
                if not fresh:
                    continue
                started = asyncio.get_running_loop().time()
                try:
                    await store.load_partitions(self.keeper.num_partitions, fresh)
                    if REGISTRY_PARTITION in fresh:
                        # this node writes the registry from now on, on top of its copy:
                        # that copy may predate the last change (made by the previous
                        # owner, not yet read here), which the next change would undo
                        await self.sync_registry_now(strict=True)
                except Exception as e:
                    log.critical("node %s could not load partitions %s: %s", self.name,
                                 sorted(fresh), e)
                    self.server._on_fatal(e)
                    return
                fresh &= set(self.keeper.held)  # lost again while loading: not run
                stale = store.load_only[1] - set(self.keeper.held) - self.ready
                if stale:
                    store.drop_partitions(self.keeper.num_partitions, stale)
                if not fresh:
                    continue
                engine.adopt(fresh)
                self.ready |= fresh
                self.moves_done += len(fresh)
                self._wake.set()
                log.info("took over partitions %s in %.3f s", sorted(fresh),
                         asyncio.get_running_loop().time() - started)

    async def _hand_over(self, pids: set[int]) -> None:
        """Before the leases of `pids` are released: stop their work, commit, forget them."""
        async with self._lock:
            engine, store = self.server.engine, self.server.store
            self.ready -= pids
            if engine is None or store is None:
                return
            engine.release(pids)
            await engine.committed()
            store.drop_partitions(self.keeper.num_partitions, pids)
            log.info("handed over partitions %s", sorted(pids))

    def _lost(self, pids: set[int]) -> None:
        self.ready -= pids
        engine, store = self.server.engine, self.server.store
        if (
            engine is not None and store is not None and not store.dirty
            and not engine._dirty and not store._sealed
            and store._sealed_seq == store._durable_seq
        ):
            # nothing of this node is on its way to the database: forgetting the partitions
            # is enough (their attempts are aborted); they may come back with new epochs
            engine.release(pids)
            store.drop_partitions(self.keeper.num_partitions, pids)
            log.warning("node %s lost partitions %s with nothing unsaved: released them",
                        self.name, sorted(pids))
            return
        self.keeper.retire()  # its memory is stale: never take a partition again
        self.server._on_fatal(
            RuntimeError(
                f"node {self.name} lost the leases of {len(pids)} partitions without handing "
                "them over; it stops so that nothing it still holds in memory is acted upon"
            )
        )

    # -- the outbox, the registry and the lease table, read on one connection ----------

    async def _reader(self) -> None:
        import asyncpg

        applied: dict[int, bool] = {}  # message id -> its deletion is committed
        conn = None
        while True:
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(
                        self.cfg.postgres_dsn, timeout=5.0, command_timeout=_QUERY_TIMEOUT_S
                    )
                    await conn.add_listener("durably_outbox", self._outbox_notified)
                    await conn.add_listener(REGISTRY_CHANNEL, self._registry_notified)
                    # what was written or changed while it was down: read it now
                    self._registry_changed = True
                    self._wake.set()
                woken = True
                try:
                    # (not asyncio.wait_for: on Python 3.11 it swallows a stop's cancellation
                    # that comes as the wake-up does, and the reader would never end)
                    async with asyncio.timeout(_POLL_S):
                        await self._wake.wait()
                except TimeoutError:
                    woken = False
                self._wake.clear()
                if self._refresh.is_set():
                    self._refresh.clear()
                    self.keeper.owners = await owners(conn)
                # the registry's version is read when a change was notified, and on every
                # round nothing woke (a notification this connection missed)
                meta = self._registry_changed or not woken
                self._registry_changed = False
                await self._deliver(conn, applied, meta)
            except asyncio.CancelledError:
                if conn is not None:
                    conn.terminate()
                raise
            except Exception as e:
                log.warning("reading the outbox failed: %s",
                            str(e).splitlines()[0] if str(e) else type(e).__name__)
                if conn is not None:
                    conn.terminate()
                conn = None
                await asyncio.sleep(0.5)

    def _outbox_notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if notified_partitions_concern(payload, self.ready):
            self._wake.set()

    def _registry_notified(self, *_: Any) -> None:
        self._registry_changed = True
        self._wake.set()

    async def _deliver(self, conn: Any, applied: dict[int, bool], meta: bool = False) -> None:
        engine, store = self.server.engine, self.server.store
        owned = sorted(self.ready) if engine is not None else []
        if not owned and not meta:
            return
        # ids whose deletion was committed before this read started and that it does not
        # return any more can be forgotten; one it still returns was read before the commit
        safe = {i for i, done in applied.items() if done}
        if meta:
            from durably.kafka.service import META_KEY
            from durably.server import REGISTRY_KEY

            got = await conn.fetch(_OUTBOX_AND_META_SQL, owned, _BATCH, [REGISTRY_KEY, META_KEY])
            versions = {r[2]: bytes(r[3]).decode() for r in got if r[1] < 0}
            rows = sorted((r for r in got if r[1] >= 0), key=lambda r: r[0])
            if versions != self._meta_versions and await self._sync_registry(conn):
                self._meta_versions = versions
        else:
            rows = await conn.fetch(_OUTBOX_SQL, owned, _BATCH)
        if engine is None or not owned:
            return
        seen = {r[0] for r in rows}
        for message_id in safe - seen:
            del applied[message_id]
        for _, _, kind, body in rows:
            if kind == "invoke" and engine.schema.service_ty(
                orjson.loads(bytes(body))["service"]
            ) is None:
                # registered through another node a moment ago: read the registry first
                await self._sync_registry(conn)
                break
        taken: list[int] = []
        async with self._lock:
            for message_id, pid, kind, body in rows:
                if message_id in applied or pid not in self.ready:
                    continue
                try:
                    apply(engine, kind, bytes(body))
                except Exception:
                    log.exception("message %d (%s) for partition %d failed; dropped",
                                  message_id, kind, pid)
                store.delete_outbox(pid, message_id)
                applied[message_id] = False
                taken.append(message_id)
            if not taken:
                return
            committed = engine.committed()

        def durable(_: Any) -> None:
            for message_id in taken:
                if message_id in applied:
                    applied[message_id] = True

        committed.add_done_callback(durable)
        if len(rows) == _BATCH:
            self._wake.set()

    async def tell_nodes_to_sync(self, auth: bytes | None = None) -> None:
        """Ask every other live node to read the registry now (each answers once done).

        The live nodes are read from the database now, not taken from the last lease round:
        a node that joined since that round (up to TTL/3 ago) is asked too. One that joins
        after this read opens its store after joining, so it loads the change itself."""
        from durably.cluster.leases import live_nodes
        from durably.cluster.node import SECRET

        headers = [(FORWARDED.decode(), self.name)]
        if auth is not None:
            headers.append(("authorization", auth.decode("latin-1")))
        if self.secret is not None:
            headers.append((SECRET.decode(), self.secret))
        nodes = list(self.keeper.nodes.values())
        if self.side is not None:
            try:
                nodes = await self.side.run(lambda conn: live_nodes(conn, self.keeper.ttl_s))
            except Exception as e:  # the NOTIFY and the nodes' own checks remain
                log.warning("reading the live nodes failed (%s); asking those of the last "
                            "lease round", str(e).splitlines()[0] if str(e) else type(e).__name__)

        async def one(node: NodeInfo) -> None:
            with contextlib.suppress(Exception):
                await self.peers.request(node_url(node, "admin"), "POST", SYNC_PATH, headers,
                                         timeout=5.0)

        await asyncio.gather(*(one(n) for n in nodes if n.name != self.name))

    async def act_on_invocation(
        self, scope: Any, inv_id: str, action: str, params: dict[str, str]
    ) -> Any:
        """An admin action on an invocation of any partition (the web UI's actions, one by
        one in a bulk action): `PATCH /invocations/{id}/{action}` through this node's admin
        router, so the owner performs it; the caller's token (from `scope`) goes with it."""
        from starlette.responses import Response

        path = f"/invocations/{quote(inv_id, safe='')}/{quote(action, safe='')}"
        request = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "PATCH", "scheme": "http", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": urlencode(params).encode(),
            "headers": [(b"host", b"localhost")],
            "client": scope.get("client"), "server": scope.get("server"),
        }
        auth = scope.get(AUTHORIZATION)
        if auth is not None:
            request[AUTHORIZATION] = auth
        start: dict[str, Any] = {}
        body = bytearray()

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def collect(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.admin.app(request, receive, collect)  # the Router
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])
                   if k.lower() in (b"content-type",)}
        return Response(bytes(body), status_code=int(start.get("status", 502)), headers=headers)

    def may_need_registry(self, kind: str, scope: Any) -> bool:
        """Whether the request reads the registry in a way a stale copy would answer
        wrongly: an invocation of a service this node does not know, an admin read of the
        deployments or services."""
        path: str = scope.get("path") or "/"
        if kind == "admin":
            return path.startswith(("/deployments", "/services"))
        engine = self.server.engine
        if engine is None or path.startswith("/restate"):
            return False
        service = path.strip("/").split("/", 1)[0]
        return bool(service) and engine.schema.service_ty(service) is None

    async def sync_registry_now(self, strict: bool = False) -> None:
        """Read the registry from the database now (`strict`: a failure raises), on the
        node's side connection."""
        try:
            if self.side is not None:
                await self.side.run(self._sync_registry)
        except Exception as e:
            if strict:
                raise
            log.warning("reading the schema registry failed: %s", e)

    async def _sync_registry(self, conn: Any) -> bool:
        """Take the registry and Kafka documents from the database if another node changed
        them; False when there is nothing to compare with yet (no store)."""
        from durably.server import REGISTRY_KEY

        store, engine = self.server.store, self.server.engine
        if store is None or engine is None:
            return False
        kafka = self.server.kafka
        if kafka is not None and REGISTRY_PARTITION not in self.ready:
            await kafka.sync(conn)  # its clusters and subscriptions, written alike
        raw = await conn.fetchval("SELECT value FROM durably.meta WHERE key = $1", REGISTRY_KEY)
        if raw is None or bytes(raw) == store.load_meta(REGISTRY_KEY):
            return True
        if REGISTRY_PARTITION in self.ready:
            return True  # this node writes the registry: its copy is the newest
        store._meta[REGISTRY_KEY] = bytes(raw)
        engine.schema.registry.reload(orjson.loads(raw))
        log.info("schema registry reloaded (changed by another node)")
        return True

    # -- routing -------------------------------------------------------------------------

    def refresh_owners(self) -> None:
        self._refresh.set()
        self._wake.set()

    def url_of_owner(self, pid: int, kind: str) -> str | None:
        owner = self.keeper.owners.get(pid)
        if owner is None or owner == self.name:
            if owner is None:
                self.refresh_owners()
            return None
        return self.url_of(owner, kind)

    def pid_for(self, kind: str, scope: Any, body: bytes) -> int | None:
        """The partition a request belongs to; None: any node serves it."""
        key = (ingress_partition_key if kind == "ingress" else admin_partition_key)(
            self, scope, body
        )
        if key is None:
            return None
        if key < 0:
            return REGISTRY_PARTITION
        from durably.ids import partition_of

        return partition_of(key, self.keeper.num_partitions)

    def forget_leader(self) -> None:
        self.refresh_owners()

    def status(self) -> dict[str, Any]:
        keeper = self.keeper
        return {
            "node": self.name,
            "placement": "spread",
            "role": "owner" if self.ready else "idle",
            "leader": None,
            "partitions": keeper.num_partitions,
            "partitions_held": len(keeper.held),
            "partitions_ready": len(self.ready),
            "registry_syncs_asked": self.registry_syncs_asked,
            "held": sorted(keeper.held),
            "lease_ttl_s": keeper.ttl_s,
            "nodes": [
                {"name": n.name, "address": n.address, "ingress_port": n.ingress_port,
                 "admin_port": n.admin_port, "heartbeat_age_s": round(n.heartbeat_age_s, 3),
                 "partitions": sum(1 for o in keeper.owners.values() if o == n.name)}
                for n in keeper.nodes.values()
            ],
        }

    async def stop(self, release: bool = True) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.keeper.stop(release=release)
        await self.peers.close()
        if self.side is not None:
            await self.side.close()


def notified_partitions_concern(payload: str, ready: set[int]) -> bool:
    """Whether an outbox NOTIFY concerns this node: its payload names the partitions the
    commit wrote messages for (comma-separated; cluster migration 3), so only their owners
    read the outbox. An empty or unreadable payload (a node of an earlier version wrote
    it) wakes every node, as before."""
    if not payload:
        return True
    try:
        return any(int(p) in ready for p in payload.split(","))
    except ValueError:
        return True


# A node of a spread cluster carries 1/N of the load, so its commits group 1/N as many steps
# and it pays a commit's fixed cost (round trip, fence, WAL flush) about N times as often per
# invocation; a busy node waits this long before a commit so that the steps sealed meanwhile
# share it (bench/cluster_nodes measures it). DURABLY_COMMIT_DELAY_MS overrides it (0: off).
BUSY_COMMIT_DELAY_S = 0.005


def busy_commit_delay_s() -> float:
    raw = os.environ.get("DURABLY_COMMIT_DELAY_MS")
    try:
        return max(0.0, float(raw) / 1000) if raw else BUSY_COMMIT_DELAY_S
    except ValueError:
        log.warning("DURABLY_COMMIT_DELAY_MS=%r is not a number of milliseconds; using %g",
                    raw, BUSY_COMMIT_DELAY_S * 1000)
        return BUSY_COMMIT_DELAY_S


def _invocation_key(invocation_id: str) -> int | None:
    try:
        return InvocationId.parse(invocation_id).partition_key
    except ValueError:
        return None


def ingress_partition_key(node: SpreadNode, scope: Any, body: bytes) -> int | None:
    """The partition key an ingress request is about (None: serve it anywhere)."""
    from durably.ingress import paths

    try:
        route = paths.parse(scope.get("path") or "/")
    except paths.PathError:
        return None  # answered by the local ingress (400)
    if isinstance(route, paths.Invoke):
        engine = node.server.engine
        service_ty = engine.schema.service_ty(route.service) if engine is not None else None
        if service_ty is None:
            return None  # unknown service: the local ingress answers 404
        try:
            resolved = paths.resolve_invoke(route, service_ty != "service")
        except paths.PathError:
            return None
        idem = None
        for k, v in scope.get("headers") or ():
            if k.lower() == b"idempotency-key":
                idem = v.decode("latin-1")
        if resolved.key is None and not idem:
            if node.ready:
                return None  # a new invocation on one of this node's partitions
            return partition_key_for(key=None)  # this node runs none: a random one's owner
        return partition_key_for(key=resolved.key, idempotency_key=idem or None)
    if isinstance(route, paths.Awakeable):
        try:
            return parse_awakeable_id(route.awakeable_id)[0].partition_key
        except ValueError:
            return None
    if isinstance(route, paths.ById):
        return _invocation_key(route.invocation_id)
    if isinstance(route, paths.ByIdempotencyKey):
        return partition_key_for(key=route.key, idempotency_key=route.idempotency_key)
    if isinstance(route, paths.ByWorkflow):
        return partition_key_for(key=route.workflow_id)
    if isinstance(route, paths.ByTargetBody):
        from durably.ingress.app import IngressApp

        try:
            return _invocation_key(IngressApp._target_from_body(None, body))  # type: ignore[arg-type]
        except Exception:
            return None
    return None


def admin_partition_key(node: SpreadNode, scope: Any, body: bytes) -> int | None:
    """The partition key of an admin request: an invocation's, -1 for a change of the
    schema registry (the owner of partition 0 writes it), None: any node."""
    path: str = scope.get("path") or "/"
    method: str = scope.get("method") or "GET"
    if path.startswith("/ui/"):
        cfg = node.cfg
        if not cfg.ui or cfg.ui_read_only:
            return None  # this node's UI answers (no UI here, or a read-only one)
        from durably.ui.routing import ui_partition_key

        return ui_partition_key(method, path[3:], body)
    parts = path.strip("/").split("/")
    if parts[0] == "invocations" and len(parts) in (2, 3):
        return _invocation_key(parts[1])
    if method == "POST" and len(parts) == 3 and parts[0] == "services" and parts[2] == "state":
        # a key's state is written by the owner of the key's partition
        try:
            object_key = orjson.loads(body).get("object_key") if body else None
        except (orjson.JSONDecodeError, AttributeError):
            object_key = None
        return partition_key_for(key=object_key) if isinstance(object_key, str) else None
    if method in ("POST", "DELETE", "PATCH", "PUT") and parts[0] in (
        "deployments", "services", "subscriptions", "kafka-clusters"
    ):
        return -1
    if parts[0] == "kafka-parked-records" and len(parts) in (2, 3):
        # a parked record is replayed or dropped by its partition's owner (its id names it)
        from durably.kafka.service import parked_partition

        n = node.keeper.num_partitions
        pid = parked_partition(int(parts[1])) if parts[1].isdigit() else None
        return None if pid is None or pid >= n else key_range(pid, n)[0]
    return None


"""PostgreSQL backend: the same `Store` the engine writes through, its rows in PostgreSQL.

The engine's view of a store is synchronous: reads answer at once, writes join the open
batch, `commit()` closes it and the effects wait until it is durable. PostgreSQL is across
a socket, so this backend keeps that view without the event loop ever waiting on the
network:

- **Reads come from memory.** At start the store loads its rows (`open`), and every write
  updates that copy before it is sent, so the copy is the database's state plus the batches
  still on their way: exactly what the engine would read from SQLite's connection. The
  engine is the only writer of these rows, which keeps the copy coherent. A node of a
  cluster in spread placement loads only its partitions' rows (`load_only`), loads more
  when it takes a partition over (`load_partitions`) and forgets those it hands over
  (`drop_partitions`).
- **Writes are a log of operations.** `commit()` seals the operations of the engine's step;
  a writer task folds everything sealed since its last commit into one net change per row
  and sends it as one call of `durably.commit_batch` (one round trip, one transaction, with
  `synchronous_commit=on`), while the engine goes on. Many engine steps share a commit.
- **A commit nobody waits for waits for company.** A step with no effect behind it (the
  SDK's `ctx.run` command, which the engine journals but does not acknowledge, arrives a
  moment before the run's result, which it does) is held up to `IDLE_COMMIT_S` so that the
  next step joins its transaction; as soon as any effect waits, everything sealed is sent.
  Nothing observable depends on the held step alone, so this only saves a commit (three of
  the eight of a workflow with three `ctx.run` at concurrency 1); a crash in that window
  loses what a crash a moment earlier would have lost.
- **Effects wait for COMMIT.** `commit_gate()` hands the engine the gate its effects pass:
  an HTTP answer, a notification or an attempt start is released only after PostgreSQL
  acknowledged the commit of the step that produced it.
- **Lost connections are survived.** The writer reconnects with backoff and resends the
  batch; a batch whose COMMIT's answer was lost is recognised by the sequence number it
  stored (`durably.writer`), so nothing is written twice. While the database is away,
  `available` is false (the ingress answers 503) and nothing is acknowledged.
- **Refusals are fatal.** A commit PostgreSQL refuses (disk full, the role made read-only,
  permissions) cannot be dropped, since the engine's memory is already ahead of it: the
  store reports it once and the server stops, with everything acknowledged still committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from durably.ids import InvocationId, partition_key_for, partition_of_stored
from durably.kafka.records import home_key
from durably.storage.base import (
    PARKED_PARTITION_SHIFT,
    InvocationRow,
    ParkedRecordRow,
    SubscriberRow,
    TimerRow,
)
from durably.storage.postgres_schema import LATEST, SchemaTooNew, migrate
from durably.storage.sqlite import (
    _EXTRA_AT,
    _PARTITION_KEY_AT,
    StorageError,
    _invocation_values,
    _row_to_invocation,
    _to_i64,
)

log = logging.getLogger("durably.storage")

Effect = Callable[[], None]

# `durably.commit_batch`'s parameters: the batch's sequence number, then `_compile`'s arrays
COMMIT_ARITY = 24
_COMMIT_SQL = (
    "SELECT durably.commit_batch("
    + ", ".join(f"${i}" for i in range(1, COMMIT_ARITY + 1))
    + ")"
)
# a commit that takes longer is treated as a lost connection (resent after reconnecting)
COMMIT_TIMEOUT_S = 30.0
# how long sealed steps no effect waits for are held for the next step (module doc)
IDLE_COMMIT_S = 0.05
_STATUS_AT = 7
_CREATED_AT = 8
_EXPIRES_AT = 29

# operation codes of the log
_META, _INV, _INV_DEL, _JOURNAL, _JOURNAL_CLEAR = range(5)
_STATE, _PROMISE, _LISTENER, _SUB, _TIMER = range(5, 10)
_KAFKA_OFFSET, _KAFKA_OFFSETS_DEL, _PARKED = range(10, 13)
# messages to other partitions' owners (cluster mode; `_compile` leaves them to the fence)
_OUTBOX, _OUTBOX_DEL = range(13, 15)
_LAST_PARKED_ID = "kafka_parked_last_id"  # durably.meta's key
# each statement of a partition load (spread placement) gives up after this long; a slow
# one on a large table is not expected to come near it, a black-holed one never answers
_LOAD_STATEMENT_TIMEOUT_S = 60.0
_PARKED_SEQ = (1 << PARKED_PARTITION_SHIFT) - 1
# the partition of a row's (signed) partition key, in SQL: $1 is the partition count
_PID_OF = (
    "floor((partition_key::numeric + CASE WHEN partition_key < 0 THEN 18446744073709551616 "
    "ELSE 0 END) * $1 / 18446744073709551616)::integer"
)


def describe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"postgresql://{user}{host}{port}{parts.path}"
    except ValueError:
        return "postgresql://(unparsable DSN)"


def _is_connection_error(e: BaseException) -> bool:
    """Whether `e` means the connection (not the statement) failed: resend after reconnecting."""
    import asyncpg

    if isinstance(e, asyncpg.PostgresError):
        state = getattr(e, "sqlstate", "") or ""
        # 08: connection exception; 57P01-03: the server shuts down or is starting
        return state.startswith("08") or state in ("57P01", "57P02", "57P03")
    if isinstance(e, asyncpg.exceptions.DataError):
        return False  # a value the driver cannot encode: a bug, not the connection
    # InternalClientError: the protocol's state broke with the connection (a backend
    # terminated while idle is noticed only by the next statement)
    return isinstance(
        e,
        (
            OSError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.InternalClientError,
            asyncio.TimeoutError,
            ConnectionError,
        ),
    )


def _refusal(e: BaseException) -> str:
    state = getattr(e, "sqlstate", "") or ""
    hint = {
        "25006": "the database or role is read-only",
        "53100": "the database's disk is full",
        "53200": "the database is out of memory",
        "42501": "the role lacks a privilege",
    }.get(state)
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"PostgreSQL refused a commit ({state}: {text})" + (f": {hint}" if hint else "")


class _CommitGate:
    """The engine's effects gate (see storage.durability): effects wait for the COMMIT."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def after_sync(self, effects: list[Effect], run: Callable[[list[Effect]], None]) -> None:
        self._store._after_commit(effects, run)

    def close(self) -> None:
        pass


class PostgresStore:
    deferred_sync = False
    path = None

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.where = describe_dsn(dsn)
        self._conn: Any = None  # the writer's asyncpg connection (None while reconnecting)
        # the in-memory copy (see the module's doc)
        self._meta: dict[str, bytes] = {}
        self._inv: dict[str, tuple[Any, ...]] = {}
        self._journal: dict[str, list[tuple[int, bytes]]] = {}
        self._state: dict[tuple[str, str], dict[bytes, bytes]] = {}
        self._promise: dict[tuple[str, str], dict[str, bytes]] = {}
        self._listeners: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
        self._subs: dict[str, dict[tuple[str, int], int]] = {}
        self._children: dict[str, dict[tuple[str, int], int]] = {}
        self._timers: dict[int, TimerRow] = {}
        self._timers_of: dict[str, set[int]] = {}
        # (expires_at, id) of rows with a retention end; stale entries are skipped
        self._expiry: list[tuple[int, str]] = []
        self._next_timer = 1
        # Kafka: (subscription, group, topic, partition) -> highest offset taken; parked records
        self._kafka_offsets: dict[tuple[str, str, str, int], int] = {}
        self._parked: dict[int, ParkedRecordRow] = {}
        self._next_parked = 1
        self._pk_cache: dict[str, int] = {}
        # the operation log: open (this step) and sealed (committed by the engine, unsent)
        self._ops: list[tuple[Any, ...]] = []
        self._sealed: list[tuple[Any, ...]] = []
        self._sealed_seq = 0
        self._durable_seq = 0
        self._waiting: deque[tuple[int, list[Effect], Callable[[list[Effect]], None]]] = deque()
        self._wake: asyncio.Event | None = None
        # set when an effect starts waiting: a held batch goes out at once
        self._needed: asyncio.Event | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        self._on_fatal: Callable[[BaseException], None] | None = None
        self._closing = False
        self.available = True
        self.commits = 0
        self.idle_commit_s = IDLE_COMMIT_S
        # busy-commit delay (0: off): when steps have been sealed at least once per
        # 4 x `commit_delay_s` lately and `in_flight()` says more than one attempt runs
        # (a lone caller's next step waits for this commit: waiting would only slow it), a
        # commit that something waits for first waits until the batch holds as many steps
        # as attempts run (each has had its turn to join), at most `commit_delay_s`, so
        # that the steps sealed meanwhile share it (PostgreSQL's commit_delay and
        # commit_siblings, in the node). A node carrying a small share of a cluster's load
        # otherwise commits nearly every step alone, and each commit's fixed cost (round
        # trip, fence, WAL flush) is paid per invocation. Acknowledgements still wait for
        # the commit.
        self.commit_delay_s = 0.0
        self._last_seal = time.perf_counter()
        self._seal_gap = 1.0  # moving average of the time between seals, seconds
        self.in_flight: Callable[[], int] | None = None
        self.on_commit: Callable[[float, int], None] | None = None
        self.on_sync: Callable[[float], None] | None = None
        # cluster mode (durably.cluster.fence): every commit also proves this node's leases
        self.fence: Any = None
        # spread placement: (partition count, the partitions whose rows `open` loads)
        self.load_only: tuple[int, set[int]] | None = None
        # cluster mode: the node these connections write for (durably.cluster.fence)
        self.node_name: str | None = None
        # spread placement: the node's side connection (durably.cluster.side), for reads of
        # every node's rows (parked records, Kafka backpressure's lookups); each use bounded
        self.side: Any = None

    # -- opening ---------------------------------------------------------------------

    async def _connect(self, timeout: float = 10.0) -> Any:
        import asyncpg

        return await asyncpg.connect(
            self.dsn,
            timeout=timeout,
            statement_cache_size=64,
            server_settings={
                "application_name": "durably",
                # the durability contract: COMMIT returns once the WAL is flushed
                "synchronous_commit": "on",
                **({"durably.node": self.node_name} if self.node_name else {}),
            },
        )

    async def open(self) -> None:
        """Connect, migrate the schema and load the rows; one clear StorageError otherwise."""
        import asyncpg

        try:
            conn = await self._connect()
        except asyncpg.InvalidPasswordError:
            raise StorageError(
                f"cannot connect to {self.where}: authentication failed (check the user and "
                "password)"
            ) from None
        except asyncpg.PostgresError as e:
            raise StorageError(f"cannot connect to {self.where}: {_first_line(e)}") from None
        except (TimeoutError, OSError, asyncpg.InterfaceError, ValueError) as e:
            reason = "timed out" if isinstance(e, asyncio.TimeoutError) else _first_line(e)
            raise StorageError(f"cannot connect to {self.where}: {reason}") from None
        try:
            before = await migrate(conn)
            if before != LATEST:
                log.info("PostgreSQL schema migrated from version %d to %d", before, LATEST)
            await self._load(conn)
        except SchemaTooNew as e:
            await conn.close()
            raise StorageError(f"{self.where}: {e}") from None
        except asyncpg.PostgresError as e:
            await conn.close()
            raise StorageError(f"cannot prepare {self.where}: {_first_line(e)}") from None
        self._conn = conn
        self._wake = asyncio.Event()
        self._needed = asyncio.Event()
        self._writer_task = asyncio.create_task(self._writer(), name="durably-pg-writer")

    async def _load(self, conn: Any) -> None:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            self._durable_seq = self._sealed_seq = int(
                await conn.fetchval("SELECT seq FROM durably.writer WHERE id = 1")
            )
            for key, value in await conn.fetch("SELECT key, value FROM durably.meta"):
                self._meta[key] = bytes(value)
            await self._load_rows(conn, self.load_only)
            self._next_timer = max(self._timers, default=0) + 1
            last = int(self._meta.get(_LAST_PARKED_ID, b"0")) & _PARKED_SEQ
            self._next_parked = max(last, self._parked_seq_max()) + 1

    async def _load_rows(self, conn: Any, only: tuple[int, set[int]] | None) -> None:
        """Load the partitioned tables' rows (of the partitions `only` names, or all)."""
        where, extra = "", []
        if only is not None:
            where = f" WHERE {_PID_OF} = ANY($2)"
            extra = [only[0], sorted(only[1])]

        async def rows(sql: str) -> Any:
            if extra:
                head, _, order = sql.partition(" ORDER BY")
                sql = head + where + (" ORDER BY" + order if order else "")
            # a partition load (a rebalance) must not wait forever on a connection a
            # network cut black-holed: it holds the node's moves and its outbox reader
            timeout = _LOAD_STATEMENT_TIMEOUT_S if extra else None
            return await conn.fetch(sql, *extra, timeout=timeout)

        for r in await rows("SELECT * FROM durably.invocation"):
            self._inv[r[0]] = tuple(r)
            if r[_EXPIRES_AT] is not None:
                heapq.heappush(self._expiry, (r[_EXPIRES_AT], r[0]))
        for inv, _, t, body in await rows(
            "SELECT invocation_id, idx, entry_type, body FROM durably.journal "
            "ORDER BY invocation_id, idx"
        ):
            self._journal.setdefault(inv, []).append((t, bytes(body)))
        for _, s, k, n, v in await rows("SELECT * FROM durably.state"):
            self._state.setdefault((s, k), {})[bytes(n)] = bytes(v)
        for _, s, k, n, v in await rows("SELECT * FROM durably.promise"):
            self._promise.setdefault((s, k), {})[n] = bytes(v)
        for _, s, k, n, i, c in await rows("SELECT * FROM durably.promise_listener"):
            self._listeners.setdefault((s, k, n), []).append((i, c))
        for _, t, s, c, ty in await rows("SELECT * FROM durably.subscriber"):
            self._subs.setdefault(t, {})[(s, c)] = ty
            self._children.setdefault(s, {})[(t, c)] = ty
        for _, i, at, kind, inv, c in await rows("SELECT * FROM durably.timer"):
            self._timers[i] = TimerRow(i, at, kind, inv, c)
            self._timers_of.setdefault(inv, set()).add(i)
        for _, sub, group, topic, part, offset in await rows(
            "SELECT * FROM durably.kafka_offset"
        ):
            self._kafka_offsets[(sub, group, topic, part)] = offset
        for r in await rows("SELECT * FROM durably.kafka_parked ORDER BY id"):
            self._parked[r[1]] = _parked_row(r)

    async def load_partitions(self, num_partitions: int, pids: set[int]) -> None:
        """Add the rows of partitions `pids` to the copy (this node just took them over:
        nothing else writes them any more, and nothing of this node wrote them before)."""
        conn = await self._connect()
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await self._load_rows(conn, (num_partitions, pids))
        except BaseException:
            conn.terminate()  # (a graceful close would wait on a black-holed connection)
            raise
        await conn.close(timeout=_LOAD_STATEMENT_TIMEOUT_S)
        if self.load_only is not None:
            self.load_only[1].update(pids)
        # ids go on above those of the partitions' records parked by their former owners
        self._next_parked = max(self._next_parked, self._parked_seq_max() + 1)

    def _parked_seq_max(self) -> int:
        return max((i & _PARKED_SEQ for i in self._parked), default=0)

    def drop_partitions(self, num_partitions: int, pids: set[int]) -> None:
        """Forget the rows of partitions `pids` (handed over; call it once what this node
        wrote to them is committed)."""
        def gone(stored_key: int) -> bool:
            return partition_of_stored(stored_key, num_partitions) in pids

        def gone_id(inv_id: str) -> bool:
            return gone(self._pk_of_invocation(inv_id))

        for inv_id in [i for i, r in self._inv.items() if gone(r[_PARTITION_KEY_AT])]:
            del self._inv[inv_id]
        for inv_id in [i for i in self._journal if gone_id(i)]:
            del self._journal[inv_id]
        for table in (self._state, self._promise):
            for sk in [sk for sk in table if gone(self._pk_of_key(sk[1]))]:
                del table[sk]  # type: ignore[attr-defined]
        for lk in [lk for lk in self._listeners if gone(self._pk_of_key(lk[1]))]:
            del self._listeners[lk]
        for target in [t for t in self._subs if gone_id(t)]:
            for (subscriber, cid), _ in self._subs.pop(target).items():
                children = self._children.get(subscriber)
                if children is not None:
                    children.pop((target, cid), None)
                    if not children:
                        del self._children[subscriber]
        for timer_id in [i for i, t in self._timers.items() if gone_id(t.invocation_id)]:
            timer = self._timers.pop(timer_id)
            self._timers_of.pop(timer.invocation_id, None)
        pk_kafka = self._pk_of_kafka_partition
        for ident in [k for k in self._kafka_offsets if gone(pk_kafka(k[0], k[2], k[3]))]:
            del self._kafka_offsets[ident]
        for record_id in [i for i, r in self._parked.items()
                          if gone(pk_kafka(r.subscription_id, r.topic, r.partition))]:
            del self._parked[record_id]
        self._pk_cache.clear()
        if self.load_only is not None:
            self.load_only[1].difference_update(pids)

    # -- the outbox (cluster mode: messages to other partitions' owners) ------------

    def put_outbox(self, pid: int, kind: str, body: bytes) -> None:
        self._check()
        self._ops.append((_OUTBOX, pid, kind, body))

    def delete_outbox(self, pid: int, message_id: int) -> None:
        self._check()
        self._ops.append((_OUTBOX_DEL, pid, message_id))

    # -- lifecycle -------------------------------------------------------------------

    def commit_gate(self, on_fatal: Callable[[BaseException], None]) -> _CommitGate:
        self._on_fatal = on_fatal
        return _CommitGate(self)

    def _unusable(self) -> StorageError:
        return StorageError(f"the store refuses writes after a failed commit ({self._failed})")

    @property
    def dirty(self) -> bool:
        return bool(self._ops)

    def commit(self) -> None:
        if self._failed is not None:
            raise self._unusable()
        if self._ops:
            self._sealed.extend(self._ops)
            self._ops = []
            self._sealed_seq += 1
            if self.commit_delay_s:
                now = time.perf_counter()
                self._seal_gap += (now - self._last_seal - self._seal_gap) * 0.2
                self._last_seal = now
            if self._wake is not None:
                self._wake.set()

    def _after_commit(self, effects: list[Effect], run: Callable[[list[Effect]], None]) -> None:
        if self._failed is not None:
            return
        if self._sealed_seq <= self._durable_seq:
            run(effects)
        else:
            self._waiting.append((self._sealed_seq, effects, run))
            if self._needed is not None:
                self._needed.set()

    def _durable(self, seq: int) -> None:
        self._durable_seq = seq
        waiting = self._waiting
        while waiting and waiting[0][0] <= seq:
            _, effects, run = waiting.popleft()
            run(effects)

    def _busy(self) -> int:
        """How many steps a commit should gather first (0: send it now)."""
        if self._seal_gap >= 4 * self.commit_delay_s or self._closing:
            return 0
        running = 2 if self.in_flight is None else self.in_flight()
        return running if running > 1 else 0

    async def _gather(self, target: int) -> None:
        """Wait until `target` steps are sealed and unsent, at most `commit_delay_s`."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.commit_delay_s
        while self._sealed_seq - self._durable_seq < target and not self._closing:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._wake.clear()  # set by the next seal (commit)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._wake.wait()

    async def _writer(self) -> None:
        assert self._wake is not None and self._needed is not None
        while True:
            if not self._sealed:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._waiting and not self._closing:
                # nothing observable waits for these steps: let the next one join them
                self._needed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.idle_commit_s):
                        await self._needed.wait()
            elif target := self._busy():
                await self._gather(target)
            ops, self._sealed = self._sealed, []
            seq = self._sealed_seq
            args = _compile(ops, self)
            if self.fence is not None:
                args.extend(_outbox_arguments(ops))
            started = time.perf_counter()
            try:
                await self._send(seq, args)
            except Exception as e:
                self._fail(e)
                return
            self.commits += 1
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started, len(ops))
            self._durable(seq)

    async def _send(self, seq: int, args: list[Any]) -> None:
        """Commit one batch, reconnecting as long as the connection is what fails."""
        failed = False  # an earlier try may have committed and lost only its answer
        # an empty array goes as NULL: commit_batch skips both alike (`cardinality` is NULL
        # or 0), and a NULL costs neither side an encoding (most arrays are empty)
        sent = [a if a else None for a in args]
        delay = 0.05
        while True:
            try:
                conn = self._conn
                if conn is None or conn.is_closed():
                    conn = self._conn = await self._connect(timeout=5.0)
                if failed:
                    if self.fence is not None:
                        done = await self.fence.committed_seq(conn)
                    else:
                        done = int(
                            await conn.fetchval("SELECT seq FROM durably.writer WHERE id = 1")
                        )
                    if not self.available:
                        log.warning("PostgreSQL at %s is reachable again", self.where)
                        self.available = True
                    if done >= seq:
                        return  # the lost answer was a COMMIT that succeeded
                if self.fence is not None:
                    fenced = self.fence.arguments(args)
                    await conn.execute(
                        self.fence.commit_sql, seq, *sent, *fenced, timeout=COMMIT_TIMEOUT_S
                    )
                else:
                    await conn.execute(_COMMIT_SQL, seq, *sent, timeout=COMMIT_TIMEOUT_S)
                return
            except Exception as e:
                if not _is_connection_error(e):
                    raise
                failed = True
                if self.available:
                    log.error(
                        "lost the connection to PostgreSQL at %s (%s); nothing is acknowledged "
                        "until it is back",
                        self.where,
                        _first_line(e) or type(e).__name__,
                    )
                self.available = False
                old, self._conn = self._conn, None
                if old is not None:
                    old.terminate()
                if self._closing and delay >= 2.0:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _fail(self, error: BaseException) -> None:
        message = _refusal(error) if getattr(error, "sqlstate", None) else str(error)
        log.critical("%s; nothing after the last commit was acknowledged", message)
        self._failed = StorageError(message)
        self._waiting.clear()
        if self._on_fatal is not None:
            self._on_fatal(self._failed)

    def close(self) -> None:
        """Stop writing (what is sealed and unsent stays unacknowledged)."""
        self._closing = True
        if self._writer_task is not None:
            self._writer_task.cancel()
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def aclose(self, timeout: float = 10.0) -> None:
        """Commit what the engine sealed, then close."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._needed is not None:
            self._needed.set()
        if self._writer_task is not None and self._failed is None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._writer_task), timeout)
        if self._writer_task is not None and not self._writer_task.done():
            self._writer_task.cancel()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 5)
            self._conn = None

    async def read_connection(self) -> Any:
        """A separate connection for readers (introspection), never the writer's."""
        return await self._connect()

    # -- helpers ---------------------------------------------------------------------

    def _check(self) -> None:
        if self._failed is not None:
            raise self._unusable()

    def _pk_of_invocation(self, invocation_id: str) -> int:
        pk = self._pk_cache.get(invocation_id)
        if pk is None:
            row = self._inv.get(invocation_id)
            if row is not None:
                pk = int(row[_PARTITION_KEY_AT])
            else:
                try:
                    pk = _to_i64(InvocationId.parse(invocation_id).partition_key)
                except ValueError:
                    pk = 0
            if len(self._pk_cache) > 100_000:
                self._pk_cache.clear()
            self._pk_cache[invocation_id] = pk
        return pk

    @staticmethod
    def _pk_of_key(key: str) -> int:
        return _to_i64(partition_key_for(key=key))

    # -- registry --------------------------------------------------------------------

    def load_meta(self, key: str) -> bytes | None:
        return self._meta.get(key)

    def save_meta(self, key: str, value: bytes) -> None:
        self._check()
        self._meta[key] = value
        self._ops.append((_META, key, value))

    # -- invocations -----------------------------------------------------------------

    def put_invocation(self, row: InvocationRow) -> None:
        self._check()
        values = list(_invocation_values(row))
        values[_PARTITION_KEY_AT] = _to_i64(row.partition_key)
        values[_EXTRA_AT] = orjson.dumps(row.extra) if row.extra else None
        record = tuple(values)
        previous = self._inv.get(row.id)
        self._inv[row.id] = record
        if row.expires_at is not None and (previous is None or previous[_EXPIRES_AT] != row.expires_at):
            heapq.heappush(self._expiry, (row.expires_at, row.id))
        self._ops.append((_INV, row.id, record))

    def get_invocation(self, invocation_id: str) -> InvocationRow | None:
        record = self._inv.get(invocation_id)
        return None if record is None else _row_to_invocation(record)

    def delete_invocation(self, invocation_id: str) -> None:
        self._check()
        self._inv.pop(invocation_id, None)
        self._journal.pop(invocation_id, None)
        self._pk_cache.pop(invocation_id, None)
        self._ops.append((_INV_DEL, invocation_id))

    def active_invocations(self) -> list[InvocationRow]:
        rows = [r for r in self._inv.values() if r[_STATUS_AT] != "completed"]
        rows.sort(key=lambda r: r[_CREATED_AT])
        return [_row_to_invocation(r) for r in rows]

    def expired_invocations(self, now: int, limit: int) -> list[InvocationRow]:
        # the rows stay until purged (the caller deletes them): entries popped here for
        # rows still present go back on the heap
        out: list[InvocationRow] = []
        keep: list[tuple[int, str]] = []
        heap = self._expiry
        while heap and heap[0][0] <= now and len(out) < limit:
            expires, inv_id = heapq.heappop(heap)
            r = self._inv.get(inv_id)
            if r is None or r[_EXPIRES_AT] != expires:
                continue  # purged, or its retention changed (a newer entry exists)
            out.append(_row_to_invocation(r))
            keep.append((expires, inv_id))
        for entry in keep:
            heapq.heappush(heap, entry)
        return out

    # -- journal ---------------------------------------------------------------------

    def append_journal(
        self, invocation_id: str, index: int, entry_type: int, body: bytes, now: int
    ) -> None:
        self._check()
        journal = self._journal.setdefault(invocation_id, [])
        if index == len(journal):
            journal.append((entry_type, body))
        elif index < len(journal):
            journal[index] = (entry_type, body)
        else:
            raise StorageError(f"journal of {invocation_id}: entry {index} after {len(journal)}")
        self._ops.append(
            (
                _JOURNAL,
                invocation_id,
                (self._pk_of_invocation(invocation_id), invocation_id, index, entry_type, body, now),
            )
        )

    def load_journal(self, invocation_id: str) -> list[tuple[int, bytes]]:
        return list(self._journal.get(invocation_id, ()))

    def delete_journal(self, invocation_id: str) -> None:
        self._check()
        self._journal.pop(invocation_id, None)
        self._ops.append((_JOURNAL_CLEAR, invocation_id))

    # -- state -----------------------------------------------------------------------

    def get_state(self, service: str, key: str, name: bytes) -> bytes | None:
        values = self._state.get((service, key))
        return None if values is None else values.get(bytes(name))

    def all_state(self, service: str, key: str) -> list[tuple[bytes, bytes]]:
        values = self._state.get((service, key))
        return sorted(values.items()) if values else []

    def set_state(self, service: str, key: str, name: bytes, value: bytes) -> None:
        self._check()
        name, value = bytes(name), bytes(value)
        self._state.setdefault((service, key), {})[name] = value
        self._ops.append((_STATE, (service, key, name), (self._pk_of_key(key), service, key, name, value)))

    def clear_state(self, service: str, key: str, name: bytes) -> None:
        self._check()
        name = bytes(name)
        values = self._state.get((service, key))
        if values is not None:
            values.pop(name, None)
            if not values:
                del self._state[(service, key)]
        self._ops.append((_STATE, (service, key, name), None))

    def clear_all_state(self, service: str, key: str) -> None:
        self._check()
        for name in self._state.pop((service, key), {}):
            self._ops.append((_STATE, (service, key, name), None))

    # -- promises --------------------------------------------------------------------

    def get_promise(self, service: str, key: str, name: str) -> bytes | None:
        values = self._promise.get((service, key))
        return None if values is None else values.get(name)

    def set_promise(self, service: str, key: str, name: str, result: bytes) -> None:
        self._check()
        self._promise.setdefault((service, key), {})[name] = result
        self._ops.append(
            (_PROMISE, (service, key, name), (self._pk_of_key(key), service, key, name, result))
        )

    def clear_promises(self, service: str, key: str) -> None:
        self._check()
        for name in self._promise.pop((service, key), {}):
            self._ops.append((_PROMISE, (service, key, name), None))
        for lkey in [k for k in self._listeners if k[0] == service and k[1] == key]:
            self._drop_listeners(lkey)

    def add_promise_listener(
        self, service: str, key: str, name: str, invocation_id: str, completion_id: int
    ) -> None:
        self._check()
        listeners = self._listeners.setdefault((service, key, name), [])
        if (invocation_id, completion_id) not in listeners:
            listeners.append((invocation_id, completion_id))
        row = (self._pk_of_key(key), service, key, name, invocation_id, completion_id)
        self._ops.append((_LISTENER, row[1:], row))

    def take_promise_listeners(self, service: str, key: str, name: str) -> list[tuple[str, int]]:
        self._check()
        return self._drop_listeners((service, key, name))

    def _drop_listeners(self, lkey: tuple[str, str, str]) -> list[tuple[str, int]]:
        taken = self._listeners.pop(lkey, [])
        pk = self._pk_of_key(lkey[1])
        for invocation_id, completion_id in taken:
            row = (pk, *lkey, invocation_id, completion_id)
            self._ops.append((_LISTENER, row[1:], None, row))
        return taken

    # -- subscribers -----------------------------------------------------------------

    def add_subscriber(self, row: SubscriberRow) -> None:
        self._check()
        ident = (row.subscriber_id, row.completion_id)
        self._subs.setdefault(row.target_id, {})[ident] = row.notification_type
        self._children.setdefault(row.subscriber_id, {})[(row.target_id, row.completion_id)] = (
            row.notification_type
        )
        record = (
            self._pk_of_invocation(row.target_id),
            row.target_id,
            row.subscriber_id,
            row.completion_id,
            row.notification_type,
        )
        self._ops.append((_SUB, record[1:4], record))

    def take_subscribers(self, target_id: str) -> list[SubscriberRow]:
        self._check()
        subs = self._subs.pop(target_id, None)
        if not subs:
            return []
        pk = self._pk_of_invocation(target_id)
        out = []
        for (subscriber_id, completion_id), ty in subs.items():
            children = self._children.get(subscriber_id)
            if children is not None:
                children.pop((target_id, completion_id), None)
                if not children:
                    del self._children[subscriber_id]
            out.append(SubscriberRow(target_id, subscriber_id, completion_id, ty))
            record = (pk, target_id, subscriber_id, completion_id, ty)
            self._ops.append((_SUB, record[1:4], None, record))
        return out

    def children_of(self, invocation_id: str, notification_type: int) -> list[str]:
        children = self._children.get(invocation_id)
        if not children:
            return []
        return [t for (t, _), ty in children.items() if ty == notification_type]

    # -- timers ----------------------------------------------------------------------

    def add_timer(self, fire_at: int, kind: str, invocation_id: str, completion_id: int) -> int:
        self._check()
        timer_id = self._next_timer
        self._next_timer += 1
        self._timers[timer_id] = TimerRow(timer_id, fire_at, kind, invocation_id, completion_id)
        self._timers_of.setdefault(invocation_id, set()).add(timer_id)
        record = (
            self._pk_of_invocation(invocation_id), timer_id, fire_at, kind, invocation_id,
            completion_id,
        )
        self._ops.append((_TIMER, timer_id, record))
        return timer_id

    def delete_timer(self, timer_id: int) -> None:
        self._check()
        timer = self._timers.pop(timer_id, None)
        if timer is not None:
            mine = self._timers_of.get(timer.invocation_id)
            if mine is not None:
                mine.discard(timer_id)
                if not mine:
                    del self._timers_of[timer.invocation_id]
        self._ops.append((_TIMER, timer_id, None))

    def delete_timers_of(self, invocation_id: str) -> None:
        self._check()
        for timer_id in list(self._timers_of.get(invocation_id, ())):
            self.delete_timer(timer_id)

    def all_timers(self) -> list[TimerRow]:
        timers = list(self._timers.values())
        timers.sort(key=lambda t: t.fire_at)
        return timers

    # -- kafka subscriptions ---------------------------------------------------------

    @staticmethod
    def _pk_of_kafka_partition(subscription_id: str, topic: str, partition: int) -> int:
        # one consumer's offset and parked records share a partition
        return _to_i64(home_key(subscription_id, topic, partition))

    def kafka_offsets(self, subscription_id: str, group: str) -> dict[tuple[str, int], int]:
        return {
            (t, p): o
            for (s, g, t, p), o in self._kafka_offsets.items()
            if s == subscription_id and g == group
        }

    def put_kafka_offset(
        self, subscription_id: str, group: str, topic: str, partition: int, offset: int
    ) -> bool:
        self._check()
        ident = (subscription_id, group, topic, partition)
        stored = self._kafka_offsets.get(ident)
        if stored is not None and offset <= stored:
            return False  # a repeat: nothing changes
        # the copy answers for this node; the commit's conditional upsert re-checks it
        # against the table, in the transaction of the invocation made from the record
        self._kafka_offsets[ident] = offset
        pk = self._pk_of_kafka_partition(subscription_id, topic, partition)
        self._ops.append((_KAFKA_OFFSET, ident, (pk, *ident, offset)))
        return True

    def delete_kafka_offsets(self, subscription_id: str) -> None:
        self._check()
        for ident in [k for k in self._kafka_offsets if k[0] == subscription_id]:
            del self._kafka_offsets[ident]
        self._ops.append((_KAFKA_OFFSETS_DEL, subscription_id))

    def park_kafka_record(self, row: ParkedRecordRow) -> int:
        self._check()
        record_id = self._next_parked
        self._next_parked += 1
        pk = self._pk_of_kafka_partition(row.subscription_id, row.topic, row.partition)
        if self.load_only is not None:  # spread placement: the id names the partition
            pid = partition_of_stored(pk, self.load_only[0])
            record_id |= (pid + 1) << PARKED_PARTITION_SHIFT
        # remembered, so an id is never reused for another record (as SQLite's AUTOINCREMENT)
        self.save_meta(_LAST_PARKED_ID, str(record_id).encode())
        self._parked[record_id] = dataclasses.replace(row, id=record_id)
        record = (
            pk, record_id, row.subscription_id, row.topic, row.partition, row.offset, row.key,
            row.value, row.timestamp, row.error, row.parked_at,
        )
        self._ops.append((_PARKED, record_id, record))
        return record_id

    def kafka_parked(self, subscription_id: str | None = None) -> list[ParkedRecordRow]:
        return [
            dataclasses.replace(r)
            for _, r in sorted(self._parked.items())
            if subscription_id is None or r.subscription_id == subscription_id
        ]

    async def all_kafka_parked(self, subscription_id: str | None = None) -> list[ParkedRecordRow]:
        """Every node's parked records, from the database (spread placement: this store's
        copy holds only its partitions')."""
        rows = await self.side.run(lambda conn: conn.fetch(
            "SELECT * FROM durably.kafka_parked WHERE $1::text IS NULL "
            "OR subscription_id = $1 ORDER BY id", subscription_id,
        ))
        return [_parked_row(r) for r in rows]

    def delete_parked_record(self, record_id: int) -> None:
        self._check()
        self._parked.pop(record_id, None)
        self._ops.append((_PARKED, record_id, None))


def _parked_row(r: Any) -> ParkedRecordRow:
    return ParkedRecordRow(
        r[1], r[2], r[3], r[4], r[5], _opt_bytes(r[6]), _opt_bytes(r[7]), r[8], r[9], r[10],
    )


def _opt_bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _outbox_arguments(ops: list[tuple[Any, ...]]) -> list[Any]:
    """`durably.outbox_write`'s arrays: messages added (in order), messages consumed."""
    added = [op for op in ops if op[0] == _OUTBOX]
    deleted = [op for op in ops if op[0] == _OUTBOX_DEL]
    return [
        [op[1] for op in added], [op[2] for op in added], [op[3] for op in added],
        [op[1] for op in deleted], [op[2] for op in deleted],
    ]


def _compile(ops: list[tuple[Any, ...]], store: PostgresStore) -> list[Any]:
    """Fold an ordered log of operations into one net change per row: the arguments of
    `durably.commit_batch`, which deletes before it inserts."""
    meta: dict[str, bytes] = {}
    inv: dict[str, tuple[Any, ...] | None] = {}
    # deleted in this batch, perhaps written anew after (the upsert then must not merge
    # with the old row: commit_batch deletes before it inserts)
    inv_deleted: set[str] = set()
    journal_clear: set[str] = set()
    journal: dict[str, dict[int, tuple[Any, ...]]] = {}
    state: dict[tuple[str, str, bytes], tuple[Any, ...] | None] = {}
    promise: dict[tuple[str, str, str], tuple[Any, ...] | None] = {}
    listener: dict[tuple[Any, ...], tuple[bool, tuple[Any, ...]]] = {}
    sub: dict[tuple[Any, ...], tuple[bool, tuple[Any, ...]]] = {}
    timer: dict[int, tuple[Any, ...] | None] = {}
    kafka_offset: dict[tuple[str, str, str, int], tuple[Any, ...]] = {}
    kafka_offsets_del: set[str] = set()
    parked: dict[int, tuple[Any, ...] | None] = {}
    for op in ops:
        code = op[0]
        if code == _JOURNAL:
            journal.setdefault(op[1], {})[op[2][2]] = op[2]
        elif code == _INV:
            inv[op[1]] = op[2]
        elif code == _STATE:
            state[op[1]] = op[2]
        elif code == _SUB:
            sub[op[1]] = (True, op[2]) if len(op) == 3 else (False, op[3])
        elif code == _TIMER:
            timer[op[1]] = op[2]
        elif code == _INV_DEL:
            inv[op[1]] = None
            inv_deleted.add(op[1])
            journal_clear.add(op[1])
            journal.pop(op[1], None)
        elif code == _JOURNAL_CLEAR:
            journal_clear.add(op[1])
            journal.pop(op[1], None)
        elif code == _PROMISE:
            promise[op[1]] = op[2]
        elif code == _LISTENER:
            listener[op[1]] = (True, op[2]) if len(op) == 3 else (False, op[3])
        elif code == _META:
            meta[op[1]] = op[2]
        elif code == _KAFKA_OFFSET:
            kafka_offset[op[1]] = op[2]  # offsets only grow: the last is the highest
        elif code == _KAFKA_OFFSETS_DEL:
            kafka_offsets_del.add(op[1])
            for ident in [k for k in kafka_offset if k[0] == op[1]]:
                del kafka_offset[ident]
        elif code == _PARKED:
            parked[op[1]] = op[2]
    state_del = [k for k, v in state.items() if v is None]
    promise_del = [k for k, v in promise.items() if v is None]
    return [
        [(k, v) for k, v in meta.items()],
        list(inv_deleted),
        [v for v in inv.values() if v is not None],
        list(journal_clear),
        [row for rows in journal.values() for row in rows.values()],
        [k[0] for k in state_del],
        [k[1] for k in state_del],
        [k[2] for k in state_del],
        [v for v in state.values() if v is not None],
        [k[0] for k in promise_del],
        [k[1] for k in promise_del],
        [k[2] for k in promise_del],
        [v for v in promise.values() if v is not None],
        [row for added, row in listener.values() if not added],
        [row for added, row in listener.values() if added],
        [row for added, row in sub.values() if not added],
        [row for added, row in sub.values() if added],
        [k for k, v in timer.items() if v is None],
        [v for v in timer.values() if v is not None],
        list(kafka_offsets_del),
        list(kafka_offset.values()),
        [k for k, v in parked.items() if v is None],
        [v for v in parked.values() if v is not None],
    ]


__all__ = ["PostgresStore", "describe_dsn"]

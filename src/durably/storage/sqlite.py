"""SQLite backend: the embedded default.

One connection, owned by the engine's event loop. Writes go into an open transaction that
`commit()` closes; the engine calls it once per event-loop step, so all the changes of that
step share one commit and one fsync (group commit).

Settings, and why they keep the promise that an acknowledged change survives `kill -9`:
- `journal_mode=WAL`: readers never block the writer, and a commit is one append to the WAL.
- `synchronous=FULL` (default here): the WAL is fsynced at every commit, so a commit that
  returned survives a power loss too. `NORMAL` would only survive a process crash; it can be
  chosen with `--sync normal` for speed.
- Checkpoints (copying WAL frames back into the database file, then fsyncing it) are mostly
  done by a thread with its own connection (`_Checkpointer`), not inside a COMMIT on the
  event loop as SQLite's automatic checkpoint would (that fsync stalled every request in
  flight once per ~1,000 pages). A checkpoint racing the writer never reaches the WAL's end,
  and SQLite starts the WAL file over only when one has; so when the WAL gets long, the
  writer finishes a checkpoint itself right after a COMMIT — by then only the frames since
  the thread's last pass are left to copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from durably.storage.base import InvocationRow, ParkedRecordRow, SubscriberRow, TimerRow
from durably.storage.introspection import introspection_indexes, ui_count_ddl, ui_status

log = logging.getLogger("durably.storage")

# 2: kafka_offset, kafka_parked (created on open of a version-1 file)
# 3: the web UI's indexes (introspection_indexes), built on open of an older file
SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS invocation (
    id TEXT PRIMARY KEY,
    partition_key INTEGER NOT NULL,
    service TEXT NOT NULL,
    handler TEXT NOT NULL,
    key TEXT,
    service_ty TEXT NOT NULL,
    handler_ty TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    idempotency_key TEXT,
    deployment_id TEXT,
    protocol_version INTEGER,
    invoked_by TEXT NOT NULL,
    invoked_by_id TEXT,
    invoked_by_target TEXT,
    execution_time INTEGER,
    inbox_seq INTEGER,
    inboxed_at INTEGER,
    running_at INTEGER,
    completed_at INTEGER,
    retry_count INTEGER NOT NULL DEFAULT 0,
    last_failure TEXT,
    last_failure_code INTEGER,
    next_retry_at INTEGER,
    random_seed INTEGER NOT NULL DEFAULT 0,
    journal_length INTEGER NOT NULL DEFAULT 0,
    waiting TEXT,
    result BLOB,
    expires_at INTEGER,
    extra BLOB
);
CREATE INDEX IF NOT EXISTS invocation_active ON invocation(status) WHERE status != 'completed';
CREATE INDEX IF NOT EXISTS invocation_expiry ON invocation(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS journal (
    invocation_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    entry_type INTEGER NOT NULL,
    body BLOB NOT NULL,
    appended_at INTEGER NOT NULL,
    PRIMARY KEY (invocation_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    name BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (service, key, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS promise (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    result BLOB NOT NULL,
    PRIMARY KEY (service, key, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS promise_listener (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    completion_id INTEGER NOT NULL,
    PRIMARY KEY (service, key, name, invocation_id, completion_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriber (
    target_id TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    completion_id INTEGER NOT NULL,
    notification_type INTEGER NOT NULL,
    PRIMARY KEY (target_id, subscriber_id, completion_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subscriber_by_subscriber ON subscriber(subscriber_id);
CREATE TABLE IF NOT EXISTS timer (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fire_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    completion_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS timer_by_invocation ON timer(invocation_id);
CREATE TABLE IF NOT EXISTS kafka_offset (
    subscription_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, group_id, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kafka_parked (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key BLOB,
    value BLOB,
    timestamp INTEGER NOT NULL,
    error TEXT NOT NULL,
    parked_at INTEGER NOT NULL
);
"""

_INVOCATION_FIELDS = [f.name for f in dataclasses.fields(InvocationRow)]
# What a row keeps from its creation on (an invocation id is made from its target, and a row
# is only ever created once under an id). The upsert does not set them again: SQLite then
# leaves every index on them alone when the row changes (see introspection's indexes).
_IMMUTABLE_FIELDS = frozenset({
    "id", "partition_key", "service", "handler", "key", "service_ty", "handler_ty",
    "created_at", "idempotency_key", "invoked_by", "invoked_by_id", "invoked_by_target",
    "random_seed",
})
# An upsert, not INSERT OR REPLACE: a row is written several times in its life (created,
# suspended, woken, completed), and REPLACE deletes the old row and inserts a new one,
# touching the table and every index twice; the upsert updates the row where it is.
_INSERT_INVOCATION = (
    f"INSERT INTO invocation ({', '.join(_INVOCATION_FIELDS)}) "
    f"VALUES ({', '.join('?' for _ in _INVOCATION_FIELDS)}) "
    f"ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{f} = excluded.{f}" for f in _INVOCATION_FIELDS if f not in _IMMUTABLE_FIELDS)
)
_invocation_values = operator.attrgetter(*_INVOCATION_FIELDS)
_PARTITION_KEY_AT = _INVOCATION_FIELDS.index("partition_key")
_EXTRA_AT = _INVOCATION_FIELDS.index("extra")
_SELECT_INVOCATION = f"SELECT {', '.join(_INVOCATION_FIELDS)} FROM invocation"


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older file's indexes up to SCHEMA_VERSION (tables are created above)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        version = int(row[0]) if row is not None else SCHEMA_VERSION
    except (TypeError, ValueError):
        version = 0
    if version < 3:
        (rows,) = db.execute("SELECT count(*) FROM invocation").fetchone()
        if rows > 100_000:
            log.warning("building the web UI's indexes over %d invocations (once)", rows)
    # idempotent (IF [NOT] EXISTS): a new file gets them here too
    db.executescript(introspection_indexes("invocation"))
    if db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'invocation_ui_count'"
    ).fetchone() is None:
        # also how a store written by other means (a bulk load) gets its counts: drop the
        # table, open the store
        db.executescript("BEGIN IMMEDIATE;\n" + ui_count_ddl("invocation") + "COMMIT;")


_CountKey = tuple[str, str, str, str]  # service, handler, pinned deployment or '', UI status


def _count_key(service: str, handler: str, deployment: str | None, protocol: int | None,
               status: str, result: bytes | None) -> _CountKey:
    # sys_invocation.pinned_deployment_id: the deployment once an attempt has pinned it
    pinned = deployment if protocol is not None and deployment is not None else ""
    return service, handler, pinned, ui_status(status, result)


class StorageError(Exception):
    """The data directory cannot be used (missing permissions, corrupt file, disk full)."""


_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def _to_i64(value: int) -> int:
    """SQLite integers are signed 64-bit: store u64 partition keys in two's complement."""
    return value - _U64 if value > _I64_MAX else value


def _row_to_invocation(row: tuple[object, ...]) -> InvocationRow:
    values = list(row)
    pk = values[1]
    if isinstance(pk, int) and pk < 0:
        values[1] = pk + _U64
    extra = values[-1]
    values[-1] = orjson.loads(extra) if extra else {}  # type: ignore[arg-type]
    return InvocationRow(*values)  # type: ignore[arg-type]


class _Writer:
    """The connection as the write methods see it: a statement that fails inside the open
    batch (disk full, I/O error) poisons the store, because the batch now lacks a change the
    engine has already made in memory and must never be committed."""

    __slots__ = ("_store",)

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        try:
            return self._store._db.execute(sql, params)
        except sqlite3.Error as e:
            self._store._poison(e)
            raise

    def executemany(self, sql: str, params: Any) -> sqlite3.Cursor:
        try:
            return self._store._db.executemany(sql, params)
        except sqlite3.Error as e:
            self._store._poison(e)
            raise


# WAL length (frames, i.e. pages) from which the writer finishes a checkpoint itself
WAL_RESTART_FRAMES = 4000


class _Checkpointer:
    """PASSIVE checkpoints every `interval_s` on a thread and connection of their own.

    They never block the writer or readers. Each reports the WAL's length in `wal_frames`,
    which the writer reads after its commits (an int: no lock needed). A failed
    checkpoint loses nothing (the frames stay in the WAL); it is logged once and retried,
    except an I/O error, which means the disk failed (`on_io_error`, and no more passes).
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        interval_s: float = 0.25,
        on_io_error: Callable[[sqlite3.Error], None] | None = None,
    ) -> None:
        self._path = path
        self._on_io_error = on_io_error
        self._synchronous = synchronous
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._last_error = ""
        self.wal_frames = 0
        self._thread = threading.Thread(target=self._run, name="durably-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.checkpoint()
            except sqlite3.Error as e:
                if _is_io_error(e) and self._on_io_error is not None:
                    self._on_io_error(e)
                    return  # the disk failed: no more checkpoints (see _disk_failed)
                if str(e) != self._last_error:
                    self._last_error = str(e)
                    log.warning("WAL checkpoint failed (will retry): %s", e)

    def checkpoint(self) -> None:
        with self._lock:  # the thread's pass, or a caller's (tests); never both at once
            if self._db is None:
                self._db = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
                self._db.execute(f"PRAGMA synchronous={self._synchronous}")
            row = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.wal_frames = int(row[1]) if row is not None and row[1] > 0 else 0
        self._last_error = ""

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None


def _is_io_error(e: sqlite3.Error) -> bool:
    """SQLITE_IOERR or one of its extended codes (a failed read, write or sync)."""
    return (getattr(e, "sqlite_errorcode", 0) & 0xFF) == 10


class SqliteStore:
    def __init__(self, data_dir: str | os.PathLike[str], *, synchronous: str = "FULL") -> None:
        path = Path(data_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-probe"
            try:
                probe.write_bytes(b"ok")
            finally:
                # also when the write failed (disk full): leave the directory as it was
                with contextlib.suppress(FileNotFoundError, PermissionError):
                    probe.unlink()
        except OSError as e:
            raise StorageError(f"data directory {path} is not writable: {e.strerror or e}") from e
        self.path = path / "durably.sqlite3"
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, cached_statements=256
            )
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: commits are made durable by `sync()` (storage/durability.py), called off
            # the event loop, so SQLite itself need not fsync inside COMMIT
            self.deferred_sync = synchronous.upper() == "FULL"
            sync_level = "NORMAL" if self.deferred_sync else synchronous
            db.execute(f"PRAGMA synchronous={sync_level}")
            db.execute("PRAGMA wal_autocheckpoint=0")  # see _Checkpointer
            db.execute("PRAGMA foreign_keys=OFF")
            db.execute("PRAGMA temp_store=MEMORY")
            db.executescript(SCHEMA)
            _migrate(db)
            # the tables a newer version adds are created above (IF NOT EXISTS): an older
            # file is migrated by opening it
            db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION).encode(),),
            )
        except sqlite3.Error as e:
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            hint = ""
            name = getattr(e, "sqlite_errorname", "") or ""
            if name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")):
                hint = f" ({name}: is the disk full or the data directory read-only?)"
            raise StorageError(f"cannot open the database {self.path}: {e}{hint}") from e
        self._db = db
        self._in_tx = False
        self._failed: sqlite3.Error | OSError | None = None
        # called once, from whichever thread saw it, when the store becomes unusable (a
        # failed commit, WAL fsync or checkpoint): the server stops instead of idling on
        # a store that refuses every write
        self.on_failure: Callable[[BaseException], None] | None = None
        self._writer = _Writer(self)
        # writes in the open batch, and who wants (seconds, writes) after each commit (metrics)
        self._batch_ops = 0
        self.on_commit: Callable[[float, int], None] | None = None
        self.on_sync: Callable[[float], None] | None = None
        self._wal_fd: int | None = None
        self._subscribed: set[str] | None = None  # see take_subscribers
        # The counts table (ui_count_ddl), kept here rather than by triggers (which cost
        # the writer a statement per change): the count key of each row this process wrote
        # that has not completed (completed rows rarely change again: they are read back
        # when they do), and the changes of the open batch, written just before COMMIT.
        self._count_keys: dict[str, _CountKey] = {}
        self._count_delta: dict[_CountKey, int] = {}
        self._checkpointer = _Checkpointer(
            self.path, synchronous=sync_level, on_io_error=self._disk_failed
        )

    def sync(self) -> None:
        """Flush the write-ahead log to disk (what synchronous=FULL does inside every COMMIT).

        Safe from another thread: it only fsyncs the WAL file's own descriptor.
        """
        if self._wal_fd is None:
            try:
                self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY)
            except FileNotFoundError:
                return  # nothing was ever written to the log
        started = time.perf_counter()
        try:
            os.fsync(self._wal_fd)
        except OSError as e:
            # after a failed fsync the kernel may have dropped the dirty pages: a later
            # fsync could "succeed" without them. Never trust this log again: refuse every
            # commit (and the final sync of close()) from now on.
            self._set_failed(e)
            raise
        if self.on_sync is not None:
            self.on_sync(time.perf_counter() - started)

    # -- lifecycle -------------------------------------------------------------------

    def _unusable(self) -> StorageError:
        return StorageError(f"the store refuses writes after a failed commit ({self._failed})")

    def _begin(self) -> _Writer:
        if self._failed is not None:
            raise self._unusable()
        self._batch_ops += 1
        if not self._in_tx:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_tx = True
        return self._writer

    @property
    def dirty(self) -> bool:
        return self._in_tx

    def commit(self) -> None:
        if self._failed is not None:
            # the caller's in-memory state is ahead of the store: nothing may be acknowledged
            raise self._unusable()
        if self._in_tx:
            if self._count_delta:
                self._write_counts()  # poisons the store if it fails, like any write
            self._in_tx = False
            started = time.perf_counter()
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                self._poison(e)
                raise
            ops, self._batch_ops = self._batch_ops, 0
            if self._checkpointer.wal_frames >= WAL_RESTART_FRAMES:
                self._finish_checkpoint()
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started, ops)

    def _finish_checkpoint(self) -> None:
        """Checkpoint to the WAL's end, with no write in between (see the module's doc)."""
        self._checkpointer.wal_frames = 0  # once per report of the thread
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:  # the frames stay in the WAL: nothing is lost
            if _is_io_error(e):
                self._disk_failed(e)
            else:
                log.warning("WAL checkpoint failed (will retry): %s", e)

    def _set_failed(self, error: sqlite3.Error | OSError) -> None:
        """The store is unusable from now on; tell `on_failure` (once), from any thread."""
        if self._failed is None:
            self._failed = error
            if self.on_failure is not None:
                self.on_failure(error)

    def _disk_failed(self, error: sqlite3.Error) -> None:
        """An I/O error while checkpointing (writing or syncing the database file). A later
        sync that succeeds would not prove the failed pages reached the disk, and a
        checkpoint trusting it could then drop the WAL frames that still hold them: refuse
        every later commit, so that the server stops at its next write. What is committed
        so far stays safe in the WAL. Called from the checkpoint thread too."""
        if self._failed is None:
            log.critical("the disk failed while checkpointing the WAL: %s", error)
            self._set_failed(error)

    def _poison(self, error: sqlite3.Error) -> None:
        """A write or a COMMIT failed (disk full, I/O error). The transaction may still be
        open: end it, and refuse every later write and commit, so that no later batch built
        on the lost one can reach the disk."""
        self._set_failed(error)
        self._subscribed = None
        self._forget_counts()
        self._in_tx = False
        self._batch_ops = 0
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _forget_counts(self) -> None:
        """After a rollback the rows are what the store holds: read them again."""
        self._count_keys.clear()
        self._count_delta.clear()

    def rollback(self) -> None:
        self._subscribed = None
        self._forget_counts()
        if self._in_tx:
            self._in_tx = False
            self._batch_ops = 0
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._checkpointer.close()
        try:
            if self._failed is None:
                self.commit()
                if self.deferred_sync:
                    self.sync()
        finally:
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None
            self._db.close()

    def read_connection(self) -> sqlite3.Connection:
        """A separate read-only connection (for introspection): reads a committed snapshot."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        return conn

    # -- registry --------------------------------------------------------------------

    def load_meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def save_meta(self, key: str, value: bytes) -> None:
        self._begin().execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value)
        )

    # -- invocations -----------------------------------------------------------------

    def put_invocation(self, row: InvocationRow) -> None:
        values = list(_invocation_values(row))
        values[_PARTITION_KEY_AT] = _to_i64(row.partition_key)
        values[_EXTRA_AT] = orjson.dumps(row.extra) if row.extra else None
        db = self._begin()
        old = self._count_keys.get(row.id) or self._stored_count_key(row.id)
        db.execute(_INSERT_INVOCATION, values)
        new = _count_key(row.service, row.handler, row.deployment_id, row.protocol_version,
                         row.status, row.result)
        if new != old:
            delta = self._count_delta
            if old is not None:
                delta[old] = delta.get(old, 0) - 1
            delta[new] = delta.get(new, 0) + 1
        if row.status == "completed":
            self._count_keys.pop(row.id, None)
        else:
            self._count_keys[row.id] = new

    def _stored_count_key(self, invocation_id: str) -> _CountKey | None:
        row = self._db.execute(
            "SELECT service, handler, deployment_id, protocol_version, status, result "
            "FROM invocation WHERE id = ?", (invocation_id,)
        ).fetchone()
        return None if row is None else _count_key(*row)

    def _write_counts(self) -> None:
        """The open batch's changes of the counts (one statement per changed key)."""
        changes = [(*k, n) for k, n in self._count_delta.items() if n]
        self._count_delta.clear()
        if changes:
            self._writer.executemany(
                "INSERT INTO invocation_ui_count(service, handler, deployment, status, n) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
                changes,
            )

    def get_invocation(self, invocation_id: str) -> InvocationRow | None:
        row = self._db.execute(_SELECT_INVOCATION + " WHERE id = ?", (invocation_id,)).fetchone()
        return None if row is None else _row_to_invocation(row)

    def delete_invocation(self, invocation_id: str) -> None:
        db = self._begin()
        old = self._count_keys.pop(invocation_id, None) or self._stored_count_key(invocation_id)
        if old is not None:
            self._count_delta[old] = self._count_delta.get(old, 0) - 1
        db.execute("DELETE FROM invocation WHERE id = ?", (invocation_id,))
        db.execute("DELETE FROM journal WHERE invocation_id = ?", (invocation_id,))

    def active_invocations(self) -> list[InvocationRow]:
        rows = self._db.execute(
            _SELECT_INVOCATION + " WHERE status != 'completed' ORDER BY created_at"
        ).fetchall()
        return [_row_to_invocation(r) for r in rows]

    def expired_invocations(self, now: int, limit: int) -> list[InvocationRow]:
        rows = self._db.execute(
            _SELECT_INVOCATION + " WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
            (now, limit),
        ).fetchall()
        return [_row_to_invocation(r) for r in rows]

    # -- journal ---------------------------------------------------------------------

    def append_journal(
        self, invocation_id: str, index: int, entry_type: int, body: bytes, now: int
    ) -> None:
        self._begin().execute(
            "INSERT OR REPLACE INTO journal(invocation_id, idx, entry_type, body, appended_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (invocation_id, index, entry_type, body, now),
        )

    def load_journal(self, invocation_id: str) -> list[tuple[int, bytes]]:
        rows = self._db.execute(
            "SELECT entry_type, body FROM journal WHERE invocation_id = ? ORDER BY idx",
            (invocation_id,),
        ).fetchall()
        return [(int(t), bytes(b)) for t, b in rows]

    def delete_journal(self, invocation_id: str) -> None:
        self._begin().execute("DELETE FROM journal WHERE invocation_id = ?", (invocation_id,))

    # -- state -----------------------------------------------------------------------

    def get_state(self, service: str, key: str, name: bytes) -> bytes | None:
        row = self._db.execute(
            "SELECT value FROM state WHERE service = ? AND key = ? AND name = ?",
            (service, key, name),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def all_state(self, service: str, key: str) -> list[tuple[bytes, bytes]]:
        rows = self._db.execute(
            "SELECT name, value FROM state WHERE service = ? AND key = ? ORDER BY name",
            (service, key),
        ).fetchall()
        return [(bytes(n), bytes(v)) for n, v in rows]

    def set_state(self, service: str, key: str, name: bytes, value: bytes) -> None:
        self._begin().execute(
            "INSERT OR REPLACE INTO state(service, key, name, value) VALUES (?, ?, ?, ?)",
            (service, key, name, value),
        )

    def clear_state(self, service: str, key: str, name: bytes) -> None:
        self._begin().execute(
            "DELETE FROM state WHERE service = ? AND key = ? AND name = ?", (service, key, name)
        )

    def clear_all_state(self, service: str, key: str) -> None:
        self._begin().execute("DELETE FROM state WHERE service = ? AND key = ?", (service, key))

    # -- promises --------------------------------------------------------------------

    def get_promise(self, service: str, key: str, name: str) -> bytes | None:
        row = self._db.execute(
            "SELECT result FROM promise WHERE service = ? AND key = ? AND name = ?",
            (service, key, name),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def set_promise(self, service: str, key: str, name: str, result: bytes) -> None:
        self._begin().execute(
            "INSERT OR REPLACE INTO promise(service, key, name, result) VALUES (?, ?, ?, ?)",
            (service, key, name, result),
        )

    def clear_promises(self, service: str, key: str) -> None:
        db = self._begin()
        db.execute("DELETE FROM promise WHERE service = ? AND key = ?", (service, key))
        db.execute("DELETE FROM promise_listener WHERE service = ? AND key = ?", (service, key))

    def add_promise_listener(
        self, service: str, key: str, name: str, invocation_id: str, completion_id: int
    ) -> None:
        self._begin().execute(
            "INSERT OR IGNORE INTO promise_listener(service, key, name, invocation_id, "
            "completion_id) VALUES (?, ?, ?, ?, ?)",
            (service, key, name, invocation_id, completion_id),
        )

    def take_promise_listeners(self, service: str, key: str, name: str) -> list[tuple[str, int]]:
        db = self._begin()
        rows = db.execute(
            "SELECT invocation_id, completion_id FROM promise_listener "
            "WHERE service = ? AND key = ? AND name = ?",
            (service, key, name),
        ).fetchall()
        db.execute(
            "DELETE FROM promise_listener WHERE service = ? AND key = ? AND name = ?",
            (service, key, name),
        )
        return [(str(i), int(c)) for i, c in rows]

    # -- subscribers -----------------------------------------------------------------

    def add_subscriber(self, row: SubscriberRow) -> None:
        self._begin().execute(
            "INSERT OR REPLACE INTO subscriber(target_id, subscriber_id, completion_id, "
            "notification_type) VALUES (?, ?, ?, ?)",
            (row.target_id, row.subscriber_id, row.completion_id, row.notification_type),
        )
        if self._subscribed is not None:
            self._subscribed.add(row.target_id)

    def take_subscribers(self, target_id: str) -> list[SubscriberRow]:
        # Every completion asks; few invocations have anybody waiting on them. The ids that
        # may have subscriber rows are kept in memory (loaded once, a superset: a rollback
        # forgets them), so that the others cost no query.
        if self._failed is not None:
            raise self._unusable()
        subscribed = self._subscribed
        if subscribed is None:
            subscribed = self._subscribed = {
                str(r[0]) for r in self._db.execute("SELECT DISTINCT target_id FROM subscriber")
            }
        if target_id not in subscribed:
            return []
        db = self._begin()
        rows = db.execute(
            "SELECT target_id, subscriber_id, completion_id, notification_type FROM subscriber "
            "WHERE target_id = ?",
            (target_id,),
        ).fetchall()
        if rows:
            db.execute("DELETE FROM subscriber WHERE target_id = ?", (target_id,))
        subscribed.discard(target_id)
        return [SubscriberRow(*r) for r in rows]

    def children_of(self, invocation_id: str, notification_type: int) -> list[str]:
        rows = self._db.execute(
            "SELECT target_id FROM subscriber WHERE subscriber_id = ? AND notification_type = ?",
            (invocation_id, notification_type),
        ).fetchall()
        return [str(r[0]) for r in rows]

    # -- timers ----------------------------------------------------------------------

    def add_timer(self, fire_at: int, kind: str, invocation_id: str, completion_id: int) -> int:
        cur = self._begin().execute(
            "INSERT INTO timer(fire_at, kind, invocation_id, completion_id) VALUES (?, ?, ?, ?)",
            (fire_at, kind, invocation_id, completion_id),
        )
        return int(cur.lastrowid or 0)

    def delete_timer(self, timer_id: int) -> None:
        self._begin().execute("DELETE FROM timer WHERE id = ?", (timer_id,))

    def delete_timers_of(self, invocation_id: str) -> None:
        self._begin().execute("DELETE FROM timer WHERE invocation_id = ?", (invocation_id,))

    def all_timers(self) -> list[TimerRow]:
        rows = self._db.execute(
            "SELECT id, fire_at, kind, invocation_id, completion_id FROM timer ORDER BY fire_at"
        ).fetchall()
        return [TimerRow(*r) for r in rows]

    # -- kafka subscriptions ---------------------------------------------------------

    def kafka_offsets(self, subscription_id: str, group: str) -> dict[tuple[str, int], int]:
        rows = self._db.execute(
            "SELECT topic, partition, offset FROM kafka_offset "
            "WHERE subscription_id = ? AND group_id = ?",
            (subscription_id, group),
        ).fetchall()
        return {(str(t), int(p)): int(o) for t, p, o in rows}

    def put_kafka_offset(
        self, subscription_id: str, group: str, topic: str, partition: int, offset: int
    ) -> bool:
        cur = self._begin().execute(
            "INSERT INTO kafka_offset(subscription_id, group_id, topic, partition, offset) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET offset = excluded.offset "
            "WHERE excluded.offset > kafka_offset.offset",
            (subscription_id, group, topic, partition, offset),
        )
        return cur.rowcount > 0  # 0: the stored offset was as high already

    def delete_kafka_offsets(self, subscription_id: str) -> None:
        self._begin().execute(
            "DELETE FROM kafka_offset WHERE subscription_id = ?", (subscription_id,)
        )

    def park_kafka_record(self, row: ParkedRecordRow) -> int:
        cur = self._begin().execute(
            "INSERT INTO kafka_parked(subscription_id, topic, partition, offset, key, value, "
            "timestamp, error, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.subscription_id, row.topic, row.partition, row.offset, row.key, row.value,
             row.timestamp, row.error, row.parked_at),
        )
        return int(cur.lastrowid or 0)

    def kafka_parked(self, subscription_id: str | None = None) -> list[ParkedRecordRow]:
        sql = (
            "SELECT id, subscription_id, topic, partition, offset, key, value, timestamp, "
            "error, parked_at FROM kafka_parked"
        )
        params: tuple[str, ...] = ()
        if subscription_id is not None:
            sql += " WHERE subscription_id = ?"
            params = (subscription_id,)
        rows = self._db.execute(sql + " ORDER BY id", params).fetchall()
        return [ParkedRecordRow(*r) for r in rows]

    def delete_parked_record(self, record_id: int) -> None:
        self._begin().execute("DELETE FROM kafka_parked WHERE id = ?", (record_id,))

"""The partition processor: the invocation state machine.

Single-threaded on the event loop. Inputs are method calls (a new invocation from the
ingress, a frame from an attempt, a timer, a cancel); each applies its state changes to the
store's open write batch and queues the effects the outside may observe (answering a
caller, pushing a notification to an SDK, starting an attempt). At the end of the
event-loop step all changes are committed together and only then are the effects run:
nothing is acknowledged before it is durable.

The per-command logic lives in `commands.py`; this module holds the lifecycle:
creation, inbox and locks, attempts, suspension, retries, completion, cancel and kill.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from durably.engine import management, partitions
from durably.engine.attempt import Attempt
from durably.engine.deadlock import (
    ReadWaits,
    Waits,
    describe_cycle,
    find_cycle,
    find_cycle_across,
    find_cycle_with,
)
from durably.engine.model import (
    CANCELED,
    KILLED,
    WORKFLOW_ALREADY_INVOKED,
    ActiveInvocation,
    Failure,
    Result,
    Target,
    Waiting,
    encode_waiting,
    now_ms,
    waiting_of,
)
from durably.engine.notifications import notification, notification_id
from durably.engine.observer import Observer
from durably.engine.partitions import PartitionMoved, Partitions
from durably.engine.retry import RetryPolicy
from durably.engine.timers import TimerQueue
from durably.ids import InvocationId
from durably.metrics import NULL_METRICS, Metrics
from durably.protocol import version as protocol_version
from durably.protocol.framing import encode_frame
from durably.protocol.messages import MessageType, is_command, is_notification, pb
from durably.storage.base import InvocationRow, SubscriberRow, TimerRow
from durably.storage.durability import DurabilityGate, EffectGate

log = logging.getLogger("durably.engine")

DAY_MS = 24 * 3600 * 1000
# the failed attempts an invocation keeps (row.extra["attempts"], newest last) and how much
# of each message: what the web UI lists on the invocation's page
ATTEMPTS_KEPT = 20
# a deadlock search through other nodes' partitions that found nothing runs once more
# after this long (see Engine._search)
_RESEARCH_S = 2.0
# the ids on a row of calls and attaches to other partitions (spread placement), by the
# completion that ends each: kill propagation and the deadlock search follow them
_REMOTE_WAITS = {
    MessageType.CALL_COMPLETION: "remote_calls",
    MessageType.ATTACH_INVOCATION_COMPLETION: "remote_waits",
}
ATTEMPT_MESSAGE_CHARS = 2048


def _remote_ids(extra: dict[str, Any], field: str) -> list[str]:
    """The invocation ids in a row's `remote_calls` or `remote_waits`: each entry is
    [id, completion id], or a bare id (written before completions pruned them)."""
    entries = extra.get(field)
    ids = []
    for entry in entries if isinstance(entries, list) else ():
        child = entry[0] if isinstance(entry, list) and entry else entry
        if isinstance(child, str):
            ids.append(child)
    return ids


def _awaited_by(journal: list[tuple[int, bytes]], msg_type: MessageType, cid: int) -> str | None:
    """The invocation whose completion `cid` (a call's or an attach's result) is, read from
    the commands in the journal that asked for it."""
    from durably.engine.commands import resolve_target_id

    if msg_type == MessageType.ATTACH_INVOCATION_COMPLETION:
        for t, body in journal:
            if t == MessageType.ATTACH_INVOCATION_COMMAND:
                attach = pb.AttachInvocationCommandMessage.FromString(body)
                if attach.result_completion_id == cid:
                    return resolve_target_id(attach)
        return None
    id_notification: int | None = None  # a call: its id arrives as a notification
    for t, body in journal:
        if t == MessageType.CALL_COMMAND and id_notification is None:
            call = pb.CallCommandMessage.FromString(body)
            if call.result_completion_id == cid:
                id_notification = call.invocation_id_notification_idx
        elif t == MessageType.CALL_INVOCATION_ID_COMPLETION and id_notification is not None:
            note = pb.CallInvocationIdCompletionNotificationMessage.FromString(body)
            if note.completion_id == id_notification:
                return str(note.invocation_id)
    return None


class TargetError(Exception):
    """A target that cannot be invoked (unknown service/handler, wrong key...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class HandlerOptions:
    deployment_id: str
    inactivity_timeout_ms: int = 60_000
    abort_timeout_ms: int = 600_000
    idempotency_retention_ms: int = DAY_MS
    workflow_retention_ms: int = DAY_MS
    journal_retention_ms: int = DAY_MS
    lazy_state: bool = False
    public: bool = True
    retry: RetryPolicy = RetryPolicy()
    input_rules: Any = None  # protocol.discovery.InputRules; None accepts anything
    output_content_type: str | None = "application/json"
    output_set_content_type_if_empty: bool = False


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    id: str
    uri: str
    use_http_11: bool
    bidi: bool
    additional_headers: dict[str, str]
    max_protocol_version: int
    min_protocol_version: int


class Schema(Protocol):
    """What the engine needs to know about registered services (see schema.registry)."""

    def target(self, service: str, handler: str, key: str | None) -> tuple[Target, HandlerOptions]:
        ...

    def deployment(self, deployment_id: str) -> DeploymentInfo | None: ...

    def service_ty(self, service: str) -> str | None: ...


class Invoker(Protocol):
    def start(self, attempt: Attempt) -> None: ...


@dataclass(slots=True)
class Submitted:
    invocation_id: str
    existed: bool
    completed: bool
    execution_time: int | None = None
    # created by a message to the partition's owner (a node of a cluster): its outcome
    # (existed, completed) is known there, not here
    remote: bool = False


class Engine:
    def __init__(
        self,
        store: Any,
        schema: Schema,
        *,
        enable_protocol_v7: bool = False,
    ) -> None:
        self.store = store
        self.schema = schema
        self.invoker: Invoker | None = None
        self.enable_protocol_v7 = enable_protocol_v7
        self.active: dict[str, ActiveInvocation] = {}
        # one Target object per handler of an unkeyed service, shared by its invocations
        self._targets: dict[Target, Target] = {}
        self.locks: dict[tuple[str, str], str] = {}
        self.inboxes: dict[tuple[str, str], deque[str]] = {}
        self._inbox_seq = 0
        self._waiters: dict[str, list[asyncio.Future[Result]]] = {}
        self._effects: list[Callable[[], None]] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.timers = TimerQueue(self._fire_timer)
        self.on_fatal: Callable[[BaseException], None] | None = None
        self.stopping = False
        # invocation id -> the members of the wait-for cycle it is part of
        self.deadlocks: dict[str, list[str]] = {}
        # rows of active invocations changed in this batch (written by flush)
        self._dirty: dict[str, ActiveInvocation] = {}
        # set in recover() when the store flushes its log off the loop (storage/durability.py)
        self._gate: EffectGate | None = None
        self.metrics: Metrics = NULL_METRICS
        # lifecycle observer (durably.tracing); None costs one test per call site
        self.observer: Observer | None = None
        # the partitions this engine owns (engine.partitions), None: all of them (one node)
        self.partitions: Partitions | None = None
        # set by a spread node: reads what invocations of other nodes' partitions wait on
        # (engine.deadlock); a search that reaches one runs as a task of its own
        self.read_waits: ReadWaits | None = None
        self._searches: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------ commit & effects

    def _effect(self, fx: Callable[[], None]) -> None:
        self._effects.append(fx)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Commit the current batch, then run the effects that waited for it."""
        self._flush_scheduled = False
        try:
            self._write_dirty()
            self.store.commit()
        except Exception as e:  # a failed commit leaves us unable to keep promises
            log.critical("storage commit failed: %s", e)
            self._effects.clear()
            if self.on_fatal is not None:
                self.on_fatal(e)
            return
        effects, self._effects = self._effects, []
        if not effects:
            return
        if self._gate is not None:
            self._gate.after_sync(effects, self._run_effects)
        else:
            self._run_effects(effects)

    def _run_effects(self, effects: list[Callable[[], None]]) -> None:
        for fx in effects:
            try:
                fx()
            except Exception:
                log.exception("effect failed")

    def _fatal(self, error: BaseException) -> None:
        if self.on_fatal is not None:
            self.on_fatal(error)

    def committed(self) -> asyncio.Future[None]:
        """A future resolved once everything changed so far is durable."""
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()

        def done() -> None:
            if not fut.done():
                fut.set_result(None)

        self._effect(done)
        return fut

    # ------------------------------------------------------------------ start-up

    def recover(self) -> None:
        """Load every unfinished invocation and timer; restart what was running."""
        self._loop = asyncio.get_running_loop()
        # a store whose commits finish off the loop (PostgreSQL) gates the effects itself
        commit_gate = getattr(self.store, "commit_gate", None)
        if commit_gate is not None and self._gate is None:
            self._gate = commit_gate(self._fatal)
        elif getattr(self.store, "deferred_sync", False) and self._gate is None:
            self._gate = DurabilityGate(self._loop, self.store.sync, self._fatal)
        if hasattr(self.store, "on_failure"):
            # the store may fail in a thread of its own (checkpoints, fsync): stop on the loop
            loop = self._loop
            self.store.on_failure = lambda e: loop.call_soon_threadsafe(self._fatal, e)
        rows = self.store.active_invocations()
        self._recover_rows(rows, self.store.all_timers())

    def _recover_rows(self, rows: list[InvocationRow], timers: list[TimerRow]) -> None:
        inboxed: list[ActiveInvocation] = []
        to_start: list[ActiveInvocation] = []
        to_wake: list[ActiveInvocation] = []
        for row in rows:
            inv = self._materialize(row)
            self.active[row.id] = inv
            cycle = row.extra.get("deadlock_cycle")
            if isinstance(cycle, list):
                self.deadlocks[row.id] = [str(m) for m in cycle]
            if row.inbox_seq is not None:
                self._inbox_seq = max(self._inbox_seq, row.inbox_seq)
            status = row.status
            if status == "inboxed":
                self._hold_journal(inv)
                inboxed.append(inv)
            elif status in ("invoked", "backing-off"):
                to_start.append(inv)
                if inv.target.takes_lock:
                    self.locks[self._lock_key(inv.target)] = inv.id
            elif status in ("suspended", "paused"):
                if inv.target.takes_lock:
                    self.locks[self._lock_key(inv.target)] = inv.id
                waiting = waiting_of(row) if status == "suspended" else None
                # a wake-up that was stored but not acted upon before the restart
                if waiting is not None and self._satisfied(waiting, self.store.load_journal(inv.id)):
                    to_wake.append(inv)
        inboxed.sort(key=lambda i: i.row.inbox_seq or 0)
        for inv in inboxed:
            self.inboxes.setdefault(self._lock_key(inv.target), deque()).append(inv.id)
        # a key whose holder finished just before the crash: start its next invocation
        for lock_key in list(self.inboxes):
            if lock_key not in self.locks:
                self._dequeue(lock_key)
        for timer in timers:
            owner = self.active.get(timer.invocation_id)
            if owner is not None:
                owner.timer_ids += (timer.id,)
            self.timers.add(timer)  # one without its invocation is dropped when it fires
        for inv in to_start:
            self._start_attempt(inv)
        for inv in inboxed:
            self.check_deadlock(inv.id)
        for inv in to_wake:
            self._start_attempt(inv)
        self._schedule_flush()
        log.info("recovered %d unfinished invocations, %d timers", len(rows), len(self.timers))

    def adopt(self, pids: set[int]) -> None:
        """Run the partitions `pids` too (a node of a cluster took their leases and its
        store loaded their rows): recover their unfinished invocations and timers."""
        parts = self.partitions
        assert parts is not None
        parts.set_owned(parts.owned | pids)
        rows = [
            r for r in self.store.active_invocations()
            if r.id not in self.active and parts.of_key(r.partition_key) in pids
        ]
        timers = [
            t for t in self.store.all_timers()
            if (pid := parts.of_id(t.invocation_id)) is not None and pid in pids
        ]
        self._recover_rows(rows, timers)

    def release(self, pids: set[int]) -> None:
        """Stop running the partitions `pids` (handed over or lost): their attempts are
        aborted and their invocations leave memory; what this step changed is committed
        by the flush that follows. Callers waiting on them get `PartitionMoved`."""
        parts = self.partitions
        assert parts is not None
        parts.set_owned(parts.owned - pids)
        self._write_dirty()
        gone = [i for i in self.active.values() if parts.of_key(i.row.partition_key) in pids]
        for inv in gone:
            if isinstance(inv.retry_handle, asyncio.TimerHandle):
                inv.retry_handle.cancel()
            attempt = inv.attempt
            inv.attempt = None
            if attempt is not None and not attempt.finished:
                attempt.finished = True
                self._effect(attempt.abort)
            for timer_id in inv.timer_ids:
                self.timers.cancel(timer_id)
            del self.active[inv.id]
            self.deadlocks.pop(inv.id, None)
            if inv.target.takes_lock:
                lock_key = self._lock_key(inv.target)
                if self.locks.get(lock_key) == inv.id:
                    del self.locks[lock_key]
                self.inboxes.pop(lock_key, None)
        for inv_id in [i for i in self._waiters if parts.of_id(i) in pids]:
            for fut in self._waiters.pop(inv_id):
                if not fut.done():
                    fut.set_exception(PartitionMoved(inv_id))
        self._schedule_flush()

    def _materialize(self, row: InvocationRow) -> ActiveInvocation:
        target = self._shared(Target(row.service, row.handler, row.key, row.service_ty, row.handler_ty))
        return ActiveInvocation(row=row, target=target, last_entry_at=row.modified_at)

    def _shared(self, target: Target) -> Target:
        if target.key is not None:
            return target
        return self._targets.setdefault(target, target)

    def _hold_journal(self, inv: ActiveInvocation) -> list[tuple[int, bytes]]:
        """The invocation's journal in memory (read from the store if it was left there).

        The store's connection sees this batch's uncommitted appends, so the journal read
        is whole even right after an entry was added to a journal left in the store.
        """
        journal = inv.journal
        if journal is None:
            journal = inv.journal = self.store.load_journal(inv.id)
            for t, body in journal:
                if is_notification(t):
                    self._track_notification(inv, t, body)
        return journal

    def _release_journal(self, inv: ActiveInvocation) -> None:
        """Leave a parked invocation's journal in the store until it runs again."""
        inv.journal = None
        inv.completion_ids = None

    # ------------------------------------------------------------------ lookups

    def lookup(self, invocation_id: str) -> InvocationRow | None:
        inv = self.active.get(invocation_id)
        if inv is not None:
            return inv.row
        row: InvocationRow | None = self.store.get_invocation(invocation_id)
        return row

    def completed_result(self, invocation_id: str) -> Result | None:
        row = self.lookup(invocation_id)
        if row is None or row.status != "completed" or row.result is None:
            return None
        return Result.decode(row.result)

    def wait_result(self, invocation_id: str) -> asyncio.Future[Result]:
        """A future for the result of an invocation (resolved after its completion commits)."""
        assert self._loop is not None
        fut: asyncio.Future[Result] = self._loop.create_future()
        if self.partitions is not None and not self.partitions.owns_id(invocation_id):
            fut.set_exception(PartitionMoved(invocation_id))  # another node answers for it
            return fut
        result = self.completed_result(invocation_id)
        if result is not None:
            fut.set_result(result)
        else:
            self._waiters.setdefault(invocation_id, []).append(fut)
            fut.add_done_callback(lambda f: self._drop_waiter(invocation_id, f))
        return fut

    def _drop_waiter(self, invocation_id: str, fut: asyncio.Future[Result]) -> None:
        waiters = self._waiters.get(invocation_id)
        if waiters and fut in waiters:
            waiters.remove(fut)
            if not waiters:
                del self._waiters[invocation_id]

    # ------------------------------------------------------------------ creating invocations

    def new_invocation_id(self, target: Target, idempotency_key: str | None) -> InvocationId:
        if (
            self.partitions is not None
            and target.key is None
            and idempotency_key is None
        ):
            # placed at random anyway: in one of this node's partitions, so it runs here
            local = self.partitions.local_key()
            if local is not None:
                random_id = InvocationId.generate(
                    service=target.service, handler=target.handler, key=None,
                    idempotency_key=None, workflow_run=False,
                )
                return InvocationId(local, random_id.uuid)
        return InvocationId.generate(
            service=target.service,
            handler=target.handler,
            key=target.key,
            idempotency_key=idempotency_key,
            workflow_run=target.is_workflow_run,
        )

    def create(
        self,
        target: Target,
        options: HandlerOptions,
        body: bytes,
        headers: list[tuple[str, str]],
        *,
        idempotency_key: str | None = None,
        execution_time: int | None = None,
        invoked_by: str = "ingress",
        caller: ActiveInvocation | None = None,
        invoked_by_id: str | None = None,
        idempotency_retention_ms: int | None = None,
        journal: list[tuple[int, bytes]] | None = None,
        restarted_from: str | None = None,
        deployment_id: str | None = None,
        protocol_version: int | None = None,
        invocation_id: InvocationId | None = None,
        invoked_by_target: str | None = None,
        reply_to: int | None = None,
    ) -> Submitted:
        """Create an invocation, or find the one an idempotency key / workflow id names.

        `journal` (restart as new) replaces `body` and `headers`: the new invocation starts
        with those entries, the first being its input.
        """
        deterministic = idempotency_key is not None or target.is_workflow_run
        inv_id = invocation_id or self.new_invocation_id(target, idempotency_key)
        inv_str = str(inv_id)
        parts = self.partitions
        if parts is not None and not parts.owns_key(inv_id.partition_key) and journal is None:
            # another node's partition: a message to its owner, in this step's commit
            if reply_to is not None and caller is not None:
                # remembered for kill propagation (its subscriber row is on the other side)
                # with the completion that ends it (`_forget_remote`)
                remote_calls = caller.row.extra.setdefault("remote_calls", [])
                assert isinstance(remote_calls, list)
                remote_calls.append([inv_str, reply_to])
                self._persist(caller)
            partitions.send(self, parts.of_key(inv_id.partition_key), "invoke", partitions.invoke_payload(
                inv_str, target, body, headers,
                idempotency_key=idempotency_key, execution_time=execution_time,
                invoked_by=invoked_by, caller_id=caller.id if caller else None,
                caller_target=caller.target.describe() if caller else None,
                invoked_by_id=invoked_by_id, idempotency_retention_ms=idempotency_retention_ms,
                reply_to=reply_to,
            ))
            return Submitted(inv_str, existed=False, completed=False,
                             execution_time=execution_time, remote=True)
        if deterministic:
            existing = self.lookup(inv_str)
            if existing is not None:
                return Submitted(
                    inv_str,
                    existed=True,
                    completed=existing.status == "completed",
                    execution_time=existing.execution_time,
                )
        now = now_ms()
        row = InvocationRow(
            id=inv_str,
            partition_key=inv_id.partition_key,
            service=target.service,
            handler=target.handler,
            key=target.key,
            service_ty=target.service_ty,
            handler_ty=target.handler_ty,
            status="pending",
            created_at=now,
            modified_at=now,
            idempotency_key=idempotency_key,
            deployment_id=deployment_id or options.deployment_id,
            protocol_version=protocol_version,
            invoked_by=invoked_by,
            # the calling invocation, or what else invoked it (a subscription's id)
            invoked_by_id=caller.id if caller else invoked_by_id,
            invoked_by_target=caller.target.describe() if caller else invoked_by_target,
            random_seed=random.getrandbits(63),
        )
        if idempotency_retention_ms is not None:
            row.extra["idempotency_retention_ms"] = idempotency_retention_ms
        if restarted_from is not None:
            row.extra["restarted_from"] = restarted_from
        inv = ActiveInvocation(row=row, target=self._shared(target), journal=[], last_entry_at=now)
        self.active[inv_str] = inv
        self.metrics.invocation_started(target.service, target.handler)
        if journal is None:
            inp = pb.InputCommandMessage(value=pb.Value(content=body))
            for k, v in headers:
                inp.headers.add(key=k, value=v)
            self._append(inv, MessageType.INPUT_COMMAND, inp.SerializeToString(), persist_row=False)
        else:
            for t, entry in journal:
                self._append(inv, t, entry, persist_row=False)
                if is_notification(t):
                    self._track_notification(inv, t, entry)
        if self.observer is not None:
            self.observer.invocation_created(inv, headers, caller)
        if execution_time is not None and execution_time > now:
            row.status = "scheduled"
            row.execution_time = execution_time
            self._persist(inv)
            self._add_timer(execution_time, "invoke", inv_str, 0)
            self._release_journal(inv)
        else:
            self._enqueue(inv)
        return Submitted(inv_str, existed=False, completed=False, execution_time=row.execution_time)

    def _lock_key(self, target: Target) -> tuple[str, str]:
        return (target.service, target.key or "")

    def _enqueue(self, inv: ActiveInvocation) -> None:
        if inv.target.takes_lock:
            lock_key = self._lock_key(inv.target)
            if lock_key in self.locks:
                self._inbox_seq += 1
                inv.row.status = "inboxed"
                inv.row.inbox_seq = self._inbox_seq
                inv.row.inboxed_at = now_ms()
                self.inboxes.setdefault(lock_key, deque()).append(inv.id)
                self._persist(inv)
                # after the step: the caller's wait on this invocation is recorded by then
                inv_id = inv.id
                self._effect(lambda: self._report_deadlock(inv_id))
                return
            self.locks[lock_key] = inv.id
        self._start_attempt(inv)

    def _dequeue(self, lock_key: tuple[str, str]) -> None:
        """The key is free: start the oldest invocation waiting in its inbox."""
        queue = self.inboxes.get(lock_key)
        while queue:
            next_id = queue.popleft()
            inv = self.active.get(next_id)
            if inv is None or inv.row.status != "inboxed":
                continue
            if not queue:
                del self.inboxes[lock_key]
            self.locks[lock_key] = inv.id
            inv.row.inbox_seq = None
            self._clear_deadlock(inv.id)
            self._start_attempt(inv)
            return
        self.inboxes.pop(lock_key, None)

    def _release_lock(self, inv: ActiveInvocation) -> None:
        if not inv.target.takes_lock:
            return
        lock_key = self._lock_key(inv.target)
        if self.locks.get(lock_key) == inv.id:
            del self.locks[lock_key]
            self._dequeue(lock_key)

    # ------------------------------------------------------------------ journal

    def _persist(self, inv: ActiveInvocation) -> None:
        """Mark the row changed; it is written once per batch, just before the commit."""
        inv.row.modified_at = now_ms()
        self._dirty[inv.id] = inv
        self._schedule_flush()

    def _write_dirty(self) -> None:
        if self._dirty:
            dirty, self._dirty = self._dirty, {}
            for inv in dirty.values():
                self.store.put_invocation(inv.row)

    def _append(
        self, inv: ActiveInvocation, msg_type: int, body: bytes, *, persist_row: bool = True
    ) -> int:
        index = inv.row.journal_length
        if inv.journal is not None:
            inv.journal.append((msg_type, body))
        now = now_ms()
        self.store.append_journal(inv.id, index, msg_type, body, now)
        inv.row.journal_length = index + 1
        inv.retries_since_entry = 0
        inv.last_entry_at = now
        if persist_row:
            self._persist(inv)
        else:
            # the caller writes the row itself right after (see `create`)
            inv.row.modified_at = now
        return index

    def _track_notification(self, inv: ActiveInvocation, msg_type: int, body: bytes) -> None:
        """Remember which completions the held journal has (a run's result is stored once)."""
        if inv.journal is None:
            return  # rebuilt from the journal when it is held again
        nid = notification_id(msg_type, body)
        if nid is not None and nid[0] == "c":
            if inv.completion_ids is None:
                inv.completion_ids = set()
            inv.completion_ids.add(int(nid[1]))

    def notify(self, invocation_id: str, msg_type: MessageType, body: bytes) -> None:
        """Store a notification in an invocation's journal and deliver it."""
        inv = self.active.get(invocation_id)
        if inv is None:
            parts = self.partitions
            if parts is not None and not parts.owns_id(invocation_id):
                partitions.send_to_invocation(
                    self, invocation_id, "notify",
                    partitions.notify_payload(invocation_id, msg_type, body),
                )
            return  # completed or unknown: nobody waits any more
        remote = _REMOTE_WAITS.get(msg_type)
        if remote is not None and remote in inv.row.extra:
            self._forget_remote(inv, remote, msg_type, body)
        self._append(inv, msg_type, body)  # (writes the row: the pruned list goes with it)
        self._track_notification(inv, msg_type, body)
        if self.observer is not None:
            self.observer.notification(inv, msg_type)
        attempt = inv.attempt
        if attempt is not None and not attempt.finished:
            frame = encode_frame(msg_type, body)
            self._effect(lambda: attempt.push(frame))
        elif inv.row.status == "suspended":
            waiting = waiting_of(inv.row)
            if waiting is not None and self._satisfied(waiting, ((msg_type, body),)):
                self._start_attempt(inv)

    def _forget_remote(self, inv: ActiveInvocation, field: str, msg_type: MessageType, body: bytes) -> None:
        """A call's (or attach's) completion arrived: its callee (on another partition) is
        done and needs no kill (no deadlock search) any more; dropped from the caller's row
        in this step's commit."""
        nid = notification_id(msg_type, body)
        remote = inv.row.extra.get(field)
        if nid is None or not isinstance(remote, list):
            return
        kept = [c for c in remote if not (isinstance(c, list) and c[1] == nid[1])]
        if len(kept) == len(remote) and any(isinstance(c, str) for c in remote):
            # a bare id, written before entries named their completion: the caller's
            # journal says which invocation this completion is the answer of
            journal = inv.journal if inv.journal is not None else self.store.load_journal(inv.id)
            awaited = _awaited_by(journal, msg_type, int(nid[1]))
            if awaited in kept:
                kept.remove(awaited)
        if len(kept) == len(remote):
            return
        if kept:
            inv.row.extra[field] = kept
        else:
            del inv.row.extra[field]

    @staticmethod
    def _satisfied(waiting: Waiting, entries: Iterable[tuple[int, bytes]]) -> bool:
        """Whether one of these journal entries is a notification `waiting` names."""
        completions, signals, names = waiting
        for t, body in entries:
            if not is_notification(t):
                continue
            nid = notification_id(t, body)
            if nid is None:
                continue
            kind, value = nid
            if (
                (kind == "c" and value in completions)
                or (kind == "s" and value in signals)
                or (kind == "n" and value in names)
            ):
                return True
        return False

    # ------------------------------------------------------------------ attempts

    def _start_attempt(self, inv: ActiveInvocation) -> None:
        if self.stopping:
            # no new attempts while stopping; recovery restarts invocations left 'invoked'
            inv.row.status = "invoked"
            self._persist(inv)
            return
        dep_id = inv.row.deployment_id
        deployment = self.schema.deployment(dep_id) if dep_id else None
        if deployment is None:
            # the deployment was removed: try the latest one for this service
            try:
                _, options = self.schema.target(
                    inv.target.service, inv.target.handler, inv.target.key
                )
                deployment = self.schema.deployment(options.deployment_id)
                inv.row.deployment_id = options.deployment_id
            except TargetError:
                deployment = None
        if deployment is None:
            self._fail_attempt(inv, 503, "no deployment is registered for this service")
            return
        if inv.row.protocol_version is None:
            max_v = min(deployment.max_protocol_version, 7 if self.enable_protocol_v7 else 6)
            inv.row.protocol_version = max(max_v, deployment.min_protocol_version)
        version = inv.row.protocol_version
        options = self._options(inv)
        journal = self._hold_journal(inv)
        inv.attempt_seq += 1
        now = now_ms()
        inv.row.status = "invoked"
        inv.row.running_at = now
        inv.row.next_retry_at = None
        inv.row.waiting = None
        start = pb.StartMessage(
            id=inv.id_bytes,
            debug_id=inv.id,
            known_entries=len(journal),
            key=inv.target.key or "",
            retry_count_since_last_stored_entry=inv.retries_since_entry,
            duration_since_last_stored_entry=max(0, now - inv.last_entry_at),
        )
        if version >= 6:
            start.random_seed = inv.row.random_seed
        if inv.target.is_keyed and not options.lazy_state:
            for name, value in self.store.all_state(inv.target.service, inv.target.key or ""):
                start.state_map.add(key=name, value=value)
            start.partial_state = False
        else:
            start.partial_state = True
        parts = [encode_frame(MessageType.START, start.SerializeToString())]
        parts.extend(encode_frame(t, body) for t, body in journal)
        attempt = Attempt(
            invocation_id=inv.id,
            seq=inv.attempt_seq,
            service=inv.target.service,
            handler=inv.target.handler,
            key=inv.target.key,
            deployment_id=deployment.id,
            deployment_uri=deployment.uri,
            use_http_11=deployment.use_http_11,
            bidi=deployment.bidi and options.inactivity_timeout_ms > 0,
            additional_headers=deployment.additional_headers,
            protocol_version=version,
            initial=b"".join(parts),
            inactivity_timeout_s=options.inactivity_timeout_ms / 1000.0,
            abort_timeout_s=options.abort_timeout_ms / 1000.0,
        )
        attempt.extra["journal_start"] = len(journal)
        attempt.extra["started_at"] = time.monotonic()
        inv.attempt = attempt
        if self.observer is not None:
            self.observer.attempt_started(inv, attempt)
        self._persist(inv)
        invoker = self.invoker
        assert invoker is not None
        self._effect(lambda: invoker.start(attempt))

    def _options(self, inv: ActiveInvocation) -> HandlerOptions:
        try:
            _, options = self.schema.target(inv.target.service, inv.target.handler, inv.target.key)
            return options
        except TargetError:
            return HandlerOptions(deployment_id=inv.row.deployment_id or "")

    def _current(self, attempt: Attempt) -> ActiveInvocation | None:
        inv = self.active.get(attempt.invocation_id)
        if inv is None or inv.attempt is not attempt:
            return None
        return inv

    def on_frame(self, attempt: Attempt, msg_type: int, flags: int, body: bytes) -> None:
        """A message from the SDK during an attempt."""
        inv = self._current(attempt)
        if inv is None or attempt.finished:
            return
        from durably.engine import commands

        try:
            commands.handle(self, inv, attempt, msg_type, flags, body)
        except commands.ProtocolError as e:
            self.attempt_failed(attempt, e.code, str(e))

    def on_attempt_closed(self, attempt: Attempt, error: str | None, *, retry_now: bool = False) -> None:
        """The invoker's exchange ended; without a terminal message that is a failure."""
        attempt.closed = True
        inv = self._current(attempt)
        if inv is None or attempt.finished:
            return
        attempt.finished = True
        if retry_now:
            inv.attempt = None
            self._start_attempt(inv)
            return
        self._fail_attempt(inv, 500, error or "the deployment closed the stream without a result")

    def attempt_failed(
        self,
        attempt: Attempt,
        code: int,
        message: str,
        *,
        next_retry_delay_ms: int | None = None,
        behavior: int = 0,
        command_index: int | None = None,
    ) -> None:
        """`command_index`: the command the SDK says the attempt failed at (its index
        among the journal's commands)."""
        inv = self._current(attempt)
        if inv is None:
            return
        attempt.finished = True
        self._fail_attempt(inv, code, message, next_retry_delay_ms, behavior, command_index)

    def _fail_attempt(
        self,
        inv: ActiveInvocation,
        code: int,
        message: str,
        next_retry_delay_ms: int | None = None,
        behavior: int = 0,
        command_index: int | None = None,
    ) -> None:
        if inv.attempt is not None:
            self._attempt_ended(inv, inv.attempt, "failed", message)
        inv.attempt = None
        inv.row.retry_count += 1
        inv.retries_since_entry += 1
        inv.row.last_failure = message
        inv.row.last_failure_code = code
        self._record_failure(inv, code, message, command_index)
        log.info("invocation %s attempt failed (%d): %s", inv.id, code, message)
        if behavior == 2:  # FAIL: terminal
            self._complete(inv, Result(failure=Failure(code, message)))
            return
        policy = self._options(inv).retry
        # an operator's resume of a paused invocation starts a new retry budget
        attempts = inv.row.retry_count - int(inv.row.extra.get("retry_base", 0))  # type: ignore[call-overload]
        if behavior == 1 or policy.exhausted(attempts):
            if behavior != 1 and policy.on_max_attempts == "kill":
                self._complete(inv, Result(failure=Failure(code, message)))
                return
            inv.row.status = "paused"
            self._persist(inv)
            self._release_journal(inv)
            log.warning("invocation %s paused after %d attempts", inv.id, inv.row.retry_count)
            return
        delay = (
            next_retry_delay_ms
            if next_retry_delay_ms is not None
            else policy.delay_ms(attempts)
        )
        inv.row.status = "backing-off"
        inv.row.next_retry_at = now_ms() + delay
        self._persist(inv)
        assert self._loop is not None
        seq = inv.attempt_seq

        def retry() -> None:
            current = self.active.get(inv.id)
            if current is inv and inv.row.status == "backing-off" and inv.attempt_seq == seq:
                self._start_attempt(inv)

        inv.retry_handle = self._loop.call_later(delay / 1000.0, retry)

    def _record_failure(
        self, inv: ActiveInvocation, code: int, message: str, command_index: int | None
    ) -> None:
        """Keep the failure in the row's bounded history (only failures pay for it: a row
        without failures has no "attempts"). It is written with the row, in the same batch
        as the status it led to."""
        entry = None
        if command_index is not None and command_index >= 0:
            journal = inv.journal if inv.journal is not None else self.store.load_journal(inv.id)
            commands = (i for i, (t, _) in enumerate(journal) if is_command(t))
            entry = next(itertools.islice(commands, command_index, None), None)
        kept = inv.row.extra.get("attempts")
        attempts = list(kept) if isinstance(kept, list) else []
        attempts.append({
            "at": now_ms(),
            "code": code,
            "message": message[:ATTEMPT_MESSAGE_CHARS],
            "entry": entry,
            "retry": inv.row.retry_count,
        })
        inv.row.extra["attempts"] = attempts[-ATTEMPTS_KEPT:]

    def suspend(self, inv: ActiveInvocation, attempt: Attempt, waiting: Waiting) -> None:
        attempt.finished = True
        self._attempt_ended(inv, attempt, "suspended")
        inv.attempt = None
        journal = self._hold_journal(inv)
        # what arrived during the attempt, after the journal the attempt was started with
        if self._satisfied(waiting, journal[int(attempt.extra.get("journal_start", 0)) :]):
            self._start_attempt(inv)
            return
        inv.row.status = "suspended"
        inv.row.waiting = encode_waiting(waiting)
        self._persist(inv)
        self._release_journal(inv)

    def pause(self, invocation_id: str) -> str:
        return management.pause(self, invocation_id)

    def resume(self, invocation_id: str, deployment: str | None = None) -> str:
        return management.resume(self, invocation_id, deployment)

    def restart_as_new(
        self, invocation_id: str, from_index: int | None = None, deployment: str | None = None
    ) -> tuple[str, str | None]:
        return management.restart_as_new(self, invocation_id, from_index, deployment)

    def purge_journal(self, invocation_id: str) -> str:
        return management.purge_journal(self, invocation_id)

    # ------------------------------------------------------------------ completion

    def complete_from_output(self, inv: ActiveInvocation, attempt: Attempt) -> None:
        attempt.finished = True
        self._attempt_ended(inv, attempt, "completed")
        result: Result | None = None
        for t, body in reversed(self._hold_journal(inv)):
            if t == MessageType.OUTPUT_COMMAND:
                out = pb.OutputCommandMessage()
                out.ParseFromString(body)
                if out.WhichOneof("result") == "failure":
                    from durably.engine.notifications import failure_from_pb

                    result = Result(failure=failure_from_pb(out.failure))
                else:
                    result = Result(value=out.value.content)
                break
        if result is None:
            self._fail_attempt(inv, 571, "the handler ended without an output")
            return
        self._complete(inv, result)

    def _attempt_ended(
        self, inv: ActiveInvocation, attempt: Attempt, outcome: str, error: str | None = None
    ) -> None:
        """`outcome`: 'completed', 'suspended' or 'failed' (with `error`)."""
        started = attempt.extra.get("started_at")
        self.metrics.attempt_ended(
            inv.target.service,
            inv.target.handler,
            started if isinstance(started, float) else None,
            outcome == "failed",
        )
        if self.observer is not None:
            self.observer.attempt_ended(inv, attempt, outcome, error)

    def _retention_ms(self, inv: ActiveInvocation) -> int:
        options = self._options(inv)
        if inv.target.is_workflow_run:
            return options.workflow_retention_ms
        override = inv.row.extra.get("idempotency_retention_ms")
        if isinstance(override, int):
            return override
        return options.idempotency_retention_ms

    def _complete(self, inv: ActiveInvocation, result: Result) -> None:
        now = now_ms()
        self._clear_deadlock(inv.id)
        if inv.attempt is not None:
            attempt = inv.attempt
            inv.attempt = None
            if not attempt.finished:
                self._effect(attempt.abort)
        if isinstance(inv.retry_handle, asyncio.TimerHandle):
            inv.retry_handle.cancel()
        inv.row.status = "completed"
        self.metrics.invocation_completed(
            inv.target.service, inv.target.handler, result.failure is not None
        )
        if self.observer is not None:
            self.observer.invocation_completed(inv, result.failure)
        inv.row.result = result.encode()
        inv.row.completed_at = now
        inv.row.waiting = None
        inv.row.inbox_seq = None
        inv.row.expires_at = now + self._retention_ms(inv)
        inv.row.modified_at = now
        # written now: once it leaves `active`, lookups in this batch read the store
        self._dirty.pop(inv.id, None)
        self.store.put_invocation(inv.row)
        self._schedule_flush()
        if inv.timer_ids:  # every stored timer is tracked there (added, or loaded by recover)
            for timer_id in inv.timer_ids:
                self.timers.cancel(timer_id)
            self.store.delete_timers_of(inv.id)
            inv.timer_ids = ()
        del self.active[inv.id]
        for sub in self.store.take_subscribers(inv.id):
            self.notify(
                sub.subscriber_id,
                MessageType(sub.notification_type),
                notification(
                    MessageType(sub.notification_type),
                    completion_id=sub.completion_id,
                    result=result,
                ),
            )
        waiters = self._waiters.pop(inv.id, None)
        if waiters:

            def answer() -> None:
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(result)

            self._effect(answer)
        if inv.target.takes_lock:
            self._release_lock(inv)
        elif inv.target.is_workflow_run:
            pass  # state and promises stay for the workflow retention
        log.debug("invocation %s completed", inv.id)

    def subscribe(self, target_id: str, subscriber: ActiveInvocation, completion_id: int, msg_type: MessageType) -> None:
        if self.partitions is not None and not self.partitions.owns_id(target_id):
            self.ask(target_id, "subscribe", subscriber, completion_id, msg_type)
            return
        self.store.add_subscriber(SubscriberRow(target_id, subscriber.id, completion_id, int(msg_type)))

    def is_remote(self, invocation_id: str) -> bool:
        """Whether the invocation lives on a partition another node owns."""
        return self.partitions is not None and not self.partitions.owns_id(invocation_id)

    def ask(
        self, target_id: str, kind: str, subscriber: ActiveInvocation, completion_id: int,
        msg_type: MessageType,
    ) -> None:
        """Attach to (`subscribe`) or get the output of (`output`) a remote invocation: its
        owner answers `subscriber` with a notification of `msg_type`."""
        if kind == "subscribe" and int(msg_type) in self._WAIT_TYPES:
            # a wait the deadlock search follows (its subscriber row is on the other side),
            # until its completion arrives (`_forget_remote`)
            remote_waits = subscriber.row.extra.setdefault("remote_waits", [])
            assert isinstance(remote_waits, list)
            remote_waits.append([target_id, completion_id])
            self._persist(subscriber)
        partitions.send_to_invocation(self, target_id, kind, {
            "target": target_id, "subscriber": subscriber.id, "cid": completion_id,
            "type": int(msg_type),
        })

    # ------------------------------------------------------------------ deadlocks

    _WAIT_TYPES = (int(MessageType.CALL_COMPLETION), int(MessageType.ATTACH_INVOCATION_COMPLETION))

    def _waits_on(self, invocation_id: str) -> list[str]:
        """What this node knows `invocation_id` waits on: for one of its own partitions,
        everything; for another node's, its waits on this node's partitions (their
        subscriber rows are here), the rest being read from the database."""
        inv = self.active.get(invocation_id)
        if inv is None:
            if self.partitions is None:
                return []
            return [
                child
                for kind in self._WAIT_TYPES
                for child in self.store.children_of(invocation_id, kind)
                if child in self.active
            ]
        if inv.row.status == "inboxed":
            holder = self.locks.get(self._lock_key(inv.target))
            return [holder] if holder is not None else []
        out = [
            child
            for kind in self._WAIT_TYPES
            for child in self.store.children_of(invocation_id, kind)
            if child in self.active
        ]
        if self.partitions is not None:
            # calls and attaches to other nodes' partitions: followed there (a completed
            # one waits on nothing, so a finished call adds no cycle)
            for field in ("remote_calls", "remote_waits"):
                out.extend(c for c in _remote_ids(inv.row.extra, field) if self.is_remote(c))
        return out

    def check_deadlock(self, invocation_id: str) -> list[str] | None:
        """Report (not resolve) a cycle of waits through an inboxed invocation. A cycle
        through other nodes' partitions is searched for by a task (`None` here)."""
        inv = self.active.get(invocation_id)
        if inv is None or inv.row.status != "inboxed" or invocation_id in self.deadlocks:
            return None
        if self.read_waits is None:
            cycle = find_cycle(invocation_id, self._waits_on)
        else:
            cycle, missing = find_cycle_with(invocation_id, self._waits_on, self.is_remote, {})
            if missing or (cycle is not None and any(map(self.is_remote, cycle))):
                # another node's invocation on the way: what it waits on (or its name) is read
                self._search_across(invocation_id, again=True)
                return None
        if cycle is None:
            return None
        self._report_cycle(cycle, {})
        return cycle

    def _search_across(self, invocation_id: str, again: bool) -> None:
        if invocation_id in self._searches or self.stopping:
            return
        self._searches[invocation_id] = asyncio.ensure_future(self._search(invocation_id, again))

    async def _search(self, start: str, again: bool) -> None:
        assert self.read_waits is not None
        try:
            cycle, known = await find_cycle_across(start, self._waits_on, self.is_remote, self.read_waits)
        except Exception as e:
            log.warning("deadlock search from %s failed: %s", start, e)
            cycle, known = None, {}
        finally:
            self._searches.pop(start, None)
        inv = self.active.get(start)
        if inv is None or inv.row.status != "inboxed" or start in self.deadlocks or self.stopping:
            return
        if cycle is not None:
            self._report_cycle(cycle, known)
        elif again:
            # a cycle that closed on two nodes at once: each may have read the other's new
            # edge before its commit; one more search once both are committed finds it
            assert self._loop is not None
            self._loop.call_later(_RESEARCH_S, self._search_again, start)

    def _search_again(self, start: str) -> None:
        inv = self.active.get(start)
        if inv is not None and inv.row.status == "inboxed" and start not in self.deadlocks:
            self._search_across(start, again=False)

    def _report_cycle(self, cycle: list[str], known: dict[str, Waits]) -> None:
        def target_of(member: str) -> str:
            a = self.active.get(member)
            if a is not None:
                return a.target.describe()
            read = known.get(member)
            return read.target if read is not None else "?"

        def queued(member: str) -> bool:
            a = self.active.get(member)
            if a is not None:
                return a.row.status == "inboxed"
            read = known.get(member)
            return read is not None and read.queued

        text = describe_cycle(cycle, target_of, queued)
        log.warning("%s", text, extra={"invocation_id": cycle[0]})
        for member in cycle:
            a = self.active.get(member)
            if a is not None:
                self._mark_deadlocked(a, cycle, text)
            elif self.is_remote(member):
                # its owner marks it, in the order of this node's other messages to it
                partitions.send_to_invocation(self, member, "deadlock", {
                    "id": member, "cycle": cycle, "text": text,
                })
        self._schedule_flush()

    def _mark_deadlocked(self, inv: ActiveInvocation, cycle: list[str], text: str) -> None:
        self.deadlocks[inv.id] = cycle
        inv.row.extra["deadlock"] = text
        # kept with it: a node that takes its partition over knows whom to tell when it ends
        inv.row.extra["deadlock_cycle"] = cycle
        self._persist(inv)

    def _report_deadlock(self, invocation_id: str) -> None:
        self.check_deadlock(invocation_id)

    def _clear_deadlock(self, invocation_id: str) -> None:
        cycle = self.deadlocks.pop(invocation_id, None)
        if cycle is not None:
            self._forget_cycle(cycle)

    def _forget_cycle(self, cycle: list[str]) -> None:
        for member in cycle:
            if self.is_remote(member):
                partitions.send_to_invocation(self, member, "undeadlock", {
                    "id": member, "cycle": cycle,
                })
            else:
                self._unmark_deadlocked(member)

    def _unmark_deadlocked(self, invocation_id: str) -> None:
        self.deadlocks.pop(invocation_id, None)
        a = self.active.get(invocation_id)
        if a is not None and a.row.extra.pop("deadlock", None) is not None:
            a.row.extra.pop("deadlock_cycle", None)
            self._persist(a)

    def deadlock_reported(self, invocation_id: str, cycle: list[str], text: str) -> None:
        """Another node found a cycle this node's `invocation_id` is part of."""
        inv = self.active.get(invocation_id)
        if inv is None or any(m not in self.active for m in cycle if not self.is_remote(m)):
            # a member of this node ended before the report arrived: the cycle is broken,
            # take it back from every member
            self._forget_cycle(cycle)
            return
        if invocation_id not in self.deadlocks:
            self._mark_deadlocked(inv, cycle, text)

    def deadlock_broken(self, invocation_id: str, cycle: list[str]) -> None:
        """A member of the cycle `invocation_id` was reported in (by another node) ended."""
        current = self.deadlocks.get(invocation_id)
        if current is not None and set(current) == set(cycle):
            self._unmark_deadlocked(invocation_id)

    # ------------------------------------------------------------------ timers

    def _add_timer(self, fire_at: int, kind: str, invocation_id: str, completion_id: int) -> None:
        timer_id = self.store.add_timer(fire_at, kind, invocation_id, completion_id)
        self.active[invocation_id].timer_ids += (timer_id,)
        row = TimerRow(timer_id, fire_at, kind, invocation_id, completion_id)
        self._effect(lambda: self.timers.add(row))

    def _fire_timer(self, row: TimerRow) -> None:
        if self.partitions is not None and not self.partitions.owns_id(row.invocation_id):
            return  # its partition moved to another node, which fires it
        self.store.delete_timer(row.id)
        inv = self.active.get(row.invocation_id)
        if inv is None:
            self._schedule_flush()
            return
        inv.timer_ids = tuple(t for t in inv.timer_ids if t != row.id)
        if row.kind == "sleep":
            self.notify(
                inv.id,
                MessageType.SLEEP_COMPLETION,
                notification(MessageType.SLEEP_COMPLETION, completion_id=row.completion_id, void=True),
            )
        elif row.kind == "invoke" and inv.row.status == "scheduled":
            self._enqueue(inv)
        self._schedule_flush()

    # ------------------------------------------------------------------ cancel & kill

    def cancel(self, invocation_id: str) -> str:
        """Deliver the cancel signal. Returns 'done', 'appended', 'completed' or 'unknown'."""
        inv = self.active.get(invocation_id)
        if inv is None and self.is_remote(invocation_id):
            partitions.send_to_invocation(self, invocation_id, "cancel", {"id": invocation_id})
            return "appended"
        if inv is None:
            row = self.store.get_invocation(invocation_id)
            return "unknown" if row is None else "completed"
        status = inv.row.status
        if status in ("scheduled", "inboxed", "pending"):
            self._remove_from_inbox(inv)
            self._complete(inv, Result(failure=CANCELED))
            return "done"
        self.notify(
            inv.id,
            MessageType.SIGNAL_NOTIFICATION,
            notification(MessageType.SIGNAL_NOTIFICATION, signal_id=1, void=True),
        )
        if inv.row.status in ("paused", "backing-off"):
            if isinstance(inv.retry_handle, asyncio.TimerHandle):
                inv.retry_handle.cancel()
            self._start_attempt(inv)
        return "appended"

    def kill(self, invocation_id: str) -> str:
        inv = self.active.get(invocation_id)
        if inv is None and self.is_remote(invocation_id):
            partitions.send_to_invocation(self, invocation_id, "kill", {"id": invocation_id})
            return "done"
        if inv is None:
            row = self.store.get_invocation(invocation_id)
            return "unknown" if row is None else "completed"
        for child in self.store.children_of(inv.id, int(MessageType.CALL_COMPLETION)):
            if child in self.active:
                self.kill(child)
        for child in _remote_ids(inv.row.extra, "remote_calls"):
            self.kill(child)  # a message to its owner (a completed one ignores it)
        self._remove_from_inbox(inv)
        self._complete(inv, Result(failure=KILLED))
        return "done"

    def _remove_from_inbox(self, inv: ActiveInvocation) -> None:
        if inv.row.status != "inboxed":
            return
        queue = self.inboxes.get(self._lock_key(inv.target))
        if queue is not None:
            try:
                queue.remove(inv.id)
            except ValueError:
                pass

    def purge(self, invocation_id: str) -> str:
        """Remove a completed invocation. Returns 'done', 'not-completed' or 'unknown'."""
        if invocation_id in self.active:
            return "not-completed"
        row = self.store.get_invocation(invocation_id)
        if row is None:
            return "unknown"
        self.purge_row(row)
        return "done"

    def purge_row(self, row: InvocationRow) -> None:
        self.store.delete_invocation(row.id)
        if row.service_ty == "workflow" and row.handler_ty == "workflow" and row.key is not None:
            self.store.clear_all_state(row.service, row.key)
            self.store.clear_promises(row.service, row.key)
        self._schedule_flush()

    # ------------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        self.stopping = True
        self.timers.close()
        for search in self._searches.values():
            search.cancel()  # a deadlock search waiting on the database (spread placement)
        for inv in self.active.values():
            if isinstance(inv.retry_handle, asyncio.TimerHandle):
                inv.retry_handle.cancel()
            if inv.attempt is not None:
                inv.attempt.abort()
        try:
            self._write_dirty()
            self.store.commit()
        except Exception as e:  # the store's own failure, already reported by it
            log.error("final commit failed: %s", e)
        if self._gate is not None:
            # closed but kept: an effect queued after this (the ingress still answers a
            # request while the server stops) waits for a commit that may never come,
            # instead of running at once as if it were durable. Found by the cluster
            # checker: a stopping node acknowledged sends its fenced commit then refused.
            self._gate.close()


__all__ = [
    "DeploymentInfo",
    "Engine",
    "HandlerOptions",
    "Schema",
    "Submitted",
    "TargetError",
    "WORKFLOW_ALREADY_INVOKED",
    "protocol_version",
]

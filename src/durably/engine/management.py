"""Operator actions on invocations besides cancel and kill: pause, resume, restart as
new, purge journal.

Each returns an outcome word that the admin API turns into Restate's status code and
message (see `admin/invocations.py`); the state changes go through the engine's open
batch like every other change, so the answer follows the commit.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from durably.engine.model import Target
from durably.engine.notifications import notification_id
from durably.protocol.messages import MessageType, decode_message, is_command, is_notification

if TYPE_CHECKING:
    from durably.engine.engine import Engine

NOT_STARTED = ("pending", "scheduled", "inboxed")
PAUSABLE = ("invoked", "backing-off")
# fields of command messages that name the completions the runtime owes them
_COMPLETION_FIELDS = ("result_completion_id", "invocation_id_notification_idx")


def pause(engine: Engine, invocation_id: str) -> str:
    """Stop running (or retrying) an invocation until an operator resumes it.

    'done' | 'already' (paused, or suspended: left as it is) | 'not-running' | 'unknown'
    """
    inv = engine.active.get(invocation_id)
    if inv is None:
        return "unknown" if engine.store.get_invocation(invocation_id) is None else "not-running"
    status = inv.row.status
    if status in ("paused", "suspended"):
        # Restate answers a suspended invocation's pause with 200 and leaves it suspended:
        # it runs nothing until what it waits for arrives, and then goes on
        return "already"
    if status not in PAUSABLE:
        return "not-running"
    attempt = inv.attempt
    inv.attempt = None
    if attempt is not None and not attempt.finished:
        attempt.finished = True
        engine._effect(attempt.abort)
    if isinstance(inv.retry_handle, asyncio.TimerHandle):
        inv.retry_handle.cancel()
    inv.row.status = "paused"
    inv.row.next_retry_at = None
    inv.row.waiting = None
    engine._persist(inv)
    engine._release_journal(inv)
    return "done"


def resume(engine: Engine, invocation_id: str, deployment: str | None = None) -> str:
    """Start a paused, suspended or backing-off invocation now.

    'done' | 'unknown' | 'completed' | 'not-started' | 'running' | 'bad-deployment'
    """
    inv = engine.active.get(invocation_id)
    if inv is None:
        return "unknown" if engine.store.get_invocation(invocation_id) is None else "completed"
    status = inv.row.status
    if status in NOT_STARTED:
        return "not-started"
    if status == "invoked":
        # already running: nothing to do, unless asked to move it to another deployment
        return "running" if deployment is not None else "done"
    if deployment is not None:
        chosen = _choose_deployment(engine, inv.target, inv.row.deployment_id, deployment)
        if chosen is None:
            return "bad-deployment"
        inv.row.deployment_id = chosen
    if isinstance(inv.retry_handle, asyncio.TimerHandle):
        inv.retry_handle.cancel()
    if status == "paused":
        # a fresh retry budget: attempts are counted again from here
        inv.row.extra["retry_base"] = inv.row.retry_count
    engine._start_attempt(inv)
    return "done"


def restart_as_new(
    engine: Engine, invocation_id: str, from_index: int | None, deployment: str | None
) -> tuple[str, str | None]:
    """A new invocation of the same target with the same input (and, with `from_index`,
    the journal prefix up to that entry plus the completions its commands received).

    ('done', new id) | ('unknown' | 'not-started' | 'running' | 'workflow' |
    'journal-gone' | 'incomplete-prefix' | 'bad-deployment' | 'no-target', None)
    """
    inv = engine.active.get(invocation_id)
    if inv is not None:
        return ("not-started" if inv.row.status in NOT_STARTED else "running", None)
    row = engine.store.get_invocation(invocation_id)
    if row is None:
        return ("unknown", None)
    if row.service_ty == "workflow" and row.handler_ty == "workflow":
        return ("workflow", None)
    journal = engine.store.load_journal(invocation_id)
    if not journal or journal[0][0] != MessageType.INPUT_COMMAND:
        return ("journal-gone", None)
    from durably.engine.engine import TargetError

    try:
        target, options = engine.schema.target(row.service, row.handler, row.key)
    except TargetError:
        return ("no-target", None)
    prefix = journal[:1]
    protocol_version = None
    deployment_id = options.deployment_id
    if from_index:
        copied = journal_prefix(journal, from_index, row.protocol_version or 6)
        if copied is None:
            return ("incomplete-prefix", None)
        prefix = copied
        # the copied entries are in the old invocation's protocol version
        protocol_version = row.protocol_version
        if deployment is not None:
            chosen = _choose_deployment(engine, target, row.deployment_id, deployment)
            if chosen is None:
                return ("bad-deployment", None)
            deployment_id = chosen
    submitted = engine.create(
        target,
        options,
        b"",
        [],
        invoked_by="restart_as_new",
        journal=prefix,
        restarted_from=invocation_id,
        deployment_id=deployment_id,
        protocol_version=protocol_version,
    )
    return ("done", submitted.invocation_id)


def purge_journal(engine: Engine, invocation_id: str) -> str:
    """Drop a completed invocation's journal, keeping its status and result.

    'done' | 'unknown' | 'not-completed'
    """
    if invocation_id in engine.active:
        return "not-completed"
    row = engine.store.get_invocation(invocation_id)
    if row is None:
        return "unknown"
    engine.store.delete_journal(invocation_id)
    if row.journal_length:
        row.journal_length = 0
        engine.store.put_invocation(row)
    engine._schedule_flush()
    return "done"


def journal_prefix(
    journal: list[tuple[int, bytes]], from_index: int, version: int
) -> list[tuple[int, bytes]] | None:
    """Entries 0..from_index plus the later notifications that complete the commands among
    them; None when `from_index` is past the end or a command there was never completed."""
    if from_index >= len(journal):
        return None
    prefix = list(journal[: from_index + 1])
    owed: set[int] = set()
    have: set[int] = set()
    for t, body in prefix:
        if is_command(t):
            owed.update(_completion_ids(t, body, version))
        elif is_notification(t):
            nid = notification_id(t, body)
            if nid is not None and nid[0] == "c":
                have.add(int(nid[1]))
    for t, body in journal[from_index + 1 :]:
        if owed <= have:
            break
        if not is_notification(t):
            continue
        nid = notification_id(t, body)
        if nid is not None and nid[0] == "c" and int(nid[1]) in owed - have:
            prefix.append((t, body))
            have.add(int(nid[1]))
    return prefix if owed <= have else None


def _completion_ids(msg_type: int, body: bytes, version: int) -> list[int]:
    msg = decode_message(msg_type, body, version)
    return [
        int(value)
        for field, value in msg.ListFields()
        if field.name in _COMPLETION_FIELDS
    ]


def _choose_deployment(
    engine: Engine, target: Target, pinned: str | None, choice: str
) -> str | None:
    """'keep' | 'latest' | a deployment id -> the deployment to run on, None if unusable."""
    lowered = choice.lower()
    if lowered == "keep":
        return pinned
    if lowered == "latest":
        from durably.engine.engine import TargetError

        try:
            _, options = engine.schema.target(target.service, target.handler, target.key)
        except TargetError:
            return None
        return options.deployment_id
    return choice if engine.schema.deployment(choice) is not None else None


def state_version(engine: Engine, service: str, key: str) -> str:
    """A digest of a key's whole state: what `POST /services/{s}/state` takes as `version`
    to replace the state only if nobody changed it since it was read."""
    import hashlib

    digest = hashlib.sha256()
    for name, value in sorted(engine.store.all_state(service, key)):
        for part in (name, value):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()[:32]


def replace_state(
    engine: Engine,
    service: str,
    key: str,
    new_state: dict[str, bytes],
    version: str | None = None,
) -> str:
    """Replace every state entry of one virtual object or workflow key.

    'done' | 'locked' (an invocation holds the key: its handler reads and writes the state
    as it runs, so changing it underneath would be lost or seen half-way) | 'version-mismatch'
    """
    if (service, key) in engine.locks:
        return "locked"
    if version is not None and version != state_version(engine, service, key):
        return "version-mismatch"
    engine.store.clear_all_state(service, key)
    for name, value in new_state.items():
        engine.store.set_state(service, key, name.encode("utf-8"), value)
    engine._schedule_flush()
    return "done"

"""Virtual object locks: one exclusive handler per key at a time, the rest wait in the inbox."""

from __future__ import annotations

from _engine_harness import Harness, input_of

from durably.engine.model import CANCELED, KILLED, Result


async def test_exclusive_invocations_on_one_key_run_in_order(h: Harness) -> None:
    first = h.submit("Counter", "add", "alice", b"1")
    second = h.submit("Counter", "add", "alice", b"2")
    third = h.submit("Counter", "reset", "alice", b"3")
    await h.settle()
    assert len(h.attempts_of(first.invocation_id)) == 1
    assert h.attempts_of(second.invocation_id) == []
    assert h.attempts_of(third.invocation_id) == []
    assert h.status(first.invocation_id) == "invoked"
    assert h.status(second.invocation_id) == "inboxed"
    assert h.status(third.invocation_id) == "inboxed"
    row2 = h.store.get_invocation(second.invocation_id)
    row3 = h.store.get_invocation(third.invocation_id)
    assert row2 is not None and row3 is not None
    assert row2.inbox_seq is not None and row3.inbox_seq is not None
    assert row2.inbox_seq < row3.inbox_seq
    assert row2.inboxed_at is not None

    await h.output(h.attempt(first.invocation_id), b"a")
    assert h.status(second.invocation_id) == "invoked"
    assert h.status(third.invocation_id) == "inboxed"
    assert input_of(h.attempt(second.invocation_id)) == b"2"
    assert h.attempts_of(third.invocation_id) == []

    await h.output(h.attempt(second.invocation_id), b"b")
    assert h.status(third.invocation_id) == "invoked"
    await h.output(h.attempt(third.invocation_id), b"c")
    assert h.engine.locks == {}
    assert h.engine.inboxes == {}


async def test_other_keys_are_not_blocked(h: Harness) -> None:
    alice = h.submit("Counter", "add", "alice")
    bob = h.submit("Counter", "add", "bob")
    await h.settle()
    assert h.attempts_of(alice.invocation_id) and h.attempts_of(bob.invocation_id)


async def test_shared_handler_does_not_wait_for_the_lock(h: Harness) -> None:
    holder = h.submit("Counter", "add", "alice")
    reader = h.submit("Counter", "get", "alice")
    await h.settle()
    assert h.status(reader.invocation_id) == "invoked"
    await h.output(h.attempt(reader.invocation_id), b"0")
    # ...and its end does not release someone else's lock
    queued = h.submit("Counter", "add", "alice")
    await h.settle()
    assert h.status(holder.invocation_id) == "invoked"
    assert h.status(queued.invocation_id) == "inboxed"


async def test_failure_of_the_holder_also_releases_the_key(h: Harness) -> None:
    first = h.submit("Counter", "add", "alice")
    second = h.submit("Counter", "add", "alice")
    await h.settle()
    await h.fail(h.attempt(first.invocation_id), 500, "boom")
    assert h.status(second.invocation_id) == "invoked"


async def test_cancel_of_an_inboxed_invocation(h: Harness) -> None:
    holder = h.submit("Counter", "add", "alice")
    queued = h.submit("Counter", "add", "alice")
    after = h.submit("Counter", "add", "alice")
    await h.settle()
    assert h.engine.cancel(queued.invocation_id) == "done"
    await h.settle()
    result = await h.result(queued.invocation_id)
    assert result == Result(failure=CANCELED)
    assert result.failure is not None
    assert (result.failure.code, result.failure.message) == (409, "canceled")
    assert h.status(queued.invocation_id) == "completed"
    # the canceled one never runs; the next one in line does
    await h.output(h.attempt(holder.invocation_id), b"x")
    assert h.attempts_of(queued.invocation_id) == []
    assert h.status(after.invocation_id) == "invoked"
    assert h.engine.cancel(queued.invocation_id) == "completed"
    assert h.engine.cancel("inv_1doesnotexist000000000000000000") == "unknown"


async def test_kill_of_an_inboxed_invocation(h: Harness) -> None:
    h.submit("Counter", "add", "alice")
    queued = h.submit("Counter", "add", "alice")
    await h.settle()
    assert h.engine.kill(queued.invocation_id) == "done"
    await h.settle()
    assert (await h.result(queued.invocation_id)) == Result(failure=KILLED)


async def test_kill_of_the_holder_starts_the_next(h: Harness) -> None:
    holder = h.submit("Counter", "add", "alice")
    queued = h.submit("Counter", "add", "alice")
    await h.settle()
    attempt = h.attempt(holder.invocation_id)
    assert h.engine.kill(holder.invocation_id) == "done"
    await h.settle()
    assert (await h.result(holder.invocation_id)) == Result(failure=KILLED)
    assert h.invoker.aborted == [attempt]
    assert h.status(queued.invocation_id) == "invoked"

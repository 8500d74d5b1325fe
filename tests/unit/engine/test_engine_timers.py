"""Durable timers: sleeps and delayed (scheduled) invocations."""

from __future__ import annotations

import time

from _engine_harness import Harness, T, input_of, journal_types, notification_msg, pb


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_sleep_fires_and_pushes_sleep_completion(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    wake = now_ms() + 40
    h.send(attempt, pb.SleepCommandMessage(wake_up_time=wake, result_completion_id=1))
    await h.settle()
    timers = h.store.all_timers()
    assert [(t.kind, t.invocation_id, t.completion_id, t.fire_at) for t in timers] == [
        ("sleep", sub.invocation_id, 1, wake)
    ]
    assert h.pushed(attempt) == []

    await h.until(lambda: attempt._outbox)
    assert now_ms() >= wake
    ((t, msg),) = h.pushed(attempt)
    assert t == T.SLEEP_COMPLETION
    n = notification_msg(t, msg)
    assert n.completion_id == 1 and n.WhichOneof("result") == "void"
    await h.settle()
    assert h.store.all_timers() == []
    assert journal_types(h, sub.invocation_id) == [
        T.INPUT_COMMAND,
        T.SLEEP_COMMAND,
        T.SLEEP_COMPLETION,
    ]


async def test_sleep_in_the_past_completes_at_once(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.SleepCommandMessage(wake_up_time=now_ms() - 1000, result_completion_id=3))
    await h.settle()
    ((t, msg),) = h.pushed(attempt)
    assert t == T.SLEEP_COMPLETION and notification_msg(t, msg).completion_id == 3
    assert h.store.all_timers() == []


async def test_completion_removes_pending_timers(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.SleepCommandMessage(wake_up_time=now_ms() + 60_000, result_completion_id=1))
    await h.settle()
    assert len(h.store.all_timers()) == 1
    await h.output(attempt, b"")
    assert h.store.all_timers() == []
    assert len(h.engine.timers) == 0


async def test_delayed_send_is_scheduled_then_runs(h: Harness) -> None:
    sub = h.submit("Greeter", "greet", body=b"later", delay_ms=60)
    assert sub.execution_time is not None
    await h.settle()
    assert h.status(sub.invocation_id) == "scheduled"
    assert h.attempts_of(sub.invocation_id) == []
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None and row.execution_time == sub.execution_time
    assert [t.kind for t in h.store.all_timers()] == ["invoke"]

    await h.until(lambda: h.attempts_of(sub.invocation_id))
    assert now_ms() >= sub.execution_time
    assert input_of(h.attempt(sub.invocation_id)) == b"later"
    await h.settle()
    assert h.status(sub.invocation_id) == "invoked"
    assert h.store.all_timers() == []


async def test_cancel_of_a_scheduled_invocation(h: Harness) -> None:
    sub = h.submit("Greeter", "greet", delay_ms=60_000)
    await h.settle()
    assert h.engine.cancel(sub.invocation_id) == "done"
    await h.settle()
    result = await h.result(sub.invocation_id)
    assert result.failure is not None and result.failure.message == "canceled"
    assert h.store.all_timers() == []


async def test_delayed_send_to_a_busy_object_waits_in_the_inbox(h: Harness) -> None:
    holder = h.submit("Counter", "add", "alice")
    later = h.submit("Counter", "add", "alice", delay_ms=30)
    await h.settle()
    assert h.status(later.invocation_id) == "scheduled"
    await h.until(lambda: h.status(later.invocation_id) == "inboxed")
    await h.output(h.attempt(holder.invocation_id), b"")
    assert h.status(later.invocation_id) == "invoked"

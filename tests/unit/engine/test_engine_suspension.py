"""Suspension: the SDK gives up its attempt; the engine resumes it when what it awaits arrives."""

from __future__ import annotations

import time

from _engine_harness import Harness, T, journal_types, notification_msg, pb, start_of


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_suspend_then_resume_when_the_timer_fires(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    h.send(first, pb.SleepCommandMessage(wake_up_time=now_ms() + 50, result_completion_id=1))
    await h.suspend(first, completions=[1])
    assert first.finished
    assert h.status(sub.invocation_id) == "suspended"
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None and row.waiting is not None
    assert len(h.attempts_of(sub.invocation_id)) == 1

    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 2)
    second = h.attempt(sub.invocation_id)
    assert second.seq == first.seq + 1
    start, journal = start_of(second)
    assert [t for t, _ in journal] == [T.INPUT_COMMAND, T.SLEEP_COMMAND, T.SLEEP_COMPLETION]
    assert notification_msg(*journal[2]).completion_id == 1
    assert start.retry_count_since_last_stored_entry == 0
    await h.settle()
    assert h.status(sub.invocation_id) == "invoked"
    await h.output(second, b"woke")
    assert (await h.result(sub.invocation_id)).value == b"woke"


async def test_unrelated_notification_does_not_resume(h: Harness) -> None:
    sub = h.submit("Counter", "add", "alice")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    h.send(first, pb.SleepCommandMessage(wake_up_time=now_ms() + 60_000, result_completion_id=1))
    await h.suspend(first, completions=[1])
    assert h.status(sub.invocation_id) == "suspended"
    # a signal nobody waits for is stored but does not wake the invocation
    inv = h.engine.active[sub.invocation_id]
    from durably.engine.notifications import notification

    h.engine.notify(
        sub.invocation_id,
        T.SIGNAL_NOTIFICATION,
        notification(T.SIGNAL_NOTIFICATION, signal_id=20, value=b"x"),
    )
    await h.settle()
    assert len(h.attempts_of(sub.invocation_id)) == 1
    assert h.status(sub.invocation_id) == "suspended"
    assert journal_types(h, sub.invocation_id)[-1] == T.SIGNAL_NOTIFICATION
    assert inv.attempt is None


async def test_suspended_object_keeps_its_lock(h: Harness) -> None:
    holder = h.submit("Counter", "add", "alice")
    await h.settle()
    first = h.attempt(holder.invocation_id)
    h.send(first, pb.SleepCommandMessage(wake_up_time=now_ms() + 60_000, result_completion_id=1))
    await h.suspend(first, completions=[1])
    queued = h.submit("Counter", "add", "alice")
    await h.settle()
    assert h.status(queued.invocation_id) == "inboxed"


async def test_suspension_on_a_completion_already_stored_restarts_at_once(h: Harness) -> None:
    # request/response: nothing can be pushed to the running attempt, so the SDK suspends
    # on a completion the engine stored during that same attempt
    sub = h.submit("RrService", "run")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    assert not first.bidi
    h.send(first, pb.SleepCommandMessage(wake_up_time=now_ms() - 1, result_completion_id=1))
    await h.settle()
    assert first.take_outbox() == b""
    await h.suspend(first, completions=[1])
    attempts = h.attempts_of(sub.invocation_id)
    assert len(attempts) == 2
    _, journal = start_of(attempts[1])
    assert [t for t, _ in journal] == [T.INPUT_COMMAND, T.SLEEP_COMMAND, T.SLEEP_COMPLETION]
    assert h.status(sub.invocation_id) == "invoked"


async def test_suspension_race_on_bidi_stream_restarts_at_once(h: Harness) -> None:
    # bidi: the completion was pushed, but the SDK had already decided to suspend
    sub = h.submit("LazyCounter", "add", "alice")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    h.send(first, pb.GetLazyStateCommandMessage(key=b"k", result_completion_id=1))
    await h.suspend(first, completions=[1])
    assert len(h.attempts_of(sub.invocation_id)) == 2
    assert h.status(sub.invocation_id) == "invoked"


async def test_cancel_resumes_a_suspended_invocation_waiting_for_signal_1(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    h.send(first, pb.SleepCommandMessage(wake_up_time=now_ms() + 60_000, result_completion_id=1))
    await h.suspend(first, completions=[1], signals=[1])
    assert h.engine.cancel(sub.invocation_id) == "appended"
    await h.settle()
    second = h.attempt(sub.invocation_id)
    assert second is not first
    _, journal = start_of(second)
    t, msg = journal[-1]
    assert t == T.SIGNAL_NOTIFICATION
    assert notification_msg(t, msg).signal_id == 1


async def test_v7_suspension_with_nested_futures(h7: Harness) -> None:
    h = h7
    sub = h.submit("Greeter", "greet")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    assert first.protocol_version == 7
    h.send(first, pb.SleepCommandMessage(wake_up_time=now_ms() + 60_000, result_completion_id=1))
    h.send(first, pb.SleepCommandMessage(wake_up_time=now_ms() + 40, result_completion_id=2))
    suspension = pb.SuspensionMessage(
        awaiting_on=pb.Future(
            waiting_completions=[1],
            nested_futures=[pb.Future(waiting_completions=[2])],
            combinator_type=pb.FIRST_COMPLETED,
        )
    )
    h.send(first, suspension)
    h.closed(first)
    await h.settle()
    assert h.status(sub.invocation_id) == "suspended"
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 2)
    _, journal = start_of(h.attempt(sub.invocation_id))
    assert journal[-1][0] == T.SLEEP_COMPLETION
    assert notification_msg(*journal[-1]).completion_id == 2


async def test_named_signal_resumes_a_suspended_invocation(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    h.send(first, pb.SuspensionMessageV6(waiting_named_signals=["approved"]), msg_type=T.SUSPENSION)
    h.closed(first)
    await h.settle()
    assert h.status(sub.invocation_id) == "suspended"
    other = h.submit("Greeter", "other")
    await h.settle()
    sender = h.attempt(other.invocation_id)
    h.send(
        sender,
        pb.SendSignalCommandMessage(
            target_invocation_id=sub.invocation_id, name="approved", value=pb.Value(content=b"ok")
        ),
    )
    await h.settle()
    assert len(h.attempts_of(sub.invocation_id)) == 2
    _, journal = start_of(h.attempt(sub.invocation_id))
    n = notification_msg(*journal[-1])
    assert n.signal_name == "approved" and n.value.content == b"ok"


async def test_a_parked_invocation_leaves_its_journal_in_the_store(h: Harness) -> None:
    """Suspended: no journal in memory; the wake-up replays the whole journal from the store."""
    sub = h.submit("Greeter", "greet", body=b"in")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    h.send(first, pb.SleepCommandMessage(wake_up_time=now_ms() + 60_000, result_completion_id=1))
    h.send(first, pb.RunCommandMessage(result_completion_id=2))
    h.send(first, pb.ProposeRunCompletionMessage(result_completion_id=2, value=b"r"))
    await h.suspend(first, completions=[1])
    inv = h.engine.active[sub.invocation_id]
    assert inv.journal is None and inv.completion_ids is None
    assert inv.row.journal_length == 4

    # an unrelated signal is appended to the stored journal without loading it
    from durably.engine.notifications import notification

    h.engine.notify(
        sub.invocation_id, T.SIGNAL_NOTIFICATION,
        notification(T.SIGNAL_NOTIFICATION, signal_id=20, value=b"x"),
    )
    assert inv.journal is None and inv.row.journal_length == 5
    # the awaited completion wakes it: the new attempt replays all six entries
    h.engine.notify(
        sub.invocation_id, T.SLEEP_COMPLETION, notification(T.SLEEP_COMPLETION, completion_id=1)
    )
    await h.settle()
    second = h.attempt(sub.invocation_id)
    assert second.seq == first.seq + 1
    _, journal = start_of(second)
    assert [t for t, _ in journal] == [
        T.INPUT_COMMAND, T.SLEEP_COMMAND, T.RUN_COMMAND, T.RUN_COMPLETION,
        T.SIGNAL_NOTIFICATION, T.SLEEP_COMPLETION,
    ]
    assert inv.completion_ids == {1, 2}
    # a repeated proposal of the stored run result is not stored twice
    h.send(second, pb.ProposeRunCompletionMessage(result_completion_id=2, value=b"r"))
    await h.output(second, b"done")
    assert journal_types(h, sub.invocation_id).count(T.RUN_COMPLETION) == 1
    assert (await h.result(sub.invocation_id)).value == b"done"


async def test_a_wake_up_stored_before_a_restart_resumes_the_invocation(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    h.send(first, pb.SleepCommandMessage(wake_up_time=now_ms() + 60_000, result_completion_id=1))
    await h.suspend(first, completions=[1])
    # the completion is stored while the row still says suspended (as a crash between the two
    # writes of an older version could leave it)
    from durably.engine.notifications import notification

    body = notification(T.SLEEP_COMPLETION, completion_id=1)
    h.store.append_journal(sub.invocation_id, 2, T.SLEEP_COMPLETION, body, now_ms())
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None
    row.journal_length = 3
    h.store.put_invocation(row)
    h.store.commit()
    await h.restart()
    again = h.attempt(sub.invocation_id)
    _, journal = start_of(again)
    assert [t for t, _ in journal] == [T.INPUT_COMMAND, T.SLEEP_COMMAND, T.SLEEP_COMPLETION]

"""Restart: a new engine on the same data dir picks up every unfinished invocation."""

from __future__ import annotations

import time

from _engine_harness import Harness, T, input_of, notification_msg, pb, start_of

from durably.engine.notifications import notification
from durably.engine.retry import RetryPolicy


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_recovery_restarts_attempts_and_restores_inbox_and_timers(h: Harness) -> None:
    # running, with a side effect already stored
    running = h.submit("Greeter", "greet", body=b"r")
    # an object key: holder running, two more in the inbox
    holder = h.submit("Counter", "add", "alice", b"h")
    queued1 = h.submit("Counter", "add", "alice", b"q1")
    queued2 = h.submit("Counter", "add", "alice", b"q2")
    # suspended on a sleep
    sleeper = h.submit("Greeter", "other", body=b"s")
    # a delayed send
    scheduled = h.submit("Greeter", "greet", body=b"later", delay_ms=150)
    await h.settle()

    r = h.attempt(running.invocation_id)
    h.send(r, pb.RunCommandMessage(result_completion_id=1))
    h.send(r, pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"x"))
    s = h.attempt(sleeper.invocation_id)
    wake = now_ms() + 150
    h.send(s, pb.SleepCommandMessage(wake_up_time=wake, result_completion_id=1))
    await h.suspend(s, completions=[1])
    assert h.status(sleeper.invocation_id) == "suspended"
    seed = h.store.get_invocation(running.invocation_id).random_seed  # type: ignore[union-attr]

    await h.restart()

    # running invocations restart with their journal
    attempts = h.attempts_of(running.invocation_id)
    assert len(attempts) == 1
    start, journal = start_of(attempts[0])
    assert [t for t, _ in journal] == [T.INPUT_COMMAND, T.RUN_COMMAND, T.RUN_COMPLETION]
    assert start.random_seed == seed
    assert input_of(h.attempt(holder.invocation_id)) == b"h"
    # the inbox is still an inbox, in order
    assert h.attempts_of(queued1.invocation_id) == []
    assert h.attempts_of(queued2.invocation_id) == []
    assert h.status(queued1.invocation_id) == "inboxed"
    # suspended stays suspended, scheduled stays scheduled
    assert h.attempts_of(sleeper.invocation_id) == []
    assert h.attempts_of(scheduled.invocation_id) == []
    assert h.status(sleeper.invocation_id) == "suspended"
    assert h.status(scheduled.invocation_id) == "scheduled"
    assert sorted(t.kind for t in h.store.all_timers()) == ["invoke", "sleep"]

    # results still reach a caller waiting on the new engine
    waiter = h.engine.wait_result(running.invocation_id)
    await h.output(attempts[0], b"after restart")
    assert waiter.result().value == b"after restart"

    await h.output(h.attempt(holder.invocation_id), b"")
    assert input_of(h.attempt(queued1.invocation_id)) == b"q1"
    assert h.attempts_of(queued2.invocation_id) == []
    await h.output(h.attempt(queued1.invocation_id), b"")
    assert input_of(h.attempt(queued2.invocation_id)) == b"q2"

    # the timers come back
    await h.until(
        lambda: h.attempts_of(sleeper.invocation_id) and h.attempts_of(scheduled.invocation_id)
    )
    assert now_ms() >= wake
    _, journal = start_of(h.attempt(sleeper.invocation_id))
    assert journal[-1][0] == T.SLEEP_COMPLETION
    assert input_of(h.attempt(scheduled.invocation_id)) == b"later"


async def test_recovered_suspended_caller_resumes_when_its_child_completes(h: Harness) -> None:
    caller = h.submit("Greeter", "greet")
    await h.settle()
    c = h.attempt(caller.invocation_id)
    h.send(
        c,
        pb.CallCommandMessage(
            service_name="Greeter",
            handler_name="other",
            invocation_id_notification_idx=1,
            result_completion_id=2,
        ),
    )
    await h.settle()
    child_id = notification_msg(*h.pushed(c)[0]).invocation_id
    await h.suspend(c, completions=[2])

    await h.restart()
    assert h.attempts_of(caller.invocation_id) == []
    await h.output(h.attempt(child_id), b"child")
    assert len(h.attempts_of(caller.invocation_id)) == 1
    _, journal = start_of(h.attempt(caller.invocation_id))
    t, msg = journal[-1]
    assert t == T.CALL_COMPLETION and notification_msg(t, msg).value.content == b"child"


async def test_recovery_of_backing_off_and_paused_invocations(h: Harness) -> None:
    h.schema.override("Greeter", "other", retry=RetryPolicy(initial_interval_ms=60_000))
    backing_off = h.submit("Greeter", "other")
    paused = h.submit("Counter", "add", "alice")
    queued = h.submit("Counter", "add", "alice")
    await h.settle()
    h.send(h.attempt(backing_off.invocation_id), pb.ErrorMessage(code=500, message="x"))
    h.send(h.attempt(paused.invocation_id), pb.ErrorMessage(code=500, message="y", behavior=pb.PAUSE))
    await h.settle()
    assert h.status(backing_off.invocation_id) == "backing-off"
    assert h.status(paused.invocation_id) == "paused"

    await h.restart()
    assert len(h.attempts_of(backing_off.invocation_id)) == 1  # retried at once
    assert h.attempts_of(paused.invocation_id) == []
    # a paused holder keeps its key
    assert h.attempts_of(queued.invocation_id) == []
    assert h.engine.resume(paused.invocation_id) == "done"
    await h.settle()
    await h.output(h.attempt(paused.invocation_id), b"")
    assert h.attempts_of(queued.invocation_id)


async def test_recovery_acts_on_a_wake_up_stored_before_the_crash(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    a = h.attempt(sub.invocation_id)
    await h.suspend(a, signals=[17])
    # the notification made it to disk, the restart it should have caused did not
    length = len(h.store.load_journal(sub.invocation_id))
    h.store.append_journal(
        sub.invocation_id,
        length,
        T.SIGNAL_NOTIFICATION,
        notification(T.SIGNAL_NOTIFICATION, signal_id=17, value=b"v"),
        now_ms(),
    )
    h.store.commit()

    await h.restart()
    assert len(h.attempts_of(sub.invocation_id)) == 1
    _, journal = start_of(h.attempt(sub.invocation_id))
    assert journal[-1][0] == T.SIGNAL_NOTIFICATION


async def test_recovery_starts_the_inbox_of_a_key_whose_holder_finished(h: Harness) -> None:
    holder = h.submit("Counter", "add", "alice")
    queued = h.submit("Counter", "add", "alice")
    await h.settle()
    # the holder's completion was stored; starting the next one was not
    row = h.store.get_invocation(holder.invocation_id)
    assert row is not None
    row.status = "completed"
    row.result = b"V"
    h.store.put_invocation(row)
    h.store.commit()

    await h.restart()
    assert h.attempts_of(holder.invocation_id) == []
    assert h.attempts_of(queued.invocation_id)


async def test_idempotency_survives_a_restart(h: Harness) -> None:
    first = h.submit("Greeter", "greet", idempotency_key="k")
    await h.settle()
    await h.restart()
    again = h.submit("Greeter", "greet", idempotency_key="k")
    assert again.invocation_id == first.invocation_id and again.existed
    await h.output(h.attempt(first.invocation_id), b"v")
    await h.restart()
    done = h.submit("Greeter", "greet", idempotency_key="k")
    assert done.existed and done.completed
    assert h.engine.completed_result(first.invocation_id).value == b"v"  # type: ignore[union-attr]

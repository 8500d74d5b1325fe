"""Failed attempts: backing off, retry counters, pausing when retries run out, resume."""

from __future__ import annotations

import time

from _engine_harness import Harness, T, notification_msg, pb, start_of

from durably.engine.retry import RetryPolicy


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_error_backs_off_with_next_retry_delay(h: Harness) -> None:
    # the policy alone would wait 10 s; the SDK's next_retry_delay wins
    h.schema.override("Greeter", "greet", retry=RetryPolicy(initial_interval_ms=10_000))
    sub = h.submit("Greeter", "greet")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    before = now_ms()
    h.send(first, pb.ErrorMessage(code=503, message="flaky", next_retry_delay=40))
    h.closed(first)
    await h.settle()
    assert first.finished
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None
    assert row.status == "backing-off"
    assert row.retry_count == 1
    assert row.last_failure == "flaky" and row.last_failure_code == 503
    assert row.next_retry_at is not None and before + 40 <= row.next_retry_at <= now_ms() + 40
    assert len(h.attempts_of(sub.invocation_id)) == 1

    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 2)
    second = h.attempt(sub.invocation_id)
    start, journal = start_of(second)
    assert start.retry_count_since_last_stored_entry == 1
    assert [t for t, _ in journal] == [T.INPUT_COMMAND]
    await h.settle()
    assert h.status(sub.invocation_id) == "invoked"

    h.send(second, pb.ErrorMessage(code=500, message="again", next_retry_delay=1))
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 3)
    start, _ = start_of(h.attempt(sub.invocation_id))
    assert start.retry_count_since_last_stored_entry == 2


async def test_retry_count_since_last_entry_resets_when_the_journal_grows(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    h.send(first, pb.ErrorMessage(code=500, message="1", next_retry_delay=1))
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 2)
    second = h.attempt(sub.invocation_id)
    h.send(second, pb.RunCommandMessage(result_completion_id=1))
    h.send(second, pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"x"))
    h.send(second, pb.ErrorMessage(code=500, message="2", next_retry_delay=1))
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 3)
    start, journal = start_of(h.attempt(sub.invocation_id))
    assert start.retry_count_since_last_stored_entry == 1
    assert [t for t, _ in journal] == [T.INPUT_COMMAND, T.RUN_COMMAND, T.RUN_COMPLETION]


async def test_broken_stream_is_retried_with_the_policy(h: Harness) -> None:
    # long enough that the backing-off row is seen before the retry starts, on a busy machine too
    h.schema.override(
        "Greeter", "greet", retry=RetryPolicy(initial_interval_ms=500, factor=1.0, max_attempts=None)
    )
    sub = h.submit("Greeter", "greet")
    await h.settle()
    h.closed(h.attempt(sub.invocation_id), "connection refused")
    await h.settle()
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None and row.status == "backing-off"
    assert row.last_failure == "connection refused"
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 2)


async def test_retry_exhaustion_pauses(h: Harness) -> None:
    h.schema.override(
        "Greeter", "greet", retry=RetryPolicy(initial_interval_ms=1, factor=1.0, max_attempts=2)
    )
    sub = h.submit("Greeter", "greet")
    await h.settle()
    h.send(h.attempt(sub.invocation_id), pb.ErrorMessage(code=500, message="one"))
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 2)
    h.send(h.attempt(sub.invocation_id), pb.ErrorMessage(code=500, message="two"))
    await h.settle()
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None
    assert row.status == "paused"
    assert row.retry_count == 2 and row.last_failure == "two"
    await h.settle()
    assert len(h.attempts_of(sub.invocation_id)) == 2  # no more attempts
    waiter = h.engine.wait_result(sub.invocation_id)
    assert not waiter.done()

    # an operator resumes it: a fresh attempt with a fresh budget
    assert h.engine.resume(sub.invocation_id) == "done"
    await h.settle()
    assert len(h.attempts_of(sub.invocation_id)) == 3
    assert h.status(sub.invocation_id) == "invoked"
    row = h.store.get_invocation(sub.invocation_id)
    # the counter keeps counting (as Restate shows it); the budget starts again
    assert row is not None and row.retry_count == 2
    h.send(h.attempt(sub.invocation_id), pb.ErrorMessage(code=500, message="three"))
    # with a new budget the failure is retried (1 ms later), not paused again
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 4)
    assert h.status(sub.invocation_id) == "invoked"
    await h.output(h.attempt(sub.invocation_id), b"ok")
    assert waiter.result().value == b"ok"
    assert h.engine.resume(sub.invocation_id) == "completed"


async def test_error_with_pause_behavior_pauses_at_once(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    h.send(h.attempt(sub.invocation_id), pb.ErrorMessage(code=500, message="stop", behavior=pb.PAUSE))
    await h.settle()
    assert h.status(sub.invocation_id) == "paused"


async def test_retry_exhaustion_with_kill_policy_fails_the_invocation(h: Harness) -> None:
    h.schema.override(
        "Greeter",
        "greet",
        retry=RetryPolicy(initial_interval_ms=1, max_attempts=1, on_max_attempts="kill"),
    )
    sub = h.submit("Greeter", "greet")
    await h.settle()
    h.send(h.attempt(sub.invocation_id), pb.ErrorMessage(code=502, message="gone"))
    await h.settle()
    result = await h.result(sub.invocation_id)
    assert result.failure is not None
    assert (result.failure.code, result.failure.message) == (502, "gone")


async def test_cancel_of_a_paused_invocation_starts_an_attempt_with_the_signal(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    h.send(h.attempt(sub.invocation_id), pb.ErrorMessage(code=500, message="x", behavior=pb.PAUSE))
    await h.settle()
    assert h.engine.cancel(sub.invocation_id) == "appended"
    await h.settle()
    assert len(h.attempts_of(sub.invocation_id)) == 2
    _, journal = start_of(h.attempt(sub.invocation_id))
    t, msg = journal[-1]
    assert t == T.SIGNAL_NOTIFICATION and notification_msg(t, msg).signal_id == 1

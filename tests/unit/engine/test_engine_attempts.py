"""The failed attempts an invocation keeps (row.extra["attempts"], read by the web UI): each
failure's time, code, message, journal entry and number, the newest 20, nothing for a success."""

from __future__ import annotations

import time

from _engine_harness import Harness, T, pb

from durably.engine.engine import ATTEMPTS_KEPT


async def test_each_failure_is_kept_with_its_journal_entry(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    before = int(time.time() * 1000)
    # no command named: no entry
    h.send(first, pb.ErrorMessage(code=503, message="flaky", next_retry_delay=1))
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 2)
    second = h.attempt(sub.invocation_id)
    h.send(second, pb.RunCommandMessage(result_completion_id=1, name="charge"))
    # command 1 (the input is command 0) is the run: journal entry 1
    h.send(second, pb.ErrorMessage(code=500, message="declined", related_command_index=1,
                                   next_retry_delay=1))
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 3)
    third = h.attempt(sub.invocation_id)
    h.send(third, pb.OutputCommandMessage(value=pb.Value(content=b'"ok"')))
    h.send(third, pb.EndMessage())
    await h.until(lambda: h.status(sub.invocation_id) == "completed")

    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None
    attempts = row.extra["attempts"]
    assert isinstance(attempts, list)
    assert [(a["code"], a["message"], a["entry"], a["retry"]) for a in attempts] == [
        (503, "flaky", None, 1), (500, "declined", 1, 2)]
    assert before <= attempts[0]["at"] <= attempts[1]["at"] <= int(time.time() * 1000)
    assert h.store.load_journal(sub.invocation_id)[1][0] == T.RUN_COMMAND


async def test_the_history_keeps_the_newest_failures(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    failures = ATTEMPTS_KEPT + 5
    for n in range(1, failures + 1):
        h.send(h.attempt(sub.invocation_id),
               pb.ErrorMessage(code=500, message=f"failure {n}" + "x" * 5000, next_retry_delay=1))
        await h.until(lambda n=n: len(h.attempts_of(sub.invocation_id)) == n + 1)
    await h.settle()
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None and row.retry_count == failures
    attempts = row.extra["attempts"]
    assert isinstance(attempts, list) and len(attempts) == ATTEMPTS_KEPT
    assert [a["retry"] for a in attempts] == list(range(6, failures + 1))  # newest last
    assert attempts[-1]["message"].startswith(f"failure {failures}")
    assert len(attempts[-1]["message"]) < 5000  # messages are bounded too


async def test_a_success_records_nothing(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.OutputCommandMessage(value=pb.Value(content=b'"ok"')))
    h.send(attempt, pb.EndMessage())
    await h.until(lambda: h.status(sub.invocation_id) == "completed")
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None and "attempts" not in row.extra

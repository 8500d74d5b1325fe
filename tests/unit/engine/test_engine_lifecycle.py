"""Creating, completing, deduplicating and purging invocations."""

from __future__ import annotations

from _engine_harness import BIDI, Harness, T, input_of, journal_types, pb, start_of

from durably.engine.model import Failure, Result
from durably.ids import InvocationId


async def test_call_completes_with_output_and_end(h: Harness) -> None:
    sub = h.submit("Greeter", "greet", body=b'"bob"', headers=[("x-trace", "1")])
    assert not sub.existed and not sub.completed
    waiter = h.engine.wait_result(sub.invocation_id)
    await h.settle()

    attempt = h.attempt(sub.invocation_id)
    assert attempt.deployment_id == BIDI and attempt.bidi
    assert attempt.protocol_version == 6  # V7 is opt-in
    start, journal = start_of(attempt)
    assert start.debug_id == sub.invocation_id
    assert InvocationId.from_bytes(start.id) == InvocationId.parse(sub.invocation_id)
    assert start.known_entries == 1
    assert start.retry_count_since_last_stored_entry == 0
    assert start.partial_state  # plain services get no state
    inp = journal[0][1]
    assert isinstance(inp, pb.InputCommandMessage)
    assert inp.value.content == b'"bob"'
    assert [(hd.key, hd.value) for hd in inp.headers] == [("x-trace", "1")]
    assert h.status(sub.invocation_id) == "invoked"
    assert not waiter.done()

    await h.output(attempt, b'"hello bob"')
    assert attempt.finished
    assert (await h.result(sub.invocation_id)) == Result(value=b'"hello bob"')
    assert waiter.result() == Result(value=b'"hello bob"')
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None
    assert row.status == "completed"
    assert Result.decode(row.result or b"") == Result(value=b'"hello bob"')
    assert row.expires_at is not None and row.completed_at is not None
    assert row.expires_at - row.completed_at == 24 * 3600 * 1000
    assert journal_types(h, sub.invocation_id) == [T.INPUT_COMMAND, T.OUTPUT_COMMAND]
    assert sub.invocation_id not in h.engine.active
    assert h.engine.completed_result(sub.invocation_id) == Result(value=b'"hello bob"')


async def test_result_is_answered_only_after_commit(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    waiter = h.engine.wait_result(sub.invocation_id)
    h.send(attempt, pb.OutputCommandMessage(value=pb.Value(content=b"1")))
    h.send(attempt, pb.EndMessage())
    # nothing is acknowledged before the commit that makes it true
    assert not waiter.done()
    assert h.store.dirty
    await h.settle()
    assert waiter.done() and not h.store.dirty


async def test_terminal_failure(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    await h.fail(h.attempt(sub.invocation_id), 418, "teapot")
    result = await h.result(sub.invocation_id)
    assert result == Result(failure=Failure(418, "teapot"))
    assert h.status(sub.invocation_id) == "completed"
    # a terminal failure is not retried
    assert len(h.attempts_of(sub.invocation_id)) == 1


async def test_error_with_fail_behavior_is_terminal(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.ErrorMessage(code=500, message="no", behavior=pb.FAIL))
    await h.settle()
    result = await h.result(sub.invocation_id)
    assert result.failure is not None and result.failure.code == 500
    assert len(h.attempts_of(sub.invocation_id)) == 1


async def test_end_without_output_is_a_retryable_failure(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    h.send(first, pb.EndMessage())
    await h.settle()
    assert h.status(sub.invocation_id) == "backing-off"
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None and row.last_failure_code == 571
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 2)


async def test_unknown_message_type_from_sdk_fails_the_attempt(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.engine.on_frame(attempt, 0x0300, 0, b"")
    await h.settle()
    row = h.store.get_invocation(sub.invocation_id)
    # the harness's retry delay is short: on a loaded machine the next attempt may already
    # have started (status back to invoked), but the failure stays recorded on the row
    assert row is not None and row.last_failure_code == 571 and row.retry_count >= 1
    assert row.status in ("backing-off", "invoked")


async def test_frames_of_a_stale_attempt_are_ignored(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    first = h.attempt(sub.invocation_id)
    h.closed(first, "connection reset")
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 2)
    # the old attempt's late output must not complete the invocation
    h.send(first, pb.OutputCommandMessage(value=pb.Value(content=b"stale")))
    h.send(first, pb.EndMessage())
    await h.settle()
    assert h.status(sub.invocation_id) == "invoked"
    await h.output(h.attempt(sub.invocation_id), b"fresh")
    assert (await h.result(sub.invocation_id)).value == b"fresh"


async def test_idempotent_recreation_returns_the_same_invocation(h: Harness) -> None:
    first = h.submit("Greeter", "greet", body=b"1", idempotency_key="k1")
    again = h.submit("Greeter", "greet", body=b"2", idempotency_key="k1")
    assert again.invocation_id == first.invocation_id
    assert again.existed and not again.completed
    other = h.submit("Greeter", "other", body=b"1", idempotency_key="k1")
    assert other.invocation_id != first.invocation_id and not other.existed
    await h.settle()
    # only one attempt for the deduplicated pair, with the first body
    attempts = h.attempts_of(first.invocation_id)
    assert len(attempts) == 1
    assert input_of(attempts[0]) == b"1"

    await h.output(attempts[0], b"done")
    later = h.submit("Greeter", "greet", body=b"3", idempotency_key="k1")
    assert later.invocation_id == first.invocation_id
    assert later.existed and later.completed
    await h.settle()
    assert len(h.attempts_of(first.invocation_id)) == 1


async def test_non_idempotent_calls_get_fresh_ids(h: Harness) -> None:
    a = h.submit("Greeter", "greet")
    b = h.submit("Greeter", "greet")
    assert a.invocation_id != b.invocation_id
    assert not a.existed and not b.existed


async def test_workflow_run_is_created_once_per_key(h: Harness) -> None:
    first = h.submit("Wf", "run", "w1")
    again = h.submit("Wf", "run", "w1")
    assert again.invocation_id == first.invocation_id and again.existed
    other = h.submit("Wf", "run", "w2")
    assert other.invocation_id != first.invocation_id
    await h.settle()
    assert len(h.attempts_of(first.invocation_id)) == 1


async def test_purge(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    assert h.engine.purge(sub.invocation_id) == "not-completed"
    await h.output(h.attempt(sub.invocation_id), b"x")
    assert h.engine.purge(sub.invocation_id) == "done"
    await h.settle()
    assert h.store.get_invocation(sub.invocation_id) is None
    assert h.store.load_journal(sub.invocation_id) == []
    assert h.engine.lookup(sub.invocation_id) is None
    assert h.engine.purge(sub.invocation_id) == "unknown"


async def test_purging_a_workflow_clears_its_state_and_promises(h: Harness) -> None:
    sub = h.submit("Wf", "run", "w1")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.SetStateCommandMessage(key=b"s", value=pb.Value(content=b"1")))
    h.send(
        attempt,
        pb.CompletePromiseCommandMessage(
            key="p", completion_value=pb.Value(content=b"v"), result_completion_id=1
        ),
    )
    await h.output(attempt, b"done")
    assert h.store.get_state("Wf", "w1", b"s") == b"1"
    assert h.store.get_promise("Wf", "w1", "p") is not None
    assert h.engine.purge(sub.invocation_id) == "done"
    await h.settle()
    assert h.store.all_state("Wf", "w1") == []
    assert h.store.get_promise("Wf", "w1", "p") is None
    # the workflow id may now run again
    again = h.submit("Wf", "run", "w1")
    assert again.invocation_id == sub.invocation_id and not again.existed


async def test_no_deployment_backs_off(h: Harness) -> None:
    h.schema.override("Greeter", "greet", deployment_id="dp_gone")
    sub = h.submit("Greeter", "greet")
    await h.settle()
    assert h.attempts_of(sub.invocation_id) == []
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None and row.status == "backing-off" and row.last_failure_code == 503
    # the deployment shows up: the next retry starts an attempt
    h.schema.override("Greeter", "greet", deployment_id=BIDI)
    await h.until(lambda: h.attempts_of(sub.invocation_id))


async def test_after_shutdown_nothing_is_acknowledged_before_its_commit(h: Harness) -> None:
    """A request the ingress still answers while the server stops must not be acknowledged
    at once: its commit may never come (a cluster node that lost its leases stops, and the
    fence refuses its last batches; found by tests/cluster/checker)."""
    import asyncio

    assert h.store.deferred_sync  # effects pass the durability gate
    h.engine.shutdown()
    h.submit("Greeter", "greet")
    acknowledged = h.engine.committed()
    await asyncio.sleep(0.2)
    assert not acknowledged.done()

"""State of virtual objects: eager (shipped in Start) and lazy (asked for by the SDK)."""

from __future__ import annotations

from _engine_harness import Harness, T, journal_types, notification_msg, pb, start_of

from durably.engine.retry import RetryPolicy


async def test_set_and_clear_state_are_stored(h: Harness) -> None:
    sub = h.submit("Counter", "add", "alice")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.SetStateCommandMessage(key=b"count", value=pb.Value(content=b"1")))
    h.send(attempt, pb.SetStateCommandMessage(key=b"other", value=pb.Value(content=b"x")))
    h.send(attempt, pb.ClearStateCommandMessage(key=b"other"))
    await h.output(attempt, b"1")
    assert h.store.all_state("Counter", "alice") == [(b"count", b"1")]
    assert h.store.all_state("Counter", "bob") == []
    assert journal_types(h, sub.invocation_id) == [
        T.INPUT_COMMAND,
        T.SET_STATE_COMMAND,
        T.SET_STATE_COMMAND,
        T.CLEAR_STATE_COMMAND,
        T.OUTPUT_COMMAND,
    ]


async def test_eager_state_is_sent_in_start(h: Harness) -> None:
    first = h.submit("Counter", "add", "alice")
    await h.settle()
    start, _ = start_of(h.attempt(first.invocation_id))
    assert start.key == "alice"
    assert not start.partial_state
    assert list(start.state_map) == []
    attempt = h.attempt(first.invocation_id)
    h.send(attempt, pb.SetStateCommandMessage(key=b"a", value=pb.Value(content=b"1")))
    h.send(attempt, pb.SetStateCommandMessage(key=b"b", value=pb.Value(content=b"2")))
    await h.output(attempt, b"")

    second = h.submit("Counter", "get", "alice")
    await h.settle()
    start, _ = start_of(h.attempt(second.invocation_id))
    assert not start.partial_state
    assert {e.key: e.value for e in start.state_map} == {b"a": b"1", b"b": b"2"}


async def test_clear_all_state(h: Harness) -> None:
    h.store.set_state("Counter", "alice", b"a", b"1")
    h.store.set_state("Counter", "alice", b"b", b"1")
    sub = h.submit("Counter", "reset", "alice")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.ClearAllStateCommandMessage())
    await h.output(attempt, b"")
    assert h.store.all_state("Counter", "alice") == []


async def test_lazy_state_get_and_keys(h: Harness) -> None:
    h.store.set_state("LazyCounter", "alice", b"count", b"41")
    h.store.commit()
    sub = h.submit("LazyCounter", "add", "alice")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    start, _ = start_of(attempt)
    assert start.partial_state
    assert list(start.state_map) == []

    h.send(attempt, pb.GetLazyStateCommandMessage(key=b"count", result_completion_id=1))
    h.send(attempt, pb.GetLazyStateCommandMessage(key=b"missing", result_completion_id=2))
    h.send(attempt, pb.GetLazyStateKeysCommandMessage(result_completion_id=3))
    await h.settle()
    pushed = h.pushed(attempt)
    assert [t for t, _ in pushed] == [
        T.GET_LAZY_STATE_COMPLETION,
        T.GET_LAZY_STATE_COMPLETION,
        T.GET_LAZY_STATE_KEYS_COMPLETION,
    ]
    found, missing, keys = (notification_msg(t, m) for t, m in pushed)
    assert found.completion_id == 1 and found.value.content == b"41"
    assert missing.completion_id == 2 and missing.WhichOneof("result") == "void"
    assert keys.completion_id == 3 and list(keys.state_keys.keys) == [b"count"]
    # notifications are journaled, so a replay sees the same answers
    assert journal_types(h, sub.invocation_id) == [
        T.INPUT_COMMAND,
        T.GET_LAZY_STATE_COMMAND,
        T.GET_LAZY_STATE_COMPLETION,
        T.GET_LAZY_STATE_COMMAND,
        T.GET_LAZY_STATE_COMPLETION,
        T.GET_LAZY_STATE_KEYS_COMMAND,
        T.GET_LAZY_STATE_KEYS_COMPLETION,
    ]

    h.send(attempt, pb.SetStateCommandMessage(key=b"count", value=pb.Value(content=b"42")))
    h.send(attempt, pb.GetLazyStateCommandMessage(key=b"count", result_completion_id=4))
    await h.settle()
    ((_, msg),) = h.pushed(attempt)
    assert notification_msg(0, msg).value.content == b"42"
    await h.output(attempt, b"42")
    assert h.store.get_state("LazyCounter", "alice", b"count") == b"42"


async def test_shared_handler_cannot_write_state(h: Harness) -> None:
    # a retry slower than settle(), so the backing-off status is still there to read
    h.schema.override("Counter", "get", retry=RetryPolicy(initial_interval_ms=500, factor=1.0, max_attempts=None))
    sub = h.submit("Counter", "get", "alice")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.SetStateCommandMessage(key=b"a", value=pb.Value(content=b"1")))
    await h.settle()
    assert h.store.get_state("Counter", "alice", b"a") is None
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None and row.status == "backing-off" and row.last_failure_code == 571


async def test_rejected_state_write_is_not_journaled(h: Harness) -> None:
    # the SetState a shared handler may not send fails the attempt; if it stayed in the
    # journal, the retry would replay it to the SDK as accepted and the handler would go on
    # believing the write happened
    sub = h.submit("Counter", "get", "alice")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.SetStateCommandMessage(key=b"a", value=pb.Value(content=b"1")))
    await h.settle()
    assert journal_types(h, sub.invocation_id) == [T.INPUT_COMMAND]


async def test_unkeyed_service_has_no_state(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.GetLazyStateCommandMessage(key=b"a", result_completion_id=1))
    await h.settle()
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None and row.last_failure_code == 571

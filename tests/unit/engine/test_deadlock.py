"""The wait-for cycle search, and the engine reporting a cycle of exclusive calls."""

from __future__ import annotations

from _engine_harness import Harness, T, notification_msg, pb

from durably.engine.deadlock import describe_cycle, find_cycle


def test_find_cycle_follows_edges_back_to_start() -> None:
    edges = {"a": ["b"], "b": ["c", "x"], "c": ["a"], "x": []}
    assert find_cycle("a", lambda n: edges.get(n, [])) == ["a", "b", "c"]


def test_find_cycle_ignores_cycles_not_through_start() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["b"]}
    assert find_cycle("a", lambda n: edges.get(n, [])) is None


def test_find_cycle_self_loop_and_dead_end() -> None:
    assert find_cycle("a", lambda n: ["a"]) == ["a"]
    assert find_cycle("a", lambda n: []) is None


def test_describe_cycle_names_each_wait() -> None:
    text = describe_cycle(["i1", "i2"], lambda i: f"S/{i}/h", lambda i: i == "i1")
    assert text == "deadlock: S/i1/h (i1) is queued behind S/i2/h (i2); S/i2/h (i2) awaits its call to S/i1/h (i1)"


def _call(key: str, cid: int) -> pb.CallCommandMessage:
    return pb.CallCommandMessage(
        service_name="Counter", handler_name="add", key=key, parameter=b"1",
        invocation_id_notification_idx=cid, result_completion_id=cid + 1,
    )


def _child_of(h: Harness, attempt) -> str:  # type: ignore[no-untyped-def]
    ((t, msg),) = [(t, m) for t, m in h.pushed(attempt) if t == T.CALL_INVOCATION_ID_COMPLETION]
    return notification_msg(t, msg).invocation_id


async def test_engine_reports_and_clears_a_cycle_of_exclusive_calls(h: Harness) -> None:
    root = h.submit("Counter", "add", "a").invocation_id
    await h.settle()
    h.send(h.attempt(root), _call("b", 1))
    await h.settle()
    middle = _child_of(h, h.attempt(root))
    h.send(h.attempt(middle), _call("a", 1))
    await h.settle()
    queued = _child_of(h, h.attempt(middle))
    assert h.status(queued) == "inboxed"
    await h.settle()
    assert set(h.engine.deadlocks) == {root, middle, queued}
    for inv_id in (root, middle, queued):
        row = h.store.get_invocation(inv_id)
        assert row is not None and "is queued behind" in str(row.extra["deadlock"])
    # killing the root breaks the cycle: the field goes away
    assert h.engine.kill(root) == "done"
    await h.settle()
    assert h.engine.deadlocks == {}
    row = h.store.get_invocation(root)
    assert row is not None and "deadlock" not in row.extra


async def test_plain_inboxing_is_not_a_deadlock(h: Harness) -> None:
    first = h.submit("Counter", "add", "k").invocation_id
    second = h.submit("Counter", "add", "k").invocation_id
    await h.settle()
    assert h.status(second) == "inboxed"
    assert h.engine.deadlocks == {}
    await h.output(h.attempt(first), b"1")
    assert h.status(second) == "invoked"

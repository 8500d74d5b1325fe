"""The wait-for cycle search, and the engine reporting a cycle of exclusive calls."""

from __future__ import annotations

from _engine_harness import Harness, T, notification_msg, pb

from durably.cluster.waits import waits_from_rows
from durably.engine.deadlock import (
    UNKNOWN,
    Waits,
    describe_cycle,
    find_cycle,
    find_cycle_across,
    find_cycle_with,
)
from durably.engine.notifications import notification
from durably.protocol.messages import MessageType


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


# ---------------------------------------------------------------- across nodes (spread)

def test_find_cycle_with_names_the_foreign_ids_it_could_not_follow() -> None:
    local = {"z": ["x"], "x": ["y"], "y": []}  # y is another node's: what it waits on is there
    cycle, missing = find_cycle_with("z", lambda n: local.get(n, []), lambda n: n == "y", {})
    assert cycle is None and missing == {"y"}
    known = {"y": Waits("S/b/h", False, ("z",))}
    cycle, missing = find_cycle_with("z", lambda n: local.get(n, []), lambda n: n == "y", known)
    assert cycle == ["z", "x", "y"] and missing == set()


async def test_find_cycle_across_reads_hop_by_hop_until_the_cycle_closes() -> None:
    # z (here, inboxed) -> x (here) -> y (node 2) -> w (node 3, inboxed) -> h (node 3) -> z
    local = {"z": ["x"], "x": ["y"]}
    remote = {
        "y": Waits("S/b/h", False, ("w",)),
        "w": Waits("S/c/h", True, ("h",)),
        "h": Waits("S/c/h", False, ("z",)),
    }
    reads: list[set[str]] = []

    async def read(ids: set[str]) -> dict[str, Waits]:
        reads.append(set(ids))
        return {i: remote[i] for i in ids if i in remote}

    cycle, known = await find_cycle_across(
        "z", lambda n: local.get(n, []), lambda n: n not in local, read)
    assert cycle == ["z", "x", "y", "w", "h"]
    assert reads == [{"y"}, {"w"}, {"h"}]
    assert known == remote


async def test_find_cycle_across_reads_the_names_of_foreign_members_it_knew_the_edges_of() -> None:
    # y's wait on z is known here (z's subscriber row is on this node): the cycle closes
    # without a read, but y is still read for the report to name its target
    local = {"z": ["x"], "x": ["y"], "y": ["z"]}

    async def read(ids: set[str]) -> dict[str, Waits]:
        return {"y": Waits("S/b/h", False, ("z",))} if "y" in ids else {}

    cycle, known = await find_cycle_across(
        "z", lambda n: local.get(n, []), lambda n: n == "y", read)
    assert cycle == ["z", "x", "y"] and known["y"].target == "S/b/h"


async def test_find_cycle_across_a_chain_that_leaves_without_coming_back() -> None:
    local = {"z": ["x"], "x": ["y"]}

    async def read(ids: set[str]) -> dict[str, Waits]:
        # y waits on v, which is not in the database (not created yet, or purged)
        return {"y": Waits("S/b/h", False, ("v",))} if "y" in ids else {}

    cycle, known = await find_cycle_across(
        "z", lambda n: local.get(n, []), lambda n: n not in local, read)
    assert cycle is None and known["v"] == UNKNOWN


def test_waits_from_rows_groups_edges_under_their_invocation() -> None:
    rows = [
        ("y", "CallChain", "hop", "b", "suspended", None),
        ("w", "Svc", "run", None, "inboxed", None),
        ("y", None, None, None, None, "z"),
        ("y", None, None, None, None, "z"),  # two calls to the same callee: one edge
        ("w", None, None, None, None, "h"),
        ("gone", None, None, None, None, "z"),  # an edge of an id not asked about as a row
    ]
    got = waits_from_rows(rows)
    assert got == {
        "y": Waits("CallChain/b/hop", False, ("z",)),
        "w": Waits("Svc/run", True, ("h",)),
    }


async def test_an_attach_to_another_partition_is_followed_until_its_completion(h: Harness) -> None:
    # (spread placement) an attach to another node's invocation is kept on the row for the
    # deadlock search; its completion, arriving as a message, ends that wait
    inv_id = h.submit("Counter", "add", "k").invocation_id
    await h.settle()
    inv = h.engine.active[inv_id]
    inv.row.extra["remote_waits"] = [["inv_elsewhere", 3], ["inv_other", 4]]
    t = MessageType.ATTACH_INVOCATION_COMPLETION
    h.engine.notify(inv_id, t, notification(t, completion_id=3, void=True))
    assert inv.row.extra["remote_waits"] == [["inv_other", 4]]
    h.engine.notify(inv_id, t, notification(t, completion_id=4, void=True))
    assert "remote_waits" not in inv.row.extra
    await h.settle()
    row = h.store.get_invocation(inv_id)
    assert row is not None and "remote_waits" not in row.extra

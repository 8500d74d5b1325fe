"""Invocations talking to each other: calls, one-way calls, signals, awakeables, cancel, kill."""

from __future__ import annotations

import time

from _engine_harness import Harness, T, input_of, journal_types, notification_msg, pb, start_of

from durably.engine.commands import complete_awakeable
from durably.engine.model import KILLED, Failure, Result
from durably.engine.retry import RetryPolicy
from durably.ids import awakeable_id


def now_ms() -> int:
    return int(time.time() * 1000)


async def _running(h: Harness, service: str, handler: str, key: str | None = None):
    sub = h.submit(service, handler, key)
    await h.settle()
    return sub.invocation_id, h.attempt(sub.invocation_id)


async def test_call_between_two_invocations(h: Harness) -> None:
    caller_id, caller = await _running(h, "Greeter", "greet")
    h.send(
        caller,
        pb.CallCommandMessage(
            service_name="Counter",
            handler_name="add",
            key="alice",
            parameter=b"5",
            headers=[pb.Header(key="h", value="v")],
            invocation_id_notification_idx=1,
            result_completion_id=2,
        ),
    )
    await h.settle()
    ((t, msg),) = h.pushed(caller)
    assert t == T.CALL_INVOCATION_ID_COMPLETION
    n = notification_msg(t, msg)
    assert n.completion_id == 1
    child_id = n.invocation_id
    assert child_id.startswith("inv_1")

    child = h.attempt(child_id)
    assert (child.service, child.key, child.handler) == ("Counter", "alice", "add")
    assert input_of(child) == b"5"
    row = h.store.get_invocation(child_id)
    assert row is not None
    assert row.invoked_by == "service" and row.invoked_by_id == caller_id
    assert row.invoked_by_target == "Greeter/greet"
    _, journal = start_of(child)
    assert [(x.key, x.value) for x in journal[0][1].headers] == [("h", "v")]

    await h.output(child, b"6")
    ((t, msg),) = h.pushed(caller)
    assert t == T.CALL_COMPLETION
    n = notification_msg(t, msg)
    assert n.completion_id == 2 and n.value.content == b"6"
    assert journal_types(h, caller_id) == [
        T.INPUT_COMMAND,
        T.CALL_COMMAND,
        T.CALL_INVOCATION_ID_COMPLETION,
        T.CALL_COMPLETION,
    ]


async def test_call_failure_is_delivered_to_the_caller(h: Harness) -> None:
    _, caller = await _running(h, "Greeter", "greet")
    h.send(
        caller,
        pb.CallCommandMessage(
            service_name="Greeter",
            handler_name="other",
            invocation_id_notification_idx=1,
            result_completion_id=2,
        ),
    )
    await h.settle()
    child_id = notification_msg(*h.pushed(caller)[0]).invocation_id
    await h.fail(h.attempt(child_id), 400, "nope")
    n = notification_msg(*h.pushed(caller)[0])
    assert (n.failure.code, n.failure.message) == (400, "nope")


async def test_call_to_unknown_service_fails_the_attempt(h: Harness) -> None:
    # a retry slower than settle(), so the backing-off status is still there to read
    h.schema.override("Greeter", "greet", retry=RetryPolicy(initial_interval_ms=500, factor=1.0, max_attempts=None))
    caller_id, caller = await _running(h, "Greeter", "greet")
    h.send(
        caller,
        pb.CallCommandMessage(service_name="Nope", handler_name="x", result_completion_id=2),
    )
    await h.settle()
    row = h.store.get_invocation(caller_id)
    assert row is not None and row.status == "backing-off"


async def test_call_to_unknown_service_is_not_journaled(h: Harness) -> None:
    # Restate's invoker checks the call target before it accepts the command
    # (CommandPreconditionError::ServiceHandlerNotFound): the attempt fails and the command
    # is not stored, so once the service is registered the SDK's retry sends the call again.
    # A stored CallCommand without its completions would instead be replayed to the SDK,
    # which then waits forever for an invocation that was never created.
    caller_id, caller = await _running(h, "Greeter", "greet")
    call = pb.CallCommandMessage(
        service_name="Later",
        handler_name="run",
        parameter=b"p",
        invocation_id_notification_idx=1,
        result_completion_id=2,
    )
    h.send(caller, call)
    # the attempt fails and a retry starts (the backing-off status in between is checked by
    # the test above with a slow retry; with 10 ms it may be over before settle() returns)
    await h.until(lambda: len(h.attempts_of(caller_id)) == 2)
    retry = h.attempt(caller_id)
    _, journal = start_of(retry)
    assert [t for t, _ in journal] == [T.INPUT_COMMAND]

    h.schema.register("Later", "service", {"run": None})
    h.send(retry, call)
    await h.settle()
    ((t, msg),) = h.pushed(retry)
    assert t == T.CALL_INVOCATION_ID_COMPLETION
    child_id = notification_msg(t, msg).invocation_id
    await h.output(h.attempt(child_id), b"late")
    ((t, msg),) = h.pushed(retry)
    assert t == T.CALL_COMPLETION and notification_msg(t, msg).value.content == b"late"


async def test_call_of_a_suspended_caller_resumes_it(h: Harness) -> None:
    caller_id, caller = await _running(h, "Greeter", "greet")
    h.send(
        caller,
        pb.CallCommandMessage(
            service_name="Greeter",
            handler_name="other",
            invocation_id_notification_idx=1,
            result_completion_id=2,
        ),
    )
    await h.settle()
    child_id = notification_msg(*h.pushed(caller)[0]).invocation_id
    await h.suspend(caller, completions=[2])
    assert h.status(caller_id) == "suspended"
    await h.output(h.attempt(child_id), b"r")
    assert len(h.attempts_of(caller_id)) == 2
    _, journal = start_of(h.attempt(caller_id))
    assert journal[-1][0] == T.CALL_COMPLETION


async def test_idempotent_call_to_a_completed_invocation_answers_at_once(h: Harness) -> None:
    first = h.submit("Greeter", "other", idempotency_key="once")
    await h.settle()
    await h.output(h.attempt(first.invocation_id), b"cached")
    _, caller = await _running(h, "Greeter", "greet")
    h.send(
        caller,
        pb.CallCommandMessage(
            service_name="Greeter",
            handler_name="other",
            idempotency_key="once",
            invocation_id_notification_idx=1,
            result_completion_id=2,
        ),
    )
    await h.settle()
    (t1, m1), (t2, m2) = h.pushed(caller)
    assert notification_msg(t1, m1).invocation_id == first.invocation_id
    assert t2 == T.CALL_COMPLETION and notification_msg(t2, m2).value.content == b"cached"
    assert len(h.attempts_of(first.invocation_id)) == 1


async def test_one_way_call_with_delay_is_scheduled_then_runs(h: Harness) -> None:
    caller_id, caller = await _running(h, "Greeter", "greet")
    invoke_time = now_ms() + 60
    h.send(
        caller,
        pb.OneWayCallCommandMessage(
            service_name="Greeter",
            handler_name="other",
            parameter=b"p",
            invoke_time=invoke_time,
            invocation_id_notification_idx=1,
        ),
    )
    await h.settle()
    ((t, msg),) = h.pushed(caller)
    assert t == T.CALL_INVOCATION_ID_COMPLETION
    child_id = notification_msg(t, msg).invocation_id
    row = h.store.get_invocation(child_id)
    assert row is not None
    assert row.status == "scheduled" and row.execution_time == invoke_time
    assert h.attempts_of(child_id) == []
    # the caller does not wait for it
    await h.output(caller, b"sent")
    assert (await h.result(caller_id)).value == b"sent"

    await h.until(lambda: h.attempts_of(child_id))
    assert now_ms() >= invoke_time
    assert input_of(h.attempt(child_id)) == b"p"
    await h.output(h.attempt(child_id), b"")
    assert h.pushed(caller) == []


async def test_one_way_call_without_delay_starts_at_once(h: Harness) -> None:
    _, caller = await _running(h, "Greeter", "greet")
    h.send(
        caller,
        pb.OneWayCallCommandMessage(
            service_name="Counter", handler_name="add", key="k", invocation_id_notification_idx=1
        ),
    )
    await h.settle()
    child_id = notification_msg(*h.pushed(caller)[0]).invocation_id
    assert h.attempts_of(child_id)


async def test_awakeable_completed_by_another_invocation(h: Harness) -> None:
    waiter_id, waiter = await _running(h, "Greeter", "greet")
    awk = awakeable_id(h.engine.active[waiter_id].id_bytes, 17)
    _, other = await _running(h, "Greeter", "other")
    h.send(other, pb.CompleteAwakeableCommandMessage(awakeable_id=awk, value=pb.Value(content=b"yes")))
    await h.settle()
    ((t, msg),) = h.pushed(waiter)
    assert t == T.SIGNAL_NOTIFICATION
    n = notification_msg(t, msg)
    assert n.signal_id == 17 and n.value.content == b"yes"
    assert journal_types(h, waiter_id)[-1] == T.SIGNAL_NOTIFICATION


async def test_awakeable_rejected_from_the_ingress(h: Harness) -> None:
    waiter_id, waiter = await _running(h, "Greeter", "greet")
    awk = awakeable_id(h.engine.active[waiter_id].id_bytes, 18)
    assert complete_awakeable(h.engine, awk, Result(failure=Failure(500, "rejected")))
    await h.settle()
    ((t, msg),) = h.pushed(waiter)
    n = notification_msg(t, msg)
    assert n.signal_id == 18 and n.failure.message == "rejected"


async def test_awakeable_resumes_a_suspended_invocation(h: Harness) -> None:
    waiter_id, waiter = await _running(h, "Greeter", "greet")
    awk = awakeable_id(h.engine.active[waiter_id].id_bytes, 17)
    await h.suspend(waiter, signals=[17])
    assert h.status(waiter_id) == "suspended"
    complete_awakeable(h.engine, awk, Result(value=b"v"))
    await h.settle()
    assert len(h.attempts_of(waiter_id)) == 2
    _, journal = start_of(h.attempt(waiter_id))
    assert notification_msg(*journal[-1]).value.content == b"v"


async def test_send_signal_by_index_and_by_name(h: Harness) -> None:
    target_id, target = await _running(h, "Greeter", "greet")
    _, sender = await _running(h, "Greeter", "other")
    h.send(
        sender,
        pb.SendSignalCommandMessage(
            target_invocation_id=target_id, idx=20, value=pb.Value(content=b"a")
        ),
    )
    h.send(
        sender,
        pb.SendSignalCommandMessage(target_invocation_id=target_id, name="go", void=pb.Void()),
    )
    await h.settle()
    (t1, m1), (t2, m2) = h.pushed(target)
    assert t1 == t2 == T.SIGNAL_NOTIFICATION
    a, b = notification_msg(t1, m1), notification_msg(t2, m2)
    assert a.signal_id == 20 and a.value.content == b"a"
    assert b.signal_name == "go"


async def test_cancel_of_a_running_invocation_appends_and_pushes_signal_1(h: Harness) -> None:
    inv_id, attempt = await _running(h, "Greeter", "greet")
    assert h.engine.cancel(inv_id) == "appended"
    await h.settle()
    ((t, msg),) = h.pushed(attempt)
    assert t == T.SIGNAL_NOTIFICATION
    n = notification_msg(t, msg)
    assert n.signal_id == 1 and n.WhichOneof("result") == "void"
    assert journal_types(h, inv_id)[-1] == T.SIGNAL_NOTIFICATION
    # the SDK reacts by failing the handler with 409 canceled
    await h.fail(attempt, 409, "canceled")
    result = await h.result(inv_id)
    assert result.failure == Failure(409, "canceled")


async def test_cancel_sent_by_the_sdk_to_a_child(h: Harness) -> None:
    _, parent = await _running(h, "Greeter", "greet")
    child_id, child = await _running(h, "Greeter", "other")
    h.send(parent, pb.SendSignalCommandMessage(target_invocation_id=child_id, idx=1, void=pb.Void()))
    await h.settle()
    ((t, msg),) = h.pushed(child)
    assert t == T.SIGNAL_NOTIFICATION and notification_msg(t, msg).signal_id == 1


async def test_kill_propagates_to_a_called_child(h: Harness) -> None:
    parent_id, parent = await _running(h, "Greeter", "greet")
    h.send(
        parent,
        pb.CallCommandMessage(
            service_name="Counter",
            handler_name="add",
            key="alice",
            invocation_id_notification_idx=1,
            result_completion_id=2,
        ),
    )
    await h.settle()
    child_id = notification_msg(*h.pushed(parent)[0]).invocation_id
    child = h.attempt(child_id)
    # a grandchild, too
    h.send(
        child,
        pb.CallCommandMessage(
            service_name="Greeter",
            handler_name="other",
            invocation_id_notification_idx=1,
            result_completion_id=2,
        ),
    )
    await h.settle()
    grandchild_id = notification_msg(*h.pushed(child)[0]).invocation_id
    # a one-way call is detached: it survives
    h.send(
        parent,
        pb.OneWayCallCommandMessage(
            service_name="Greeter", handler_name="other", invocation_id_notification_idx=3
        ),
    )
    await h.settle()
    detached_id = notification_msg(*h.pushed(parent)[0]).invocation_id

    assert h.engine.kill(parent_id) == "done"
    await h.settle()
    assert (await h.result(parent_id)) == Result(failure=KILLED)
    assert (await h.result(child_id)) == Result(failure=KILLED)
    assert (await h.result(grandchild_id)) == Result(failure=KILLED)
    assert h.status(detached_id) == "invoked"
    assert parent in h.invoker.aborted and child in h.invoker.aborted
    # the key of the killed child is free again
    assert ("Counter", "alice") not in h.engine.locks
    assert h.engine.kill(parent_id) == "completed"


async def test_attach_and_get_output_by_invocation_id(h: Harness) -> None:
    target_id, target = await _running(h, "Greeter", "other")
    _, caller = await _running(h, "Greeter", "greet")
    h.send(caller, pb.GetInvocationOutputCommandMessage(invocation_id=target_id, result_completion_id=1))
    h.send(caller, pb.AttachInvocationCommandMessage(invocation_id=target_id, result_completion_id=2))
    h.send(
        caller,
        pb.AttachInvocationCommandMessage(
            invocation_id="inv_1doesnotexist000000000000000000", result_completion_id=3
        ),
    )
    await h.settle()
    (t1, m1), (t3, m3) = h.pushed(caller)
    assert t1 == T.GET_INVOCATION_OUTPUT_COMPLETION
    assert notification_msg(t1, m1).WhichOneof("result") == "void"  # not completed yet
    assert t3 == T.ATTACH_INVOCATION_COMPLETION
    n = notification_msg(t3, m3)
    assert n.completion_id == 3 and n.failure.code == 404

    await h.output(target, b"out")
    ((t2, m2),) = h.pushed(caller)
    assert t2 == T.ATTACH_INVOCATION_COMPLETION
    n = notification_msg(t2, m2)
    assert n.completion_id == 2 and n.value.content == b"out"


async def test_attach_to_a_workflow_by_target(h: Harness) -> None:
    run = h.submit("Wf", "run", "w9")
    await h.settle()
    await h.output(h.attempt(run.invocation_id), b"wf-out")
    _, caller = await _running(h, "Greeter", "greet")
    h.send(
        caller,
        pb.AttachInvocationCommandMessage(
            workflow_target=pb.WorkflowTarget(workflow_name="Wf", workflow_key="w9"),
            result_completion_id=1,
        ),
    )
    await h.settle()
    ((t, msg),) = h.pushed(caller)
    assert notification_msg(t, msg).value.content == b"wf-out"


async def test_bare_remote_call_ids_are_pruned_when_their_completion_arrives(h: Harness) -> None:
    # (spread placement) rows written before `remote_calls` entries named their completion
    # hold bare callee ids; the caller's journal tells which call a completion answers,
    # whether the journal is held (running) or left in the store (suspended)
    caller_id, caller = await _running(h, "Greeter", "greet")
    for n in (1, 3):
        h.send(caller, pb.CallCommandMessage(
            service_name="Greeter", handler_name="other",
            invocation_id_notification_idx=n, result_completion_id=n + 1,
        ))
    await h.settle()
    first, second = (notification_msg(*p).invocation_id for p in h.pushed(caller))
    row = h.engine.active[caller_id].row
    row.extra["remote_calls"] = [first, second, ["inv_1paired", 9]]
    await h.suspend(caller, completions=[2, 4])
    assert h.engine.active[caller_id].journal is None

    await h.output(h.attempt(first), b"a")
    assert row.extra["remote_calls"] == [second, ["inv_1paired", 9]]
    assert h.engine.active[caller_id].journal is not None  # running again
    await h.output(h.attempt(second), b"b")
    assert row.extra["remote_calls"] == [["inv_1paired", 9]]
    await h.settle()
    stored = h.store.get_invocation(caller_id)
    assert stored is not None and stored.extra["remote_calls"] == [["inv_1paired", 9]]


async def test_bare_remote_wait_ids_are_pruned_when_their_completion_arrives(h: Harness) -> None:
    target_id, target = await _running(h, "Greeter", "other")
    caller_id, caller = await _running(h, "Greeter", "greet")
    h.send(caller, pb.AttachInvocationCommandMessage(invocation_id=target_id, result_completion_id=1))
    await h.settle()
    row = h.engine.active[caller_id].row
    row.extra["remote_waits"] = ["inv_1unrelated", target_id]
    await h.output(target, b"out")
    assert row.extra["remote_waits"] == ["inv_1unrelated"]  # (its completion never came)

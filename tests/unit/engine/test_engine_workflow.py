"""Workflows: one run per id, durable promises shared by the run and its shared handlers."""

from __future__ import annotations

from _engine_harness import Harness, T, notification_msg, pb, start_of

from durably.engine.model import WORKFLOW_ALREADY_INVOKED


async def _running(h: Harness, handler: str, key: str = "w1"):
    sub = h.submit("Wf", handler, key)
    await h.settle()
    return sub.invocation_id, h.attempt(sub.invocation_id)


def _complete(key: str, cid: int, value: bytes) -> pb.CompletePromiseCommandMessage:
    return pb.CompletePromiseCommandMessage(
        key=key, completion_value=pb.Value(content=value), result_completion_id=cid
    )


async def test_promise_get_before_complete_is_answered_on_completion(h: Harness) -> None:
    run_id, run = await _running(h, "run")
    h.send(run, pb.GetPromiseCommandMessage(key="p", result_completion_id=1))
    await h.settle()
    assert h.pushed(run) == []

    _, signal = await _running(h, "signal")
    h.send(signal, _complete("p", 1, b'"hi"'))
    await h.settle()
    ((t, msg),) = h.pushed(signal)
    assert t == T.COMPLETE_PROMISE_COMPLETION
    n = notification_msg(t, msg)
    assert n.completion_id == 1 and n.WhichOneof("result") == "void"
    ((t, msg),) = h.pushed(run)
    assert t == T.GET_PROMISE_COMPLETION
    n = notification_msg(t, msg)
    assert n.completion_id == 1 and n.value.content == b'"hi"'
    assert h.store.take_promise_listeners("Wf", "w1", "p") == []


async def test_promise_get_after_complete_answers_at_once(h: Harness) -> None:
    _, run = await _running(h, "run")
    h.send(run, _complete("p", 1, b"v"))
    h.send(run, pb.GetPromiseCommandMessage(key="p", result_completion_id=2))
    await h.settle()
    (_, _), (t, msg) = h.pushed(run)
    assert t == T.GET_PROMISE_COMPLETION
    assert notification_msg(t, msg).value.content == b"v"


async def test_promise_peek(h: Harness) -> None:
    _, peek = await _running(h, "peek")
    h.send(peek, pb.PeekPromiseCommandMessage(key="p", result_completion_id=1))
    await h.settle()
    ((t, msg),) = h.pushed(peek)
    assert t == T.PEEK_PROMISE_COMPLETION
    assert notification_msg(t, msg).WhichOneof("result") == "void"
    assert h.store.take_promise_listeners("Wf", "w1", "p") == []  # peeking does not listen

    h.send(peek, _complete("p", 2, b"v"))
    h.send(peek, pb.PeekPromiseCommandMessage(key="p", result_completion_id=3))
    await h.settle()
    (_, _), (t, msg) = h.pushed(peek)
    assert notification_msg(t, msg).value.content == b"v"


async def test_promise_complete_twice_is_409(h: Harness) -> None:
    _, run = await _running(h, "run")
    h.send(run, _complete("p", 1, b"first"))
    h.send(run, _complete("p", 2, b"second"))
    await h.settle()
    (_, ok), (t, second) = h.pushed(run)
    assert notification_msg(t, ok).WhichOneof("result") == "void"
    n = notification_msg(t, second)
    assert n.completion_id == 2
    assert n.WhichOneof("result") == "failure" and n.failure.code == 409
    stored = h.store.get_promise("Wf", "w1", "p")
    assert stored is not None and stored.endswith(b"first")


async def test_promise_rejection(h: Harness) -> None:
    _, run = await _running(h, "run")
    h.send(run, pb.GetPromiseCommandMessage(key="p", result_completion_id=1))
    _, signal = await _running(h, "signal")
    h.send(
        signal,
        pb.CompletePromiseCommandMessage(
            key="p", completion_failure=pb.Failure(code=500, message="no"), result_completion_id=1
        ),
    )
    await h.settle()
    n = notification_msg(*h.pushed(run)[0])
    assert n.failure.message == "no"


async def test_suspended_run_resumes_when_the_promise_completes(h: Harness) -> None:
    run_id, run = await _running(h, "run")
    h.send(run, pb.GetPromiseCommandMessage(key="p", result_completion_id=1))
    await h.suspend(run, completions=[1])
    assert h.status(run_id) == "suspended"
    _, signal = await _running(h, "signal")
    h.send(signal, _complete("p", 1, b"v"))
    await h.settle()
    assert len(h.attempts_of(run_id)) == 2
    _, journal = start_of(h.attempt(run_id))
    assert journal[-1][0] == T.GET_PROMISE_COMPLETION


async def test_promises_are_per_workflow_id(h: Harness) -> None:
    _, run = await _running(h, "run", "w1")
    h.send(run, _complete("p", 1, b"v"))
    await h.settle()
    _, other = await _running(h, "peek", "w2")
    h.send(other, pb.PeekPromiseCommandMessage(key="p", result_completion_id=1))
    await h.settle()
    assert notification_msg(*h.pushed(other)[0]).WhichOneof("result") == "void"


async def test_promises_outside_workflows_are_a_protocol_error(h: Harness) -> None:
    sub = h.submit("Counter", "add", "alice")
    await h.settle()
    h.send(h.attempt(sub.invocation_id), pb.GetPromiseCommandMessage(key="p", result_completion_id=1))
    await h.settle()
    row = h.store.get_invocation(sub.invocation_id)
    assert row is not None and row.last_failure_code == 571


async def test_calling_a_workflow_run_twice_fails_the_second_call(h: Harness) -> None:
    run_id, run = await _running(h, "run")
    caller_sub = h.submit("Greeter", "greet")
    await h.settle()
    caller = h.attempt(caller_sub.invocation_id)
    h.send(
        caller,
        pb.CallCommandMessage(
            service_name="Wf",
            handler_name="run",
            key="w1",
            invocation_id_notification_idx=1,
            result_completion_id=2,
        ),
    )
    await h.settle()
    (t1, m1), (t2, m2) = h.pushed(caller)
    assert notification_msg(t1, m1).invocation_id == run_id
    n = notification_msg(t2, m2)
    assert t2 == T.CALL_COMPLETION
    assert (n.failure.code, n.failure.message) == (
        WORKFLOW_ALREADY_INVOKED.code,
        WORKFLOW_ALREADY_INVOKED.message,
    )
    assert len(h.attempts_of(run_id)) == 1


async def test_completed_workflow_keeps_state_and_promises(h: Harness) -> None:
    run_id, run = await _running(h, "run")
    h.send(run, pb.SetStateCommandMessage(key=b"s", value=pb.Value(content=b"1")))
    h.send(run, _complete("p", 1, b"v"))
    await h.output(run, b"done")
    again = h.submit("Wf", "run", "w1")
    assert again.existed and again.completed
    _, peek = await _running(h, "peek")
    start, _ = start_of(peek)
    assert {e.key: e.value for e in start.state_map} == {b"s": b"1"}
    h.send(peek, pb.PeekPromiseCommandMessage(key="p", result_completion_id=1))
    await h.settle()
    assert notification_msg(*h.pushed(peek)[0]).value.content == b"v"

"""Side effects (`ctx.run`): the SDK proposes a result, the engine stores and confirms it."""

from __future__ import annotations

from _engine_harness import ACK, Harness, T, journal_types, notification_msg, pb, start_of


async def test_propose_run_completion_v6_pushes_the_notification(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    assert attempt.protocol_version == 6
    h.send(attempt, pb.RunCommandMessage(result_completion_id=1, name="side effect"))
    h.send(attempt, pb.ProposeRunCompletionMessage(result_completion_id=1, value=b'"r"'))
    assert attempt.take_outbox() == b""  # not before the commit
    await h.settle()
    ((t, msg),) = h.pushed(attempt)
    assert t == T.RUN_COMPLETION
    n = notification_msg(t, msg)
    assert n.completion_id == 1 and n.value.content == b'"r"'
    assert journal_types(h, sub.invocation_id) == [
        T.INPUT_COMMAND,
        T.RUN_COMMAND,
        T.RUN_COMPLETION,
    ]


async def test_propose_run_failure_is_stored_as_failure(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.RunCommandMessage(result_completion_id=1))
    h.send(
        attempt,
        pb.ProposeRunCompletionMessage(
            result_completion_id=1, failure=pb.Failure(code=400, message="bad")
        ),
    )
    await h.settle()
    ((t, msg),) = h.pushed(attempt)
    n = notification_msg(t, msg)
    assert n.failure.code == 400 and n.failure.message == "bad"


async def test_a_repeated_proposal_is_ignored(h: Harness) -> None:
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.RunCommandMessage(result_completion_id=1))
    h.send(attempt, pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"1"))
    h.send(attempt, pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"2"))
    await h.settle()
    assert journal_types(h, sub.invocation_id).count(T.RUN_COMPLETION) == 1


async def test_propose_run_completion_v7_with_ack_flag_pushes_the_ack(h7: Harness) -> None:
    h = h7
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    assert attempt.protocol_version == 7
    h.send(attempt, pb.RunCommandMessage(result_completion_id=1))
    h.send(attempt, pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"7"), flags=ACK)
    await h.settle()
    ((t, msg),) = h.pushed(attempt)
    assert t == T.PROPOSE_RUN_COMPLETION_ACK
    assert isinstance(msg, pb.ProposeRunCompletionAckMessage) and msg.completion_id == 1
    # the result is stored all the same, and replayed to the next attempt
    assert journal_types(h, sub.invocation_id)[-1] == T.RUN_COMPLETION
    h.closed(attempt, "connection reset")
    await h.until(lambda: len(h.attempts_of(sub.invocation_id)) == 2)
    _, journal = start_of(h.attempt(sub.invocation_id))
    assert notification_msg(*journal[-1]).value.content == b"7"


async def test_propose_run_completion_v7_without_flag_pushes_the_notification(h7: Harness) -> None:
    h = h7
    sub = h.submit("Greeter", "greet")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.RunCommandMessage(result_completion_id=1))
    h.send(attempt, pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"7"))
    await h.settle()
    ((t, _),) = h.pushed(attempt)
    assert t == T.RUN_COMPLETION


async def test_command_with_ack_flag_gets_a_command_ack(h7: Harness) -> None:
    h = h7
    sub = h.submit("Counter", "add", "alice")
    await h.settle()
    attempt = h.attempt(sub.invocation_id)
    h.send(attempt, pb.SetStateCommandMessage(key=b"a", value=pb.Value(content=b"1")), flags=ACK)
    await h.settle()
    ((t, msg),) = h.pushed(attempt)
    assert t == T.COMMAND_ACK
    assert isinstance(msg, pb.CommandAckMessage) and msg.command_index == 1

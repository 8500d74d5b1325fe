"""Pause, resume, restart as new and purge journal, on the engine."""

from __future__ import annotations

from _engine_harness import Harness, T, pb

from durably.engine.management import journal_prefix
from durably.protocol.messages import MessageType


def _run_cmd(cid: int) -> tuple[int, bytes]:
    return (int(MessageType.RUN_COMMAND), pb.RunCommandMessage(result_completion_id=cid, name="r").SerializeToString())


def _run_done(cid: int) -> tuple[int, bytes]:
    body = pb.RunCompletionNotificationMessage(completion_id=cid, value=pb.Value(content=b"x"))
    return (int(MessageType.RUN_COMPLETION), body.SerializeToString())


INPUT = (int(MessageType.INPUT_COMMAND), pb.InputCommandMessage().SerializeToString())


def test_journal_prefix_takes_the_completions_of_its_commands() -> None:
    journal = [INPUT, _run_cmd(1), _run_cmd(2), _run_done(2), _run_done(1), _run_cmd(3)]
    assert journal_prefix(journal, 1, 6) == [INPUT, _run_cmd(1), _run_done(1)]
    assert journal_prefix(journal, 2, 6) == [INPUT, _run_cmd(1), _run_cmd(2), _run_done(2), _run_done(1)]
    assert journal_prefix(journal, 0, 6) == [INPUT]


def test_journal_prefix_refuses_uncompleted_commands_and_indexes_past_the_end() -> None:
    journal = [INPUT, _run_cmd(1), _run_cmd(2), _run_done(2)]
    assert journal_prefix(journal, 1, 6) is None
    assert journal_prefix(journal, 9, 6) is None


async def test_pause_running_then_resume(h: Harness) -> None:
    inv = h.submit("Greeter", "greet").invocation_id
    await h.settle()
    first = h.attempt(inv)
    assert h.engine.pause(inv) == "done"
    await h.settle()
    assert first.finished and h.status(inv) == "paused"
    assert h.engine.pause(inv) == "already"
    assert h.engine.resume(inv) == "done"
    await h.settle()
    assert len(h.attempts_of(inv)) == 2
    await h.output(h.attempt(inv), b"ok")
    assert h.engine.pause(inv) == "not-running"
    assert h.engine.resume(inv) == "completed"


async def test_restart_as_new_copies_input_and_refuses_running(h: Harness) -> None:
    inv = h.submit("Greeter", "greet", body=b'"x"').invocation_id
    await h.settle()
    assert h.engine.restart_as_new(inv) == ("running", None)
    await h.output(h.attempt(inv), b"1")
    outcome, new = h.engine.restart_as_new(inv)
    assert outcome == "done" and new is not None and new != inv
    await h.settle()
    row = h.store.get_invocation(new)
    assert row is not None and row.invoked_by == "restart_as_new"
    assert row.extra["restarted_from"] == inv
    (t, _), = h.store.load_journal(new)
    assert t == T.INPUT_COMMAND
    assert h.engine.purge_journal(inv) == "done"
    assert h.engine.restart_as_new(inv) == ("journal-gone", None)


async def test_pause_leaves_a_suspended_invocation_as_it_is(h: Harness) -> None:
    inv = h.submit("Greeter", "greet").invocation_id
    await h.settle()
    await h.suspend(h.attempt(inv), completions=[1])
    assert h.status(inv) == "suspended"
    assert h.engine.pause(inv) == "already"
    await h.settle()
    assert h.status(inv) == "suspended"

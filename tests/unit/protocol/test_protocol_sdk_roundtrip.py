"""Drive the real restate-sdk ASGI app in-process with frames built from our proto.

If our field numbers or framing were wrong, the SDK would fail to parse Start/Input or we
would fail to parse what it sends back. Request/response mode: the whole request body is
sent and closed before the SDK runs, so anything it would have to wait for makes it suspend.
"""

from __future__ import annotations

import pytest
from _sdk_harness import asgi_request, make_app
from google.protobuf.message import Message

from durably.ids import InvocationId
from durably.protocol.framing import Frame, FrameDecoder
from durably.protocol.messages import (
    MessageType,
    decode_message,
    encode_messages,
    pb,
    suspension_awaited,
)
from durably.protocol.version import content_type

T = MessageType


async def invoke(
    service: str,
    handler: str,
    journal: list[Message],
    version: int,
    *,
    key: str = "",
    state: dict[bytes, bytes] | None = None,
) -> list[tuple[Frame, Message]]:
    iid = InvocationId.generate(service=service, handler=handler, key=key or None)
    start = pb.StartMessage(
        id=iid.to_bytes(),
        debug_id=str(iid),
        known_entries=len(journal),
        key=key,
        random_seed=42,
        partial_state=state is None,
        state_map=[pb.StartMessage.StateEntry(key=k, value=v) for k, v in (state or {}).items()],
    )
    body = encode_messages([start, *journal])
    # Split mid-header to make sure the SDK reassembles frames like we do.
    chunks = [body[:3], body[3:20], body[20:]]
    ct = content_type(version)
    resp = await asgi_request(
        make_app(),
        "POST",
        f"/invoke/{service}/{handler}",
        {"content-type": ct, "accept": ct},
        chunks,
    )
    assert resp.status == 200
    assert resp.headers["content-type"] == ct
    frames = FrameDecoder().feed(resp.body)
    return [(f, decode_message(f.msg_type, f.body, version)) for f in frames]


def types(out: list[tuple[Frame, Message]]) -> list[int]:
    # AwaitingOn is a V7 hint the SDK may interleave anywhere; it carries no obligation.
    return [f.msg_type for f, _ in out if f.msg_type != T.AWAITING_ON]


def input_cmd(body: bytes) -> pb.InputCommandMessage:
    return pb.InputCommandMessage(
        headers=[pb.Header(key="content-type", value="application/json")],
        value=pb.Value(content=body),
    )


@pytest.mark.parametrize("version", [5, 6, 7])
async def test_greet_output_and_end(version: int) -> None:
    out = await invoke("Greeter", "greet", [input_cmd(b'"bob"')], version)
    assert types(out) == [T.OUTPUT_COMMAND, T.END]
    output = out[0][1]
    assert isinstance(output, pb.OutputCommandMessage)
    assert output.WhichOneof("result") == "value"
    assert output.value.content == b'"Hello bob!"'
    assert isinstance(out[-1][1], pb.EndMessage)


async def test_terminal_error_becomes_output_failure() -> None:
    out = await invoke("Greeter", "fail", [input_cmd(b'"nope"')], 6)
    assert types(out) == [T.OUTPUT_COMMAND, T.END]
    output = out[0][1]
    assert isinstance(output, pb.OutputCommandMessage)
    assert (output.failure.code, output.failure.message) == (418, "nope")


@pytest.mark.parametrize("version", [6, 7])
async def test_run_proposes_then_suspends(version: int) -> None:
    out = await invoke("Greeter", "runTwice", [input_cmd(b"")], version)
    assert types(out) == [T.RUN_COMMAND, T.PROPOSE_RUN_COMPLETION, T.SUSPENSION]
    by_type = {f.msg_type: (f, m) for f, m in out}
    run = by_type[T.RUN_COMMAND][1]
    assert isinstance(run, pb.RunCommandMessage)
    assert (run.result_completion_id, run.name) == (1, "step")
    frame, proposal = by_type[T.PROPOSE_RUN_COMPLETION]
    assert isinstance(proposal, pb.ProposeRunCompletionMessage)
    assert proposal.value == b'"stepped"'
    # The ack flag is a V7 feature: V6 expects the full notification back instead.
    assert frame.requested_ack is (version >= 7)
    _, suspension = by_type[T.SUSPENSION]
    expected_cls = pb.SuspensionMessage if version >= 7 else pb.SuspensionMessageV6
    assert isinstance(suspension, expected_cls)
    # Waiting on the run's completion, plus the built-in cancel signal.
    assert suspension_awaited(suspension, version) == ({1}, {1}, set())


@pytest.mark.parametrize("version", [6, 7])
async def test_replay_with_run_completion(version: int) -> None:
    journal: list[Message] = [
        input_cmd(b""),
        pb.RunCommandMessage(result_completion_id=1, name="step"),
        pb.RunCompletionNotificationMessage(completion_id=1, value=pb.Value(content=b'"stepped"')),
    ]
    out = await invoke("Greeter", "runTwice", journal, version)
    # Replayed commands are not echoed; only the new Output follows.
    assert types(out) == [T.OUTPUT_COMMAND, T.END]
    output = out[0][1]
    assert isinstance(output, pb.OutputCommandMessage)
    assert output.value.content == b'"stepped"'


async def test_eager_state() -> None:
    out = await invoke("Counter", "add", [input_cmd(b"5")], 6, key="c1", state={b"value": b"10"})
    assert types(out) == [
        T.GET_EAGER_STATE_COMMAND,
        T.SET_STATE_COMMAND,
        T.OUTPUT_COMMAND,
        T.END,
    ]
    get = out[0][1]
    assert isinstance(get, pb.GetEagerStateCommandMessage)
    assert (get.key, get.value.content) == (b"value", b"10")
    set_ = out[1][1]
    assert isinstance(set_, pb.SetStateCommandMessage)
    assert (set_.key, set_.value.content) == (b"value", b"15")


async def test_eager_state_absent_key_in_complete_map() -> None:
    out = await invoke("Counter", "add", [input_cmd(b"1")], 6, key="c1", state={})
    get = out[0][1]
    assert isinstance(get, pb.GetEagerStateCommandMessage)
    assert get.WhichOneof("result") == "void"


async def test_lazy_state_then_replay_with_completion() -> None:
    out = await invoke("Counter", "add", [input_cmd(b"2")], 6, key="c1")
    assert types(out) == [T.GET_LAZY_STATE_COMMAND, T.SUSPENSION]
    get = out[0][1]
    assert isinstance(get, pb.GetLazyStateCommandMessage)
    assert get.key == b"value"
    assert suspension_awaited(out[1][1], 6) == ({get.result_completion_id}, {1}, set())

    journal: list[Message] = [
        input_cmd(b"2"),
        get,
        pb.GetLazyStateCompletionNotificationMessage(
            completion_id=get.result_completion_id, value=pb.Value(content=b"40")
        ),
    ]
    out = await invoke("Counter", "add", journal, 6, key="c1")
    assert types(out) == [T.SET_STATE_COMMAND, T.OUTPUT_COMMAND, T.END]
    output = out[1][1]
    assert isinstance(output, pb.OutputCommandMessage)
    assert output.value.content == b"42"

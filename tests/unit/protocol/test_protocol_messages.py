import pytest
from google.protobuf.message import Message

from durably.protocol.framing import FrameDecoder, ProtocolViolation
from durably.protocol.messages import (
    MESSAGE_CLASSES,
    MessageType,
    UnknownMessageType,
    decode_message,
    encode_message,
    encode_messages,
    future_awaited,
    is_command,
    is_control,
    is_custom,
    is_notification,
    message_type_of,
    pb,
    suspension_awaited,
)

T = MessageType


def test_type_ranges() -> None:
    for t in MessageType:
        kinds = [is_control(t), is_command(t), is_notification(t), is_custom(t)]
        assert kinds.count(True) == 1, t
    assert is_command(T.INPUT_COMMAND) and is_command(T.COMPLETE_AWAKEABLE_COMMAND)
    assert is_notification(T.GET_LAZY_STATE_COMPLETION) and is_notification(T.SIGNAL_NOTIFICATION)
    assert is_custom(0xFC00) and is_custom(0xFFFF) and not is_custom(0xFBFF)


def test_selected_ids() -> None:
    assert T.SEND_SIGNAL_COMMAND == 0x0410
    assert T.COMPLETE_AWAKEABLE_COMMAND == 0x0414
    assert T.PEEK_PROMISE_COMPLETION == 0x800A
    assert T.COMPLETE_PROMISE_COMPLETION == 0x800B
    assert T.RUN_COMMAND == 0x0411
    assert T.ONE_WAY_CALL_COMMAND == 0x040E
    assert len(MessageType) == 8 + 20 + 12
    assert set(MESSAGE_CLASSES) == set(MessageType)


def test_every_class_maps_back_to_its_type() -> None:
    for t, cls in MESSAGE_CLASSES.items():
        assert message_type_of(cls()) == t
    assert message_type_of(pb.SuspensionMessageV6()) == T.SUSPENSION
    with pytest.raises(TypeError):
        message_type_of(pb.NotificationTemplate())
    with pytest.raises(TypeError):
        message_type_of(pb.Value())


# One populated sample per type, so each class is exercised through encode -> frame -> decode.
VALUE = pb.Value(content=b'"x"')
FAILURE = pb.Failure(code=500, message="boom", metadata=[pb.FailureMetadata(key="k", value="v")])
SAMPLES: dict[int, Message] = {
    T.START: pb.StartMessage(
        id=b"\x01" * 24,
        debug_id="inv_1abc",
        known_entries=2,
        state_map=[pb.StartMessage.StateEntry(key=b"a", value=b"")],
        partial_state=True,
        key="k",
        retry_count_since_last_stored_entry=3,
        duration_since_last_stored_entry=4,
        random_seed=5,
        scope="s",
        limit_key="l",
        idempotency_key="i",
    ),
    T.SUSPENSION: pb.SuspensionMessage(awaiting_on=pb.Future(waiting_completions=[1])),
    T.ERROR: pb.ErrorMessage(
        code=500,
        message="m",
        stacktrace="st",
        related_command_index=1,
        related_command_name="n",
        related_command_type=0x0407,
        next_retry_delay=100,
        behavior=pb.PAUSE,
    ),
    T.END: pb.EndMessage(),
    T.COMMAND_ACK: pb.CommandAckMessage(command_index=3),
    T.PROPOSE_RUN_COMPLETION: pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"1"),
    T.AWAITING_ON: pb.AwaitingOnMessage(
        awaiting_on=pb.Future(waiting_signals=[1]), executing_side_effects=True
    ),
    T.PROPOSE_RUN_COMPLETION_ACK: pb.ProposeRunCompletionAckMessage(completion_id=1),
    T.INPUT_COMMAND: pb.InputCommandMessage(
        headers=[pb.Header(key="a", value="b")], value=VALUE, name="in"
    ),
    T.OUTPUT_COMMAND: pb.OutputCommandMessage(failure=FAILURE),
    T.GET_LAZY_STATE_COMMAND: pb.GetLazyStateCommandMessage(key=b"v", result_completion_id=1),
    T.SET_STATE_COMMAND: pb.SetStateCommandMessage(key=b"v", value=VALUE),
    T.CLEAR_STATE_COMMAND: pb.ClearStateCommandMessage(key=b"v"),
    T.CLEAR_ALL_STATE_COMMAND: pb.ClearAllStateCommandMessage(name="x"),
    T.GET_LAZY_STATE_KEYS_COMMAND: pb.GetLazyStateKeysCommandMessage(result_completion_id=2),
    T.GET_EAGER_STATE_COMMAND: pb.GetEagerStateCommandMessage(key=b"v", void=pb.Void()),
    T.GET_EAGER_STATE_KEYS_COMMAND: pb.GetEagerStateKeysCommandMessage(
        value=pb.StateKeys(keys=[b"a", b"b"])
    ),
    T.GET_PROMISE_COMMAND: pb.GetPromiseCommandMessage(key="p", result_completion_id=1),
    T.PEEK_PROMISE_COMMAND: pb.PeekPromiseCommandMessage(key="p", result_completion_id=1),
    T.COMPLETE_PROMISE_COMMAND: pb.CompletePromiseCommandMessage(
        key="p", completion_value=VALUE, result_completion_id=1
    ),
    T.SLEEP_COMMAND: pb.SleepCommandMessage(wake_up_time=1_700_000_000_000, result_completion_id=1),
    T.CALL_COMMAND: pb.CallCommandMessage(
        service_name="S",
        handler_name="h",
        parameter=b"{}",
        headers=[pb.Header(key="a", value="b")],
        key="k",
        idempotency_key="ik",
        scope="sc",
        limit_key="lk",
        invocation_id_notification_idx=1,
        result_completion_id=2,
    ),
    T.ONE_WAY_CALL_COMMAND: pb.OneWayCallCommandMessage(
        service_name="S", handler_name="h", invoke_time=5, invocation_id_notification_idx=1
    ),
    T.SEND_SIGNAL_COMMAND: pb.SendSignalCommandMessage(
        target_invocation_id="inv_1x", idx=1, void=pb.Void(), entry_name="cancel"
    ),
    T.RUN_COMMAND: pb.RunCommandMessage(result_completion_id=1, name="step"),
    T.ATTACH_INVOCATION_COMMAND: pb.AttachInvocationCommandMessage(
        workflow_target=pb.WorkflowTarget(workflow_name="W", workflow_key="k"),
        result_completion_id=1,
    ),
    T.GET_INVOCATION_OUTPUT_COMMAND: pb.GetInvocationOutputCommandMessage(
        idempotent_request_target=pb.IdempotentRequestTarget(
            service_name="S", service_key="k", handler_name="h", idempotency_key="i"
        ),
        result_completion_id=1,
    ),
    T.COMPLETE_AWAKEABLE_COMMAND: pb.CompleteAwakeableCommandMessage(
        awakeable_id="sign_1x", failure=FAILURE
    ),
    T.GET_LAZY_STATE_COMPLETION: pb.GetLazyStateCompletionNotificationMessage(
        completion_id=1, void=pb.Void()
    ),
    T.GET_LAZY_STATE_KEYS_COMPLETION: pb.GetLazyStateKeysCompletionNotificationMessage(
        completion_id=1, state_keys=pb.StateKeys(keys=[b"a"])
    ),
    T.GET_PROMISE_COMPLETION: pb.GetPromiseCompletionNotificationMessage(
        completion_id=1, value=VALUE
    ),
    T.PEEK_PROMISE_COMPLETION: pb.PeekPromiseCompletionNotificationMessage(
        completion_id=1, failure=FAILURE
    ),
    T.COMPLETE_PROMISE_COMPLETION: pb.CompletePromiseCompletionNotificationMessage(
        completion_id=1, void=pb.Void()
    ),
    T.SLEEP_COMPLETION: pb.SleepCompletionNotificationMessage(completion_id=1, void=pb.Void()),
    T.CALL_COMPLETION: pb.CallCompletionNotificationMessage(completion_id=2, value=VALUE),
    T.CALL_INVOCATION_ID_COMPLETION: pb.CallInvocationIdCompletionNotificationMessage(
        completion_id=1, invocation_id="inv_1x"
    ),
    T.RUN_COMPLETION: pb.RunCompletionNotificationMessage(completion_id=1, value=VALUE),
    T.ATTACH_INVOCATION_COMPLETION: pb.AttachInvocationCompletionNotificationMessage(
        completion_id=1, failure=FAILURE
    ),
    T.GET_INVOCATION_OUTPUT_COMPLETION: pb.GetInvocationOutputCompletionNotificationMessage(
        completion_id=1, void=pb.Void()
    ),
    T.SIGNAL_NOTIFICATION: pb.SignalNotificationMessage(idx=17, value=VALUE),
}


def test_samples_cover_every_type() -> None:
    assert set(SAMPLES) == set(MessageType)


@pytest.mark.parametrize("t", list(MessageType), ids=lambda t: t.name)
def test_round_trip(t: MessageType) -> None:
    msg = SAMPLES[t]
    data = encode_message(msg)
    (frame,) = FrameDecoder().feed(data)
    assert frame.msg_type == t
    assert frame.flags == 0
    decoded = decode_message(frame.msg_type, frame.body, 7)
    assert type(decoded) is type(msg)
    assert decoded == msg


def test_encode_messages_concatenates() -> None:
    data = encode_messages([SAMPLES[T.START], SAMPLES[T.INPUT_COMMAND], SAMPLES[T.END]])
    assert [f.msg_type for f in FrameDecoder().feed(data)] == [0x0000, 0x0400, 0x0003]


def test_encode_with_ack_and_override() -> None:
    data = encode_message(SAMPLES[T.PROPOSE_RUN_COMPLETION], requested_ack=True)
    assert data[:4] == bytes.fromhex("00058000")
    tmpl = pb.NotificationTemplate(completion_id=1, void=pb.Void())
    (frame,) = FrameDecoder().feed(encode_message(tmpl, msg_type=T.SLEEP_COMPLETION))
    assert frame.msg_type == 0x800C
    assert decode_message(frame.msg_type, frame.body, 6) == SAMPLES[T.SLEEP_COMPLETION]


def test_spec_example_bytes() -> None:
    msg = pb.GetLazyStateCommandMessage(key=b"v", result_completion_id=1)
    assert encode_message(msg) == bytes.fromhex("04020000000000050a01765801")


def test_notification_templates_are_interchangeable() -> None:
    # The SDK parses every notification with one template: the bytes must not depend on type.
    body = pb.RunCompletionNotificationMessage(completion_id=3, value=VALUE).SerializeToString()
    tmpl = pb.NotificationTemplate.FromString(body)
    assert tmpl.completion_id == 3 and tmpl.value.content == b'"x"'
    assert tmpl.SerializeToString() == body


def test_unknown_notification_decodes_as_template() -> None:
    body = pb.NotificationTemplate(completion_id=9, invocation_id="x").SerializeToString()
    msg = decode_message(0x8020, body, 7)
    assert isinstance(msg, pb.NotificationTemplate)
    assert msg.completion_id == 9


def test_unknown_control_or_command_is_rejected() -> None:
    with pytest.raises(UnknownMessageType):
        decode_message(0x0042, b"", 7)
    with pytest.raises(UnknownMessageType):
        decode_message(0x040F, b"", 7)
    with pytest.raises(UnknownMessageType):
        decode_message(0xFC00, b"", 7)


def test_garbage_body_is_protocol_violation() -> None:
    with pytest.raises(ProtocolViolation):
        decode_message(T.START, b"\xff\xff\xff", 6)


def test_field_numbers_on_the_wire() -> None:
    # Tags from protocol.md that are easy to get wrong: raw bytes at 14 in ProposeRunCompletion,
    # Value at 2 in CompleteAwakeable, void=13 in GetEagerState, entry_name=12 in SendSignal.
    def tags(m: Message) -> set[int]:
        return {fd.number for fd, _ in m.ListFields()}

    assert pb.ProposeRunCompletionMessage(value=b"x").SerializeToString() == b"\x72\x01x"
    assert tags(pb.CompleteAwakeableCommandMessage(value=VALUE)) == {2}
    assert tags(pb.GetEagerStateCommandMessage(void=pb.Void())) == {13}
    assert tags(pb.SendSignalCommandMessage(entry_name="e", name="n")) == {12, 3}
    assert tags(pb.ErrorMessage(next_retry_delay=1, behavior=pb.FAIL)) == {8, 9}
    assert tags(pb.SuspensionMessage(awaiting_on=pb.Future())) == {4}
    assert tags(pb.OneWayCallCommandMessage(invoke_time=1, headers=[pb.Header()])) == {4, 5}
    assert tags(pb.CallCommandMessage(invocation_id_notification_idx=1, scope="s")) == {10, 7}
    assert tags(pb.WorkflowTarget(scope="s")) == {3}
    assert tags(pb.IdempotentRequestTarget(scope="s")) == {5}
    assert tags(pb.StartMessage(idempotency_key="i", random_seed=1)) == {12, 9}
    assert tags(pb.GetLazyStateKeysCompletionNotificationMessage(state_keys=pb.StateKeys())) == {17}


# --- Suspension: V6 flat lists vs V7 Future tree -------------------------------------------

V6_BODY = bytes.fromhex("0a0101120101")  # protocol.md §3.1: completions [1], signals [1]
V7_BODY = bytes.fromhex("22080a01011201012801")  # observed from restate-sdk 1.2.0


def test_suspension_v6() -> None:
    msg = decode_message(T.SUSPENSION, V6_BODY, 6)
    assert isinstance(msg, pb.SuspensionMessageV6)
    assert list(msg.waiting_completions) == [1]
    assert suspension_awaited(msg, 6) == ({1}, {1}, set())
    # V5 uses the V6 layout too
    assert isinstance(decode_message(T.SUSPENSION, V6_BODY, 5), pb.SuspensionMessageV6)


def test_suspension_v7() -> None:
    msg = decode_message(T.SUSPENSION, V7_BODY, 7)
    assert isinstance(msg, pb.SuspensionMessage)
    assert msg.awaiting_on.combinator_type == pb.FIRST_COMPLETED
    assert suspension_awaited(msg, 7) == ({1}, {1}, set())


def test_v7_parser_does_not_misread_v6_body() -> None:
    msg = decode_message(T.SUSPENSION, V6_BODY, 7)
    assert isinstance(msg, pb.SuspensionMessage)
    assert suspension_awaited(msg, 7) == (set(), set(), set())
    # ...but told the real version, the helper recovers the V6 fields
    assert suspension_awaited(msg, 6) == ({1}, {1}, set())


def test_suspension_nested_future() -> None:
    tree = pb.Future(
        combinator_type=pb.ALL_SUCCEEDED_OR_FIRST_FAILED,
        waiting_completions=[3],
        nested_futures=[
            pb.Future(combinator_type=pb.FIRST_COMPLETED, waiting_signals=[1, 17]),
            pb.Future(
                waiting_named_signals=["approve"],
                nested_futures=[pb.Future(waiting_completions=[4, 5])],
            ),
        ],
    )
    msg = pb.SuspensionMessage(awaiting_on=tree)
    expected = ({3, 4, 5}, {1, 17}, {"approve"})
    assert suspension_awaited(msg, 7) == expected
    assert future_awaited(tree) == expected
    v6 = pb.SuspensionMessageV6(waiting_completions=[2], waiting_named_signals=["a", "b"])
    assert suspension_awaited(v6, 6) == ({2}, set(), {"a", "b"})
    with pytest.raises(TypeError):
        suspension_awaited(pb.EndMessage(), 7)

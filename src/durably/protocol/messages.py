"""Message type ids, the protobuf class for each, and encode/decode helpers.

The generated module is re-exported as `pb` so callers write `pb.StartMessage(...)` without
knowing where generated code lives.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from durably.protocol.framing import ProtocolViolation, encode_frame
from durably.protocol.generated import service_protocol_pb2 as pb

__all__ = [
    "MESSAGE_CLASSES",
    "Message",
    "MessageType",
    "UnknownMessageType",
    "decode_message",
    "encode_message",
    "encode_messages",
    "future_awaited",
    "is_command",
    "is_control",
    "is_custom",
    "is_notification",
    "message_type_of",
    "pb",
    "suspension_awaited",
]


class MessageType(enum.IntEnum):
    # Control (0x0000-0x03FF)
    START = 0x0000
    SUSPENSION = 0x0001
    ERROR = 0x0002
    END = 0x0003
    COMMAND_ACK = 0x0004
    PROPOSE_RUN_COMPLETION = 0x0005
    AWAITING_ON = 0x0006
    PROPOSE_RUN_COMPLETION_ACK = 0x0007
    # Commands (0x0400-0x7FFF)
    INPUT_COMMAND = 0x0400
    OUTPUT_COMMAND = 0x0401
    GET_LAZY_STATE_COMMAND = 0x0402
    SET_STATE_COMMAND = 0x0403
    CLEAR_STATE_COMMAND = 0x0404
    CLEAR_ALL_STATE_COMMAND = 0x0405
    GET_LAZY_STATE_KEYS_COMMAND = 0x0406
    GET_EAGER_STATE_COMMAND = 0x0407
    GET_EAGER_STATE_KEYS_COMMAND = 0x0408
    GET_PROMISE_COMMAND = 0x0409
    PEEK_PROMISE_COMMAND = 0x040A
    COMPLETE_PROMISE_COMMAND = 0x040B
    SLEEP_COMMAND = 0x040C
    CALL_COMMAND = 0x040D
    ONE_WAY_CALL_COMMAND = 0x040E
    # 0x040F is unused.
    SEND_SIGNAL_COMMAND = 0x0410
    RUN_COMMAND = 0x0411
    ATTACH_INVOCATION_COMMAND = 0x0412
    GET_INVOCATION_OUTPUT_COMMAND = 0x0413
    COMPLETE_AWAKEABLE_COMMAND = 0x0414
    # Notifications (0x8000-0xFBFF)
    GET_LAZY_STATE_COMPLETION = 0x8002
    GET_LAZY_STATE_KEYS_COMPLETION = 0x8006
    GET_PROMISE_COMPLETION = 0x8009
    PEEK_PROMISE_COMPLETION = 0x800A
    COMPLETE_PROMISE_COMPLETION = 0x800B
    SLEEP_COMPLETION = 0x800C
    CALL_COMPLETION = 0x800D
    CALL_INVOCATION_ID_COMPLETION = 0x800E
    RUN_COMPLETION = 0x8011
    ATTACH_INVOCATION_COMPLETION = 0x8012
    GET_INVOCATION_OUTPUT_COMPLETION = 0x8013
    SIGNAL_NOTIFICATION = 0xFBFF


def is_control(msg_type: int) -> bool:
    return 0x0000 <= msg_type <= 0x03FF


def is_command(msg_type: int) -> bool:
    return 0x0400 <= msg_type <= 0x7FFF


def is_notification(msg_type: int) -> bool:
    return 0x8000 <= msg_type <= 0xFBFF


def is_custom(msg_type: int) -> bool:
    """Custom entries are stored and replayed verbatim; nobody interprets their payload."""
    return 0xFC00 <= msg_type <= 0xFFFF


class UnknownMessageType(ProtocolViolation):
    """A type id we have no protobuf class for (and which is not a notification)."""


T = MessageType
_M = TypeVar("_M", bound=Message)

# type id -> class used to decode it. SUSPENSION maps to the V7 layout; decode_message swaps in
# SuspensionMessageV6 for older protocol versions.
MESSAGE_CLASSES: dict[int, type[Message]] = {
    T.START: pb.StartMessage,
    T.SUSPENSION: pb.SuspensionMessage,
    T.ERROR: pb.ErrorMessage,
    T.END: pb.EndMessage,
    T.COMMAND_ACK: pb.CommandAckMessage,
    T.PROPOSE_RUN_COMPLETION: pb.ProposeRunCompletionMessage,
    T.AWAITING_ON: pb.AwaitingOnMessage,
    T.PROPOSE_RUN_COMPLETION_ACK: pb.ProposeRunCompletionAckMessage,
    T.INPUT_COMMAND: pb.InputCommandMessage,
    T.OUTPUT_COMMAND: pb.OutputCommandMessage,
    T.GET_LAZY_STATE_COMMAND: pb.GetLazyStateCommandMessage,
    T.SET_STATE_COMMAND: pb.SetStateCommandMessage,
    T.CLEAR_STATE_COMMAND: pb.ClearStateCommandMessage,
    T.CLEAR_ALL_STATE_COMMAND: pb.ClearAllStateCommandMessage,
    T.GET_LAZY_STATE_KEYS_COMMAND: pb.GetLazyStateKeysCommandMessage,
    T.GET_EAGER_STATE_COMMAND: pb.GetEagerStateCommandMessage,
    T.GET_EAGER_STATE_KEYS_COMMAND: pb.GetEagerStateKeysCommandMessage,
    T.GET_PROMISE_COMMAND: pb.GetPromiseCommandMessage,
    T.PEEK_PROMISE_COMMAND: pb.PeekPromiseCommandMessage,
    T.COMPLETE_PROMISE_COMMAND: pb.CompletePromiseCommandMessage,
    T.SLEEP_COMMAND: pb.SleepCommandMessage,
    T.CALL_COMMAND: pb.CallCommandMessage,
    T.ONE_WAY_CALL_COMMAND: pb.OneWayCallCommandMessage,
    T.SEND_SIGNAL_COMMAND: pb.SendSignalCommandMessage,
    T.RUN_COMMAND: pb.RunCommandMessage,
    T.ATTACH_INVOCATION_COMMAND: pb.AttachInvocationCommandMessage,
    T.GET_INVOCATION_OUTPUT_COMMAND: pb.GetInvocationOutputCommandMessage,
    T.COMPLETE_AWAKEABLE_COMMAND: pb.CompleteAwakeableCommandMessage,
    T.GET_LAZY_STATE_COMPLETION: pb.GetLazyStateCompletionNotificationMessage,
    T.GET_LAZY_STATE_KEYS_COMPLETION: pb.GetLazyStateKeysCompletionNotificationMessage,
    T.GET_PROMISE_COMPLETION: pb.GetPromiseCompletionNotificationMessage,
    T.PEEK_PROMISE_COMPLETION: pb.PeekPromiseCompletionNotificationMessage,
    T.COMPLETE_PROMISE_COMPLETION: pb.CompletePromiseCompletionNotificationMessage,
    T.SLEEP_COMPLETION: pb.SleepCompletionNotificationMessage,
    T.CALL_COMPLETION: pb.CallCompletionNotificationMessage,
    T.CALL_INVOCATION_ID_COMPLETION: pb.CallInvocationIdCompletionNotificationMessage,
    T.RUN_COMPLETION: pb.RunCompletionNotificationMessage,
    T.ATTACH_INVOCATION_COMPLETION: pb.AttachInvocationCompletionNotificationMessage,
    T.GET_INVOCATION_OUTPUT_COMPLETION: pb.GetInvocationOutputCompletionNotificationMessage,
    T.SIGNAL_NOTIFICATION: pb.SignalNotificationMessage,
}

# class -> type id, built explicitly rather than by inverting MESSAGE_CLASSES so that a class
# shared by two ids (or a second class for one id, like SuspensionMessageV6) is a visible,
# deliberate choice. NotificationTemplate is intentionally absent: it has no type id of its own.
_TYPE_OF_CLASS: dict[type[Message], int] = {cls: int(t) for t, cls in MESSAGE_CLASSES.items()}
_TYPE_OF_CLASS[pb.SuspensionMessageV6] = T.SUSPENSION
assert len(_TYPE_OF_CLASS) == len(MESSAGE_CLASSES) + 1, "each class must own one type id"


def message_type_of(msg: Message) -> int:
    try:
        return _TYPE_OF_CLASS[type(msg)]
    except KeyError:
        raise TypeError(f"{type(msg).__name__} has no message type id") from None


def decode_message(msg_type: int, body: bytes, version: int) -> Message:
    """Parse one frame body. `version` is the negotiated protocol version of the stream."""
    cls: type[Message] | None
    if msg_type == T.SUSPENSION and version < 7:
        cls = pb.SuspensionMessageV6
    else:
        cls = MESSAGE_CLASSES.get(msg_type)
    if cls is None:
        if is_notification(msg_type):
            # The SDKs read every notification through the shared template; do the same so a
            # notification type newer than this table still round-trips through the journal.
            cls = pb.NotificationTemplate
        else:
            raise UnknownMessageType(f"unknown message type {msg_type:#06x}")
    msg = cls()
    try:
        msg.ParseFromString(body)
    except DecodeError as e:
        raise ProtocolViolation(f"cannot decode {cls.__name__} (type {msg_type:#06x}): {e}") from e
    return msg


def encode_message(
    msg: Message, *, requested_ack: bool = False, msg_type: int | None = None
) -> bytes:
    """Serialize `msg` and prepend its frame header.

    `msg_type` overrides the id looked up from the class; needed only for NotificationTemplate.
    """
    t = message_type_of(msg) if msg_type is None else msg_type
    return encode_frame(t, msg.SerializeToString(), requested_ack=requested_ack)


def future_awaited(future: pb.Future) -> tuple[set[int], set[int], set[str]]:
    """Every (completion id, signal id, signal name) mentioned anywhere in a Future tree.

    Flattening loses the combinator semantics on purpose: waking up when *any* awaited id
    arrives is always safe, because the SDK simply suspends again if it is still blocked.
    """
    completions: set[int] = set()
    signals: set[int] = set()
    names: set[str] = set()
    stack = [future]
    while stack:
        f = stack.pop()
        completions.update(f.waiting_completions)
        signals.update(f.waiting_signals)
        names.update(f.waiting_named_signals)
        stack.extend(f.nested_futures)
    return completions, signals, names


def suspension_awaited(msg: object, version: int) -> tuple[set[int], set[int], set[str]]:
    """(completion ids, signal ids, signal names) a Suspension waits for, for either layout.

    Dispatches on the message class; if handed the other layout than `version` implies (e.g. a
    V7 message decoded for a V6 stream) it re-parses the bytes with the right class.
    """
    if version < 7 and isinstance(msg, pb.SuspensionMessage):
        msg = _reparse(msg, pb.SuspensionMessageV6())
    elif version >= 7 and isinstance(msg, pb.SuspensionMessageV6):
        msg = _reparse(msg, pb.SuspensionMessage())
    if isinstance(msg, pb.SuspensionMessageV6):
        return (
            set(msg.waiting_completions),
            set(msg.waiting_signals),
            set(msg.waiting_named_signals),
        )
    if isinstance(msg, pb.SuspensionMessage):
        return future_awaited(msg.awaiting_on)
    raise TypeError(f"not a suspension message: {type(msg).__name__}")


def _reparse(msg: Message, into: _M) -> _M:
    # Unknown fields survive a parse, so re-serialising recovers the other layout's fields.
    into.ParseFromString(msg.SerializeToString())
    return into


def encode_messages(msgs: Iterable[Message]) -> bytes:
    """Concatenate several framed messages; handy for tests and for replaying a journal."""
    return b"".join(encode_message(m) for m in msgs)

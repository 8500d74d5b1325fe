"""Building and reading notification entries (the runtime's answers to commands)."""

from __future__ import annotations

from durably.engine.model import Failure, Result
from durably.protocol.messages import MessageType, pb


def failure_to_pb(failure: Failure) -> pb.Failure:
    msg = pb.Failure(code=failure.code, message=failure.message)
    for k, v in failure.metadata:
        msg.metadata.add(key=k, value=v)
    return msg


def failure_from_pb(msg: pb.Failure) -> Failure:
    return Failure(
        code=msg.code,
        message=msg.message,
        metadata=tuple((m.key, m.value) for m in msg.metadata),
    )


def notification(
    msg_type: MessageType,
    *,
    completion_id: int | None = None,
    signal_id: int | None = None,
    signal_name: str | None = None,
    void: bool = False,
    value: bytes | None = None,
    failure: Failure | None = None,
    invocation_id: str | None = None,
    state_keys: list[bytes] | None = None,
    result: Result | None = None,
) -> bytes:
    """Encode the body of a notification of type `msg_type`.

    Every notification type shares one template layout, so one message class builds them all.
    """
    msg = pb.NotificationTemplate()
    if completion_id is not None:
        msg.completion_id = completion_id
    elif signal_id is not None:
        msg.signal_id = signal_id
    elif signal_name is not None:
        msg.signal_name = signal_name
    if result is not None:
        value, failure = result.value, result.failure
    if failure is not None:
        msg.failure.CopyFrom(failure_to_pb(failure))
    elif value is not None:
        msg.value.content = value
    elif invocation_id is not None:
        msg.invocation_id = invocation_id
    elif state_keys is not None:
        msg.state_keys.keys.extend(state_keys)
    elif void:
        msg.void.SetInParent()
    return msg.SerializeToString()


def notification_id(msg_type: int, body: bytes) -> tuple[str, int | str] | None:
    """('c', completion id) | ('s', signal index) | ('n', signal name) of a stored notification."""
    msg = pb.NotificationTemplate.FromString(body)
    which = msg.WhichOneof("id")
    if which == "completion_id":
        return ("c", msg.completion_id)
    if which == "signal_id":
        return ("s", msg.signal_id)
    if which == "signal_name":
        return ("n", msg.signal_name)
    return None

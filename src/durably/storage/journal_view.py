"""Stored journal entries -> the fields of Restate's `sys_journal` table.

The journal is stored as (type id, protobuf body) pairs, exactly as the SDK sent them. SQL
introspection needs readable columns: the entry's type name ("Command: Sleep"), its `name`,
the target of a call, a sleep's wake-up time, a promise's name, and a JSON rendering.

Restate's `entry_json` is the serde rendering of its own journal types; ours is the protobuf
message as JSON under the same `{"Command": {"Sleep": {...}}}` envelope, so tools that look at
the envelope and the common fields (`name`, `key`, `completion_id`) see the same things.
"""

from __future__ import annotations

import base64
import functools
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict

from durably.protocol.messages import (
    MessageType,
    decode_message,
    is_command,
    is_custom,
    is_notification,
    pb,
)

__all__ = ["entry_field", "entry_type_name", "JOURNAL_FIELDS"]

# The fields `entry_field` answers (each one a column or a helper of the sys_journal view).
JOURNAL_FIELDS = (
    "entry_type",
    "name",
    "invoked_target",
    "sleep_wakeup_at",
    "promise_name",
    "entry_json",
    "entry_lite_json",
    "invocation_id_idx",
    "completion_id",
    "invocation_id",
)

_SUFFIXES = ("_COMMAND", "_COMPLETION", "_NOTIFICATION")
# Notifications that answer a call are named after what they carry, as Restate names them.
_SPECIAL_NAMES = {
    MessageType.CALL_INVOCATION_ID_COMPLETION: "CallInvocationId",
    MessageType.SIGNAL_NOTIFICATION: "Signal",
}
# Fields whose content is user data: left out of the "lite" rendering.
_HEAVY_FIELDS = {"value", "parameter", "headers", "content", "result", "failure", "state_keys"}


def _camel(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return "".join(part.capitalize() for part in name.split("_"))


def entry_type_name(msg_type: int) -> str:
    """Restate's display name of a journal entry type: "Command: Input", "Notification: Sleep"."""
    try:
        mt = MessageType(msg_type)
    except ValueError:
        if is_custom(msg_type):
            return "Custom"
        kind = "Notification" if is_notification(msg_type) else "Command"
        return f"{kind}: Unknown({msg_type:#06x})"
    base = _SPECIAL_NAMES.get(mt) or _camel(mt.name)
    return f"{'Command' if is_command(msg_type) else 'Notification'}: {base}"


def _target(service: str, key: str, handler: str) -> str:
    return f"{service}/{key}/{handler}" if key else f"{service}/{handler}"


def _to_jsonable(msg: Any) -> dict[str, Any]:
    d: dict[str, Any] = MessageToDict(msg, preserving_proto_field_name=True)
    return d


def _lite(d: dict[str, Any], msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    key_field = msg.DESCRIPTOR.fields_by_name.get("key")
    key_is_bytes = key_field is not None and key_field.type == key_field.TYPE_BYTES
    for k, v in d.items():
        if k in _HEAVY_FIELDS:
            continue
        if k == "key" and key_is_bytes and isinstance(v, str):
            # state keys are bytes (base64 in proto JSON): show them as text when they are
            # (a promise's key is a string already, left as it is)
            try:
                v = base64.b64decode(v, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                pass
        out[k] = v
    return out


@functools.lru_cache(maxsize=4096)
def _decode(msg_type: int, body: bytes) -> dict[str, Any]:
    """Every field of one entry, computed once (SQLite asks for each column separately)."""
    out: dict[str, Any] = {"entry_type": entry_type_name(msg_type)}
    kind = "Command" if is_command(msg_type) else "Notification"
    short = out["entry_type"].split(": ", 1)[-1]
    if is_custom(msg_type):
        out["entry_json"] = orjson.dumps({"Custom": {"raw_length": len(body)}}).decode()
        out["entry_lite_json"] = out["entry_json"]
        return out
    try:
        msg = decode_message(msg_type, body, 6)
    except Exception:
        return out
    d = _to_jsonable(msg)
    out["entry_json"] = orjson.dumps({kind: {short: d}}).decode()
    out["entry_lite_json"] = orjson.dumps({kind: {short: _lite(d, msg)}}).decode()
    if is_command(msg_type):
        out["name"] = getattr(msg, "name", "") if hasattr(msg, "name") else ""
        if isinstance(msg, pb.CallCommandMessage | pb.OneWayCallCommandMessage):
            out["invoked_target"] = _target(msg.service_name, msg.key, msg.handler_name)
            out["invocation_id_idx"] = msg.invocation_id_notification_idx
        elif isinstance(msg, pb.SleepCommandMessage):
            out["sleep_wakeup_at"] = msg.wake_up_time
        elif isinstance(
            msg,
            pb.GetPromiseCommandMessage
            | pb.PeekPromiseCommandMessage
            | pb.CompletePromiseCommandMessage,
        ):
            out["promise_name"] = msg.key
    else:
        # every notification shares the template's layout of `id` and `result`
        tpl = pb.NotificationTemplate()
        try:
            tpl.ParseFromString(body)
        except Exception:
            return out
        if tpl.WhichOneof("id") == "completion_id":
            out["completion_id"] = tpl.completion_id
        if tpl.WhichOneof("result") == "invocation_id":
            out["invocation_id"] = tpl.invocation_id
    return out


def entry_field(msg_type: int | None, body: bytes | None, field: str) -> Any:
    """One field of a journal entry (a SQLite user function: NULL when not applicable)."""
    if msg_type is None or body is None:
        return None
    return _decode(int(msg_type), bytes(body)).get(field)

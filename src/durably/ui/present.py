"""Turning introspection rows into what a page shows: decoded journal entries, pretty JSON,
times, the actions an invocation offers. Pure functions, tested without a server."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["Entry", "actions_for", "decode_entry", "pretty_bytes", "relative_ms"]

# When each action applies, as Restate's UI offers them (its Actions.tsx), by the status
# the page shows (completed ones already split into succeeded/failed/cancelled/killed):
#   Resume: paused; Retry now: backing-off; Cancel, Kill: not completed;
#   Pause: running or backing-off (not paused, pending, scheduled, suspended);
#   Restart as new: completed with its journal kept; Purge: completed.
_COMPLETED = ("succeeded", "failed", "cancelled", "killed")


def actions_for(status: str, *, journal_kept: bool, workflow: bool = False) -> list[str]:
    """The actions a page offers for an invocation in `status` (display status), in the order
    shown. `journal_kept`: the completed invocation's journal is still stored (restart-as-new
    needs its input); workflows cannot be restarted (Restate refuses it too)."""
    if status in _COMPLETED:
        out = []
        if journal_kept and not workflow:
            out.append("restart-as-new")
        out.append("purge")
        return out
    out = []
    if status == "paused":
        out.append("resume")
    if status == "backing-off":
        out.append("retry-now")
    if status in ("running", "backing-off"):
        out.append("pause")
    out += ["cancel", "kill"]
    return out


ACTION_LABELS = {
    "cancel": "Cancel",
    "kill": "Kill",
    "pause": "Pause",
    "resume": "Resume",
    "retry-now": "Retry now",
    "restart-as-new": "Restart as new",
    "purge": "Purge",
}
ACTION_HELP = {
    "cancel": "Asks the handler to stop: it gets a cancellation and may run compensations.",
    "kill": "Stops it at once, without running anything more; its callees are killed too.",
    "pause": "Stops running it (or retrying) until you resume it.",
    "resume": "Runs it again now.",
    "retry-now": "Starts the next attempt now instead of waiting for the back-off.",
    "restart-as-new": "Starts a new invocation with the same input (and, optionally, the "
    "journal up to a chosen entry).",
    "purge": "Removes it and its journal from the store. This cannot be undone.",
}
# UI action -> admin API action (`PATCH /invocations/{id}/{action}`)
ADMIN_ACTION = {"retry-now": "resume"}


def pretty_bytes(raw: bytes | None) -> tuple[str, bool]:
    """(text, is_json): bytes shown as pretty JSON when they are JSON, as text when they are
    UTF-8, else as hex."""
    if raw is None:
        return "", False
    if not raw:
        return "(empty)", False
    try:
        return orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2).decode(), True
    except orjson.JSONDecodeError:
        pass
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return "0x" + raw.hex(), False


def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def relative_ms(start: str | None, at: str | None) -> int | None:
    a, b = parse_time(start), parse_time(at)
    if a is None or b is None:
        return None
    return int((b - a).total_seconds() * 1000)


def ts_ms(ms: int | None) -> str:
    """Epoch milliseconds as the views print times (RFC 3339, UTC)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def iso_duration(text: str | None) -> str:
    """`PT86400S` (how the views print durations) -> `1 d`."""
    if not text or not text.startswith("PT") or not text.endswith("S"):
        return text or ""
    try:
        ms = int(float(text[2:-1]) * 1000)
    except ValueError:
        return text
    if ms >= 86_400_000 and ms % 3_600_000 == 0:
        hours = ms // 3_600_000
        return f"{hours // 24} d" + (f" {hours % 24} h" if hours % 24 else "")
    return human_ms(ms)


def human_ms(ms: int | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass
class Entry:
    """One journal entry as the timeline shows it."""

    index: int
    kind: str  # Command | Notification | Custom
    type: str  # Sleep, Call, SetState, ...
    name: str
    appended_at: str | None
    offset_ms: int | None
    summary: str = ""
    values: list[tuple[str, str, bool]] = field(default_factory=list)  # (label, text, is_json)
    preview: str = ""  # the first value on one line, when it is short
    headers: list[tuple[str, str]] = field(default_factory=list)
    invoked_id: str | None = None
    invoked_target: str | None = None
    wakeup_at: str | None = None
    failure: str | None = None
    raw_json: str = ""


def _state_key(v: Any) -> str:
    raw = _b64(v)
    if raw is None:
        return str(v)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + raw.hex()


def _value_of(d: dict[str, Any]) -> bytes | None:
    """The bytes a Value / result field carries (`{"content": base64}` in proto JSON)."""
    for key in ("value", "result", "parameter"):
        v = d.get(key)
        if isinstance(v, dict) and "content" in v:
            return _b64(v["content"])
        if isinstance(v, str):
            return _b64(v)
    return None


def _failure_of(d: dict[str, Any]) -> str | None:
    f = d.get("failure")
    if isinstance(f, dict):
        return f"[{f.get('code', '?')}] {f.get('message', '')}"
    return None


@dataclass(slots=True)
class FailedAttempt:
    retry: int  # the attempt's number (the retry count once it failed)
    at: str  # RFC 3339
    code: int | None
    message: str
    entry: int | None  # journal index of the entry it failed at, when the SDK named one


def failed_attempts(extra: dict[str, object]) -> list[FailedAttempt]:
    """The failures an invocation's row keeps (engine: row.extra["attempts"]), oldest
    first; entries that do not have the expected shape are left out."""
    kept = extra.get("attempts")
    out: list[FailedAttempt] = []
    for a in kept if isinstance(kept, list) else []:
        if not isinstance(a, dict) or not isinstance(a.get("at"), int):
            continue
        entry, code, retry = a.get("entry"), a.get("code"), a.get("retry")
        out.append(FailedAttempt(
            retry=retry if isinstance(retry, int) else 0,
            at=ts_ms(a["at"]),
            code=code if isinstance(code, int) else None,
            message=str(a.get("message") or ""),
            entry=entry if isinstance(entry, int) else None,
        ))
    return out


def command_entry(entries: list[Entry], command_index: object) -> int | None:
    """The journal index of the `command_index`-th command (what an SDK's error names), or
    None when it is not in the journal (the attempt failed before writing it)."""
    if not isinstance(command_index, int):
        return None
    commands = [e.index for e in entries if e.kind == "Command"]
    return commands[command_index] if 0 <= command_index < len(commands) else None


def decode_entry(row: dict[str, Any], created_at: str | None) -> Entry:
    """A sys_journal row (index, entry_type, name, entry_json, appended_at, invoked_id,
    invoked_target, sleep_wakeup_at) -> Entry."""
    entry_type = str(row.get("entry_type") or "")
    kind, _, short = entry_type.partition(": ")
    if not short:
        kind, short = "Entry", entry_type
    entry = Entry(
        index=int(row.get("index") or 0),
        kind=kind,
        type=short,
        name=str(row.get("name") or ""),
        appended_at=row.get("appended_at"),
        offset_ms=relative_ms(created_at, row.get("appended_at")),
        invoked_id=row.get("invoked_id"),
        invoked_target=row.get("invoked_target"),
        wakeup_at=row.get("sleep_wakeup_at"),
    )
    raw_json = row.get("entry_json")
    body: dict[str, Any] = {}
    if isinstance(raw_json, str):
        try:
            env = orjson.loads(raw_json)
            inner = next(iter(env.values())) if isinstance(env, dict) and env else {}
            body = next(iter(inner.values())) if isinstance(inner, dict) and inner else {}
            entry.raw_json = orjson.dumps(env, option=orjson.OPT_INDENT_2).decode()
        except (orjson.JSONDecodeError, StopIteration):
            body = {}
    if not isinstance(body, dict):
        body = {}
    if "key" in body and short in ("SetState", "GetLazyState", "GetEagerState", "ClearState",
                                  "GetLazyStateKeys"):
        entry.summary = f"key {_state_key(body['key'])}"
    elif "key" in body and isinstance(body["key"], str) and "Promise" in short:
        entry.summary = f"promise {body['key']}"
    if short == "Input":
        entry.headers = [
            (str(h.get("key", "")), str(h.get("value", "")))
            for h in body.get("headers", []) if isinstance(h, dict)
        ]
    if entry.invoked_target:
        entry.summary = f"→ {entry.invoked_target}"
    if entry.wakeup_at:
        entry.summary = f"wakes up at {entry.wakeup_at}"
    if short == "GetEagerStateKeys" or short == "GetLazyStateKeys":
        keys = body.get("value", {}).get("keys", []) if isinstance(body.get("value"), dict) else []
        entry.values.append(("keys", ", ".join(_state_key(k) for k in keys), False))
    value = _value_of(body)
    if value is not None:
        text, is_json = pretty_bytes(value)
        label = {"Input": "request body", "Output": "output", "SetState": "value",
                 "Run": "result"}.get(short, "value")
        entry.values.append((label, text, is_json))
        one_line = orjson.dumps(orjson.loads(value)).decode() if is_json else text
        if len(one_line) <= 80 and "\n" not in one_line:
            entry.preview = one_line
    failure = _failure_of(body)
    if failure is not None:
        entry.failure = failure
    return entry

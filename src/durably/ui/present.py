"""Turning introspection rows into what a page shows: decoded journal entries, pretty JSON,
times, the actions an invocation offers. Pure functions, tested without a server."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "Entry",
    "Span",
    "Timeline",
    "actions_for",
    "decode_entry",
    "pretty_bytes",
    "relative",
    "relative_ms",
    "timeline",
    "FormField",
    "body_from_form",
    "check_value",
    "form_fields",
]

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
# The options `PATCH /services/{service}` changes, in the order the service page lists them
OPTION_FIELDS = [
    ("public", "public"),
    ("idempotency_retention", "idempotency retention"),
    ("journal_retention", "journal retention"),
    ("workflow_completion_retention", "workflow completion retention"),
    ("inactivity_timeout", "inactivity timeout"),
    ("abort_timeout", "abort timeout"),
]
OPTION_HELP = {
    "public": "Callable through the ingress; a private service only from other services.",
    "idempotency_retention": "How long a completed call with an idempotency key is kept.",
    "journal_retention": "How long a completed invocation's journal is kept (0s: not at all).",
    "workflow_completion_retention": "How long a workflow's result and promises are kept.",
    "inactivity_timeout": "How long a handler may go without progress before it is asked "
    "to suspend.",
    "abort_timeout": "How long after the inactivity timeout an attempt is aborted.",
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


def relative(at_ms: int, now_ms: int) -> str:
    """`3 min ago`, `in 2 s`, `just now`: how far `at_ms` is from `now_ms`, to one unit
    (ui.js words it the same way when it refreshes the text in the browser)."""
    delta = (at_ms - now_ms) / 1000
    ahead = delta > 0
    seconds = abs(delta)
    if seconds < 1:
        return "just now"
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min"), (1, "s")):
        if seconds >= size:
            n = int(seconds // size)
            return f"in {n} {unit}" if ahead else f"{n} {unit} ago"
    return "just now"  # unreachable: seconds >= 1 matches the last unit


def time_ms(value: Any) -> int | None:
    """A time as the views print it (RFC 3339 text, UTC) or epoch ms -> epoch ms."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        parsed = parse_time(value)
        if parsed is None:
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    return None


def duration_ms(text: str | None) -> int | None:
    """`PT86400S` (how the views print durations) -> ms."""
    if not text or not text.startswith("PT") or not text.endswith("S"):
        return None
    try:
        return int(float(text[2:-1]) * 1000)
    except ValueError:
        return None


def retained_until(inv: dict[str, Any]) -> int | None:
    """When a completed invocation's retention ends (completed_at + completion_retention)."""
    completed = time_ms(inv.get("completed_at"))
    retention = duration_ms(inv.get("completion_retention"))
    if completed is None or retention is None:
        return None
    return completed + retention


def iso_duration(text: str | None) -> str:
    """`PT86400S` (how the views print durations) -> `1 d`."""
    ms = duration_ms(text)
    if ms is None:
        return text or ""
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
    # a command's result_completion_id / a notification's completion_id: pairs the two, so
    # the timeline can draw how long the command waited for its result
    awaits: int | None = None
    completes: int | None = None


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
    if isinstance(body.get("result_completion_id"), int):
        entry.awaits = body["result_completion_id"]
    if kind == "Notification" and isinstance(body.get("completion_id"), int):
        entry.completes = body["completion_id"]
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


# -- the timeline: the invocation, its attempts and its journal on one time axis -------------

AXIS = 1000  # the bars' SVG viewBox width
MAX_SPANS = 300


@dataclass
class Span:
    """One row of the timeline: a bar from `start_ms` to `end_ms` (a point when they are
    equal), placed on the axis as `x` and `width` in 0..AXIS."""

    label: str
    start_ms: int
    end_ms: int
    css: str
    note: str = ""
    href: str | None = None
    marks: list[tuple[float, str]] = field(default_factory=list)  # (x, tooltip): failures
    x: float = 0.0
    width: float = 0.0


@dataclass
class Timeline:
    start_ms: int
    end_ms: int
    spans: list[Span]
    ticks: list[str]
    truncated: int = 0


def _attempt_failures(raw: Any) -> list[dict[str, Any]]:
    """The attempts history (`{"at": ms, "code", "message", "entry", "retry"}`, newest
    last) as far as it is well formed; absent or malformed -> []."""
    if not isinstance(raw, list):
        return []
    return [a for a in raw if isinstance(a, dict) and isinstance(a.get("at"), int)
            and not isinstance(a.get("at"), bool)]


def timeline(inv: dict[str, Any], entries: list[Entry], now_ms: int,
             attempts: Any = None) -> Timeline | None:
    """The invocation's life on one axis, from its creation to its completion (or now):
    the whole invocation, the last attempt, the failed attempts and the back-off before the
    next one, and each journal command, as a bar from when it was written to when its
    result arrived (run, sleep, call, promise) or as a point."""
    created = time_ms(inv.get("created_at"))
    if created is None:
        return None
    completed = time_ms(inv.get("completed_at"))
    end = completed if completed is not None else max(now_ms, created)
    at = {e.index: time_ms(e.appended_at) for e in entries}
    results = {e.completes: e for e in entries if e.completes is not None}
    spans: list[Span] = []

    whole = Span("invocation", created, end, "inv" if completed else "inv open",
                 note=(f"took {human_ms(end - created)}" if completed
                       else f"{human_ms(end - created)} so far"))
    spans.append(whole)
    status = inv.get("status")
    scheduled = time_ms(inv.get("scheduled_start_at"))
    if scheduled is not None and status == "scheduled":
        spans.append(Span("scheduled", created, max(scheduled, created), "wait pending",
                          note=f"starts {relative(scheduled, now_ms)}"))
    inboxed = time_ms(inv.get("inboxed_at"))
    if status == "pending":
        since = inboxed if inboxed is not None else created
        spans.append(Span("in the inbox", since, max(end, since), "wait pending",
                          note=f"{human_ms(max(end - since, 0))} so far"))
    last_start = time_ms(inv.get("last_start_at"))
    if last_start is not None and last_start >= created:
        stop = completed if completed is not None else (
            now_ms if inv.get("status") == "running" else time_ms(inv.get("modified_at")))
        stop = max(stop or last_start, last_start)
        n = inv.get("retry_count")
        spans.append(Span("last attempt" + (f" (attempt {n})" if n else ""), last_start, stop,
                          "attempt" + (" open" if inv.get("status") == "running" else ""),
                          note=f"started +{human_ms(last_start - created)}, "
                               f"{human_ms(stop - last_start)}"))
    failures = _attempt_failures(attempts)
    if failures:
        last = failures[-1]["at"]
        row = Span(f"failed attempts ({len(failures)})", failures[0]["at"], last, "failures",
                   note=f"last +{human_ms(last - created)}",
                   href="#attempts-h")  # the list of failed attempts on the same page
        for a in failures:
            row.marks.append((float(a["at"]), f"attempt {a.get('retry', '?')} failed "
                              f"+{human_ms(a['at'] - created)}: [{a.get('code', '?')}] "
                              f"{str(a.get('message', ''))[:200]}"))
        spans.append(row)
    next_retry = time_ms(inv.get("next_retry_at"))
    if next_retry is not None and inv.get("status") == "backing-off":
        since = failures[-1]["at"] if failures else time_ms(inv.get("modified_at")) or created
        spans.append(Span("backing off", since, max(next_retry, since), "backoff",
                          note=f"next attempt {relative(next_retry, now_ms)}"))

    commands = [e for e in entries if e.kind == "Command"]
    truncated = max(0, len(commands) - MAX_SPANS)
    for e in commands[:MAX_SPANS]:
        start = at.get(e.index)
        if start is None:
            continue
        label = f"#{e.index} {e.type}" + (f" “{e.name}”" if e.name else "")
        if e.awaits is None:
            spans.append(Span(label, start, start, "point", href=f"#entry-{e.index}",
                              note=f"+{human_ms(start - created)}"))
            continue
        done = results.get(e.awaits)
        done_at = at.get(done.index) if done is not None else None
        if done_at is not None:
            spans.append(Span(label, start, max(done_at, start), "wait " + e.type.lower(),
                              href=f"#entry-{e.index}",
                              note=f"+{human_ms(start - created)}, took "
                                   f"{human_ms(max(done_at, start) - start)}"))
            continue
        wake = time_ms(e.wakeup_at)
        stop = end if wake is None else min(max(wake, start), max(end, start))
        note = f"+{human_ms(start - created)}, " + (
            f"wakes up {relative(wake, now_ms)}" if wake is not None and completed is None
            else "no result yet" if completed is None else "never completed")
        spans.append(Span(label, start, stop, "wait pending " + e.type.lower(),
                          href=f"#entry-{e.index}", note=note))

    lo = created
    hi = max([end] + [s.end_ms for s in spans])
    width = max(hi - lo, 1)
    for s in spans:
        s.x = round((s.start_ms - lo) * AXIS / width, 2)
        s.width = round(max((s.end_ms - s.start_ms) * AXIS / width, 0.0), 2)
        s.marks = [(round((m - lo) * AXIS / width, 2), text) for m, text in s.marks]
    ticks = [("+" + human_ms(int(width * i / 4))) if i else "0" for i in range(5)]
    return Timeline(lo, hi, spans, ticks, truncated)


# -- the playground's form: fields from a handler's input JSON schema --------------------------

_SIMPLE = ("string", "integer", "number", "boolean")


@dataclass
class FormField:
    """One input of the playground's form. `name` is "" when the body is the value itself
    (a schema of a simple type, not an object)."""

    name: str
    kind: str  # string | integer | number | boolean | enum
    required: bool
    nullable: bool = False
    options: list[str] = field(default_factory=list)
    default: str = ""
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None

    @property
    def label(self) -> str:
        return self.name or "value"


def _resolve(schema: Any, root: Any, depth: int = 0) -> Any:
    """Follows a local `$ref` ("#/$defs/Order", as pydantic writes one) in `root`."""
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and depth < 8:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return None
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        schema, depth = node, depth + 1
    return schema


def _field(name: str, schema: Any, required: bool, root: Any) -> FormField | None:
    """The field for one property, or None when it is not of a simple type."""
    s = _resolve(schema, root)
    if not isinstance(s, dict):
        return None
    nullable = False
    for combinator in ("anyOf", "oneOf"):
        if isinstance(s.get(combinator), list):
            options = [_resolve(o, root) for o in s[combinator]]
            rest = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            if len(rest) != 1 or len(rest) == len(options):
                return None
            merged = {k: v for k, v in s.items() if k != combinator}
            s, nullable = {**rest[0], **merged}, True
    ty = s.get("type")
    if isinstance(ty, list):
        types = [t for t in ty if t != "null"]
        nullable = nullable or len(types) < len(ty)
        ty = types[0] if len(types) == 1 else None
    enum = s.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        kind = "enum"
    elif ty in _SIMPLE:
        kind = str(ty)
    else:
        return None
    f = FormField(name=name, kind=kind, required=required, nullable=nullable)
    if kind == "enum":
        f.options = [str(v) for v in enum]  # type: ignore[union-attr]
    default = s.get("default")
    if default is not None:
        f.default = ("true" if default else "false") if isinstance(default, bool) else str(default)
    if isinstance(s.get("description"), str):
        f.description = s["description"]
    for key, attr in (("minimum", "minimum"), ("maximum", "maximum")):
        if isinstance(s.get(key), int | float) and not isinstance(s.get(key), bool):
            setattr(f, attr, s[key])
    for key, attr in (("minLength", "min_length"), ("maxLength", "max_length")):
        if isinstance(s.get(key), int):
            setattr(f, attr, s[key])
    if isinstance(s.get("pattern"), str):
        f.pattern = s["pattern"]
    return f


def form_fields(schema: Any) -> list[FormField] | None:
    """The form for a handler's input schema: one field per property of an object whose
    properties are all of simple types (string, integer, number, boolean, a string enum,
    each possibly nullable), or one field for a body of a simple type. None when the schema
    is anything else (the raw JSON then is the only way in)."""
    root = schema
    s = _resolve(schema, root)
    if not isinstance(s, dict) or not s:
        return None
    props = s.get("properties")
    if s.get("type") == "object" or isinstance(props, dict):
        if not isinstance(props, dict) or not props:
            return None
        raw_required = s.get("required")
        required: list[Any] = raw_required if isinstance(raw_required, list) else []
        fields = [_field(str(k), v, k in required, root) for k, v in props.items()]
        if any(f is None for f in fields):
            return None
        return [f for f in fields if f is not None]
    single = _field("", s, True, root)
    return [single] if single is not None else None


def _convert(f: FormField, text: str) -> tuple[Any, str | None]:
    if f.kind in ("string", "enum"):
        return text, None
    if f.kind == "boolean":
        if text in ("true", "false"):
            return text == "true", None
        return None, f"{f.label}: expected true or false"
    try:
        if f.kind == "integer":
            return int(text), None
        number = float(text)
        return (int(number) if number.is_integer() and "." not in text else number), None
    except ValueError:
        return None, f"{f.label}: expected {'an integer' if f.kind == 'integer' else 'a number'}"


def body_from_form(fields: list[FormField], values: dict[str, str]) -> tuple[Any, list[str]]:
    """The JSON body the form's fields make (`values`: field name -> text as typed) and what
    is wrong with it. An empty optional field is left out, an empty required one refused
    (for a body of one value: null when nullable); the result is checked as `check_value`
    checks a raw body."""
    errors: list[str] = []
    if len(fields) == 1 and fields[0].name == "":
        f = fields[0]
        text = values.get("", "")
        if text == "":
            return None, ([] if f.nullable else [f"{f.label}: required"])
        value, error = _convert(f, text)
        if error:
            return None, [error]
        return value, check_value(fields, value)
    body: dict[str, Any] = {}
    for f in fields:
        text = values.get(f.name, "")
        if text == "":
            # (an empty required string too: the raw JSON can still send "")
            if f.required:
                errors.append(f"{f.name}: required")
            continue
        value, error = _convert(f, text)
        if error:
            errors.append(error)
        else:
            body[f.name] = value
    if errors:
        return None, errors
    return body, check_value(fields, body)


def _check(f: FormField, value: Any) -> str | None:
    if value is None:
        return None if f.nullable else f"{f.label}: must not be null"
    kind_ok = {
        "string": isinstance(value, str), "enum": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
    }[f.kind]
    if not kind_ok:
        expected = {"string": "a string", "enum": "one of " + ", ".join(f.options),
                    "boolean": "true or false", "integer": "an integer",
                    "number": "a number"}[f.kind]
        return f"{f.label}: expected {expected}"
    if f.kind == "enum" and value not in f.options:
        return f"{f.label}: must be one of {', '.join(f.options)}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if f.minimum is not None and value < f.minimum:
            return f"{f.label}: must be at least {f.minimum:g}"
        if f.maximum is not None and value > f.maximum:
            return f"{f.label}: must be at most {f.maximum:g}"
    if isinstance(value, str):
        if f.min_length is not None and len(value) < f.min_length:
            return f"{f.label}: at least {f.min_length} characters"
        if f.max_length is not None and len(value) > f.max_length:
            return f"{f.label}: at most {f.max_length} characters"
        if f.pattern is not None:
            try:
                if re.search(f.pattern, value) is None:
                    return f"{f.label}: must match {f.pattern}"
            except re.error:
                pass  # a pattern Python cannot read (JSON schema uses ECMA regexes)
    return None


def check_value(fields: list[FormField], value: Any) -> list[str]:
    """What is wrong with a body for the form's schema: types, required properties, enums,
    bounds, lengths and patterns (the subset of JSON schema the form itself draws)."""
    if len(fields) == 1 and fields[0].name == "":
        error = _check(fields[0], value)
        return [error] if error else []
    if not isinstance(value, dict):
        return ["the body must be a JSON object"]
    errors = []
    for f in fields:
        if f.name not in value:
            if f.required:
                errors.append(f"{f.name}: required")
            continue
        error = _check(f, value[f.name])
        if error:
            errors.append(error)
    return errors

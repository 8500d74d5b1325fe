"""Relative times, the invocation timeline and the playground's schema forms (pure)."""

from __future__ import annotations

from typing import Any

from durably.ui.present import (
    Entry,
    body_from_form,
    check_value,
    form_fields,
    relative,
    retained_until,
    time_ms,
    timeline,
    ts_ms,
)

T0 = 1_795_000_000_000  # some epoch ms


def test_relative_times() -> None:
    assert relative(T0, T0) == "just now"
    assert relative(T0 - 999, T0) == "just now"
    assert relative(T0 - 3_500, T0) == "3 s ago"
    assert relative(T0 + 2_000, T0) == "in 2 s"
    assert relative(T0 - 3 * 60_000 - 59_000, T0) == "3 min ago"
    assert relative(T0 + 2 * 3_600_000, T0) == "in 2 h"
    assert relative(T0 - 9 * 86_400_000, T0) == "9 d ago"


def test_time_ms_reads_the_views_forms() -> None:
    assert time_ms(ts_ms(T0)) == T0
    assert time_ms("2026-11-29T21:20:57.123000000Z") == time_ms("2026-11-29T21:20:57.123Z")
    assert time_ms(T0) == T0
    for bad in (None, True, "soon", 1.5, ""):
        assert time_ms(bad) is None


def _entry(index: int, kind: str, ty: str, at_ms: int, *, name: str = "",
           awaits: int | None = None, completes: int | None = None,
           wakeup_ms: int | None = None) -> Entry:
    return Entry(index=index, kind=kind, type=ty, name=name, appended_at=ts_ms(at_ms),
                 offset_ms=at_ms - T0, awaits=awaits, completes=completes,
                 wakeup_at=ts_ms(wakeup_ms) if wakeup_ms else None)


def _spans(tl: Any) -> dict[str, Any]:
    return {s.label: s for s in tl.spans}


def test_timeline_of_a_completed_invocation() -> None:
    inv = {"created_at": ts_ms(T0), "completed_at": ts_ms(T0 + 1_000), "status": "completed",
           "last_start_at": ts_ms(T0 + 10), "retry_count": 1}
    entries = [
        _entry(0, "Command", "Input", T0 + 10),
        _entry(1, "Command", "Run", T0 + 100, name="charge", awaits=1),
        _entry(2, "Notification", "Run", T0 + 600, completes=1),
        _entry(3, "Command", "Sleep", T0 + 600, awaits=2, wakeup_ms=T0 + 900),
        _entry(4, "Notification", "Sleep", T0 + 900, completes=2),
        _entry(5, "Command", "Output", T0 + 990),
    ]
    tl = timeline(inv, entries, now_ms=T0 + 60_000)
    assert tl is not None and (tl.start_ms, tl.end_ms) == (T0, T0 + 1_000)
    spans = _spans(tl)
    assert spans["invocation"].note == "took 1.00 s" and spans["invocation"].width == 1000
    run = spans["#1 Run “charge”"]
    assert (run.x, run.width, run.href) == (100, 500, "#entry-1")
    assert run.note == "+100 ms, took 500 ms"
    assert spans["#3 Sleep"].note == "+600 ms, took 300 ms"
    assert spans["#0 Input"].width == 0 and spans["#5 Output"].css == "point"
    assert "#2 Run" not in spans  # a notification ends its command's bar, no row of its own
    assert tl.ticks == ["0", "+250 ms", "+500 ms", "+750 ms", "+1.00 s"]


def test_timeline_while_it_waits_and_retries() -> None:
    now = T0 + 10_000
    inv = {"created_at": ts_ms(T0), "status": "backing-off", "last_start_at": ts_ms(T0 + 4_000),
           "modified_at": ts_ms(T0 + 5_000), "next_retry_at": ts_ms(T0 + 12_000),
           "retry_count": 3}
    entries = [_entry(1, "Command", "Sleep", T0 + 1_000, awaits=1, wakeup_ms=T0 + 3_600_000),
               _entry(2, "Command", "Call", T0 + 2_000, awaits=2)]
    attempts = [{"at": T0 + 2_000, "code": 500, "message": "boom", "entry": 2, "retry": 1},
                {"at": T0 + 5_000, "code": 500, "message": "<b>again</b>", "entry": None,
                 "retry": 2},
                {"at": "not a time"}, "junk"]
    tl = timeline(inv, entries, now_ms=now, attempts=attempts)
    assert tl is not None
    spans = _spans(tl)
    assert spans["invocation"].note == "10.00 s so far" and "open" in spans["invocation"].css
    assert spans["last attempt (attempt 3)"].note == "started +4.00 s, 1.00 s"
    failures = spans["failed attempts (2)"]
    assert failures.href == "#attempts-h"  # the list of them (the _attempts.html partial)
    assert [text.split(":")[0] for _, text in failures.marks] == [
        "attempt 1 failed +2.00 s", "attempt 2 failed +5.00 s"]
    backoff = spans["backing off"]
    assert (backoff.start_ms, backoff.end_ms, backoff.note) == (
        T0 + 5_000, T0 + 12_000, "next attempt in 2 s")
    # the axis reaches the next attempt; the sleep's bar stops at now, its note says when
    assert tl.end_ms == T0 + 12_000
    sleep = spans["#1 Sleep"]
    assert sleep.end_ms == now and "pending" in sleep.css and sleep.note.endswith("wakes up in 59 min")
    assert spans["#2 Call"].note == "+2.00 s, no result yet"
    for s in tl.spans:
        assert 0 <= s.x <= 1000 and 0 <= s.x + s.width <= 1000.01


def test_timeline_without_attempt_history_or_times() -> None:
    inv = {"created_at": ts_ms(T0), "status": "backing-off", "modified_at": ts_ms(T0 + 500),
           "next_retry_at": ts_ms(T0 + 1_500)}
    tl = timeline(inv, [], now_ms=T0 + 1_000, attempts=None)
    assert tl is not None
    assert _spans(tl)["backing off"].start_ms == T0 + 500
    assert not any(s.label.startswith("failed attempts") for s in tl.spans)
    assert timeline({"created_at": None}, [], now_ms=T0) is None


PYDANTIC_ORDER = {  # what restate-sdk (Python) declares for a pydantic model
    "properties": {
        "item": {"description": "What to order", "title": "Item", "type": "string"},
        "quantity": {"default": 1, "maximum": 10, "minimum": 1, "title": "Quantity",
                     "type": "integer"},
        "size": {"default": "M", "enum": ["S", "M", "L"], "title": "Size", "type": "string"},
        "gift": {"default": False, "title": "Gift", "type": "boolean"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
    },
    "required": ["item"], "title": "Order", "type": "object",
}
TS_SCHEMA = {  # a TypeScript handler's JsonSerde schema (draft 2020-12, as zod writes it)
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1},
                   "count": {"type": ["number", "null"], "maximum": 5}},
    "required": ["name"], "additionalProperties": False,
}


def test_form_fields_from_sdk_schemas() -> None:
    fields = form_fields(PYDANTIC_ORDER)
    assert fields is not None
    by = {f.name: f for f in fields}
    assert [f.name for f in fields] == ["item", "quantity", "size", "gift", "note"]
    assert by["item"].required and by["item"].description == "What to order"
    assert (by["quantity"].kind, by["quantity"].minimum, by["quantity"].maximum,
            by["quantity"].default) == ("integer", 1, 10, "1")
    assert by["size"].kind == "enum" and by["size"].options == ["S", "M", "L"]
    assert by["gift"].default == "false" and by["note"].nullable
    ts = form_fields(TS_SCHEMA)
    assert ts is not None and ts[0].min_length == 1 and ts[1].kind == "number"
    assert ts[1].nullable
    ref = {"$ref": "#/$defs/Order", "$defs": {"Order": PYDANTIC_ORDER}}
    assert form_fields(ref) == fields
    single = form_fields({"type": "string"})
    assert single is not None and single[0].name == "" and single[0].label == "value"
    # not drawn as a form: nested objects, arrays, free objects, no schema
    for schema in ({"type": "object", "properties": {"a": {"type": "object"}}},
                   {"type": "object", "properties": {"a": {"type": "array"}}},
                   {"type": "object"}, {}, None, {"type": "array"}):
        assert form_fields(schema) is None, schema


def test_body_from_form_and_checks() -> None:
    fields = form_fields(PYDANTIC_ORDER)
    assert fields is not None
    body, errors = body_from_form(fields, {"item": "tea", "quantity": "2", "size": "S",
                                           "gift": "true", "note": ""})
    assert errors == [] and body == {"item": "tea", "quantity": 2, "size": "S", "gift": True}
    assert body_from_form(fields, {"item": ""})[1] == ["item: required"]
    assert body_from_form(fields, {"item": "a", "quantity": "x"})[1] == [
        "quantity: expected an integer"]
    assert body_from_form(fields, {"item": "a", "quantity": "0"})[1] == [
        "quantity: must be at least 1"]
    assert check_value(fields, {"item": "a", "gift": "yes", "size": "XL"}) == [
        "size: must be one of S, M, L", "gift: expected true or false"]
    assert check_value(fields, {"item": "a", "note": None}) == []
    assert check_value(fields, {"item": None}) == ["item: must not be null"]
    assert check_value(fields, [1]) == ["the body must be a JSON object"]
    ts = form_fields(TS_SCHEMA)
    assert ts is not None
    assert body_from_form(ts, {"name": "x", "count": "2.5"}) == ({"name": "x", "count": 2.5}, [])
    assert check_value(ts, {"name": "", "count": 9}) == [
        "name: at least 1 characters", "count: must be at most 5"]
    single = form_fields({"type": "integer"})
    assert single is not None
    assert body_from_form(single, {"": "7"}) == (7, [])
    assert body_from_form(single, {"": ""})[1] == ["value: required"]


def test_retained_until() -> None:
    inv = {"completed_at": ts_ms(T0), "completion_retention": "PT86400S"}
    assert retained_until(inv) == T0 + 86_400_000
    assert retained_until({"completed_at": None, "completion_retention": "PT1S"}) is None
    assert retained_until({"completed_at": ts_ms(T0), "completion_retention": "1d"}) is None


def test_timeline_before_it_starts() -> None:
    now = T0 + 60_000
    tl = timeline({"created_at": ts_ms(T0), "status": "scheduled",
                   "scheduled_start_at": ts_ms(T0 + 3_600_000)}, [], now_ms=now)
    assert tl is not None
    row = _spans(tl)["scheduled"]
    assert row.note == "starts in 59 min" and tl.end_ms == T0 + 3_600_000
    tl = timeline({"created_at": ts_ms(T0), "status": "pending",
                   "inboxed_at": ts_ms(T0 + 1_000)}, [], now_ms=now)
    assert tl is not None
    assert _spans(tl)["in the inbox"].note == "59.00 s so far"

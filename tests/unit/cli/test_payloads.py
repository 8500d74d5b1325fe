"""cli/payloads: the request and output of an invocation from durably's and Restate's
renderings of `sys_journal.entry_json`."""

from __future__ import annotations

import base64

import orjson

from durably.cli.payloads import describe_lines, request_and_output


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _rows(input_entry: dict[str, object], output_entry: dict[str, object]) -> list[dict[str, object]]:
    return [
        {"index": 0, "entry_type": "Command: Input",
         "entry_json": orjson.dumps({"Command": {"Input": input_entry}}).decode()},
        {"index": 1, "entry_type": "Command: Output",
         "entry_json": orjson.dumps({"Command": {"Output": output_entry}}).decode()},
    ]


def test_durably_rendering() -> None:
    rows = _rows(
        {"headers": [{"key": "x-a", "value": "1"}], "value": {"content": _b64(b'{"n": 1}')}},
        {"value": {"content": _b64(b"plain words")}},
    )
    request, output = request_and_output(rows)
    assert request == {"headers": {"x-a": "1"}, "body": {"n": 1}}
    assert output == {"value_text": "plain words"}
    assert describe_lines(request, output) == [
        "request headers:", "  x-a: 1",
        "request body:", "  {", '    "n": 1', "  }",
        "output:", "  plain words",
    ]


def test_restate_rendering() -> None:
    rows = _rows(
        {"headers": [{"name": "x-a", "value": "1"}], "payload": list(b"\x00\xff"), "name": ""},
        {"result": {"Failure": {"code": 422, "message": "no"}}, "name": ""},
    )
    request, output = request_and_output(rows)
    assert request == {"headers": {"x-a": "1"}, "body_base64": _b64(b"\x00\xff")}
    assert output == {"failure": {"code": 422, "message": "no"}}
    assert describe_lines(request, output)[-2:] == ["output:", "  failure 422: no"]
    _, success = request_and_output(_rows({"headers": []}, {"result": {"Success": list(b'"ok"')}}))
    assert success == {"value": "ok"}


def test_no_input_and_unknown_shapes() -> None:
    request, output = request_and_output(_rows({"headers": []}, {}))
    assert request == {"headers": {}}
    assert output == {}
    assert describe_lines(request, output) == [
        "request headers:", "request body:", "  (empty)", "output:", "  (empty)",
    ]
    assert request_and_output([{"entry_type": "Command: Input", "entry_json": "not json"}]) == (
        None, None)
    assert describe_lines(None, None) == []

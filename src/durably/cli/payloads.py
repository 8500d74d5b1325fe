"""The request and the result of an invocation, read from its journal for the CLI.

`sys_journal.entry_json` of the Input command holds the request's headers and body, that
of the Output command the result or the failure. durably renders the protobuf message
(headers as `key`/`value`, bodies in base64 under `value.content`, `failure`); Restate its
own journal types (headers as `name`/`value`, bodies as lists of byte values under
`payload` and `result.Success`, `result.Failure`): both are read. Bodies are shown as JSON
when they are JSON, as text when they are UTF-8, and as base64 otherwise.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

JOURNAL_QUERY = (
    "SELECT index, entry_type, entry_json FROM sys_journal WHERE id = {id} "
    "AND entry_type IN ('Command: Input', 'Command: Output') ORDER BY index"
)


def _command(entry_json: Any, name: str) -> dict[str, Any] | None:
    if not isinstance(entry_json, str):
        return None
    try:
        doc = orjson.loads(entry_json)
    except orjson.JSONDecodeError:
        return None
    found = doc.get("Command", {}).get(name) if isinstance(doc, dict) else None
    return found if isinstance(found, dict) else None


def _bytes(value: Any) -> bytes:
    """A body as durably (``{"content": base64}``) or Restate (``[byte, ...]``) renders it."""
    if isinstance(value, list):
        try:
            return bytes(value)
        except (TypeError, ValueError):
            return b""
    content = value.get("content", "") if isinstance(value, dict) else ""
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _body(value: Any, field: str) -> dict[str, Any]:
    """``{field: json}``, ``{field_text: str}`` or ``{field_base64: str}``; {} when empty."""
    data = _bytes(value)
    if not data:
        return {}
    try:
        return {field: orjson.loads(data)}
    except orjson.JSONDecodeError:
        pass
    try:
        return {f"{field}_text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{field}_base64": base64.b64encode(data).decode()}


def request_and_output(rows: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """From the rows of `JOURNAL_QUERY`: the request (``headers`` and the body) and the
    output (the value, or ``failure`` with ``code`` and ``message``), None when unknown."""
    request = output = None
    for row in rows:
        entry_type = row.get("entry_type")
        if entry_type == "Command: Input":
            inp = _command(row.get("entry_json"), "Input")
            if inp is not None:
                headers = {h.get("key", h.get("name", "")): h.get("value", "")
                           for h in inp.get("headers", [])}
                body = inp["payload"] if "payload" in inp else inp.get("value")
                request = {"headers": headers, **_body(body, "body")}
        elif entry_type == "Command: Output":
            out = _command(row.get("entry_json"), "Output")
            if out is None:
                continue
            result = out.get("result")
            if isinstance(result, dict):  # Restate's rendering
                failure, value = result.get("Failure"), result.get("Success")
            else:
                failure, value = out.get("failure"), out.get("value")
            if isinstance(failure, dict):
                output = {"failure": {"code": int(failure.get("code", 0)),
                                      "message": failure.get("message", "")}}
            else:
                output = _body(value, "value")
    return request, output


def render(value: dict[str, Any], field: str) -> list[str]:
    """The lines that show a body from `_body` (pretty JSON when it is JSON)."""
    if field in value:
        return orjson.dumps(value[field], option=orjson.OPT_INDENT_2).decode().splitlines()
    if f"{field}_text" in value:
        return str(value[f"{field}_text"]).splitlines() or [""]
    if f"{field}_base64" in value:
        raw = value[f"{field}_base64"]
        return [f"{len(base64.b64decode(raw))} bytes, base64: {raw}"]
    return ["(empty)"]


def describe_lines(request: dict[str, Any] | None, output: dict[str, Any] | None) -> list[str]:
    """The text `invocations describe` prints for the request and the output."""
    lines: list[str] = []
    if request is not None:
        lines.append("request headers:")
        lines.extend(f"  {k}: {v}" for k, v in request["headers"].items())
        lines.append("request body:")
        lines.extend(f"  {line}" for line in render(request, "body"))
    if output is not None:
        lines.append("output:")
        failure = output.get("failure")
        if failure is not None:
            lines.append(f"  failure {failure['code']}: {failure['message']}")
        else:
            lines.extend(f"  {line}" for line in render(output, "value"))
    return lines

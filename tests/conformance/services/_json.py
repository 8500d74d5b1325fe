"""Tiny helpers for calls that go through ``generic_call``/``generic_send`` (raw bytes)."""

from __future__ import annotations

import json
from typing import Any


def encode(value: Any) -> bytes:
    """JSON bytes of ``value``; ``None`` means "no input" (empty body)."""
    if value is None:
        return b""
    return json.dumps(value).encode("utf-8")


def decode(buf: bytes) -> Any:
    if not buf:
        return None
    return json.loads(buf)

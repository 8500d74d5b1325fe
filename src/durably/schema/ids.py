"""Deployment ids in Restate's format: `dp_` + codec version `1` + a 128-bit ULID in base62.

Like Restate's, the ULID is 48 bits of creation time in ms and 80 random bits, and it is
encoded the way Restate does on little-endian hosts (the big-endian bytes read back as a
little-endian integer), so our ids look like Restate's: the random bits lead. The base62
digits are Restate's, `[0-9a-zA-Z]` (`durably.ids`): with the other common order,
`[0-9A-Za-z]`, about one id in fifty reads back as a number beyond 128 bits, and the
official CLI refuses the whole answer that holds it ("base62 decode error").
"""

from __future__ import annotations

import os
import time

from durably.ids import _b62_decode, _b62_encode

__all__ = ["DEPLOYMENT_ID_PREFIX", "check_deployment_id", "new_deployment_id"]

DEPLOYMENT_ID_PREFIX = "dp_"
_CODEC_VERSION = "1"
_BODY_LEN = 22  # base62 digits of a u128


def new_deployment_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    raw = (ms & ((1 << 48) - 1)).to_bytes(6, "big") + os.urandom(10)
    return DEPLOYMENT_ID_PREFIX + _CODEC_VERSION + _b62_encode(int.from_bytes(raw, "little"), _BODY_LEN)


def check_deployment_id(value: str) -> str | None:
    """None if `value` is a well-formed deployment id, else the reason (Restate's wording)."""
    if not value.startswith(DEPLOYMENT_ID_PREFIX):
        return "bad format"
    rest = value[len(DEPLOYMENT_ID_PREFIX) :]
    if rest[:1] != _CODEC_VERSION:
        return "unrecognized codec version"
    body = rest[1:]
    try:
        n = _b62_decode(body)
    except ValueError:
        return "base62 decode error"
    if n >> 128:
        return "base62 decode error"
    if len(body) != _BODY_LEN:
        return "bad length"
    return None

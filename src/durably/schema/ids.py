"""Deployment ids in Restate's format: `dp_` + codec version `1` + a 128-bit ULID in base62.

Like Restate's, the ULID is 48 bits of creation time in ms and 80 random bits, and it is
encoded the way Restate does on little-endian hosts (the big-endian bytes read back as a
little-endian integer), so our ids look like Restate's: the random bits lead.
"""

from __future__ import annotations

import os
import time

__all__ = ["DEPLOYMENT_ID_PREFIX", "check_deployment_id", "new_deployment_id"]

DEPLOYMENT_ID_PREFIX = "dp_"
_CODEC_VERSION = "1"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_BODY_LEN = 22  # base62 digits of a u128


def _base62(n: int, width: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)).rjust(width, "0")


def new_deployment_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    raw = (ms & ((1 << 48) - 1)).to_bytes(6, "big") + os.urandom(10)
    return DEPLOYMENT_ID_PREFIX + _CODEC_VERSION + _base62(int.from_bytes(raw, "little"), _BODY_LEN)


def check_deployment_id(value: str) -> str | None:
    """None if `value` is a well-formed deployment id, else the reason (Restate's wording)."""
    if not value.startswith(DEPLOYMENT_ID_PREFIX):
        return "bad format"
    rest = value[len(DEPLOYMENT_ID_PREFIX) :]
    if rest[:1] != _CODEC_VERSION:
        return "unrecognized codec version"
    body = rest[1:]
    n = 0
    for c in body:
        i = _INDEX.get(c)
        if i is None:
            return "base62 decode error"
        n = n * 62 + i
    if n >> 128:
        return "base62 decode error"
    if len(body) != _BODY_LEN:
        return "bad length"
    return None

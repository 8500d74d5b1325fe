"""Service protocol version negotiation.

Versions live in the invoke request's content type. We speak V5..V7; like restate-server 1.7
we prefer V6 and use V7 only when enabled, because V7 changes the Suspension layout and the
run-completion ack semantics and is still experimental upstream.
"""

from __future__ import annotations

import re

__all__ = [
    "DEFAULT_MAX_VERSION",
    "MAX_PROTOCOL_VERSION",
    "MIN_PROTOCOL_VERSION",
    "UnsupportedVersion",
    "content_type",
    "negotiate",
    "parse_content_type",
]

MIN_PROTOCOL_VERSION = 5
MAX_PROTOCOL_VERSION = 7
DEFAULT_MAX_VERSION = 6

_CONTENT_TYPE_PREFIX = "application/vnd.restate.invocation.v"
_CONTENT_TYPE_RE = re.compile(r"application/vnd\.restate\.invocation\.v(\d+)")


class UnsupportedVersion(Exception):
    """The deployment's protocol range has nothing in common with ours."""


def content_type(version: int) -> str:
    return f"{_CONTENT_TYPE_PREFIX}{version}"


def negotiate(min_version: int, max_version: int, *, enable_v7: bool = False) -> int:
    """Pick the version for a new invocation against a deployment advertising [min, max]."""
    ours = MAX_PROTOCOL_VERSION if enable_v7 else DEFAULT_MAX_VERSION
    chosen = min(max_version, ours)
    if min_version > max_version or chosen < max(min_version, MIN_PROTOCOL_VERSION):
        raise UnsupportedVersion(
            f"deployment supports service protocol versions [{min_version}, {max_version}], "
            f"this server supports [{MIN_PROTOCOL_VERSION}, {ours}]"
        )
    return chosen


def parse_content_type(value: str) -> int | None:
    """Version from a content-type header value, or None if it is not ours.

    Parameters (`; charset=...`) and surrounding whitespace are tolerated; the media type itself
    is matched case-insensitively as HTTP requires.
    """
    media_type = value.split(";", 1)[0].strip().lower()
    m = _CONTENT_TYPE_RE.fullmatch(media_type)
    return int(m.group(1)) if m else None

"""Log output for `durably serve`: readable text (default) or one JSON object per line.

In JSON every line about an invocation carries its id as the `invocation_id` field, so a log
pipeline can follow one invocation: taken from `extra={"invocation_id": ...}` when a call
site passes it, otherwise from the `inv_...` id the message names (the engine's messages all
name the invocation they are about).
"""

from __future__ import annotations

import logging
import re
import time

import orjson

__all__ = ["JsonFormatter", "configure_logging"]

_INVOCATION_ID = re.compile(r"\binv_[0-9A-Za-z]{20,}\b")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        inv_id = getattr(record, "invocation_id", None)
        if inv_id is None:
            m = _INVOCATION_ID.search(message)
            inv_id = m.group(0) if m else None
        if inv_id is not None:
            out["invocation_id"] = str(inv_id)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def configure_logging(level: int, fmt: str) -> None:
    """Root logging for the server process; `fmt` is "text" or "json"."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

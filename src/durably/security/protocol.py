"""Connection limits below ASGI: uvicorn's httptools protocol with a header budget, a
deadline for a request's headers, and a cap on open connections.

uvicorn arms its keep-alive timer only after a response, sets no limit on header bytes (the
httptools parser keeps whatever a client sends) and accepts any number of connections. These
are decided before the application sees a request, so they live in the protocol:

- total bytes of the request line and headers beyond `max_header_bytes` -> 431 and close,
  counted as bytes arrive (a huge header is refused before it is parsed whole);
- from accepting a connection, or from the end of the previous response, a request's headers
  must be complete within `header_timeout_s`, else the connection is closed (slow or silent
  clients cannot hold a connection);
- beyond `max_connections` open connections a new one is closed at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from durably.security.options import Limits

__all__ = ["guarded_protocol"]

_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


def _answer(template: bytes, message: str) -> bytes:
    body = b'{"message":"' + message.encode() + b'"}'
    return template % (len(body), body)


class _GuardedProtocol(HttpToolsProtocol):
    limits: Limits = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between a request's first byte (or none yet) and its last header
        self._head_bytes = 0
        self._precise = 0  # request line and header bytes as parsed
        self._refused = False
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.server_state.connections) >= self.limits.max_connections:
            self._refused = True
            transport.write(_answer(_503, "too many open connections"))
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        if self._refused and self.transport is None:
            return  # never counted as a connection
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            # counted before parsing, so an oversized head is never buffered whole; a chunk
            # that also carries body bytes may overcount by at most one read
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes + 65536:
                self._refuse_head()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._precise = 0
        # from a request's first byte its headers must be complete in time
        self._arm_head_deadline()

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._precise += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._precise += len(name) + len(value) + 4
        if self._precise > self.limits.max_header_bytes:
            self._refuse_head()
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_deadline()
        if self._refused:
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def _refuse_head(self) -> None:
        self._refused = True
        self._cancel_head_deadline()
        if not self.transport.is_closing():
            self.transport.write(
                _answer(
                    _431,
                    f"the request headers exceed the limit of {self.limits.max_header_bytes} bytes",
                )
            )
            self.transport.close()

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(
            self.limits.header_timeout_s, self._head_too_slow
        )

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self._in_head and self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(limits: Limits) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol class bound to `limits` (uvicorn takes a class, not an instance)."""
    return type("GuardedHttpToolsProtocol", (_GuardedProtocol,), {"limits": limits})

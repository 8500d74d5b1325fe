"""The invoker's view of HTTP: one full-duplex exchange per attempt.

`Transport` opens `Stream`s against one deployment; `H2Pool` (h2client.py) multiplexes them
over cleartext HTTP/2, `Http1Transport` (http1.py) runs them as HTTP/1.1 request/response.
Everything that can go wrong on the wire surfaces as `TransportError`.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

__all__ = ["Stream", "Transport", "TransportError", "parse_base_uri"]


class TransportError(Exception):
    """The exchange failed below HTTP semantics: refused, reset, timeout, protocol error.

    `retry_immediately` is True when the failure says nothing about the deployment itself,
    so the attempt may be retried at once on a fresh connection instead of after a backoff:
    the peer never processed the stream (GOAWAY with a lower last_stream_id, REFUSED_STREAM),
    or the peer announced a graceful shutdown (GOAWAY) and then dropped the connection before
    finishing the stream. hypercorn 0.18 does the latter for every stream in flight when it
    hits `keep_alive_max_requests`: its h2 state machine refuses to send after its own GOAWAY.
    """

    def __init__(self, message: str, *, retry_immediately: bool = False) -> None:
        super().__init__(message)
        self.retry_immediately = retry_immediately


class Stream(Protocol):
    """One HTTP request/response exchange, full duplex."""

    async def response_head(self) -> tuple[int, list[tuple[str, str]]]:
        """Status and headers of the response; raises TransportError."""
        ...

    async def send(self, data: bytes) -> None:
        """Write request body bytes, waiting for flow control as needed."""
        ...

    async def end(self) -> None:
        """Close the request body (END_STREAM). Idempotent."""
        ...

    async def receive(self) -> bytes | None:
        """Next chunk of the response body, None at its end; raises TransportError."""
        ...

    def reset(self) -> None:
        """Abort the exchange. Idempotent."""
        ...


class Transport(Protocol):
    async def open_stream(
        self, method: str, path: str, headers: list[tuple[str, str]]
    ) -> Stream: ...

    async def close(self) -> None: ...


def parse_base_uri(base_uri: str) -> tuple[str, int, str]:
    """`http://host:port/prefix` -> (host, port, prefix without trailing slash)."""
    parts = urlsplit(base_uri)
    if parts.scheme != "http":
        raise ValueError(f"only http:// deployments are supported, got {base_uri!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {base_uri!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


def join_path(prefix: str, path: str) -> str:
    """Append `path` to the base URI's path without doubling the slash."""
    if not path.startswith("/"):
        path = "/" + path
    return prefix + path


def authority(host: str, port: int) -> str:
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return host if port == 80 else f"{host}:{port}"

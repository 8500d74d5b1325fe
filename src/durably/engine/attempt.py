"""One attempt of an invocation: what the engine hands to the invoker.

The engine fills in everything the invoker needs to open the exchange (deployment,
protocol version, the initial frames: Start plus the stored journal). While the attempt
runs, the engine pushes live notifications through `push()`; the invoker owns the socket
side. `finished` is set by the engine when the SDK sent End, Suspension or Error, after
which the invoker closes the request stream and drains the response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False, slots=True)
class Attempt:
    invocation_id: str
    seq: int
    service: str
    handler: str
    key: str | None
    deployment_id: str
    deployment_uri: str
    use_http_11: bool
    bidi: bool
    additional_headers: dict[str, str]
    protocol_version: int
    initial: bytes
    inactivity_timeout_s: float
    abort_timeout_s: float
    finished: bool = False
    closed: bool = False
    _outbox: list[bytes] = field(default_factory=list)
    _wake: Callable[[], None] | None = None
    _abort: Callable[[], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def push(self, frame: bytes) -> None:
        """Queue a frame for the SDK (ignored once the request stream is closed)."""
        if self.closed or not self.bidi:
            return
        self._outbox.append(frame)
        if self._wake is not None:
            self._wake()

    def take_outbox(self) -> bytes:
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    def abort(self) -> None:
        """Stop the attempt now (kill, shutdown); the invoker resets the stream."""
        self.finished = True
        self.closed = True
        if self._abort is not None:
            self._abort()

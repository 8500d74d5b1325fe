"""The one exception hierarchy of ``durably.client``.

Every error says two things a caller needs to decide what to do next:

* ``retry_safe``: sending the same request again cannot run a handler twice. True when the
  server refused the request before any handler ran (``x-restate-error-source: ingress``),
  when the request never left this process, when it only reads (attach/output/admin), or
  when an idempotency key was sent (the server then answers a repeat from its stored result).
* ``transient``: the same request may well succeed later (overload, routing, connection
  trouble). The client's opt-in automatic retries retry an error only when both are true.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AdminError",
    "AlreadyCompleted",
    "AlreadyInvoked",
    "ClientError",
    "ConnectionError",
    "IngressError",
    "InvocationFailed",
    "NotFound",
    "NotReady",
    "OutputError",
    "ResponseError",
    "Timeout",
]


class ClientError(Exception):
    """Base class of every error raised by ``durably.client``."""

    def __init__(self, message: str, *, retry_safe: bool, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retry_safe = retry_safe
        self.transient = transient

    @property
    def retryable(self) -> bool:
        """Worth retrying automatically: safe and likely to succeed later."""
        return self.retry_safe and self.transient


class ConnectionError(ClientError, builtins.ConnectionError):
    """The server could not be reached, or the connection broke before an answer came.

    ``sent`` is False when the request provably never reached the server (connect failed).
    """

    def __init__(self, message: str, *, retry_safe: bool, sent: bool) -> None:
        super().__init__(message, retry_safe=retry_safe, transient=True)
        self.sent = sent


class Timeout(ClientError, builtins.TimeoutError):
    """No answer within the timeout. The invocation, if it was created, keeps running:
    attach to it later (by id, idempotency key or workflow id) to get its result."""

    def __init__(self, message: str, *, retry_safe: bool, sent: bool) -> None:
        super().__init__(message, retry_safe=retry_safe, transient=True)
        self.sent = sent


class ResponseError(ClientError):
    """The server answered with an error status.

    ``status`` is the HTTP status; ``code`` the error code in the body (Restate makes them
    equal for ingress answers); ``source`` is ``"ingress"``, ``"invocation"``, ``"admin"``
    or ``None`` when the server did not say (Restate before 1.7.4, or a proxy in between).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None = None,
        source: str | None = None,
        invocation_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        retry_safe: bool,
        transient: bool = False,
    ) -> None:
        super().__init__(message, retry_safe=retry_safe, transient=transient)
        self.status = status
        self.code = code if code is not None else status
        self.source = source
        self.invocation_id = invocation_id
        self.metadata: dict[str, str] = dict(metadata or {})
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code}, "
            f"message={self.message!r}, source={self.source!r}, "
            f"invocation_id={self.invocation_id!r})"
        )


class InvocationFailed(ResponseError):
    """The handler ended with a terminal failure (or was cancelled/killed: code 409).

    ``code``, ``message`` and ``metadata`` are what the handler's ``TerminalError`` carried.
    """


class AlreadyInvoked(ResponseError):
    """A workflow's run handler was called again for a workflow id that already ran (409).

    Attach to the existing run with ``client.workflow(name, id).attach()`` instead.
    """


class NotFound(ResponseError):
    """No such service, handler, invocation, idempotency key or workflow run (404)."""


class NotReady(ResponseError):
    """``output()`` of an invocation that exists but has not completed yet (Restate's 470)."""


class IngressError(ResponseError):
    """The ingress refused the request before any handler ran: bad path or input, private
    handler, idempotency key where none is allowed, overload (429), routing trouble (503)."""


class AdminError(ResponseError):
    """The admin API refused an invocation-management request.

    ``restate_code`` is Restate's ``RTxxxx`` error code when the server gave one.
    """

    def __init__(self, message: str, *, restate_code: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.restate_code = restate_code


class AlreadyCompleted(AdminError):
    """Cancel or kill of an invocation that had already completed (409 from the admin API)."""


class OutputError(ClientError, ValueError):
    """A successful response did not match the ``output=`` type the caller asked for.

    The invocation itself succeeded: retrying it would not change its result.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_safe=False, transient=False)

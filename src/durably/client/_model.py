"""The I/O-free half of the client: which HTTP request each operation is, and what each
answer means. ``Client`` and ``AsyncClient`` only move these requests over httpx.

Paths are Restate's ingress forms that every Restate version since 1.0 and durably
accept (``/{Service}[/{key}]/{handler}[/send]``, ``/restate/invocation/...``,
``/restate/workflow/...``, ``/restate/awakeables/...``) and the admin API's
``PATCH /invocations/{id}/{cancel,kill,purge}``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote

import httpx

from durably.client import serde
from durably.client.errors import (
    AdminError,
    AlreadyCompleted,
    AlreadyInvoked,
    ClientError,
    ConnectionError,
    IngressError,
    InvocationFailed,
    NotFound,
    NotReady,
    ResponseError,
    Timeout,
)

DEFAULT_URL: Final = "http://localhost:8080"
DEFAULT_ADMIN_URL: Final = "http://localhost:9070"
# Calls and attaches legitimately wait as long as a handler runs (minutes, days):
# only connecting is bounded by default.
DEFAULT_TIMEOUT: Final = httpx.Timeout(None, connect=10.0)

# Statuses that say "not now" rather than "never": overload, routing, gateways.
TRANSIENT_STATUSES: Final = frozenset({429, 502, 503, 504})
# Restate answers these only before it accepted the request (overload, partition routing).
REFUSED_BEFORE_RUN: Final = frozenset({429, 503})

ALREADY_INVOKED_MESSAGE: Final = "the workflow method was already invoked"
# What Restate's attach answers (source "invocation") for an id that names no invocation.
NEVER_INVOKED_MESSAGE: Final = "not found"

Kind = Literal["call", "send", "attach", "output", "lookup", "awakeable", "admin"]
Delay = dt.timedelta | float | int


def resolve_url(given: str | None, *env_names: str, default: str) -> str:
    """The argument, else the first set environment variable, else the default."""
    if given:
        return given.rstrip("/")
    for name in env_names:
        value = os.environ.get(name, "").strip()
        if value:
            return value.rstrip("/")
    return default


def ingress_url(given: str | None) -> str:
    return resolve_url(given, "DURABLY_URL", "RESTATE_URL", default=DEFAULT_URL)


def admin_url(given: str | None) -> str:
    return resolve_url(given, "DURABLY_ADMIN_URL", "RESTATE_ADMIN_URL", default=DEFAULT_ADMIN_URL)


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def auth_headers(kind: Kind) -> dict[str, str]:
    """The bearer token for the port a request goes to, from the environment: the admin API
    (`$DURABLY_ADMIN_TOKEN`, or `$RESTATE_AUTH_TOKEN` as Restate's CLI uses) or the ingress
    (`$DURABLY_INGRESS_TOKEN`). A server given several tokens accepts any; the first is sent."""
    if kind == "admin":
        token = _env("DURABLY_ADMIN_TOKEN", "RESTATE_AUTH_TOKEN")
    else:
        token = _env("DURABLY_INGRESS_TOKEN")
    if token is None:
        return {}
    return {"authorization": f"Bearer {token.split(',')[0].strip()}"}


def tls_verify(ca_file: str | None) -> ssl.SSLContext | bool:
    """httpx's `verify`: the given CA file, else `$DURABLY_CA_FILE`, else the system's CAs."""
    path = ca_file or _env("DURABLY_CA_FILE")
    return ssl.create_default_context(cafile=path) if path else True


def _seg(value: str) -> str:
    # Keys and idempotency keys are arbitrary strings; Restate URL-decodes each segment.
    return quote(value, safe="")


def format_delay(delay: Delay) -> str:
    """Restate's ``?delay=`` value in milliseconds with a unit (a bare number is rejected)."""
    seconds = delay.total_seconds() if isinstance(delay, dt.timedelta) else float(delay)
    if seconds < 0:
        raise ValueError(f"delay must not be negative, got {delay!r}")
    return f"{round(seconds * 1000)}ms"


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class InvocationRef:
    """How to name one invocation: by id, by idempotency key, or as a workflow run."""

    invocation_id: str | None = None
    service: str | None = None
    handler: str | None = None
    key: str | None = None
    idempotency_key: str | None = None
    workflow: str | None = None
    workflow_id: str | None = None

    @classmethod
    def by_id(cls, invocation_id: str) -> InvocationRef:
        return cls(invocation_id=invocation_id)

    @classmethod
    def by_idempotency_key(
        cls, service: str, handler: str, idempotency_key: str, key: str | None = None
    ) -> InvocationRef:
        return cls(service=service, handler=handler, key=key, idempotency_key=idempotency_key)

    @classmethod
    def by_workflow(cls, workflow: str, workflow_id: str) -> InvocationRef:
        return cls(workflow=workflow, workflow_id=workflow_id)

    def path(self, action: Literal["attach", "output"]) -> str:
        if self.invocation_id is not None:
            return f"/restate/invocation/{_seg(self.invocation_id)}/{action}"
        if self.workflow is not None and self.workflow_id is not None:
            return f"/restate/workflow/{_seg(self.workflow)}/{_seg(self.workflow_id)}/{action}"
        assert self.service and self.handler and self.idempotency_key is not None
        target = _seg(self.service)
        if self.key is not None:
            target += "/" + _seg(self.key)
        target += "/" + _seg(self.handler)
        return f"/restate/invocation/{target}/{_seg(self.idempotency_key)}/{action}"

    def lookup_body(self) -> dict[str, Any]:
        """The body of ``POST /restate/lookup`` (Restate 1.7) naming this invocation."""
        if self.invocation_id is not None:
            return {"target": "invocation", "invocationId": self.invocation_id}
        if self.workflow is not None:
            return {
                "target": "workflow",
                "workflowName": self.workflow,
                "workflowKey": self.workflow_id,
            }
        body: dict[str, Any] = {
            "target": "idempotentInvocation",
            "service": self.service,
            "handler": self.handler,
            "idempotencyKey": self.idempotency_key,
        }
        if self.key is not None:
            body["key"] = self.key
        return body

    def __str__(self) -> str:
        if self.invocation_id is not None:
            return self.invocation_id
        if self.workflow is not None:
            return f"workflow {self.workflow}/{self.workflow_id}"
        keyed = f"/{self.key}" if self.key is not None else ""
        return f"{self.service}{keyed}/{self.handler} idempotency key {self.idempotency_key!r}"


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """One HTTP request plus what the error mapping needs to know about it."""

    method: str
    url: str
    kind: Kind
    # Resending cannot run a handler a second time (idempotency key, workflow id, reads).
    idempotent: bool
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    workflow: bool = False


def call_request(
    base: str,
    service: str,
    handler: str,
    input: Any,
    *,
    key: str | None,
    send: bool,
    idempotency_key: str | None,
    delay: Delay | None,
    headers: Mapping[str, str] | None,
    timeout: float | None,
    content_type: str | None,
    workflow: bool = False,
    workflow_run: bool = False,
) -> Request:
    if delay is not None and not send:
        raise ValueError("delay is only allowed on sends (Restate rejects it on calls)")
    if idempotency_key is not None and not idempotency_key:
        raise ValueError("idempotency_key must not be empty")
    path = "/" + _seg(service)
    if key is not None:
        path += "/" + _seg(key)
    path += "/" + _seg(handler)
    if send:
        path += "/send"
    content, ctype = serde.encode(input, content_type)
    hdrs = dict(headers or {})
    if ctype is not None:
        hdrs["content-type"] = ctype
    if idempotency_key is not None:
        hdrs["idempotency-key"] = idempotency_key
    params = {"delay": format_delay(delay)} if delay is not None else {}
    return Request(
        method="POST",
        url=base + path,
        kind="send" if send else "call",
        idempotent=idempotency_key is not None or workflow_run,
        headers=hdrs,
        content=content,
        params=params,
        timeout=timeout,
        workflow=workflow,
    )


def attach_request(
    base: str,
    ref: InvocationRef,
    action: Literal["attach", "output"],
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Request:
    if ref.idempotency_key is not None and _seg(ref.idempotency_key) != ref.idempotency_key:
        # Restate takes the idempotency key segment of the GET form verbatim (it does not
        # URL-decode it), so a key that needs escaping is only reachable through the
        # body form (Restate 1.7+).
        return Request(
            method="POST",
            url=f"{base}/restate/{action}",
            kind=action,
            idempotent=True,
            headers={**(headers or {}), "content-type": serde.JSON_CONTENT_TYPE},
            content=json.dumps(ref.lookup_body()).encode(),
            timeout=timeout,
        )
    return Request(
        method="GET",
        url=base + ref.path(action),
        kind=action,
        idempotent=True,
        headers=dict(headers or {}),
        timeout=timeout,
        workflow=ref.workflow is not None,
    )


def lookup_request(base: str, ref: InvocationRef, *, timeout: float | None = None) -> Request:
    return Request(
        method="POST",
        url=base + "/restate/lookup",
        kind="lookup",
        idempotent=True,
        headers={"content-type": serde.JSON_CONTENT_TYPE},
        content=json.dumps(ref.lookup_body()).encode(),
        timeout=timeout,
    )


def awakeable_request(
    base: str,
    awakeable_id: str,
    *,
    resolve: bool,
    value: Any,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Request:
    hdrs = dict(headers or {})
    if resolve:
        content, ctype = serde.encode(value, content_type)
    else:
        # A rejection's body is the failure message itself (it becomes a code-500 failure).
        content, ctype = str(value).encode("utf-8"), "text/plain; charset=utf-8"
    if ctype is not None:
        hdrs["content-type"] = ctype
    action = "resolve" if resolve else "reject"
    return Request(
        method="POST",
        url=f"{base}/restate/awakeables/{_seg(awakeable_id)}/{action}",
        kind="awakeable",
        # Completing an awakeable twice is harmless: the second completion is ignored.
        idempotent=True,
        headers=hdrs,
        content=content,
        timeout=timeout,
    )


def admin_request(
    base: str,
    invocation_id: str,
    operation: Literal["cancel", "kill", "purge"],
    *,
    timeout: float | None = None,
) -> Request:
    return Request(
        method="PATCH",
        url=f"{base}/invocations/{_seg(invocation_id)}/{operation}",
        kind="admin",
        idempotent=True,
        timeout=timeout,
    )


def merge_headers(
    client_wide: Mapping[str, str], per_request: Mapping[str, str], kind: Kind | None = None
) -> httpx.Headers:
    """Per-request headers win over the client-wide ones, whatever their case; both win over
    the token from the environment for the request's `kind`."""
    headers = httpx.Headers(auth_headers(kind) if kind is not None else {})
    headers.update(client_wide)
    headers.update(per_request)
    return headers


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class SendResult:
    """The body of a 202 answer to a send."""

    invocation_id: str
    status: str  # "Accepted" | "PreviouslyAccepted"
    execution_time: dt.datetime | None


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def parse_time(text: str | None) -> dt.datetime | None:
    """RFC 3339 with up to nanoseconds (``2026-11-22T02:28:00.636000000Z``)."""
    if not text:
        return None
    value = text.strip().replace("Z", "+00:00")
    head, dot, rest = value.partition(".")
    if dot:
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def parse_send(response: httpx.Response) -> SendResult:
    data = _json_body(response.content)
    invocation_id = data.get("invocationId") or response.headers.get("x-restate-id")
    if not isinstance(invocation_id, str):
        raise IngressError(
            f"send answered {response.status_code} without an invocation id",
            status=response.status_code,
            body=response.content,
            retry_safe=False,
        )
    return SendResult(
        invocation_id=invocation_id,
        status=str(data.get("status", "Accepted")),
        execution_time=parse_time(data.get("executionTime")),
    )


def parse_lookup(response: httpx.Response) -> str:
    invocation_id = _json_body(response.content).get("invocationId")
    if not isinstance(invocation_id, str):
        raise IngressError(
            "lookup answered without an invocation id",
            status=response.status_code,
            body=response.content,
            retry_safe=True,
        )
    return invocation_id


def decode_output(response: httpx.Response, output: Any) -> Any:
    return serde.decode(response.content, response.headers.get("content-type"), output)


def error_for(response: httpx.Response, request: Request) -> ResponseError | None:
    """``None`` for a success, else the error this answer means."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    headers = dict(response.headers.items())
    body = response.content
    data = _json_body(body)
    message = data.get("message")
    if not isinstance(message, str):
        message = body.decode("utf-8", "replace").strip() or f"HTTP {status}"
    code = data.get("code") if isinstance(data.get("code"), int) else status
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else None
    transient = status in TRANSIENT_STATUSES
    common: dict[str, Any] = {
        "status": status,
        "code": code,
        "invocation_id": response.headers.get("x-restate-id"),
        "metadata": metadata,
        "body": body,
        "headers": headers,
    }

    if request.kind == "admin":
        restate_code = data.get("restate_code")
        admin = {**common, "source": "admin", "transient": transient, "retry_safe": True}
        if status == 404:
            return NotFound(message, **admin)
        if status == 409 and "already completed" in message:
            return AlreadyCompleted(message, restate_code=restate_code, **admin)
        return AdminError(message, restate_code=restate_code, **admin)

    source = response.headers.get("x-restate-error-source") or data.get("source")
    if not isinstance(source, str):
        source = None
    common["source"] = source
    if source is None:
        # Restate before 1.7.4 (or a proxy) does not say; an invocation id on an error
        # means the invocation exists, so the failure is most likely the handler's.
        if status in REFUSED_BEFORE_RUN:
            source = "ingress"
        elif response.headers.get("x-restate-id") and request.kind in ("call", "attach", "output"):
            source = "invocation"

    if status == 470:
        return NotReady(message, retry_safe=True, **common)
    if status == 404 and (
        source != "invocation"
        or (request.kind in ("attach", "output") and message == NEVER_INVOKED_MESSAGE)
    ):
        # Unknown service/handler/invocation, or (source "invocation", message "not
        # found") attach to an idempotency key or workflow id never used: nothing ran.
        return NotFound(message, retry_safe=True, **common)
    if source == "invocation":
        if (
            status == 409
            and request.workflow
            and request.kind == "call"
            and message.startswith(ALREADY_INVOKED_MESSAGE)
        ):
            return AlreadyInvoked(message, retry_safe=True, **common)
        return InvocationFailed(message, retry_safe=request.idempotent, **common)
    if source == "ingress":
        return IngressError(message, retry_safe=True, transient=transient, **common)
    # Unknown source and not a Restate answer shape: a gateway may have passed the request on.
    return IngressError(message, retry_safe=request.idempotent, transient=transient, **common)


def transport_error(exc: httpx.HTTPError, request: Request) -> ClientError:
    """Map an httpx failure to ``Timeout`` or ``ConnectionError``."""
    what = f"{request.method} {request.url}"
    # Connecting (or waiting for a pooled connection) failed: nothing was sent.
    not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    safe = not_sent or request.idempotent
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"{what}: timed out ({exc})", retry_safe=safe, sent=not not_sent)
    return ConnectionError(f"{what}: {exc or type(exc).__name__}", retry_safe=safe, sent=not not_sent)


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """Opt-in automatic retries of errors that are both safe and transient.

    A ``Timeout`` after the request was sent is not retried: it is the caller's deadline.

    Delays grow from ``initial_delay`` by ``factor`` up to ``max_delay`` with +-``jitter``
    (a fraction); a ``Retry-After`` header (seconds) from the server is honoured.
    ``max_attempts`` counts the first attempt too.
    """

    max_attempts: int = 5
    initial_delay: float = 0.1
    max_delay: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2

    def next_delay(self, error: ClientError, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up."""
        if attempt >= self.max_attempts or not error.retryable:
            return None
        if isinstance(error, Timeout) and error.sent:
            # the caller's own deadline passed while the server worked: resending would
            # only wait again; the caller decides (attach later, or call again)
            return None
        delay = min(self.max_delay, self.initial_delay * self.factor ** (attempt - 1))
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        if isinstance(error, ResponseError):
            retry_after = error.headers.get("retry-after")
            if retry_after and retry_after.strip().isdigit():
                delay = max(delay, float(retry_after.strip()))
        return max(0.0, delay)


def retry_policy(retry: bool | RetryPolicy | None) -> RetryPolicy | None:
    if retry is True:
        return RetryPolicy()
    if retry is None or retry is False:
        return None
    return retry

"""The HTTP ingress (ASGI): Restate's URL forms turned into engine calls.

Every answer that says an invocation was accepted is sent only after the engine committed
it. Errors made here carry `"source": "ingress"`; an invocation's own terminal failure
carries `"source": "invocation"`, and its code is the HTTP status, as Restate does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from durably.engine.commands import complete_awakeable
from durably.engine.engine import Engine, TargetError
from durably.engine.model import Failure, Result, now_ms
from durably.engine.partitions import PartitionMoved
from durably.ids import InvocationId
from durably.ingress import paths
from durably.schema.durations import parse_duration
from durably.storage.sqlite import StorageError

log = logging.getLogger("durably.ingress")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DROPPED_HEADERS = frozenset({"connection", "host", "idempotency-key", "idempotency-expires"})
DEFAULT_MAX_BODY = 32 * 1024 * 1024


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


def _rfc3339(ms: int) -> str:
    t = dt.datetime.fromtimestamp(ms / 1000.0, tz=dt.UTC)
    return t.isoformat(timespec="milliseconds")


def _execution_time(ms: int) -> str:
    t = dt.datetime.fromtimestamp(ms / 1000.0, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(ms % 1000) * 1_000_000:09d}Z"


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the request body was read before)."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return


# a 405 names the methods the path allows (RFC 9110, 15.5.6)
_ALLOW_POST = [("allow", "POST")]


class IngressApp:
    def __init__(self, engine: Engine, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.engine = engine
        self.schema = engine.schema
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        try:
            await self._handle(scope, receive, send)
        except HttpError as e:
            await _ingress_error(send, e.status, e.message, e.headers)
        except asyncio.CancelledError:
            if not self.engine.stopping:
                raise
            # the server is stopping (SIGTERM, or storage failed) with this request still
            # waiting: a clear 503 (the caller may retry with its idempotency key) rather
            # than a dropped connection and a traceback in the log
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await _ingress_error(send, 503, _STOPPING)
        except PartitionMoved:
            raise  # answered from the partition's new owner (durably.cluster.spread)
        except StorageError as e:
            # the store failed and the server is stopping: the caller may retry elsewhere
            # or later with its idempotency key; nothing of this request was acknowledged
            await _ingress_error(send, 503, f"storage failed: {e}")
        except Exception as e:
            if self.engine.stopping:
                # the server stops (a storage failure, SIGTERM) and its store closed under
                # this request: the same answer as any request the stop cut short
                log.info("ingress request cut short by the stop: %s", e)
                await _ingress_error(send, 503, _STOPPING)
                return
            # the details go to the log, not to the caller
            log.exception("ingress request failed")
            await _ingress_error(send, 500, "internal error")

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
        try:
            route = paths.parse(path)
        except paths.PathError as e:
            raise HttpError(e.status, e.message) from None
        method = scope["method"]
        if isinstance(route, paths.Health):
            if method not in ("GET", "HEAD"):
                raise HttpError(405, "method not allowed, use GET", [("allow", "GET,HEAD")])
            await _raw(send, 200, b"", [])
            return
        if not getattr(self.engine.store, "available", True):
            # PostgreSQL is away: nothing could be acknowledged, so accept nothing new
            raise HttpError(
                503, "the database is unavailable; durably is reconnecting, retry later"
            )
        if isinstance(route, paths.Invoke):
            if method not in ("GET", "POST"):
                raise HttpError(405, "method not allowed, use POST", [("allow", "GET,POST")])
            await self._invoke(scope, receive, send, route)
            return
        if isinstance(route, paths.Awakeable):
            if method != "POST":
                raise HttpError(405, "method not allowed, use POST", _ALLOW_POST)
            await self._awakeable(receive, send, route)
            return
        if isinstance(route, paths.ByTargetBody):
            if method != "POST":
                raise HttpError(405, "method not allowed, use POST", _ALLOW_POST)
            body = await self._body(receive)
            invocation_id = self._target_from_body(body)
            if route.action == "lookup":
                # Restate answers with the (deterministic) id without checking that the
                # invocation exists.
                await _json(send, 200, {"invocationId": invocation_id}, [])
                return
            await self._attach_or_output(receive, send, invocation_id, route.action)
            return
        if method != "GET":
            raise HttpError(405, "method not allowed, use GET", [("allow", "GET")])
        if isinstance(route, paths.ById):
            try:
                InvocationId.parse(route.invocation_id)
            except ValueError:
                raise HttpError(
                    400, f"bad invocation id '{route.invocation_id}': bad format"
                ) from None
            await self._attach_or_output(receive, send, route.invocation_id, route.action)
        elif isinstance(route, paths.ByIdempotencyKey):
            inv_id = InvocationId.generate(
                service=route.service,
                handler=route.handler,
                key=route.key,
                idempotency_key=route.idempotency_key,
                workflow_run=False,
            )
            await self._attach_or_output(receive, send, str(inv_id), route.action)
        elif isinstance(route, paths.ByWorkflow):
            inv_id = InvocationId.generate(
                service=route.workflow,
                handler="",
                key=route.workflow_id,
                idempotency_key=None,
                workflow_run=True,
            )
            await self._attach_or_output(receive, send, str(inv_id), route.action)

    # ------------------------------------------------------------------ helpers

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise asyncio.CancelledError()
            chunk = msg.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body:
                    raise HttpError(413, f"the request body exceeds the limit of {self.max_body} bytes")
                chunks.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(chunks)

    def _target_from_body(self, body: bytes) -> str:
        try:
            req = orjson.loads(body)
            kind = req["target"]
            if kind == "invocation":
                inv = str(req["invocationId"])
                InvocationId.parse(inv)
                return inv
            if kind == "workflow":
                return str(
                    InvocationId.generate(
                        service=str(req["workflowName"]),
                        handler="",
                        key=str(req["workflowKey"]),
                        idempotency_key=None,
                        workflow_run=True,
                    )
                )
            if kind == "idempotentInvocation":
                key = req.get("key")
                return str(
                    InvocationId.generate(
                        service=str(req["service"]),
                        handler=str(req["handler"]),
                        key=None if key is None else str(key),
                        idempotency_key=str(req["idempotencyKey"]),
                        workflow_run=False,
                    )
                )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise HttpError(400, f"bad target body: {e}") from None
        raise HttpError(400, f"bad target body: unknown target kind {kind!r}")

    # ------------------------------------------------------------------ invoke

    async def _invoke(self, scope: Scope, receive: Receive, send: Send, route: paths.Invoke) -> None:
        service_ty = self.schema.service_ty(route.service)
        if service_ty is None:
            raise HttpError(
                404,
                f"service '{route.service}' not found, make sure to register the service "
                "before calling it.",
            )
        try:
            resolved = paths.resolve_invoke(route, keyed=service_ty != "service")
        except paths.PathError as e:
            raise HttpError(e.status, e.message) from None
        try:
            target, options = self.schema.target(resolved.service, resolved.handler, resolved.key)
        except TargetError as e:
            raise HttpError(e.status, e.message) from None
        if not options.public:
            raise HttpError(400, "the invoked service is not public")
        headers: list[tuple[str, str]] = []
        content_type: str | None = None
        idempotency_key: str | None = None
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            if name == "content-type":
                content_type = value
            if name == "idempotency-key":
                idempotency_key = value
            if name in DROPPED_HEADERS:
                continue
            headers.append((name, value))
        query = scope.get("query_string", b"").decode("latin-1")
        ingress_path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
        headers.append(("x-restate-ingress-path", ingress_path + (f"?{query}" if query else "")))
        delay_ms: int | None = None
        for part in query.split("&") if query else []:
            name, _, value = part.partition("=")
            if name == "delay":
                if not resolved.send:
                    raise HttpError(
                        400,
                        "cannot use the delay query parameter with calls. "
                        "The delay is supported only with sends",
                    )
                try:
                    delay_ms = int(parse_duration(_unquote(value)).total_seconds() * 1000)
                except ValueError as e:
                    raise HttpError(
                        400, f"bad delay query parameter, must be a ISO8601 duration: {e}"
                    ) from None
        if idempotency_key is not None:
            if not idempotency_key:
                raise HttpError(400, "the idempotency key must not be empty")
            if target.is_workflow_run:
                raise HttpError(400, "cannot use the idempotency key with workflow handlers")
        body = await self._body(receive)
        if options.input_rules is not None:
            problem = options.input_rules.validate(content_type, body)
            if problem:
                raise HttpError(400, f"input validation error: {problem}")
        execution_time = now_ms() + delay_ms if delay_ms else None
        submitted = self.engine.create(
            target,
            options,
            body,
            headers,
            idempotency_key=idempotency_key,
            execution_time=execution_time,
        )
        inv_id = submitted.invocation_id
        extra: list[tuple[str, str]] = []
        fut: asyncio.Future[Result] | None = None
        if not resolved.send and not (submitted.existed and target.is_workflow_run):
            if submitted.existed:
                # a repeated idempotent call answers like an attach: with the retention's end
                row = self.engine.lookup(inv_id)
                if row is not None and row.status == "completed" and row.expires_at:
                    extra.append(("idempotency-expires", _rfc3339(row.expires_at)))
            # taken before the wait for the commit below: a completed invocation whose
            # retention ends meanwhile may be purged during that wait, and a wait taken
            # after it would be for an id nobody completes any more
            fut = self.engine.wait_result(inv_id)
        try:
            await self.engine.committed()
        except BaseException:
            if fut is not None:
                fut.cancel()
            raise
        if resolved.send:
            out: dict[str, Any] = {"invocationId": inv_id}
            if submitted.execution_time:
                out["executionTime"] = _execution_time(submitted.execution_time)
            out["status"] = "PreviouslyAccepted" if submitted.existed else "Accepted"
            await _json(send, 202, out, [("x-restate-id", inv_id)])
            return
        if fut is None:  # a workflow's run invoked again
            await self._send_failure(
                send, inv_id, Failure(409, "the workflow method was already invoked"), []
            )
            return
        result = await self._wait(receive, inv_id, fut)
        if result is not None:
            await self._send_result(send, inv_id, result, options, extra)

    async def _wait(
        self, receive: Receive, inv_id: str, fut: asyncio.Future[Result] | None = None
    ) -> Result | None:
        """The invocation's result, or None once the caller went away (the invocation goes
        on; only the wait is dropped, so abandoned requests do not pile up waiters)."""
        if fut is None:
            fut = self.engine.wait_result(inv_id)
        if fut.done():
            return fut.result()
        gone = asyncio.ensure_future(_disconnected(receive))
        gone.add_done_callback(lambda _: fut.cancel())  # no-op once the result is there
        try:
            return await fut
        except asyncio.CancelledError:
            if gone.done() and not gone.cancelled():
                return None  # the caller hung up: its wait was dropped with the future
            raise
        finally:
            gone.cancel()

    async def _send_result(
        self, send: Send, inv_id: str, result: Result, options: Any, extra: list[tuple[str, str]]
    ) -> None:
        if result.failure is not None:
            await self._send_failure(send, inv_id, result.failure, extra)
            return
        body = result.value or b""
        headers = [("x-restate-id", inv_id), *extra]
        ct = getattr(options, "output_content_type", "application/json")
        if ct and (body or getattr(options, "output_set_content_type_if_empty", False)):
            headers.append(("content-type", ct))
        await _raw(send, 200, body, headers)

    async def _send_failure(
        self, send: Send, inv_id: str, failure: Failure, extra: list[tuple[str, str]]
    ) -> None:
        status = failure.code if 400 <= failure.code <= 599 else 500
        out: dict[str, Any] = {"code": failure.code, "message": failure.message}
        if failure.metadata:
            out["metadata"] = dict(failure.metadata)
        out["source"] = "invocation"
        await _json(
            send,
            status,
            out,
            [("x-restate-id", inv_id), *extra, ("x-restate-error-source", "invocation")],
        )

    # ------------------------------------------------------------------ attach / output

    async def _attach_or_output(self, receive: Receive, send: Send, inv_id: str, action: str) -> None:
        row = self.engine.lookup(inv_id)
        if row is None:
            # Restate: attaching to an unknown invocation (by id, idempotency key or
            # workflow) fails like an invocation would; output is refused by the ingress.
            if action == "attach":
                await self._send_failure(send, inv_id, Failure(404, "not found"), [])
                return
            raise HttpError(404, "invocation not found")
        try:
            _, options = self.schema.target(row.service, row.handler, row.key)
        except TargetError:
            options = None
        if row.status == "completed" and row.result is not None:
            # the completion may be committed but not yet on disk: never show it before
            await self.engine.committed()
            extra = []
            if row.expires_at:
                extra.append(("idempotency-expires", _rfc3339(row.expires_at)))
            await self._send_result(send, inv_id, Result.decode(row.result), options, extra)
            return
        if action == "output":
            raise HttpError(470, "the invocation exists but has not completed yet")
        result = await self._wait(receive, inv_id)
        if result is not None:
            await self._send_result(send, inv_id, result, options, [])

    # ------------------------------------------------------------------ awakeables

    async def _awakeable(self, receive: Receive, send: Send, route: paths.Awakeable) -> None:
        body = await self._body(receive)
        if route.action == "resolve":
            result = Result(value=body)
        else:
            result = Result(failure=Failure(500, body.decode("utf-8", "replace")))
        try:
            complete_awakeable(self.engine, route.awakeable_id, result)
        except ValueError:
            raise HttpError(400, f"bad awakeable id '{route.awakeable_id}'") from None
        await self.engine.committed()
        await _raw(send, 202, b"", [])


def _unquote(value: str) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(value)


async def _raw(send: Send, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
    hdrs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


_STOPPING = "the server is stopping"


async def _ingress_error(
    send: Send, status: int, message: str, headers: Sequence[tuple[str, str]] = ()
) -> None:
    """An error made here (not an invocation's own failure): `"source": "ingress"`."""
    await _json(
        send, status, {"code": status, "message": message, "source": "ingress"},
        [("x-restate-error-source", "ingress"), *headers],
    )


async def _json(
    send: Send, status: int, payload: dict[str, Any], headers: list[tuple[str, str]]
) -> None:
    await _raw(send, status, orjson.dumps(payload), [*headers, ("content-type", "application/json")])

"""A tiny restate-sdk endpoint and an in-process ASGI driver for it (no sockets).

Used to capture a real discovery manifest and to check that our proto agrees with the SDK's
encoder byte for byte.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import restate
from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int


greeter = restate.Service("Greeter", description="Says hello", metadata={"team": "core"})


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello {name}!"


@greeter.handler(name="describe", inactivity_timeout=timedelta(seconds=30))
async def describe(ctx: restate.Context, person: Person) -> Person:
    return person


@greeter.handler()
async def ping(ctx: restate.Context) -> None:
    return None


@greeter.handler()
async def fail(ctx: restate.Context, msg: str) -> str:
    raise restate.TerminalError(msg, status_code=418)


@greeter.handler(name="runTwice")
async def run_twice(ctx: restate.Context) -> str:
    async def step() -> str:
        return "stepped"

    return await ctx.run_typed("step", step)


counter = restate.VirtualObject(
    "Counter",
    inactivity_timeout=timedelta(minutes=2),
    idempotency_retention=timedelta(hours=1),
)


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("value", type_hint=int)) or 0
    value += delta
    ctx.set("value", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return (await ctx.get("value", type_hint=int)) or 0


signup = restate.Workflow("Signup", journal_retention=timedelta(days=1))


@signup.main(workflow_retention=timedelta(days=2), enable_lazy_state=True)
async def run(ctx: restate.WorkflowContext, email: str) -> bool:
    return await ctx.promise("confirmed", type_hint=bool).value()


@signup.handler()
async def confirm(ctx: restate.WorkflowSharedContext, ok: bool) -> None:
    await ctx.promise("confirmed", type_hint=bool).resolve(ok)


def make_app(protocol: Any = None) -> Any:
    return restate.app([greeter, counter, signup], protocol=protocol)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def asgi_request(
    app: Any,
    method: str,
    path: str,
    headers: dict[str, str],
    body_chunks: list[bytes] | None = None,
    *,
    http_version: str = "2",
    timeout: float = 10.0,
) -> Response:
    """Drive one ASGI HTTP exchange. The request body is sent in `body_chunks`, then closed
    (request/response mode); the response is collected until the app ends it."""
    chunks = list(body_chunks or [])
    response_done = asyncio.Event()
    status = 0
    resp_headers: dict[str, str] = {}
    body = bytearray()

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        if body_chunks is None or not body_chunks:
            # First receive of an empty request: send the (empty) closed body once.
            body_chunks_sent = getattr(receive, "sent_empty", False)
            if not body_chunks_sent:
                receive.sent_empty = True  # type: ignore[attr-defined]
                return {"type": "http.request", "body": b"", "more_body": False}
        await response_done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            for k, v in message.get("headers", []):
                resp_headers[k.decode().lower()] = v.decode()
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                response_done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 9080),
    }
    await asyncio.wait_for(app(scope, receive, send), timeout)
    return Response(status, resp_headers, bytes(body))

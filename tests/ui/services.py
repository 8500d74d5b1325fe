"""Services the web UI tests drive into every status (``hypercorn tests.ui.services:app``).

- ``Greeter/greet``: answers at once (succeeded); echoes its input, so a ``<script>`` payload
  lands in the journal and the output.
- ``Slow/hold``: stays inside the handler (running) until ``release`` is called for its name
  (a file in $UI_TEST_DIR), so the test decides when it ends.
- ``Waiter/wait``: awaits an awakeable nobody resolves (suspended).
- ``Flaky/fail``: a ``ctx.run`` that raises a retryable error (backing-off, then paused when
  the policy runs out); the SDK names the run command it failed at.
- ``Boom/fail``: raises a terminal error (failed).
- ``Cart`` (virtual object): ``add`` keeps state; ``call`` calls another key (a call tree,
  and with two keys calling each other, a deadlock).
- ``Signup`` (workflow): waits for a promise.
- ``Shop/order``: takes a pydantic model (the playground draws a form from its JSON schema),
  sleeps a moment and prices it in a ``ctx.run`` (bars on the invocation's timeline).
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

import restate
from pydantic import BaseModel, Field
from restate import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    TerminalError,
    WorkflowContext,
    WorkflowSharedContext,
)

greeter = restate.Service("Greeter")
slow = restate.Service("Slow")
waiter = restate.Service("Waiter")
flaky = restate.Service("Flaky")
boom = restate.Service("Boom")
cart = restate.VirtualObject("Cart")
signup = restate.Workflow("Signup")
shop = restate.Service("Shop")


class Order(BaseModel):
    item: str = Field(description="What to order")
    quantity: int = Field(1, ge=1, le=10)
    size: Literal["S", "M", "L"] = "M"
    gift: bool = False
    note: str | None = None


@shop.handler()
async def order(ctx: Context, req: Order) -> dict:
    await ctx.sleep(timedelta(milliseconds=30))
    total = await ctx.run("price", lambda: req.quantity * 3)
    return {**req.model_dump(), "total": total}


@greeter.handler()
async def greet(ctx: Context, req: dict) -> dict:
    name = await ctx.run("lookup", lambda: str(req.get("name", "")))
    return {"greeting": f"Hello {name}", "echo": req}


def _released(name: str) -> bool:
    return (Path(os.environ.get("UI_TEST_DIR", "/tmp")) / f"release-{name}").exists()


@slow.handler()
async def hold(ctx: Context, name: str) -> str:
    while not _released(name):
        await asyncio.sleep(0.05)
    return f"released {name}"


@waiter.handler()
async def wait(ctx: Context, note: str) -> str:
    _, awakeable = ctx.awakeable(type_hint=str)
    return await awakeable


@flaky.handler()
async def fail(ctx: Context, message: str) -> None:
    def charge() -> None:
        raise RuntimeError(message)

    await ctx.run("charge", charge)


@boom.handler(name="fail")
async def boom_fail(ctx: Context, message: str) -> None:
    raise TerminalError(message, status_code=422)


@cart.handler()
async def add(ctx: ObjectContext, item: str) -> list:
    items = await ctx.get("items", type_hint=list) or []
    items.append(item)
    ctx.set("items", items)
    ctx.set("last", item)
    return items


@cart.handler()
async def call(ctx: ObjectContext, path: list) -> str:
    if not path:
        return ctx.key()
    out = await ctx.generic_call("Cart", "call", _json(path[1:]), key=path[0])
    return ctx.key() + "," + out.decode()


@cart.handler(kind="shared")
async def items(ctx: ObjectSharedContext) -> list:
    return await ctx.get("items", type_hint=list) or []


@signup.main()
async def run(ctx: WorkflowContext, email: str) -> str:
    ctx.set("email", email)
    code = await ctx.promise("confirmation", type_hint=str).value()
    return f"confirmed {code}"


@signup.handler()
async def confirm(ctx: WorkflowSharedContext, code: str) -> None:
    await ctx.promise("confirmation", type_hint=str).resolve(code)


def _json(value: object) -> bytes:
    import json

    return json.dumps(value).encode()


app = restate.app(services=[greeter, slow, waiter, flaky, boom, cart, signup, shop])

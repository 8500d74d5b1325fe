"""Counter (virtual object): read/modify/write of the ``counter`` state entry."""

from __future__ import annotations

import restate
from restate import ObjectContext, TerminalError

counter = restate.VirtualObject("Counter")

COUNTER_KEY = "counter"


@counter.handler()
async def add(ctx: ObjectContext, value: int) -> dict:
    old = await ctx.get(COUNTER_KEY, type_hint=int) or 0
    new = old + value
    ctx.set(COUNTER_KEY, new)
    return {"oldValue": old, "newValue": new}


@counter.handler(name="addThenFail")
async def add_then_fail(ctx: ObjectContext, value: int) -> None:
    old = await ctx.get(COUNTER_KEY, type_hint=int) or 0
    ctx.set(COUNTER_KEY, old + value)
    raise TerminalError(ctx.key())


@counter.handler()
async def get(ctx: ObjectContext) -> int:
    return await ctx.get(COUNTER_KEY, type_hint=int) or 0


@counter.handler()
async def reset(ctx: ObjectContext) -> None:
    ctx.clear(COUNTER_KEY)

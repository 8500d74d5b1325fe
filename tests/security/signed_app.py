"""The README quickstart's Greeter plus a keyed Counter, served by an SDK endpoint that accepts
only requests signed with one of ``$IDENTITY_KEYS`` (comma-separated ``publickeyv1_...``)."""

from __future__ import annotations

import datetime
import os

import restate

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    count = await ctx.run("count", lambda: 1)
    await ctx.sleep(datetime.timedelta(milliseconds=100))
    return f"Hello {name}! ({count})"


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, value: int) -> int:
    total = (await ctx.get("total") or 0) + value
    ctx.set("total", total)
    return total


app = restate.app(
    services=[greeter, counter],
    identity_keys=[k for k in os.environ.get("IDENTITY_KEYS", "").split(",") if k],
)

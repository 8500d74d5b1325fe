"""Services for the admin operations on invocations: deadlocks, pause/resume, restart-as-new.

``CallChain.hop`` calls ``hop`` on the next key of its path, so ``hop(["b", "a"])`` on key
``a`` builds the exclusive call cycle a -> b -> a. ``Stepper.steps`` journals a few
``ctx.run`` steps around a sleep. ``AlwaysFailing.fail`` raises a retryable error forever.
"""

from __future__ import annotations

from datetime import timedelta

import restate
from restate import Context, ObjectContext

from ._json import decode, encode

call_chain = restate.VirtualObject("CallChain")
stepper = restate.Service("Stepper")
always_failing = restate.Service("AlwaysFailing")


@call_chain.handler()
async def hop(ctx: ObjectContext, path: list[str]) -> str:
    if not path:
        return ctx.key()
    out = await ctx.generic_call("CallChain", "hop", encode(path[1:]), key=path[0])
    return ctx.key() + "," + str(decode(out))


@stepper.handler()
async def steps(ctx: Context, req: dict) -> list:
    """``{"name": str, "sleep_ms": int}``: run, sleep, run; returns what the runs saw."""
    first = await ctx.run("first", lambda: req["name"] + "-1")
    await ctx.sleep(timedelta(milliseconds=int(req.get("sleep_ms", 0))))
    second = await ctx.run("second", lambda: req["name"] + "-2")
    return [first, second]


@always_failing.handler()
async def fail(ctx: Context, message: str) -> None:
    raise RuntimeError(message)


@stepper.handler(name="attachTo")
async def attach_to(ctx: Context, invocation_id: str) -> list:
    """Waits for another invocation's result from inside a handler."""
    return await ctx.attach_invocation(invocation_id, type_hint=list)

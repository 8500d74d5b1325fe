"""The benchmark's restate-sdk services: ``hypercorn bench.services:app`` (one worker).

The same module is served to durably and to the real Restate server, so both pay the same
SDK cost per invocation.
"""

from __future__ import annotations

from datetime import timedelta

import restate
from restate import ObjectContext, WorkflowContext

greeter = restate.Service("BenchGreeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello {name}"


counter = restate.VirtualObject("BenchCounter")


@counter.handler()
async def add(ctx: ObjectContext, value: int) -> int:
    new = (await ctx.get("n", type_hint=int) or 0) + value
    ctx.set("n", new)
    return new


workflow = restate.Workflow("BenchWorkflow")


@workflow.main()
async def run(ctx: WorkflowContext, value: int) -> int:
    a = await ctx.run_typed("step-1", lambda: value + 1)
    b = await ctx.run_typed("step-2", lambda: a * 2)
    return await ctx.run_typed("step-3", lambda: b - 1)


sleeper = restate.Service("BenchSleeper")


@sleeper.handler()
async def sleep(ctx: restate.Context, millis: int) -> int:
    await ctx.sleep(timedelta(milliseconds=millis))
    return millis


steps = restate.Workflow("BenchSteps")


@steps.main(name="run")
async def steps_run(ctx: WorkflowContext, n: int) -> int:
    """``n`` journaled ``ctx.run`` steps, one after the other (bench.scaling: journal length)."""
    total = 0
    for i in range(n):
        total = await ctx.run_typed(f"step-{i}", lambda t=total, i=i: t + i)
    return total


app = restate.app(services=[greeter, counter, workflow, sleeper, steps])

# ----------------------------------------------------------------------------------------
# Served by a second hypercorn process and registered with ``use_http_11: true``
# (request/response): the SDK suspends at the first ctx.sleep and ends the request, so the
# invocation is really *suspended* on the server, not an open stream (bench.scaling).

parked = restate.Service("BenchParked")


@parked.handler()
async def park(ctx: restate.Context, millis: int) -> int:
    await ctx.sleep(timedelta(milliseconds=millis))
    return millis


parked_app = restate.app(services=[parked])

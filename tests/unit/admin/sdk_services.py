"""A tiny restate-sdk 1.2.0 app (greeter, counter, workflow) that the admin tests register.

Served by hypercorn in a subprocess (see conftest.py). Not a test module.
"""

from datetime import timedelta

import restate

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello {name}!"


@greeter.handler(ingress_private=True)
async def secret(ctx: restate.Context, name: str) -> str:
    return name


counter = restate.VirtualObject(
    "Counter", inactivity_timeout=timedelta(seconds=30), idempotency_retention=timedelta(hours=2)
)


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("value") or 0) + delta
    ctx.set("value", value)
    return value


@counter.handler(kind="shared", inactivity_timeout=timedelta(seconds=5))
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("value") or 0


signup = restate.Workflow("Signup")


@signup.main(workflow_retention=timedelta(hours=6))
async def run(ctx: restate.WorkflowContext, email: str) -> str:
    return email


@signup.handler()
async def status(ctx: restate.WorkflowSharedContext) -> str:
    return "pending"


app = restate.app(services=[greeter, counter, signup])

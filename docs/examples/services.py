"""The services the client examples call, written with the official Restate Python SDK.

Serve them and register them with durably (or Restate):

    hypercorn docs.examples.services:app --bind 127.0.0.1:9080
    curl -X POST localhost:9070/deployments -H 'content-type: application/json' \\
         -d '{"uri": "http://127.0.0.1:9080"}'
"""

from __future__ import annotations

import datetime as dt
import uuid

import restate
from pydantic import BaseModel
from restate import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    TerminalError,
    WorkflowContext,
    WorkflowSharedContext,
)

# -- Greeter: the CLI and web examples ---------------------------------------------------

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"Hello {name}!"


# -- Payments: the idempotent payment example -------------------------------------------


class Charge(BaseModel):
    order_id: str
    amount_cents: int
    currency: str = "EUR"


class Receipt(BaseModel):
    order_id: str
    payment_id: str
    amount_cents: int


payments = restate.Service("Payments")


@payments.handler()
async def charge(ctx: Context, req: Charge) -> Receipt:
    if req.amount_cents <= 0:
        raise TerminalError("amount must be positive", status_code=400)

    def call_payment_provider() -> str:
        # stands in for the provider's API; journaled, so it runs once per invocation
        return f"pay_{uuid.uuid4().hex[:12]}"

    payment_id = await ctx.run_typed("charge", call_payment_provider)
    return Receipt(order_id=req.order_id, payment_id=payment_id, amount_cents=req.amount_cents)


# -- Reminders: the background scheduler example ----------------------------------------

reminders = restate.VirtualObject("Reminders")


@reminders.handler()
async def remind(ctx: ObjectContext, text: str) -> None:
    sent = await ctx.get("sent", type_hint=list[str]) or []
    ctx.set("sent", [*sent, text])


@reminders.handler(kind="shared")
async def sent(ctx: ObjectSharedContext) -> list[str]:
    return await ctx.get("sent", type_hint=list[str]) or []


# -- Orders: the webhook receiver example -----------------------------------------------

orders = restate.VirtualObject("Orders")


@orders.handler(name="paymentEvent")
async def payment_event(ctx: ObjectContext, event: dict[str, str]) -> None:
    events = await ctx.get("events", type_hint=list[str]) or []
    ctx.set("events", [*events, event["type"]])


@orders.handler(kind="shared")
async def events(ctx: ObjectSharedContext) -> list[str]:
    return await ctx.get("events", type_hint=list[str]) or []


# -- Signup: the workflow status polling example ----------------------------------------

STEPS = ["create account", "provision workspace", "send welcome email"]


class Progress(BaseModel):
    step: str
    done: int
    total: int


signup = restate.Workflow("Signup")


@signup.main()
async def run(ctx: WorkflowContext, email: str) -> str:
    for i, step in enumerate(STEPS):
        ctx.set("progress", Progress(step=step, done=i, total=len(STEPS)))
        await ctx.sleep(dt.timedelta(milliseconds=300))  # the real work would go here
    ctx.set("progress", Progress(step="done", done=len(STEPS), total=len(STEPS)))
    return f"welcome aboard, {email}"


@signup.handler()
async def status(ctx: WorkflowSharedContext) -> Progress | None:
    return await ctx.get("progress", type_hint=Progress)


app = restate.app(services=[greeter, payments, reminders, orders, signup])

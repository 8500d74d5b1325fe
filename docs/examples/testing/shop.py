"""A user's services, as docs/testing.md tests them: a cart (a virtual object) and an
order workflow that waits for a payment confirmation (a durable promise)."""

from __future__ import annotations

import restate
from restate import ObjectContext, WorkflowContext, WorkflowSharedContext

cart = restate.VirtualObject("Cart")


@cart.handler()
async def add(ctx: ObjectContext, item: str) -> list[str]:
    items = await ctx.get("items", type_hint=list[str]) or []
    items.append(item)
    ctx.set("items", items)
    return items


@cart.handler()
async def items(ctx: ObjectContext) -> list[str]:
    return await ctx.get("items", type_hint=list[str]) or []


order = restate.Workflow("Order")


@order.main()
async def run(ctx: WorkflowContext, items: list[str]) -> str:
    reserved = await ctx.run_typed("reserve", reserve_stock, items=items)
    ctx.set("status", "waiting for payment")
    paid = await ctx.promise("payment", type_hint=str).value()
    ctx.set("status", "paid")
    return f"order {ctx.key()}: {reserved} items, payment {paid}"


@order.handler()
async def status(ctx: WorkflowSharedContext) -> str:
    return await ctx.get("status", type_hint=str) or "new"


@order.handler()
async def confirm_payment(ctx: WorkflowSharedContext, reference: str) -> None:
    await ctx.promise("payment", type_hint=str).resolve(reference)


def reserve_stock(items: list[str]) -> int:
    return len(items)


app = restate.app([cart, order])

"""The Kafka example of docs/kafka.md: each record on the topic `orders` becomes one call of
`Orders/add`, keyed by the record key (the customer), in order per customer.

    hypercorn docs.examples.kafka_orders:app --bind 127.0.0.1:9080
"""

from __future__ import annotations

import restate
from restate import ObjectContext, ObjectSharedContext

orders = restate.VirtualObject("Orders")


@orders.handler()
async def add(ctx: ObjectContext, order: dict[str, object]) -> int:
    """One record: append the order to the customer's list (exclusive: one at a time per key)."""
    placed: list[dict[str, object]] = await ctx.get("orders", type_hint=list) or []
    headers = ctx.request().headers  # kafka.topic, kafka.partition, kafka.offset, ...
    placed.append({**order, "offset": int(headers["kafka.offset"])})
    ctx.set("orders", placed)
    return len(placed)


@orders.handler(kind="shared")
async def list_orders(ctx: ObjectSharedContext) -> list[dict[str, object]]:
    return await ctx.get("orders", type_hint=list) or []


app = restate.app(services=[orders])

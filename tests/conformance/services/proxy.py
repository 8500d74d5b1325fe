"""Proxy (service): forwards raw bytes to any handler, by call or one-way send.

A ProxyRequest is ``{serviceName, virtualObjectKey?, handlerName, message: [bytes as ints],
delayMillis?, idempotencyKey?, scope?, limitKey?}``.
"""

from __future__ import annotations

from datetime import timedelta

import restate
from restate import Context

proxy = restate.Service("Proxy")


def _call(ctx: Context, req: dict):
    return ctx.generic_call(
        req["serviceName"],
        req["handlerName"],
        bytes(req["message"]),
        key=req.get("virtualObjectKey"),
        idempotency_key=req.get("idempotencyKey"),
        scope=req.get("scope"),
        limit_key=req.get("limitKey"),
    )


def _send(ctx: Context, req: dict):
    delay = req.get("delayMillis")
    return ctx.generic_send(
        req["serviceName"],
        req["handlerName"],
        bytes(req["message"]),
        key=req.get("virtualObjectKey"),
        send_delay=timedelta(milliseconds=delay) if delay else None,
        idempotency_key=req.get("idempotencyKey"),
        scope=req.get("scope"),
        limit_key=req.get("limitKey"),
    )


@proxy.handler()
async def call(ctx: Context, req: dict) -> list:
    return list(await _call(ctx, req))


@proxy.handler(name="oneWayCall")
async def one_way_call(ctx: Context, req: dict) -> str:
    handle = _send(ctx, req)
    return await handle.invocation_id()


@proxy.handler(name="manyCalls")
async def many_calls(ctx: Context, requests: list) -> None:
    to_await = []
    for item in requests:
        req = item["proxyRequest"]
        if item.get("oneWayCall"):
            _send(ctx, req)
        else:
            fut = _call(ctx, req)
            if item.get("awaitAtTheEnd"):
                to_await.append(fut)
    for fut in to_await:
        await fut

"""Webhook receiver: accept a provider's events and hand each to a handler exactly once.

Providers deliver at least once. Using the provider's event id as the idempotency key
turns a redelivery into ``PreviouslyAccepted`` instead of a second run. The receiver only
*sends* (answers fast); the handler runs durably behind it.

    uvicorn docs.examples.webhook_receiver:app --port 8001
    curl -X POST localhost:8001/webhooks/payments -H 'content-type: application/json' \\
         -d '{"id": "evt_1", "type": "payment.succeeded", "order_id": "o-42"}'
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from durably.client import AsyncClient, ClientError


async def receive_payment_event(request: Request) -> JSONResponse:
    event = json.loads(await request.body())
    client: AsyncClient = request.app.state.durably
    try:
        handle = await client.object("Orders", event["order_id"]).send(
            "paymentEvent",
            {"type": event["type"]},
            idempotency_key=event["id"],
        )
    except ClientError as e:
        # a 5xx makes the provider deliver again later; the idempotency key makes that safe
        return JSONResponse({"error": str(e)}, status_code=503 if e.retry_safe else 500)
    return JSONResponse({"invocation": handle.invocation_id, "status": handle.status}, 202)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with AsyncClient(retry=True) as client:
        app.state.durably = client
        yield


app = Starlette(routes=[Route("/webhooks/payments", receive_payment_event, methods=["POST"])],
                lifespan=lifespan)

"""Tests of shop.py with durably's pytest plugin: nothing but the `durably_server` fixture."""

from __future__ import annotations

import time
import uuid

import pytest
from shop import app

from durably.testing import DurablyServer


def test_cart_keeps_items_across_a_crash(durably_server: DurablyServer) -> None:
    durably_server.register(app)
    cart = str(uuid.uuid4())
    with durably_server.client() as client:
        client.object("Cart", cart).call("add", "apple")
        durably_server.restart()  # kill -9, start again on the same data
        client.object("Cart", cart).call("add", "pear")
        assert client.object("Cart", cart).call("items", output=list[str]) == ["apple", "pear"]


def test_order_survives_a_crash_while_it_waits(durably_server: DurablyServer) -> None:
    durably_server.register(app)  # once per session is enough; again is harmless
    order_id = str(uuid.uuid4())
    with durably_server.client() as client:
        workflow = client.workflow("Order", order_id)
        workflow.submit(["apple", "pear"])
        deadline = time.monotonic() + 30
        while workflow.call("status", output=str) != "waiting for payment":
            assert time.monotonic() < deadline, "the order never reached its payment step"
            time.sleep(0.05)
        durably_server.restart()  # kill -9 in the middle of the workflow
        workflow.call("confirm_payment", "PAY-1")
        result = workflow.attach(output=str)
        assert workflow.call("status", output=str) == "paid"
    assert result == f"order {order_id}: 2 items, payment PAY-1"


@pytest.mark.asyncio
async def test_async_client(durably_server: DurablyServer) -> None:
    durably_server.register(app)
    async with durably_server.async_client() as client:
        items = await client.object("Cart", str(uuid.uuid4())).call("add", "fig")
    assert items == ["fig"]

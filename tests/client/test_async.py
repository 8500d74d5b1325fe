"""``AsyncClient`` used the way async code uses it: ``async with``, concurrent calls with
``asyncio.gather``, an attach that waits while another coroutine unblocks it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from tests.client.support import RETRY
from tests.support.harness import Env

from durably.client import AsyncClient, InvocationFailed, NotReady

SERVICES = ["BlockAndWaitWorkflow", "Counter", "Failing", "TestUtilsService"]


def key() -> str:
    return str(uuid.uuid4())


async def test_concurrent_calls_share_one_pool(env: Env) -> None:
    async with AsyncClient(env.ingress, admin_url=env.admin, retry=RETRY) as c:
        counter = c.object("Counter", key())
        results = await asyncio.gather(*(counter.call("add", 1) for _ in range(10)))
        assert sorted(r["newValue"] for r in results) == list(range(1, 11))
        assert await counter.call("get", output=int) == 10


async def test_attach_waits_while_another_task_unblocks(env: Env) -> None:
    async with AsyncClient(env.ingress, admin_url=env.admin, retry=RETRY) as c:
        wf = c.workflow("BlockAndWaitWorkflow", key())
        handle = await wf.submit("a")
        while await wf.call("getState") != "a":
            await asyncio.sleep(0.05)
        waiting = asyncio.create_task(wf.attach(output=str))
        with pytest.raises(NotReady):
            await wf.output()
        await wf.call("unblock", "b")
        assert await waiting == "b"
        assert await c.invocation(handle.invocation_id).output(output=str) == "b"


async def test_async_errors_are_the_same_classes(env: Env) -> None:
    async with AsyncClient(env.ingress, admin_url=env.admin, retry=RETRY) as c:
        with pytest.raises(InvocationFailed) as exc:
            await c.object("Failing", key()).call("terminallyFailingCall", {"errorMessage": "x"})
        assert exc.value.code == 500


def test_urls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from durably.client import Client

    for name in ("DURABLY_URL", "RESTATE_URL", "DURABLY_ADMIN_URL", "RESTATE_ADMIN_URL"):
        monkeypatch.delenv(name, raising=False)
    with Client() as c:
        assert (c.url, c.admin_url) == ("http://localhost:8080", "http://localhost:9070")
    monkeypatch.setenv("RESTATE_URL", "http://restate:8080/")
    monkeypatch.setenv("RESTATE_ADMIN_URL", "http://restate:9070")
    with Client() as c:
        assert (c.url, c.admin_url) == ("http://restate:8080", "http://restate:9070")
    monkeypatch.setenv("DURABLY_URL", "http://durably:8080")
    monkeypatch.setenv("DURABLY_ADMIN_URL", "http://durably:9070")
    with Client() as c:
        assert (c.url, c.admin_url) == ("http://durably:8080", "http://durably:9070")
    with Client("http://given:1", admin_url="http://given:2") as c:
        assert (c.url, c.admin_url) == ("http://given:1", "http://given:2")

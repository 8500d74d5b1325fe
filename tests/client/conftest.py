"""Fixtures for the ``durably.client`` tests.

The tests drive a real server (durably, or the real Restate with
``DURABLY_TEST_TARGET=restate``) and the SDK test services. The transport between server
and services does not matter to an ingress client, so ``env`` here is started once per
module in HTTP/2 mode only (the top-level ``env`` runs both modes).

``c`` is the client under test, once blocking (``Client``) and once async
(``AsyncClient`` behind ``Blocking``, which runs every coroutine on an event loop in its
own thread): one test body exercises both twins.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.client.support import RETRY, Blocking, LoopThread
from tests.support.harness import Env, start_env, stop_env

from durably.client import AsyncClient, Client


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    services = getattr(request.module, "SERVICES", None)
    if not services:
        raise pytest.UsageError(f"{request.module.__name__} must define SERVICES = [...]")
    name = request.module.__name__.rsplit(".", 1)[-1]
    base: Path = tmp_path_factory.mktemp(f"client-{name}")
    e = start_env(base, services, "h2", server_options=getattr(request.module, "SERVER_OPTIONS", None))
    try:
        yield e
    finally:
        stop_env(e)


@pytest.fixture(params=["sync", "async"])
def c(request: pytest.FixtureRequest, env: Env) -> Iterator[Any]:
    if request.param == "sync":
        with Client(env.ingress, admin_url=env.admin, retry=RETRY) as client:
            yield client
        return
    loop = LoopThread()
    client = loop.run(_make_async(env))
    try:
        yield Blocking(client, loop)
    finally:
        loop.run(client.aclose())
        loop.close()


async def _make_async(env: Env) -> AsyncClient:
    # httpx.AsyncClient binds to the loop it is first used on: build it inside the loop.
    return AsyncClient(env.ingress, admin_url=env.admin, retry=RETRY)

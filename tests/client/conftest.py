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

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from durably.client import AsyncClient, Client, ClientError
from tests.support.harness import Env, start_env, stop_env


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


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Blocking:
    """Blocking view of an async client object: coroutine methods are run to completion
    on ``LoopThread``; returned ``Async*`` objects are wrapped again."""

    def __init__(self, target: Any, loop: LoopThread) -> None:
        self._target = target
        self._loop = loop

    def _wrap(self, value: Any) -> Any:
        if type(value).__module__.startswith("durably.client._async"):
            return Blocking(value, self._loop)
        return value

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if inspect.iscoroutinefunction(attr):
            def run(*args: Any, **kwargs: Any) -> Any:
                return self._wrap(self._loop.run(attr(*args, **kwargs)))
            return run
        if callable(attr):
            def call(*args: Any, **kwargs: Any) -> Any:
                return self._wrap(attr(*args, **kwargs))
            return call
        return self._wrap(attr)

    def __repr__(self) -> str:
        return f"Blocking({self._target!r})"


@pytest.fixture(params=["sync", "async"])
def c(request: pytest.FixtureRequest, env: Env) -> Iterator[Any]:
    if request.param == "sync":
        with Client(env.ingress, admin_url=env.admin) as client:
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
    return AsyncClient(env.ingress, admin_url=env.admin)


def eventually(fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Retry ``fn`` until it stops raising an assertion or client error; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (AssertionError, ClientError):
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.1)

"""Helpers for the client tests: a blocking view of ``AsyncClient`` and ``eventually``."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from durably.client import ClientError, RetryPolicy

# Restate answers 503 "cannot find node for partition N" while a partition's leader is still
# being elected after start-up: safe and transient, so the clients under test retry it.
RETRY = RetryPolicy(max_attempts=30, initial_delay=0.1, max_delay=1.0)


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

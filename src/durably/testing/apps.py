"""Serving a user's ``restate.app(...)`` with hypercorn over cleartext HTTP/2.

`AppServer` runs one background thread with its own event loop and serves each app on
its own loopback port there, so that the apps live in the test process (tests can share
globals with their handlers) and keep running while the durable server is killed and
started again. `hypercorn_config` is shared with ``durably dev``, which serves the app in
a child process instead (to reload it).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent.futures import Future
from typing import Any

# hypercorn closes an HTTP/2 connection after 1000 requests or when idle by default; a
# durable server multiplexes every attempt over one long-lived connection, and a GOAWAY
# would fail the attempts in flight on it.
_UNLIMITED = 2**31 - 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def hypercorn_config(host: str, port: int, *, quiet: bool = True) -> Any:
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.h2_max_concurrent_streams = _UNLIMITED
    config.keep_alive_max_requests = _UNLIMITED
    config.keep_alive_timeout = _UNLIMITED
    config.graceful_timeout = 1.0
    if quiet:
        # not the access log, nor the warning that restate.app has no lifespan support
        config.accesslog = None
        config.loglevel = "ERROR"
    return config


class AppServer:
    """ASGI apps served on loopback ports from one background event loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # id(app) -> (app, port, the event that stops its hypercorn, hypercorn's future)
        self._served: dict[int, tuple[Any, int, asyncio.Event, Future[None]]] = {}

    def url_of(self, app: Any) -> str | None:
        served = self._served.get(id(app))
        return None if served is None else f"http://127.0.0.1:{served[1]}"

    def serve(self, app: Any, port: int | None = None, timeout: float = 30.0) -> str:
        """Serve ``app`` (once: a second call returns the same URL); returns its URL."""
        url = self.url_of(app)
        if url is not None:
            return url
        loop = self._ensure_loop()
        port = port or free_port()
        started: Future[asyncio.Event] = Future()

        async def run() -> None:
            from hypercorn.asyncio import serve

            stop = asyncio.Event()
            started.set_result(stop)
            await serve(app, hypercorn_config("127.0.0.1", port), shutdown_trigger=stop.wait)

        task = asyncio.run_coroutine_threadsafe(run(), loop)
        stop = started.result(timeout)
        deadline = time.monotonic() + timeout
        while not port_accepts(port):
            if task.done():
                task.result()  # raises what stopped hypercorn
                raise RuntimeError(f"hypercorn stopped before listening on port {port}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"hypercorn did not listen on port {port} within {timeout}s")
            time.sleep(0.005)
        self._served[id(app)] = (app, port, stop, task)
        return f"http://127.0.0.1:{port}"

    def warm_up(self) -> None:
        """Start the loop and import hypercorn in its thread, without waiting (called while
        the durable server starts, so that the first `serve` is quick)."""

        def load() -> None:
            import hypercorn.asyncio  # noqa: F401

        self._ensure_loop().call_soon_threadsafe(load)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        served, self._served = list(self._served.values()), {}
        for _, _, stop, _ in served:
            loop.call_soon_threadsafe(stop.set)
        deadline = time.monotonic() + 5.0  # hypercorn's graceful stop takes up to 1 s
        for _, _, _, task in served:
            try:
                task.result(max(0.0, deadline - time.monotonic()))
            except Exception:  # a stop that failed or took too long: the loop stops anyway
                pass
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
            if not self._thread.is_alive():
                loop.close()
        self._thread = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="durably-apps", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

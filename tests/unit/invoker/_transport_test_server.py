"""A raw ASGI app served by hypercorn in a subprocess, for the transport tests.

Routes (matched on the last path segment, so any prefix works):
  echo   response headers first, then each request chunk back as it arrives (full duplex)
  big    reads the request body; answers `?n=` bytes plus the request's size and checksum
  slow   answers "ok" after `?delay=` seconds
  hold   response headers, then waits for the request body to end and answers "bye"
Every response carries `x-path` (the raw path the server saw), `x-client-port` (the client's
port: one per connection) and `x-in-flight` (requests being handled when it was sent).

Run: python _transport_test_server.py PORT [KEEP_ALIVE_MAX_REQUESTS] [MAX_CONCURRENT_STREAMS]
or from a test through `ServerProcess`.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import subprocess
import sys
import time
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]

_in_flight = 0


async def app(scope: Scope, receive: Any, send: Any) -> None:
    global _in_flight
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    _in_flight += 1
    try:
        await _handle(scope, receive, send)
    finally:
        _in_flight -= 1


async def _handle(scope: Scope, receive: Any, send: Any) -> None:
    route = scope["path"].rsplit("/", 1)[-1]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    headers = [(b"x-path", scope["raw_path"]), (b"x-client-port", b"%d" % scope["client"][1])]

    async def start(status: int = 200, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        extra = (extra or []) + [(b"x-in-flight", b"%d" % _in_flight)]
        await send({"type": "http.response.start", "status": status, "headers": headers + extra})

    async def body(data: bytes, more: bool = False) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": more})

    async def read_all() -> bytes:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    if route == "echo":
        await start()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if message.get("body"):
                await body(message["body"], more=True)
            if not message.get("more_body"):
                break
        await body(b"")
    elif route == "big":
        request = await read_all()
        n = int(query.get("n", "0"))
        digest = hashlib.sha256(request).hexdigest().encode()
        await start(extra=[(b"x-request-bytes", str(len(request)).encode()), (b"x-sha", digest)])
        chunk = b"x" * 65536
        while n > 0:
            await body(chunk[:n], more=True)
            n -= len(chunk)
        await body(b"")
    elif route == "slow":
        await read_all()
        await asyncio.sleep(float(query.get("delay", "0.2")))
        await start()
        await body(b"ok")
    elif route == "hold":
        await start()
        await read_all()
        await body(b"bye")
    else:
        await read_all()
        await start(404)
        await body(b"")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """hypercorn serving `app` in a subprocess on a fixed port; can be killed and restarted."""

    def __init__(self, *, max_requests: int = 1_000_000, max_streams: int = 1000) -> None:
        self.port = free_port()
        self.args = [sys.executable, __file__, str(self.port), str(max_requests), str(max_streams)]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(self.args)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("test server exited") from None
                time.sleep(0.02)
        raise RuntimeError("test server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def main() -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    port = int(sys.argv[1])
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.keep_alive_max_requests = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    config.h2_max_concurrent_streams = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    config.accesslog = None
    config.errorlog = None

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(run())


if __name__ == "__main__":
    main()

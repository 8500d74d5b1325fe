"""Fixtures for the admin API tests: a real restate-sdk app served by hypercorn."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"hypercorn exited early ({proc.returncode}):\n{out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"hypercorn did not listen on {port} within {timeout}s")


@pytest.fixture(scope="session")
def sdk_service_port() -> Iterator[int]:
    """Port of a hypercorn process serving sdk_services:app (h2c and HTTP/1.1)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hypercorn",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "sdk_services:app",
        ],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_listening(port, proc)
        yield port
    finally:
        # restate-sdk takes over SIGTERM; SIGKILL is the reliable stop.
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on."""
    return free_port()


class _NotFoundHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        body = b"no such thing"
        self.send_response(404)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def not_found_server() -> Iterator[int]:
    """An HTTP/1.1 server that answers 404 to everything (not a Restate endpoint)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFoundHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()

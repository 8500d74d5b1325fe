"""`DurablyServer`: ``durably serve`` in a child process, for tests.

The server runs as a child process (so that `restart` can kill it as ``kill -9`` would)
on free loopback ports with its data in a directory of the caller's choosing; the apps it
calls are served by an `AppServer` inside the calling process, and keep being served
across restarts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import httpx

from durably.testing.apps import AppServer, free_port

if TYPE_CHECKING:
    from durably.client import AsyncClient, Client

# the directory durably is imported from, so that the child runs the same code
_SRC = str(Path(__file__).resolve().parents[2])


class DurablyServerError(RuntimeError):
    """The server could not be started, or refused a registration."""


class DurablyServer:
    """A durable server for tests: `start`, `register` apps, `client`, `restart`, `close`."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        extra_args: list[str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="durably-test-")
            data_dir = self._tmp.name
        self.base_dir = Path(data_dir)
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "durably.log"
        self.ingress_port = free_port()
        self.admin_port = free_port()
        self.extra_args = list(extra_args or [])
        self.start_timeout = start_timeout
        self.apps = AppServer()
        self._deployments: dict[str, str] = {}  # app URL -> deployment id
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._clients: list[Any] = []

    # -- URLs ---------------------------------------------------------------------------

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until both its APIs answer."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the server's process without waiting for it (see `wait_ready`)."""
        if self._proc is not None:
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "durably", "serve",
            "--bind", "127.0.0.1",
            "--ingress-port", str(self.ingress_port),
            "--admin-port", str(self.admin_port),
            "--data-dir", str(self.data_dir),
            # a crashed process loses nothing committed with 'normal'; only power loss can
            "--sync", "normal",
            *self.extra_args,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SRC, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.apps.warm_up()

    def wait_ready(self) -> None:
        """Wait until the launched server answers on both ports."""
        deadline = time.monotonic() + self.start_timeout
        urls = (f"{self.ingress_url}/restate/health", f"{self.admin_url}/health")
        with httpx.Client(timeout=2.0) as http:
            while True:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise DurablyServerError(
                        f"durably exited with code {self._proc.returncode} while starting; "
                        f"log ({self.log_path}):\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if all(http.get(u).status_code == 200 for u in urls):
                        return
                if time.monotonic() > deadline:
                    raise DurablyServerError(
                        f"durably did not answer within {self.start_timeout}s; "
                        f"log ({self.log_path}):\n{self.log_tail()}"
                    )
                time.sleep(0.01)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL: no shutdown code runs, as in a crash)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Kill the server hard and start it again on the same data and ports; the apps
        registered with it keep being served meanwhile."""
        self.kill()
        self.start()

    def close(self) -> None:
        """Stop the server and the apps; remove the data if it was a temporary directory."""
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.close()
        self._clients.clear()
        self.kill()
        self.apps.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> DurablyServer:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_bytes()[-64_000:].decode("utf-8", "replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- apps ---------------------------------------------------------------------------

    def register(self, app: Any, *, use_http_11: bool = False) -> str:
        """Serve ``app`` (a ``restate.app(...)``) on a free port, register it and return the
        deployment id. Registering the same app again returns the same id."""
        url = self.apps.serve(app)
        known = self._deployments.get(url)
        if known is not None:
            return known
        body = {"uri": url, "use_http_11": use_http_11}
        with httpx.Client(timeout=30.0) as http:
            r = http.post(f"{self.admin_url}/deployments", json=body)
        if r.status_code not in (200, 201):
            raise DurablyServerError(f"registering {url} failed: {r.status_code} {r.text}")
        deployment_id: str = r.json()["id"]
        self._deployments[url] = deployment_id
        return deployment_id

    # -- clients ------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> Client:
        """A `durably.client.Client` pointed at this server (closed with the server)."""
        from durably.client import Client

        c = Client(self.ingress_url, admin_url=self.admin_url, **kwargs)
        self._clients.append(c)
        return c

    def async_client(self, **kwargs: Any) -> AsyncClient:
        """A `durably.client.AsyncClient` pointed at this server; close it (``async with``)
        in the event loop that used it."""
        from durably.client import AsyncClient

        return AsyncClient(self.ingress_url, admin_url=self.admin_url, **kwargs)

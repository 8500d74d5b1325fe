"""Process harness for the conformance tests.

Starts, on free loopback ports:

* the **services** process: hypercorn serving ``tests.conformance.services.app:app`` with
  one worker (the test services keep counters in process globals);
* the **server under test**: ``durably serve`` (default) or the real Restate server from
  npm (``DURABLY_TEST_TARGET=restate``), the oracle the scenarios are proved against.

``Env`` is what the ``env`` fixture yields: URLs, process handles and small HTTP helpers
that speak Restate's ingress and admin APIs.
"""

from __future__ import annotations

import abc
import concurrent.futures
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from durably.testing.apps import free_port, port_accepts  # noqa: F401 (used by the tests)

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
HYPERCORN_CONFIG = REPO_ROOT / "tests" / "conformance" / "hypercorn.toml"

RESTATE_VERSION = os.environ.get("DURABLY_TEST_RESTATE_VERSION", "1.7.12")
CACHE_DIR = Path(os.environ.get("DURABLY_TEST_CACHE", Path.home() / ".cache" / "durably-test"))

TARGETS = ("durably", "restate")


class _Nothing:
    """Marker for "no request body" (distinct from a JSON ``null`` body)."""

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()


class HarnessError(RuntimeError):
    """A process of the test environment could not be started or driven."""


# --------------------------------------------------------------------------------------
# small utilities


def tail(path: Path, lines: int = 80) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"<no log file {path}>"
    return "\n".join(data.splitlines()[-lines:])


def poll(fn: Callable[[], T], timeout: float = 10.0, interval: float = 0.1) -> T:
    """Call ``fn`` until it returns without raising; return its value.

    Like Awaitility's ``untilAsserted``: assertion failures and HTTP errors are retried;
    after ``timeout`` seconds the last exception is re-raised.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (AssertionError, httpx.HTTPError, ValueError, KeyError):
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval)


def _signal(proc: subprocess.Popen | None, sig: int) -> None:
    """Signal the process *group* of ``proc`` (started with ``start_new_session``).

    ``hypercorn --workers 1`` is a supervisor plus a spawned worker process: signalling only
    the supervisor's pid with SIGKILL leaves the worker (which holds the listening socket
    and the HTTP/2 connection to the server) running as an orphan.
    """
    if proc is None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)


def _group_has_live_process(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs; a zombie does not count.

    An orphaned worker that exited stays a zombie until the machine's init reaps it, which
    here takes 1-2 s; a zombie has closed its sockets and files already, so for a test it
    is gone.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        entries = os.scandir("/proc")
    except OSError:
        return True  # no /proc: a zombie cannot be told apart
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
            fields = stat[stat.rfind(b")") + 2:].split()
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
    return False


def _wait_group_gone(proc: subprocess.Popen | None, timeout: float = 10.0) -> bool:
    """Wait until no process of ``proc``'s group is left (orphaned workers included)."""
    if proc is None:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_has_live_process(proc.pid):
            return True
        time.sleep(0.02)
    return False


def _wait(proc: subprocess.Popen | None, timeout: float) -> bool:
    if proc is None:
        return True
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


# --------------------------------------------------------------------------------------
# services process (hypercorn + restate-sdk)


DEFAULT_SERVICES_APP = "tests.conformance.services.app:app"


class ServicesProcess:
    """``python -m hypercorn tests.conformance.services.app:app`` on a fixed free port.

    ``app`` names another ASGI app (``module:attr``, importable from the repository root),
    e.g. the fault tests' or the benchmark's own services; ``config`` another hypercorn
    config file.
    """

    def __init__(
        self,
        services: Iterable[str],
        log_dir: Path,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        app: str = DEFAULT_SERVICES_APP,
        config: Path | None = None,
    ) -> None:
        self.app = app
        self.config = Path(config) if config is not None else HYPERCORN_CONFIG
        self.services = list(services)
        self.port = port or free_port()
        self.log_path = Path(log_dir) / "services.log"
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> None:
        self.launch()
        self.wait_listening(timeout)

    def launch(self) -> None:
        """Start the process without waiting for it (``start`` also waits until it listens)."""
        env = dict(os.environ)
        env.update(
            SERVICES=",".join(self.services),
            PORT=str(self.port),
            PYTHONUNBUFFERED="1",
        )
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env.update(self.extra_env)
        cmd = [
            sys.executable, "-m", "hypercorn", self.app,
            "--config", str(self.config),
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1",
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n=== starting: {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def wait_listening(self, timeout: float = 30.0) -> None:
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while not port_accepts(self.port):
            if self.proc.poll() is not None:
                raise HarnessError(
                    f"services process exited with code {self.proc.returncode} before listening on "
                    f"{self.port}; log tail:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"services process did not listen on {self.port} within {timeout}s; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group, and wait until all of it is gone."""
        _signal(self.proc, signal.SIGKILL)
        _wait(self.proc, 10)
        _wait_group_gone(self.proc)

    def terminate(self, grace: float = 10.0) -> None:
        """SIGTERM to the process group, then SIGKILL after ``grace`` seconds.

        The hypercorn supervisor turns SIGTERM into a graceful shutdown of its worker; in the
        worker, restate-sdk has replaced the SIGTERM handler with one that tells its open
        invocation streams that it is shutting down. If the group is not gone after
        ``grace`` seconds it is SIGKILLed (the services log records which happened).
        """
        started = time.monotonic()
        _signal(self.proc, signal.SIGTERM)
        exited = _wait(self.proc, grace) and _wait_group_gone(self.proc, max(0.0, grace - (time.monotonic() - started)))
        if not exited:
            self.kill()
        if self._log_file is not None:
            what = "exited" if exited else f"did not exit within {grace}s, SIGKILLed"
            self._log_file.write(
                f"\n=== harness: SIGTERM sent; process {what} after {time.monotonic() - started:.2f}s\n".encode()
            )
            self._log_file.flush()

    def restart(self, graceful: bool = False) -> None:
        """Stop (SIGTERM if ``graceful`` else SIGKILL) and start again on the same port."""
        if graceful:
            self.terminate()
        else:
            self.kill()
        self._close_log()
        self.start()

    def close(self) -> None:
        self.kill()
        self._close_log()

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


# --------------------------------------------------------------------------------------
# server under test


class ServerProcess(abc.ABC):
    """A durable invocation server with Restate's ingress and admin HTTP APIs.

    ``options`` are target-neutral settings a test module may ask for; each implementation
    maps them onto its own flags/env. Known keys: ``cleanup_interval`` (e.g. ``"1s"``).
    """

    name = "server"
    KNOWN_OPTIONS = frozenset({"cleanup_interval"})

    def __init__(self, base_dir: Path, options: Mapping[str, str] | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "server.log"
        self.options = dict(options or {})
        unknown = set(self.options) - self.KNOWN_OPTIONS
        if unknown:
            raise HarnessError(f"unknown server options {sorted(unknown)}")
        self.ingress_port = free_port()
        self.admin_port = free_port()
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @abc.abstractmethod
    def command(self) -> tuple[list[str], dict[str, str]]:
        """The command line and the environment to start the server with."""

    def start(self, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = float(os.environ.get("DURABLY_TEST_START_TIMEOUT", "60"))
        self.launch()
        self.wait_healthy(timeout)

    def launch(self) -> None:
        """Start the process without waiting for it (``start`` also waits until healthy)."""
        cmd, env = self.command()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n=== starting: {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            cmd, cwd=self.base_dir, env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        urls = [f"{self.ingress_url}/restate/health", f"{self.admin_url}/health"]
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    code = None if self.proc is None else self.proc.returncode
                    raise HarnessError(
                        f"{self.name} exited with code {code} before becoming healthy; "
                        f"log tail ({self.log_path}):\n{self.log_tail()}"
                    )
                try:
                    if all(client.get(u).status_code == 200 for u in urls):
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"{self.name} did not become healthy within {timeout}s "
                        f"({', '.join(urls)}); log tail ({self.log_path}):\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL (a crash) to the process group, and wait until it is gone."""
        _signal(self.proc, signal.SIGKILL)
        _wait(self.proc, 10)
        _wait_group_gone(self.proc)
        self._close_log()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a graceful stop) and wait; SIGKILL if it does not exit in ``timeout``."""
        _signal(self.proc, signal.SIGTERM)
        if not _wait(self.proc, timeout):
            self.kill()
            raise HarnessError(f"{self.name} did not stop within {timeout}s after SIGTERM")
        self._close_log()

    def restart(self, graceful: bool = False, timeout: float | None = None) -> None:
        """Stop or kill, then start again on the same data dir and ports."""
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start(timeout)

    def close(self) -> None:
        self.kill()

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class DurablyServer(ServerProcess):
    """``python -m durably serve`` (the server this repository builds)."""

    name = "durably serve"

    def __init__(
        self, base_dir: Path, options=None, extra_args: Iterable[str] = (), store: str | None = None
    ) -> None:
        super().__init__(base_dir, options)
        self.extra_args = list(extra_args)
        # DURABLY_TEST_STORE=postgresql: a database of its own on the session's test cluster
        if store is None:
            store = os.environ.get("DURABLY_TEST_STORE", "sqlite").strip().lower() or "sqlite"
        self.store = store
        self.postgres_dsn: str | None = None
        if store == "postgresql":
            from tests.support.postgres import shared_cluster

            self.postgres_dsn = shared_cluster().new_database()
        elif store.startswith("postgresql://"):
            self.store, self.postgres_dsn = "postgresql", store
        elif store != "sqlite":
            raise HarnessError(f"DURABLY_TEST_STORE must be sqlite or postgresql, not {store!r}")

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd = [
            sys.executable, "-m", "durably", "serve",
            "--bind", "127.0.0.1",
            "--ingress-port", str(self.ingress_port),
            "--admin-port", str(self.admin_port),
            "--data-dir", str(self.data_dir),
        ]
        if "cleanup_interval" in self.options:
            cmd += ["--cleanup-interval", self.options["cleanup_interval"]]
        if self.postgres_dsn is not None:
            cmd += ["--store", self.postgres_dsn]
        cmd += self.extra_args
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        src = str(REPO_ROOT / "src")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        return cmd, env


    def store_rows(self, sql: str) -> list[tuple]:
        """Rows of a read-only query on durably's own tables, on whichever store it uses."""
        if self.postgres_dsn is not None:
            from tests.support.postgres import fetch

            return fetch(self.postgres_dsn, sql)
        import sqlite3

        db = sqlite3.connect(f"file:{self.data_dir / 'durably.sqlite3'}?mode=ro", uri=True)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()


def restate_server_binary() -> Path:
    """Path of the npm ``restate-server`` binary, installed once into the cache dir."""
    override = os.environ.get("RESTATE_SERVER_BIN")
    if override:
        return Path(override)
    install_dir = CACHE_DIR / f"restate-server-{RESTATE_VERSION}"

    def find() -> Path | None:
        arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
            platform.machine().lower(), platform.machine().lower()
        )
        candidates = [install_dir / f"node_modules/@restatedev/restate-server-linux-{arch}/bin/restate-server"]
        candidates += sorted(install_dir.glob("node_modules/@restatedev/restate-server-*/bin/restate-server"))
        for c in candidates:
            if c.is_file() and os.access(c, os.X_OK):
                return c
        return None

    found = find()
    if found:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise HarnessError("npm is needed to install @restatedev/restate-server (or set RESTATE_SERVER_BIN)")
    install_dir.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(install_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel pytest runs install only once
        found = find()
        if found:
            return found
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(install_dir),
             f"@restatedev/restate-server@{RESTATE_VERSION}"],
            capture_output=True, text=True, timeout=600,
        )
        found = find()
        if result.returncode != 0 or found is None:
            raise HarnessError(
                f"npm install @restatedev/restate-server@{RESTATE_VERSION} failed "
                f"(rc={result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return found


class RestateServer(ServerProcess):
    """The real Restate server (npm ``@restatedev/restate-server``), the test oracle."""

    name = "restate-server"
    OPTION_ENV = {"cleanup_interval": "RESTATE_WORKER__CLEANUP_INTERVAL"}

    def __init__(self, base_dir: Path, options=None, extra_env: Mapping[str, str] | None = None) -> None:
        super().__init__(base_dir, options)
        self.node_port = free_port()
        self.cluster_name = f"durably-test-{uuid.uuid4().hex[:12]}"
        self.extra_env = dict(extra_env or {})

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTATE_")}
        env.update(
            RESTATE_BASE_DIR=str(self.data_dir),
            RESTATE_NODE_NAME="n1",
            RESTATE_CLUSTER_NAME=self.cluster_name,
            RESTATE_AUTO_PROVISION="true",
            # node-to-node (message fabric) port, default 5122: must not collide either
            RESTATE_BIND_ADDRESS=f"127.0.0.1:{self.node_port}",
            RESTATE_ADVERTISED_ADDRESS=f"http://127.0.0.1:{self.node_port}/",
            RESTATE_ADMIN__BIND_ADDRESS=f"127.0.0.1:{self.admin_port}",
            RESTATE_INGRESS__BIND_ADDRESS=f"127.0.0.1:{self.ingress_port}",
            # TCP only: unix sockets under a long pytest tmp path can exceed 108 bytes
            RESTATE_LISTEN_MODE="tcp",
            RESTATE_DISABLE_TELEMETRY="true",
            DO_NOT_TRACK="true",
            RESTATE_LOG_DISABLE_ANSI_CODES="true",
            RESTATE_SHUTDOWN_TIMEOUT="10s",
        )
        for key, value in self.options.items():
            env[self.OPTION_ENV[key]] = value
        env.update(self.extra_env)
        return [str(restate_server_binary()), "--no-logo"], env


def make_server(base_dir: Path, options: Mapping[str, str] | None = None) -> ServerProcess:
    target = os.environ.get("DURABLY_TEST_TARGET", "durably").strip().lower() or "durably"
    if target == "durably":
        extra = os.environ.get("DURABLY_TEST_SERVER_ARGS", "").split()
        # DURABLY_TEST_CLUSTER=3: that many nodes on one PostgreSQL (tests/support/cluster.py)
        nodes = int(os.environ.get("DURABLY_TEST_CLUSTER", "0") or 0)
        if nodes > 0:
            from tests.support.cluster import ClusterServer

            return ClusterServer(base_dir, options, nodes=nodes, extra_args=extra)
        return DurablyServer(base_dir, options, extra_args=extra)
    if target == "restate":
        return RestateServer(base_dir, options)
    raise HarnessError(f"DURABLY_TEST_TARGET must be one of {TARGETS}, not {target!r}")


def register(admin_url: str, services_url: str, use_http_11: bool, timeout: float = 20.0) -> dict:
    """``POST {admin}/deployments``, retried until 201/200 for up to ``timeout`` seconds."""
    body = {"uri": services_url, "use_http_11": use_http_11, "force": False}
    deadline = time.monotonic() + timeout
    last = "no attempt"
    with httpx.Client(timeout=10.0) as client:
        while True:
            try:
                r = client.post(f"{admin_url}/deployments", json=body)
                if r.status_code in (200, 201):
                    return r.json()
                last = f"{r.status_code} {r.text[:2000]}"
            except httpx.HTTPError as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise HarnessError(f"registering {services_url} at {admin_url} failed for {timeout}s: {last}")
            time.sleep(0.2)


# --------------------------------------------------------------------------------------
# the object tests use


def new_key() -> str:
    return str(uuid.uuid4())


def json_bytes(value: Any) -> list[int]:
    """The bytes of the JSON text of ``value`` as a list of ints (``1`` -> ``[49]``)."""
    return list(json.dumps(value, separators=(",", ":")).encode("utf-8"))


class Env:
    """One server + one services process, registered in one transport ``mode``.

    ``mode`` is ``"h2"`` (deployment registered normally: cleartext HTTP/2, the SDK answers
    BIDI_STREAM) or ``"http1"`` (``use_http_11: true``: the SDK answers REQUEST_RESPONSE).
    """

    def __init__(self, server: ServerProcess, services: ServicesProcess, mode: str) -> None:
        self.server = server
        self.services = services
        self.mode = mode
        self.client = httpx.Client(timeout=httpx.Timeout(120.0, connect=10.0))
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="env-bg")

    # URLs ------------------------------------------------------------------------------
    @property
    def ingress(self) -> str:
        return self.server.ingress_url

    @property
    def admin(self) -> str:
        return self.server.admin_url

    @property
    def target(self) -> str:
        return "restate" if isinstance(self.server, RestateServer) else "durably"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    # ingress -----------------------------------------------------------------------------
    @staticmethod
    def path(service: str, handler: str, key: str | None = None) -> str:
        if key is None:
            return f"/{service}/{handler}"
        return f"/{service}/{quote(key, safe='')}/{handler}"

    @staticmethod
    def _request_parts(body: Any, idem: Any, headers: Mapping[str, str] | None, raw: bool):
        hdrs = dict(headers or {})
        content: bytes | None = None
        if body is not NOTHING:
            if raw:
                content = body if isinstance(body, bytes) else str(body).encode()
                hdrs.setdefault("content-type", "application/octet-stream")
            else:
                content = json.dumps(body).encode("utf-8")
                hdrs.setdefault("content-type", "application/json")
        if idem is True:
            hdrs["idempotency-key"] = new_key()
        elif isinstance(idem, str):
            hdrs["idempotency-key"] = idem
        return content, hdrs

    def call(
        self,
        service: str,
        handler: str,
        body: Any = NOTHING,
        key: str | None = None,
        idem: Any = True,
        headers: Mapping[str, str] | None = None,
        raw: bool = False,
        timeout: float | None = None,
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        """``POST I/{service}[/{key}]/{handler}``.

        ``body`` is JSON-encoded (``NOTHING``: empty body, no content-type); with ``raw`` it
        is sent as bytes (content-type ``application/octet-stream`` unless given).
        ``idem``: ``True`` adds a fresh ``idempotency-key``, a string uses that key,
        ``False``/``None`` sends none.
        """
        content, hdrs = self._request_parts(body, idem, headers, raw)
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = timeout
        return (client or self.client).post(
            self.ingress + self.path(service, handler, key), content=content, headers=hdrs, **kwargs
        )

    def call_json(self, service: str, handler: str, body: Any = NOTHING, **kw: Any) -> Any:
        """``call`` that must answer 200; returns the decoded JSON (``None`` for no body)."""
        r = self.call(service, handler, body, **kw)
        assert r.status_code == 200, f"{service}/{handler} -> {r.status_code} {r.text}"
        return r.json() if r.content else None

    def send_raw(
        self,
        service: str,
        handler: str,
        body: Any = NOTHING,
        key: str | None = None,
        idem: Any = True,
        headers: Mapping[str, str] | None = None,
        delay: str | None = None,
        raw: bool = False,
    ) -> httpx.Response:
        content, hdrs = self._request_parts(body, idem, headers, raw)
        params = {"delay": delay} if delay is not None else None
        return self.client.post(
            self.ingress + self.path(service, handler, key) + "/send",
            content=content, headers=hdrs, params=params,
        )

    def send(self, service: str, handler: str, body: Any = NOTHING, **kw: Any) -> tuple[str, str]:
        """One-way send (``.../send``); must answer 202; returns ``(invocation_id, status)``."""
        r = self.send_raw(service, handler, body, **kw)
        assert r.status_code == 202, f"send {service}/{handler} -> {r.status_code} {r.text}"
        data = r.json()
        return data["invocationId"], data["status"]

    def attach(self, invocation_id: str, timeout: float | None = None) -> httpx.Response:
        kw = {"timeout": timeout} if timeout is not None else {}
        return self.client.get(f"{self.ingress}/restate/invocation/{invocation_id}/attach", **kw)

    def output(self, invocation_id: str) -> httpx.Response:
        return self.client.get(f"{self.ingress}/restate/invocation/{invocation_id}/output")

    def _idem_path(self, service: str, handler: str, idempotency_key: str, key: str | None) -> str:
        target = f"{service}/{handler}" if key is None else f"{service}/{quote(key, safe='')}/{handler}"
        return f"{self.ingress}/restate/invocation/{target}/{quote(idempotency_key, safe='')}"

    def attach_idem(self, service: str, handler: str, idempotency_key: str, key: str | None = None,
                    timeout: float | None = None) -> httpx.Response:
        kw = {"timeout": timeout} if timeout is not None else {}
        return self.client.get(self._idem_path(service, handler, idempotency_key, key) + "/attach", **kw)

    def output_idem(self, service: str, handler: str, idempotency_key: str,
                    key: str | None = None) -> httpx.Response:
        return self.client.get(self._idem_path(service, handler, idempotency_key, key) + "/output")

    def workflow_attach(self, workflow: str, workflow_id: str) -> httpx.Response:
        return self.client.get(f"{self.ingress}/restate/workflow/{workflow}/{quote(workflow_id, safe='')}/attach")

    def workflow_output(self, workflow: str, workflow_id: str) -> httpx.Response:
        return self.client.get(f"{self.ingress}/restate/workflow/{workflow}/{quote(workflow_id, safe='')}/output")

    def resolve_awakeable(self, awakeable_id: str, value: Any) -> httpx.Response:
        return self.client.post(
            f"{self.ingress}/restate/awakeables/{awakeable_id}/resolve",
            content=json.dumps(value).encode(), headers={"content-type": "application/json"},
        )

    # admin -------------------------------------------------------------------------------
    def cancel(self, invocation_id: str) -> httpx.Response:
        return self.client.patch(f"{self.admin}/invocations/{invocation_id}/cancel")

    def kill(self, invocation_id: str) -> httpx.Response:
        return self.client.patch(f"{self.admin}/invocations/{invocation_id}/kill")

    def patch_service(self, service: str, **fields: Any) -> httpx.Response:
        return self.client.patch(f"{self.admin}/services/{service}", json=fields)

    def query(self, sql: str) -> list[dict]:
        r = self.client.post(f"{self.admin}/query", json={"query": sql}, headers={"accept": "application/json"})
        assert r.status_code == 200, r.text
        return r.json()["rows"]

    # helpers -----------------------------------------------------------------------------
    poll = staticmethod(poll)
    new_key = staticmethod(new_key)

    @staticmethod
    def proxy_request(
        service: str,
        handler: str,
        arg: Any = NOTHING,
        key: str | None = None,
        delay_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        """A Proxy ``ProxyRequest``; ``arg`` travels as the list of bytes of its JSON text.
        Optional fields are left out when not given (as the Kotlin suite does)."""
        req: dict[str, Any] = {
            "serviceName": service,
            "handlerName": handler,
            "message": [] if arg is NOTHING else json_bytes(arg),
        }
        if key is not None:
            req["virtualObjectKey"] = key
        if delay_ms is not None:
            req["delayMillis"] = delay_ms
        if idempotency_key is not None:
            req["idempotencyKey"] = idempotency_key
        return req

    def background(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Run ``fn`` in a thread (e.g. a call that blocks until the test unblocks it)."""
        return self._pool.submit(fn, *args, **kwargs)

    def logs(self, lines: int = 60) -> str:
        return (
            f"--- {self.server.name} log tail ({self.server.log_path}) ---\n{self.server.log_tail(lines)}\n"
            f"--- services log tail ({self.services.log_path}) ---\n{self.services.log_tail(lines)}"
        )


def start_together(services: ServicesProcess, server: ServerProcess) -> None:
    """Start the services process and the server side by side (each takes a second or
    more to import and bind), and wait until both are up."""
    services.launch()
    try:
        server.start()
    finally:
        services.wait_listening()


def start_env(
    base_dir: Path,
    services: Iterable[str],
    mode: str,
    server_options: Mapping[str, str] | None = None,
    services_env: Mapping[str, str] | None = None,
) -> Env:
    """Start services + server, register the deployment in ``mode``; the caller closes it
    with ``stop_env``."""
    if mode not in ("h2", "http1"):
        raise HarnessError(f"mode must be 'h2' or 'http1', not {mode!r}")
    base_dir = Path(base_dir)
    services_proc = ServicesProcess(services, base_dir, env=services_env)
    server = make_server(base_dir / "server", server_options)
    try:
        start_together(services_proc, server)
        register(server.admin_url, services_proc.url, use_http_11=(mode == "http1"))
    except BaseException:
        server.close()
        services_proc.close()
        raise
    return Env(server, services_proc, mode)


def stop_env(env: Env) -> None:
    env.close()
    env.server.close()
    env.services.close()

"""End to end: a service written with the official TypeScript SDK, through the server under test.

``tests/e2e/typescript/service.mjs`` (``@restatedev/restate-sdk`` 1.17.2, pinned by
``package.json`` + ``package-lock.json``) is served by Node's HTTP/2 server and registered next
to the Python ``Counter`` and ``TestUtilsService`` (hypercorn, ``tests/conformance/services``).
Its ``TsObject/{key}/process`` handler uses object state (get/set), ``ctx.run``, ``ctx.sleep``
and calls into both Python services.

The npm dependencies are installed into ``tests/e2e/typescript/node_modules`` (gitignored) by
``npm ci`` when missing or stale, and reused afterwards. No npm, no node, or an unreachable
registry is a test *failure*, not a skip.

``DURABLY_TEST_TARGET=restate`` runs the same test against the real Restate server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.support.harness import (
    Env,
    HarnessError,
    ServicesProcess,
    _signal,
    _wait,
    _wait_group_gone,
    free_port,
    make_server,
    new_key,
    port_accepts,
    register,
    tail,
)

TS_DIR = Path(__file__).resolve().parent / "typescript"
SDK_PACKAGE = "@restatedev/restate-sdk"
SDK_VERSION = "1.17.2"
PYTHON_SERVICES = ["Counter", "TestUtilsService"]


# --------------------------------------------------------------------------------------
# npm dependencies


def _installed_sdk_version() -> str | None:
    manifest = TS_DIR / "node_modules" / SDK_PACKAGE / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _deps_up_to_date() -> bool:
    """node_modules holds the pinned SDK and is not older than the lock file."""
    hidden_lock = TS_DIR / "node_modules" / ".package-lock.json"  # written by npm ci/install
    lock = TS_DIR / "package-lock.json"
    if _installed_sdk_version() != SDK_VERSION or not hidden_lock.is_file():
        return False
    return hidden_lock.stat().st_mtime >= lock.stat().st_mtime


def ensure_npm_deps() -> None:
    """``npm ci`` into ``tests/e2e/typescript`` unless an up-to-date install is already there."""
    if _deps_up_to_date():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not on PATH: cannot install the TypeScript SDK for this test")
    cmd = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        result = subprocess.run(cmd, cwd=TS_DIR, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`{' '.join(cmd)}` in {TS_DIR} did not finish within {e.timeout}s")
    if result.returncode != 0 or _installed_sdk_version() != SDK_VERSION:
        pytest.fail(
            f"`{' '.join(cmd)}` in {TS_DIR} failed (rc={result.returncode}, installed "
            f"{SDK_PACKAGE}={_installed_sdk_version()}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


# --------------------------------------------------------------------------------------
# the node process


class NodeService:
    """``node service.mjs`` on a free port; stopped with SIGKILL."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = Path(log_dir) / "node.log"
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        node = shutil.which("node")
        if node is None:
            raise HarnessError("node is not on PATH")
        env = dict(os.environ)
        env["PORT"] = str(self.port)
        cmd = [node, "service.mjs"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n=== starting: {' '.join(cmd)} (PORT={self.port})\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            cmd,
            cwd=TS_DIR,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not port_accepts(self.port):
            if self.proc.poll() is not None:
                raise HarnessError(
                    f"node exited with code {self.proc.returncode} before listening on "
                    f"{self.port}; log tail:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"node did not listen on {self.port} within {timeout}s; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def close(self) -> None:
        _signal(self.proc, signal.SIGKILL)
        _wait(self.proc, 10)
        _wait_group_gone(self.proc)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)


class TsEnv(Env):
    """``Env`` plus the node process (its log is added to the failure report)."""

    node: NodeService

    def logs(self, lines: int = 60) -> str:
        return (
            super().logs(lines)
            + f"\n--- node log tail ({self.node.log_path}) ---\n{self.node.log_tail(lines)}"
        )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    # Named ``env`` so tests/conftest.py attaches the process logs to failures.
    ensure_npm_deps()
    base = tmp_path_factory.mktemp("typescript-e2e")
    python_services = ServicesProcess(PYTHON_SERVICES, base)
    node = NodeService(base)
    server = make_server(base / "server")
    e: TsEnv | None = None
    try:
        python_services.start()
        node.start()
        server.start()
        register(server.admin_url, python_services.url, use_http_11=False)
        register(server.admin_url, node.url, use_http_11=False)
        e = TsEnv(server, python_services, "h2")
        e.node = node
        yield e
    finally:
        if e is not None:
            e.close()
        server.close()
        node.close()
        python_services.close()


# --------------------------------------------------------------------------------------


def test_typescript_service_state_run_sleep_and_calls_into_python(env: TsEnv) -> None:
    key = new_key()
    sleep_ms = 300

    # the deployment of the TS endpoint is known with its handlers
    r = env.client.get(f"{env.admin}/services/TsObject")
    assert r.status_code == 200, r.text
    assert r.json()["ty"] == "VirtualObject"
    assert {h["name"] for h in r.json()["handlers"]} >= {"process", "getState", "runExecutions"}

    started = time.monotonic()
    first = env.call_json(
        "TsObject", "process", {"name": "durably", "delta": 5, "sleepMs": sleep_ms}, key=key
    )
    elapsed = time.monotonic() - started

    assert first["key"] == key
    assert first["visits"] == 1
    assert first["previousRunId"] is None
    assert isinstance(first["runId"], str) and first["runId"].startswith("run-")
    assert first["sleptMs"] >= sleep_ms, first
    assert elapsed >= sleep_ms / 1000
    assert first["counter"] == {"oldValue": 0, "newValue": 5}
    assert first["counterValue"] == 5
    assert first["upper"] == "DURABLY"

    second = env.call_json(
        "TsObject", "process", {"name": "Restate", "delta": 7, "sleepMs": sleep_ms}, key=key
    )
    assert second["key"] == key
    assert second["visits"] == 2
    assert second["previousRunId"] == first["runId"]  # the journaled run result, kept in state
    assert second["runId"].startswith("run-") and second["runId"] != first["runId"]
    assert second["sleptMs"] >= sleep_ms, second
    assert second["counter"] == {"oldValue": 5, "newValue": 12}
    assert second["counterValue"] == 12
    assert second["upper"] == "RESTATE"

    # state as seen by a shared handler of the TS object, and the Python object's own view
    assert env.call_json("TsObject", "getState", key=key) == {
        "visits": 2,
        "lastRunId": second["runId"],
    }
    assert env.call_json("Counter", "get", key=key) == 12

    # another key of the same TS object has its own state, and so does its Python counter
    other = new_key()
    third = env.call_json("TsObject", "process", {"name": "x", "delta": 1, "sleepMs": 0}, key=other)
    assert third["visits"] == 1 and third["previousRunId"] is None
    assert third["counter"] == {"oldValue": 0, "newValue": 1}
    assert env.call_json("TsObject", "getState", key=key)["visits"] == 2

    # each process() ran its ctx.run closure exactly once (nothing was re-executed)
    assert env.call_json("TsObject", "runExecutions", key=key) == 3

"""`durably dev MODULE:APP`: durably, the user's app and a reload loop in one command.

Three processes: this one (the supervisor), ``durably serve`` (data in ``./.durably-dev``)
and a child that imports MODULE and serves APP with hypercorn over cleartext HTTP/2. On
every change to a Python file under the working directory the child is replaced and the
app registered again with ``force`` (same deployment id, new revisions). Invocations in
flight lose their connection to the old child; durably retries them against the new one,
so none is lost. A child that cannot import the app prints why, and the supervisor waits
for the next save.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

# what the child runs: import the app, serve it until SIGINT
_CHILD = "from durably.cli.dev import serve_app; serve_app()"
EXIT_IMPORT = 3


def dev_command(
    target: str = typer.Argument(..., metavar="MODULE:APP",
                                 help="The restate.app(...) to serve, e.g. main:app."),
    ingress_port: int = typer.Option(8080, "--ingress-port", help="Port of durably's ingress."),
    admin_port: int = typer.Option(9070, "--admin-port", help="Port of durably's admin API."),
    app_port: int = typer.Option(9080, "--app-port", help="Port the app is served on."),
    data_dir: Path = typer.Option(Path(".durably-dev"), "--data-dir",
                                  help="Where durably keeps its data."),
) -> None:
    """Develop a service: run durably and the app, register it, reload on every save."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        typer.echo(f"durably dev: expected MODULE:APP (e.g. main:app), not {target!r}", err=True)
        raise typer.Exit(2)
    raise typer.Exit(DevSession(target, ingress_port, admin_port, app_port, data_dir).run())


class DevSession:
    def __init__(
        self, target: str, ingress_port: int, admin_port: int, app_port: int, data_dir: Path
    ) -> None:
        self.target = target
        self.ingress_port = ingress_port
        self.admin_port = admin_port
        self.app_port = app_port
        self.data_dir = data_dir.resolve()
        self.root = Path.cwd()
        self.server: subprocess.Popen[bytes] | None = None
        self.child: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    def run(self) -> int:
        from watchfiles import PythonFilter, watch

        # a SIGTERM (e.g. from a process manager) stops the children too, as Ctrl-C does
        signal.signal(signal.SIGTERM, _exit_on_signal)
        try:
            if not self._start_server():
                return 1
            self._reload()
            ignore = [str(self.data_dir), str(self.root / ".venv"), str(self.root / ".git")]
            for _changes in watch(self.root, watch_filter=PythonFilter(ignore_paths=ignore),
                                  raise_interrupt=False):
                say("a Python file changed: reloading")
                self._reload()
        finally:
            self._stop_child()
            self._stop_server()
        return 0

    # -- durably ------------------------------------------------------------------------

    def _start_server(self) -> bool:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "durably", "serve", "--bind", "127.0.0.1",
            "--ingress-port", str(self.ingress_port), "--admin-port", str(self.admin_port),
            "--data-dir", str(self.data_dir), "--log-level", "warning",
        ]
        self.server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                say(f"durably exited with code {self.server.returncode}")
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.admin_url}/health", timeout=2).status_code == 200:
                    say(f"watching {self.root} for changes to Python files")
                    return True
            time.sleep(0.05)
        say("durably did not start within 60 s")
        return False

    def _stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                self.server.kill()

    # -- the app ------------------------------------------------------------------------

    def _reload(self) -> None:
        if self.server is not None and self.server.poll() is not None:
            say(f"durably stopped (exit code {self.server.returncode}); starting it again")
            if not self._start_server():
                return
        self._stop_child()
        if self._start_child():
            self._register()

    def _start_child(self) -> bool:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        env["DURABLY_DEV_TARGET"] = self.target
        env["DURABLY_DEV_PORT"] = str(self.app_port)
        env["PYTHONUNBUFFERED"] = "1"
        self.child = subprocess.Popen([sys.executable, "-c", _CHILD], env=env,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        import socket

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.child.poll() is not None:
                say("the app did not start (see above); waiting for the next save")
                return False
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.app_port), timeout=0.5
            ):
                return True
            time.sleep(0.02)
        say(f"the app did not listen on port {self.app_port} within 60 s; waiting for a save")
        self._stop_child()
        return False

    def _stop_child(self) -> None:
        child, self.child = self.child, None
        if child is None or child.poll() is not None:
            return
        # SIGINT: hypercorn's graceful stop (the SDK keeps SIGTERM for itself)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGINT)
        try:
            child.wait(3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)

    def _register(self) -> None:
        import httpx

        uri = f"http://127.0.0.1:{self.app_port}"
        try:
            r = httpx.post(f"{self.admin_url}/deployments", json={"uri": uri, "force": True},
                           timeout=30)
        except httpx.HTTPError as e:
            say(f"registering {uri} failed: {e}")
            return
        if r.status_code not in (200, 201):
            say(f"registering {uri} failed: {r.status_code} {r.text}")
            return
        doc: dict[str, Any] = r.json()
        services = doc.get("services", [])
        revisions = ", ".join(f"{s['name']} r{s['revision']}" for s in services)
        say(f"registered {uri} as {doc['id']} ({revisions})")
        for line in curl_lines(self.ingress_url, services):
            typer.echo(f"  {line}")


def curl_lines(ingress_url: str, services: list[dict[str, Any]]) -> list[str]:
    """One ``curl`` command per handler that calls it through the ingress."""
    lines = []
    for s in services:
        keyed = s.get("ty") in ("VirtualObject", "Workflow")
        for h in s.get("handlers", []):
            path = f"{s['name']}/my-key/{h['name']}" if keyed else f"{s['name']}/{h['name']}"
            line = f"curl {ingress_url}/{path}"
            schema = h.get("input_json_schema")
            if h.get("input_description") not in (None, "none") or schema is not None:
                line += " -H 'content-type: application/json' -d " + shlex.quote(
                    _example(schema)
                )
            lines.append(line)
    return lines


def _example(schema: Any) -> str:
    """A JSON placeholder of the input's shape (the schema's type when known)."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    return {"string": '"..."', "integer": "0", "number": "0", "boolean": "true",
            "array": "[]", "object": "{}"}.get(str(kind), "{}")


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def say(message: str) -> None:
    typer.secho(f"durably dev: {message}", fg=typer.colors.CYAN, err=True)


def serve_app() -> None:
    """The child: import DURABLY_DEV_TARGET and serve it on DURABLY_DEV_PORT until SIGINT."""
    import asyncio
    import importlib
    import traceback

    from durably.testing.apps import hypercorn_config

    target = os.environ["DURABLY_DEV_TARGET"]
    port = int(os.environ["DURABLY_DEV_PORT"])
    module_name, _, attr = target.partition(":")
    try:
        app = getattr(importlib.import_module(module_name), attr)
    except BaseException:  # a syntax error too: show it, the supervisor waits for a save
        traceback.print_exc()
        sys.exit(EXIT_IMPORT)

    async def main() -> None:
        from hypercorn.asyncio import serve

        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        await serve(app, hypercorn_config("127.0.0.1", port), shutdown_trigger=stop.wait)

    asyncio.run(main())

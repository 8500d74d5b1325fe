"""`durably dev MODULE:APP` as a developer runs it: edit the app, call the changed handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.harness import free_port, poll, port_accepts

REPO_ROOT = Path(__file__).resolve().parents[2]

APP = '''
import datetime
import restate
from restate import Context, ObjectContext

greeter = restate.Service("Greeter")
VERSION = "{version}"


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"{{VERSION}}: hello {{name}}"


@greeter.handler()
async def slow(ctx: Context) -> str:
    await ctx.sleep(datetime.timedelta(seconds=3))
    return f"{{VERSION}}: slept"


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: ObjectContext, n: int) -> int:
    total = (await ctx.get("total", type_hint=int) or 0) + n
    ctx.set("total", total)
    return total


app = restate.app([greeter, counter])
'''


def write_app(root: Path, version: str) -> None:
    (root / "myapp.py").write_text(textwrap.dedent(APP.format(version=version)))


class Dev:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ingress_port, self.admin_port, self.app_port = free_port(), free_port(), free_port()
        self.log_path = root / "dev.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "durably", "dev", "myapp:app",
             "--ingress-port", str(self.ingress_port), "--admin-port", str(self.admin_port),
             "--app-port", str(self.app_port)],
            cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.ingress_port}", timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def greet(self) -> str:
        r = self.http.post("/Greeter/greet", json="Ann")
        assert r.status_code == 200, r.text
        return str(r.json())

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    write_app(tmp_path, "v1")
    d = Dev(tmp_path)
    try:
        yield d
    finally:
        d.close()


def test_dev_reloads_a_changed_handler(dev: Dev) -> None:
    def assert_version(v: str) -> None:
        assert dev.proc.poll() is None, dev.log()
        assert dev.greet() == f"{v}: hello Ann"

    poll(lambda: assert_version("v1"), timeout=60, interval=0.2)
    log = dev.log()
    ingress = f"http://127.0.0.1:{dev.ingress_port}"
    # a curl line for every handler, and the default data directory
    assert f"curl {ingress}/Greeter/greet -H 'content-type: application/json' -d '\"...\"'" in log
    assert f"curl {ingress}/Greeter/slow\n" in log
    assert f"curl {ingress}/Counter/my-key/add -H 'content-type: application/json' -d 0" in log
    assert (dev.root / ".durably-dev").is_dir()
    assert dev.http.post("/Counter/k/add", json=2).json() == 2

    # in flight across the reload: sleeping in the old app, finished by the new one
    sent = dev.http.post("/Greeter/slow/send")
    assert sent.status_code == 202, sent.text
    slow_id = sent.json()["invocationId"]

    write_app(dev.root, "v2")
    poll(lambda: assert_version("v2"), timeout=60, interval=0.2)
    # the new app answers (same port) a moment before its registration is printed
    poll(lambda: _assert_in("(Greeter r2, Counter r2)", dev.log()), timeout=60)

    # bad code: the error is shown, dev keeps running and waits for the next save
    (dev.root / "myapp.py").write_text("import restate\napp = restate.app([\n")
    poll(lambda: _assert_in("waiting for the next save", dev.log()), timeout=60)
    assert "SyntaxError" in dev.log()
    assert dev.proc.poll() is None

    write_app(dev.root, "v3")
    poll(lambda: assert_version("v3"), timeout=60, interval=0.2)
    # state and the invocation in flight survived every reload
    assert dev.http.post("/Counter/k/add", json=3).json() == 5
    done = dev.http.get(f"/restate/invocation/{slow_id}/attach", timeout=120)
    assert done.status_code == 200, done.text
    assert done.json().endswith(": slept")

    # a SIGTERM stops durably and the app with the supervisor
    dev.proc.send_signal(signal.SIGTERM)
    assert dev.proc.wait(30) == 0
    poll(lambda: _assert_free(dev.app_port), timeout=30)
    poll(lambda: _assert_free(dev.ingress_port), timeout=30)


def test_dev_refuses_a_bad_target(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-m", "durably", "dev", "myapp"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "expected MODULE:APP" in r.stderr
    assert "Traceback" not in r.stderr


def _assert_in(needle: str, text: str) -> None:
    assert needle in text


def _assert_free(port: int) -> None:
    assert not port_accepts(port)

"""A real durably server and the UI test services, with invocations in every status.

Used by the page tests (tests/ui) and the browser tests (tests/ui_browser), and by
`docs/ui/screenshots.py`. Plain blocking code (no asyncio), so the sync Playwright tests can
use it as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.harness import Env, ServicesProcess, make_server, poll, register

UI_APP = "tests.ui.services:app"
SCRIPT = "<script>alert('xss')</script>"


@dataclass
class World:
    env: Env
    dir: Path
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def ui(self) -> str:
        return self.env.admin + "/ui/"

    def status(self, inv_id: str) -> str:
        r = self.env.client.get(f"{self.env.admin}/invocations/{inv_id}")
        if r.status_code == 404:
            return "purged"
        view = r.json()
        if view["status"] != "completed":
            return str(view["status"])
        if view.get("completion_result") == "success":
            return "succeeded"
        message = view.get("completion_failure", {}).get("message")
        return {"canceled": "cancelled", "cancelled": "cancelled", "killed": "killed"}.get(
            message, "failed")

    def wait_status(self, inv_id: str, *statuses: str, timeout: float = 30) -> None:
        def check() -> None:
            assert self.status(inv_id) in statuses, (inv_id, self.status(inv_id), statuses)

        poll(check, timeout=timeout)

    def release(self, name: str) -> None:
        (self.dir / f"release-{name}").touch()

    def send(self, service: str, handler: str, body: Any, **kw: Any) -> str:
        inv_id, _ = self.env.send(service, handler, body, idem=False, **kw)
        return inv_id

    def close(self) -> None:
        for name in ("running", "live"):
            self.release(name)
        self.env.close()
        self.env.server.close()
        self.env.services.close()


def start_world(base: Path, server_args: tuple[str, ...] = ()) -> World:
    base.mkdir(parents=True, exist_ok=True)
    release_dir = base / "release"
    release_dir.mkdir(exist_ok=True)
    services = ServicesProcess([], base, app=UI_APP, env={"UI_TEST_DIR": str(release_dir)})
    server = make_server(base / "server")
    if server_args:
        server.extra_args = [*getattr(server, "extra_args", []), *server_args]  # type: ignore[attr-defined]
    env = Env(server, services, "http1")
    services.start()
    server.start()
    # request/response: a handler that awaits something suspends at once (over HTTP/2 the
    # SDK keeps the stream open until the inactivity timeout)
    register(server.admin_url, services.url, use_http_11=True)
    world = World(env, release_dir)
    try:
        populate(world)
    except BaseException:
        world.close()
        raise
    return world


def populate(w: World) -> None:
    """One invocation in each status the UI distinguishes, and one deadlock."""
    env, ids = w.env, w.ids
    r = env.call("Greeter", "greet", {"name": SCRIPT}, idem=False,
                 headers={"x-note": "<b>bold</b>", "x-request-source": "ui-tests"})
    assert r.status_code == 200, r.text
    ids["succeeded"] = r.headers.get("x-restate-id") or w.env.query(
        "SELECT id FROM sys_invocation WHERE target = 'Greeter/greet'")[0]["id"]
    env.call("Cart", "add", "apple", key="alice", idem=False)
    env.call("Cart", "add", SCRIPT, key="alice", idem=False)
    ids["cart"] = env.query(
        "SELECT id FROM sys_invocation WHERE target = 'Cart/alice/add' LIMIT 1")[0]["id"]
    # a sleep and a run: bars with durations on its timeline
    r = env.call("Shop", "order", {"item": "tea", "quantity": 2}, idem=False)
    assert r.status_code == 200, r.text
    ids["shop"] = env.query("SELECT id FROM sys_invocation WHERE target = 'Shop/order'")[0]["id"]
    ids["running"] = w.send("Slow", "hold", "running")
    ids["suspended"] = w.send("Waiter", "wait", "suspended")
    ids["to-cancel"] = w.send("Waiter", "wait", "to cancel")
    ids["to-kill"] = w.send("Waiter", "wait", "to kill")
    ids["backing-off"] = w.send("Flaky", "fail", "flaky failure")
    ids["paused"] = w.send("Flaky", "fail", "will be paused")
    ids["failed"] = w.send("Boom", "fail", "terminal failure")
    ids["scheduled"] = w.send("Greeter", "greet", {"name": "later"}, delay="1h")
    ids["workflow"] = w.send("Signup", "run", "ada@example.com", key="ada")
    # a -> b -> a: the second call to `a` queues behind the first forever
    ids["deadlock"] = w.send("Cart", "call", ["b", "a"], key="a")
    w.wait_status(ids["running"], "running")
    for name in ("suspended", "to-cancel", "to-kill"):
        w.wait_status(ids[name], "suspended")
    w.wait_status(ids["backing-off"], "backing-off")
    w.wait_status(ids["paused"], "backing-off")
    assert env.client.patch(f"{env.admin}/invocations/{ids['paused']}/pause").status_code < 300
    w.wait_status(ids["paused"], "paused")
    w.wait_status(ids["failed"], "failed")
    assert env.cancel(ids["to-cancel"]).status_code < 300
    w.wait_status(ids["to-cancel"], "cancelled")
    assert env.kill(ids["to-kill"]).status_code < 300
    w.wait_status(ids["to-kill"], "killed")

    def deadlock_found() -> None:
        view = env.client.get(f"{env.admin}/invocations/{ids['deadlock']}").json()
        assert view["deadlock"], view

    poll(deadlock_found, timeout=30)
    rows = env.query("SELECT id FROM sys_invocation WHERE status = 'pending'")
    assert rows, "the deadlock's queued call"
    ids["pending"] = rows[0]["id"]
    # the callee b (running its call to a)
    ids["deadlock-b"] = env.query(
        "SELECT id FROM sys_invocation WHERE target = 'Cart/b/call'")[0]["id"]


if __name__ == "__main__":  # a world to look at: python -m tests.ui.world DIR
    import sys
    import time

    world = start_world(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/durably-ui-world"))
    print(world.ui, flush=True)
    for k, v in world.ids.items():
        print(f"{k:12} {world.ui}invocations/{v}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        world.close()

"""One cluster, seen from any node: three `durably serve` nodes on one PostgreSQL, and both
the official `restate` CLI and durably's own CLI pointed at each node's admin port in turn.
A deployment registered through one node is callable through every node's ingress; a
service patched on one node is seen by all; the CLIs give the same answers from every node,
and an invocation made through one node is cancelled through another.

DURABLY_TEST_PLACEMENT (e.g. ``leader``, ``spread``) passes ``--placement`` to every node;
unset, the server's default placement is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.security.test_tokens import restate_cli
from tests.support.harness import REPO_ROOT, DurablyServer, ServicesProcess
from tests.support.postgres import shared_cluster

pytestmark = [pytest.mark.timeout(300)]

NAMES = ("a", "b", "c")
DEADLINE = 30.0  # generous: the goal is one second, the machine is shared


class Cluster:
    def __init__(self, base: Path) -> None:
        self.dsn = dsn = shared_cluster().new_database()
        placement = os.environ.get("DURABLY_TEST_PLACEMENT", "").strip()
        extra = ["--placement", placement] if placement else []
        self.services = ServicesProcess(["Counter", "BlockAndWaitWorkflow"], base / "services")
        self.nodes = {
            name: DurablyServer(
                base / name, store=dsn,
                # the default lease TTL: nothing here kills a node, and a short TTL on a
                # loaded machine can make a node lose its leases (and stop) mid-test
                extra_args=["--node-name", name, *extra],
            )
            for name in NAMES
        }
        self.home = base / "home"  # the restate CLI's config dir stays inside the test
        self.home.mkdir()
        self.registered_at = 0.0

    def restate(self, node: str, *args: str) -> str:
        env = {**os.environ, "RESTATE_ADMIN_URL": self.nodes[node].admin_url,
               "HOME": str(self.home), "NO_COLOR": "1"}
        env.pop("RESTATE_AUTH_TOKEN", None)
        r = subprocess.run([str(restate_cli()), *args], capture_output=True, text=True,
                           timeout=60, env=env)
        if r.returncode != 0:
            # the CLI parses every id of these answers: show what it was given
            answers = []
            for path in ("/services", "/deployments"):
                try:
                    answers.append(f"GET {path}: "
                                   + httpx.get(self.nodes[node].admin_url + path, timeout=10).text)
                except httpx.HTTPError as e:
                    answers.append(f"GET {path}: {e!r}")
            raise AssertionError(f"restate {' '.join(args)} on {node}:\n{r.stdout}{r.stderr}\n"
                                 + "\n".join(answers))
        return r.stdout

    def durably(self, node: str, *args: str) -> str:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"),
               "DURABLY_ADMIN_URL": self.nodes[node].admin_url}
        r = subprocess.run([sys.executable, "-m", "durably", *args], capture_output=True,
                           text=True, timeout=60, env=env)
        assert r.returncode == 0, f"durably {' '.join(args)} on {node}:\n{r.stdout}{r.stderr}"
        return r.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("any-node"))
    c.services.start()
    try:
        for node in c.nodes.values():
            node.start()
        # registered through b with durably's CLI; every other test relies on it
        c.durably("b", "deployments", "register", c.services.url)
        c.registered_at = time.monotonic()
        yield c
    finally:
        for node in c.nodes.values():
            node.close()
        c.services.close()


def _eventually(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = check()
        except (httpx.HTTPError, AssertionError) as e:
            last = e
        else:
            if last:
                return last
        assert time.monotonic() < deadline, f"{what}: still {last!r} after {timeout} s"
        time.sleep(0.02)


def test_a_deployment_registered_on_one_node_is_used_by_every_node(cluster: Cluster) -> None:
    with httpx.Client(timeout=30) as http:
        for i, node in enumerate(("c", "a")):
            url = f"{cluster.nodes[node].ingress_url}/Counter/reg/add"

            def call(url: str = url, i: int = i) -> Any:
                r = http.post(url, json=1, headers={"idempotency-key": f"reg-{i}"})
                return r.status_code == 200 and r.json()["newValue"] == i + 1

            _eventually(call, f"Counter/add through {node}'s ingress")
            if node == "c":
                print(f"\nregistered on b, first call answered through c after "
                      f"{time.monotonic() - cluster.registered_at:.3f} s")
        deployments = [
            sorted(d["id"] for d in http.get(f"{n.admin_url}/deployments").json()["deployments"])
            for n in cluster.nodes.values()
        ]
        assert deployments[0] and deployments[0] == deployments[1] == deployments[2]
        # a URL given as the id (`restate deployments describe http://...`), slashes encoded:
        # Restate's 400 from every node, forwarded or not
        for node in cluster.nodes.values():
            r = http.get(f"{node.admin_url}/deployments/http:%2F%2F127.0.0.1:9%2F")
            assert r.status_code == 400 and "bad format" in r.text, (node.admin_url, r.text)


def test_a_service_patched_on_one_node_is_seen_by_every_node(cluster: Cluster) -> None:
    with httpx.Client(timeout=30) as http:
        before = http.get(f"{cluster.nodes['a'].admin_url}/services/Counter").json()
        retention = "7h" if before.get("idempotency_retention") != "7h" else "8h"
        r = http.patch(f"{cluster.nodes['c'].admin_url}/services/Counter",
                       json={"idempotency_retention": retention})
        assert r.status_code == 200, r.text
        patched_at = time.monotonic()
        expected = r.json()["idempotency_retention"]
        delays = {}
        for node in ("a", "b"):
            url = f"{cluster.nodes[node].admin_url}/services/Counter"
            _eventually(lambda url=url: http.get(url).json()["idempotency_retention"] == expected,
                        f"the patched retention on {node}")
            delays[node] = time.monotonic() - patched_at
        # and the other way round, public=false from a is refused by c's ingress
        r = http.patch(f"{cluster.nodes['a'].admin_url}/services/Counter", json={"public": False})
        patched_at = time.monotonic()
        assert r.status_code == 200 and r.json()["public"] is False, r.text
        try:
            private = f"{cluster.nodes['c'].ingress_url}/Counter/private/get"
            _eventually(lambda: http.post(private, json=None).status_code == 400,
                        "c's ingress refusing the private service")
            delays["c (public=false)"] = time.monotonic() - patched_at
        finally:
            http.patch(f"{cluster.nodes['b'].admin_url}/services/Counter", json={"public": True})
    print("\npatch seen after (s, polled every 20 ms): "
          + ", ".join(f"{k} {v:.3f}" for k, v in delays.items()))


def test_a_registry_change_notifies_every_node_at_commit(cluster: Cluster) -> None:
    """The commit that changes the registry sends a NOTIFY (the nodes listen, and re-read
    it at once rather than at their next periodic check): seen here by a listener of our own."""
    import asyncio

    import asyncpg

    async def run() -> float:
        conn = await asyncpg.connect(cluster.dsn)
        heard: asyncio.Queue[str] = asyncio.Queue()
        try:
            await conn.add_listener("durably_registry", lambda *args: heard.put_nowait(args[2]))
            async with httpx.AsyncClient(timeout=30) as http:
                started = time.monotonic()
                r = await http.patch(f"{cluster.nodes['c'].admin_url}/services/Counter",
                                     json={"journal_retention": "2d"})
                assert r.status_code == 200, r.text
            await asyncio.wait_for(heard.get(), DEADLINE)
            return time.monotonic() - started
        finally:
            await conn.close()

    print(f"\nNOTIFY durably_registry heard {asyncio.run(run()):.3f} s after the PATCH was sent")


def _start_blocked_workflow(cluster: Cluster, node: str, key: str) -> str:
    url = f"{cluster.nodes[node].ingress_url}/BlockAndWaitWorkflow/{key}/run/send"
    with httpx.Client(timeout=30) as http:
        def send() -> str | None:
            r = http.post(url, json="x")
            return str(r.json()["invocationId"]) if r.status_code in (200, 202) else None
        return str(_eventually(send, f"a send through {node}"))


def _same_everywhere(read: Callable[[str], Any], what: str) -> Any:
    """``read(node)`` on every node, polled until all nodes agree; returns the answer."""
    def agree() -> Any:
        answers = {n: read(n) for n in NAMES}
        first = answers[NAMES[0]]
        assert all(a == first for a in answers.values()), answers
        return first or True
    return _eventually(agree, what)


def test_the_official_restate_cli_gives_one_answer_from_every_node(cluster: Cluster) -> None:
    inv = _start_blocked_workflow(cluster, "a", "restate-cli")
    # lines compared regardless of order: the CLI prints some lists in hash order
    listed = _same_everywhere(
        lambda n: sorted(cluster.restate(n, "deployments", "list").splitlines()),
        "restate deployments list")
    assert cluster.services.url.rstrip("/") in "\n".join(listed)
    services = "\n".join(_same_everywhere(
        lambda n: sorted(cluster.restate(n, "services", "list").splitlines()),
        "restate services list"))
    assert "Counter" in services and "BlockAndWaitWorkflow" in services
    with httpx.Client(timeout=30) as http:
        dep = http.get(f"{cluster.nodes['a'].admin_url}/deployments").json()["deployments"][0]
        http.post(f"{cluster.nodes['b'].ingress_url}/Counter/cli/add", json=5,
                  headers={"idempotency-key": "cli-5"}).raise_for_status()
    # a service's handlers come in a different (hash) order on each run of the CLI
    described = _same_everywhere(
        lambda n: sorted(cluster.restate(n, "deployments", "describe", dep["id"]).splitlines()),
        "restate deployments describe")
    assert any(cluster.services.url in line for line in described)
    assert any("BlockAndWaitWorkflow" in line for line in described)
    state = _same_everywhere(lambda n: cluster.restate(n, "state", "get", "Counter", "cli"),
                             "restate state get")
    assert "counter" in state and "5" in state
    # human times ("3 seconds ago") move on between calls: compare the ids listed
    invs = _same_everywhere(
        lambda n: sorted(w for w in cluster.restate(
            n, "invocations", "list", "--service", "BlockAndWaitWorkflow").split()
            if w.startswith("inv_")),
        "restate invocations list")
    assert inv in invs
    for n in NAMES:
        described = cluster.restate(n, "invocations", "describe", inv)
        assert "BlockAndWaitWorkflow/restate-cli/run" in described, described
        assert "Command: GetPromise" in described, described
    query = f"SELECT id, target, status FROM sys_invocation WHERE id = '{inv}'"
    rows = _same_everywhere(
        lambda n: [json.loads(line) for line in cluster.restate(n, "sql", "--jsonl", query)
                   .splitlines() if line.strip()],
        "restate sql")
    assert rows[0]["id"] == inv and rows[0]["target"] == "BlockAndWaitWorkflow/restate-cli/run"
    # made through a, cancelled through c
    out = cluster.restate("c", "invocations", "cancel", inv, "--yes")
    assert inv in out or "cancel" in out.lower(), out
    done = f"SELECT status FROM sys_invocation WHERE id = '{inv}'"
    _same_everywhere(
        lambda n: [json.loads(line)["status"] for line in cluster.restate(
            n, "sql", "--jsonl", done).splitlines() if line.strip()] == ["completed"],
        "the cancelled invocation completed, seen from every node")
    cancelled = cluster.restate("b", "invocations", "describe", inv)
    assert "cancel" in cancelled.lower(), cancelled


def test_durably_cli_gives_one_answer_from_every_node(cluster: Cluster) -> None:
    inv = _start_blocked_workflow(cluster, "b", "durably-cli")
    deployments = _same_everywhere(
        lambda n: json.loads(cluster.durably(n, "deployments", "list", "--json")),
        "durably deployments list")
    assert cluster.services.url.rstrip("/") in json.dumps(deployments)
    _same_everywhere(lambda n: json.loads(cluster.durably(n, "services", "list", "--json")),
                     "durably services list")
    invs = _same_everywhere(
        lambda n: sorted(i["id"] for i in json.loads(cluster.durably(
            n, "invocations", "list", "--service", "BlockAndWaitWorkflow", "--json"))),
        "durably invocations list")
    assert inv in invs
    query = f"SELECT id, target, status FROM sys_invocation WHERE id = '{inv}'"
    rows = _same_everywhere(lambda n: json.loads(cluster.durably(n, "sql", query, "--json")),
                            "durably sql")
    assert json.dumps(rows).count(inv) == 1
    for n in NAMES:
        assert inv in cluster.durably(n, "invocations", "describe", inv)
    assert "1 of 1" in cluster.durably("a", "invocations", "cancel", inv, "--yes")
    done = f"SELECT status FROM sys_invocation WHERE id = '{inv}'"
    _same_everywhere(lambda n: "completed" in cluster.durably(n, "sql", done, "--json"),
                     "the cancelled invocation completed, seen from every node")

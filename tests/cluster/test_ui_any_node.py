"""The web UI of a cluster: three nodes on one PostgreSQL, every request sent to node a's
UI. Under the spread placement, pages and actions about invocations that b and c own, bulk
actions over invocations of all three, a state edit of a key another node owns and a
change of a service's options all reach the node that owns what they touch; the
same-origin check holds for forwarded requests (a browser's form through any node works,
a cross-site one is refused); and no node stops on the way (a write of another node's
partition would stop it on the fence). Under the leader placement the same requests go to
the leader.

The placement is spread unless DURABLY_TEST_PLACEMENT names another."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest
from tests.support.cluster import key_owned_by
from tests.support.harness import DurablyServer, ServicesProcess, poll, register
from tests.support.postgres import fetch, shared_cluster
from tests.ui.world import UI_APP

from durably.ids import InvocationId, partition_of

pytestmark = [pytest.mark.timeout(300)]

NAMES = ("a", "b", "c")
PARTITIONS = 64
PLACEMENT = os.environ.get("DURABLY_TEST_PLACEMENT", "").strip() or "spread"


class Cluster:
    def __init__(self, base: Path) -> None:
        self.dsn = shared_cluster().new_database()
        release = base / "release"
        release.mkdir()
        self.services = ServicesProcess([], base / "services", app=UI_APP,
                                        env={"UI_TEST_DIR": str(release)})
        self.nodes = {
            n: DurablyServer(base / n, store=self.dsn,
                             extra_args=["--node-name", n, "--placement", PLACEMENT])
            for n in NAMES
        }
        self.http = httpx.Client(timeout=30)
        self.last_location: str | None = None  # of the last action's redirect

    def owners(self) -> dict[int, str]:
        rows = fetch(self.dsn, "SELECT pid, owner FROM durably.partition_lease "
                               "WHERE owner <> '' AND expires_at >= now()")
        return {r[0]: r[1] for r in rows}

    def owner_of_id(self, inv_id: str) -> str | None:
        pid = partition_of(InvocationId.parse(inv_id).partition_key, PARTITIONS)
        return self.owners().get(pid)

    def key_owned_by(self, name: str, prefix: str) -> str:
        return key_owned_by(self.owners(), name, prefix, PARTITIONS)

    def ui(self, node: str = "a") -> str:
        return f"{self.nodes[node].admin_url}/ui/"

    def same_origin(self, node: str = "a") -> dict[str, str]:
        """What a browser on node's UI sends with a form (its Origin is the node's admin)."""
        return {"origin": self.nodes[node].admin_url, "sec-fetch-site": "same-origin"}

    def act(self, inv_id: str, action: str) -> str:
        """A confirmed action from the invocation's page on a's UI: the message or error
        the redirect carries to the next page."""
        r = self.http.post(self.ui("a") + f"invocations/{inv_id}",
                           data={"action": action, "confirm": "yes"}, headers=self.same_origin())
        self.last_location = r.headers.get("location")
        return _message(r)

    def bulk(self, action: str, ids: list[str]) -> dict[str, Any]:
        """A confirmed bulk action on a's UI (one chunk), as its script sends it."""
        form = {"action": action, "scope": "selected", "id": ids, "filter": "", "confirm": "yes"}
        r = self.http.post(self.ui("a") + "bulk", data=form,
                           headers={**self.same_origin(), "accept": "application/json"})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def send(self, node: str, service: str, handler: str, body: Any, key: str = "") -> str:
        path = f"{service}/{key}/{handler}" if key else f"{service}/{handler}"
        r = self.http.post(f"{self.nodes[node].ingress_url}/{path}/send", json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["invocationId"])

    def status(self, inv_id: str) -> str:
        r = self.http.get(f"{self.nodes['a'].admin_url}/invocations/{inv_id}")
        assert r.status_code == 200, r.text
        return str(r.json()["status"])

    def wait_status(self, inv_id: str, *statuses: str) -> None:
        def check() -> None:
            assert self.status(inv_id) in statuses

        poll(check, timeout=60)

    def ready(self) -> None:
        """Every partition runs: spread over the three nodes, or all on the leader."""
        statuses = [self.http.get(f"{n.admin_url}/cluster").json()
                    for n in self.nodes.values()]
        owners = self.owners()
        assert len(owners) == PARTITIONS
        if PLACEMENT == "spread":
            assert set(owners.values()) == set(NAMES)
            assert sum(s["partitions_ready"] for s in statuses) == PARTITIONS
        else:
            assert [s["role"] for s in statuses].count("leader") == 1

    def all_alive(self) -> None:
        for name, node in self.nodes.items():
            assert node.proc is not None and node.proc.poll() is None, (
                f"node {name} stopped:\n{node.log_tail()}")
        self.ready()

    def runs_on(self, inv_id: str, node: str) -> None:
        """Where an invocation runs: under spread, its partition's owner; else the leader."""
        owner = self.owner_of_id(inv_id)
        assert owner == (node if PLACEMENT == "spread" else self.owners()[0]), (inv_id, owner)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("ui-any-node"))
    c.services.start()
    try:
        for node in c.nodes.values():
            node.start()

        poll(c.ready, timeout=60)
        # request/response: a handler that awaits something suspends at once
        register(c.nodes["b"].admin_url, c.services.url, use_http_11=True)
        yield c
    finally:
        c.http.close()
        for node in c.nodes.values():
            node.close()
        c.services.close()


def _message(r: httpx.Response) -> str:
    """The message or error a redirect after an action carries to the next page."""
    assert r.status_code == 303, (r.status_code, r.text[:2000])
    found = re.search(r"(?:message|error)=([^&]*)", r.headers["location"])
    return unquote_plus(found.group(1)) if found else ""


def test_pages_and_actions_on_invocations_other_nodes_own(cluster: Cluster) -> None:
    # unkeyed sends without an idempotency key run on the receiving node's partitions
    waiting = {n: cluster.send(n, "Waiter", "wait", f"owned by {n}") for n in ("b", "c")}
    flaky = cluster.send("c", "Flaky", "fail", "fails on c")
    for node, inv in [*waiting.items(), ("c", flaky)]:
        cluster.runs_on(inv, node)
    for inv in waiting.values():
        cluster.wait_status(inv, "suspended")
    cluster.wait_status(flaky, "backing-off")
    ui, same = cluster.ui("a"), cluster.same_origin("a")

    # the page of c's failing invocation, through a: what only c holds in memory (the
    # command the attempt failed at) is there
    def failure_shown() -> None:
        html = cluster.http.get(ui + f"invocations/{flaky}").text
        assert "fails on c" in html and "It failed at" in html, html[:3000]

    poll(failure_shown, timeout=60)

    # a cross-site form is still refused, forwarded or not
    r = cluster.http.post(ui + f"invocations/{waiting['b']}",
                          data={"action": "kill", "confirm": "yes"},
                          headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    assert cluster.status(waiting["b"]) == "suspended"

    # without confirm: the confirmation page; with it, the owner acts
    r = cluster.http.post(ui + f"invocations/{waiting['b']}", data={"action": "cancel"},
                          headers=same)
    assert r.status_code == 200 and 'name="confirm" value="yes"' in r.text
    assert cluster.act(waiting["b"], "cancel") == "Cancel: done (202)."
    assert cluster.act(waiting["c"], "kill") in ("Kill: done (202).", "Kill: done (200).")
    for inv in waiting.values():
        cluster.wait_status(inv, "completed")
    assert cluster.act(waiting["c"], "kill").startswith("Kill refused (409)")  # c's answer

    # pause and resume c's retrying invocation, then purge a completed one of c's
    assert cluster.act(flaky, "pause").startswith("Pause: done")
    cluster.wait_status(flaky, "paused")
    assert cluster.act(flaky, "resume").startswith("Resume: done")
    cluster.wait_status(flaky, "backing-off", "running", "ready")
    assert cluster.act(flaky, "kill").startswith("Kill: done")
    cluster.wait_status(flaky, "completed")
    assert cluster.act(flaky, "restart-as-new") == f"Restarted {flaky} as this new invocation."
    again = str(cluster.last_location).split("?")[0]
    cluster.runs_on(again, "c")
    cluster.wait_status(again, "backing-off")
    assert cluster.act(again, "kill").startswith("Kill: done")
    assert cluster.act(waiting["c"], "purge") == f"Purged {waiting['c']}."
    assert cluster.http.get(f"{cluster.nodes['c'].admin_url}/invocations/{waiting['c']}"
                            ).status_code == 404
    cluster.all_alive()


def test_a_bulk_action_over_invocations_of_every_node(cluster: Cluster) -> None:
    ids = [cluster.send(n, "Waiter", "wait", f"bulk {n} {i}") for n in NAMES for i in range(3)]
    for i, inv in enumerate(ids):
        cluster.runs_on(inv, NAMES[i // 3])
    for inv in ids:
        cluster.wait_status(inv, "suspended")
    form = {"action": "kill", "scope": "selected", "id": ids, "filter": ""}
    r = cluster.http.post(cluster.ui("a") + "bulk", data=form, headers=cluster.same_origin("a"))
    assert r.status_code == 200 and "9" in r.text  # the dry run counts them
    done = cluster.bulk("kill", ids)
    assert (done["done"], done["failed"], done["finished"]) == (9, 0, True), done
    for inv in ids:
        cluster.wait_status(inv, "completed")
    # purged where they are (cancel and kill also reach other partitions as messages;
    # purge, pause, resume and restart only act on the owner)
    done = cluster.bulk("purge", ids)
    assert (done["done"], done["failed"], done["finished"]) == (9, 0, True), done
    for inv in ids:
        r = cluster.http.get(f"{cluster.nodes['b'].admin_url}/invocations/{inv}")
        assert r.status_code == 404, r.text
    cluster.all_alive()


def test_state_edit_of_a_key_another_node_owns(cluster: Cluster) -> None:
    key = cluster.key_owned_by("c", "ui-state") if PLACEMENT == "spread" else "ui-state"
    r = cluster.http.post(f"{cluster.nodes['a'].ingress_url}/Cart/{key}/add", json="apple")
    assert r.status_code == 200, r.text
    ui, same = cluster.ui("a"), cluster.same_origin("a")
    r = cluster.http.post(ui + "state/Cart", data={"key": key, "entry": "items",
                                                   "value": '["pear", "plum"]'}, headers=same)
    assert _message(r) == "Saved 'items'."
    r = cluster.http.post(ui + "state/Cart", data={"key": key, "entry": "last", "op": "delete"},
                          headers=same)
    assert _message(r) == "Removed 'last'."
    r = cluster.http.post(f"{cluster.nodes['b'].ingress_url}/Cart/{key}/items", json=None)
    assert r.status_code == 200 and r.json() == ["pear", "plum"], r.text
    html = cluster.http.get(ui + "state/Cart", params={"key": key}).text
    assert "plum" in html and ">last<" not in html
    cluster.all_alive()


def test_a_service_option_changed_through_the_ui_of_any_node(cluster: Cluster) -> None:
    registry_owner = cluster.owners()[0]
    through = next(n for n in NAMES if n != registry_owner)
    ui = cluster.ui(through)
    r = cluster.http.post(ui + "services/Greeter",
                          data={"op": "options", "public": "false", "confirm": "yes"},
                          headers=cluster.same_origin(through))
    try:
        assert _message(r).startswith("Saved. public: false"), r.headers
        # answered once every node has read it: every ingress refuses the private service
        for node in cluster.nodes.values():
            r = cluster.http.post(f"{node.ingress_url}/Greeter/greet", json={"name": "x"})
            assert r.status_code == 400, (node.ingress_url, r.status_code, r.text)
    finally:
        cluster.http.patch(f"{cluster.nodes['a'].admin_url}/services/Greeter",
                           json={"public": True})
    cluster.all_alive()

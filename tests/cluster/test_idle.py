"""What a spread node does when little happens: its outbox reader wakes only for messages
to its own partitions, and a change of the registry reaches every live node before it is
answered, a node that joined since the writer's last lease round included."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.support.harness import DurablyServer, ServicesProcess, register
from tests.support.postgres import shared_cluster

from durably.cluster.spread import notified_partitions_concern

PARTITIONS = 64


def test_an_outbox_notification_wakes_the_owners_of_its_partitions_only() -> None:
    assert notified_partitions_concern("3,5", {5, 9})
    assert not notified_partitions_concern("3,5", {4, 9})
    assert not notified_partitions_concern("3", set())
    # a node of an earlier version notifies without naming partitions: everyone reads
    assert notified_partitions_concern("", {4})
    assert notified_partitions_concern("garbled", {4})


def _status(client: httpx.Client, node: DurablyServer) -> dict:
    return client.get(f"{node.admin_url}/cluster").json()  # type: ignore[no-any-return]


@pytest.mark.timeout(300)
@pytest.mark.restart
def test_a_node_that_joined_since_the_last_lease_round_reads_a_registry_change_before_it_is_answered(
    tmp_path: Path,
) -> None:
    # a long TTL: lease rounds every 20 s, so the writer has most likely not seen the third
    # node in a round when the change is made (the test holds either way)
    dsn = shared_cluster().new_database()
    services = ServicesProcess(["Counter"], tmp_path / "services")

    def node(name: str) -> DurablyServer:
        return DurablyServer(tmp_path / name, store=dsn,
                             extra_args=["--node-name", name, "--lease-ttl", "60s"])

    nodes = [node("n1"), node("n2")]
    services.start()
    try:
        for n in nodes:
            n.start()
        register(nodes[0].admin_url, services.url, use_http_11=False)
        with httpx.Client(timeout=30) as client:
            n3 = node("n3")
            nodes.append(n3)
            n3.start()
            writer = next(
                n for n in nodes
                if 0 in _status(client, n).get("held", [])
            )
            seen = [x["name"] for x in _status(client, writer)["nodes"]]
            asked = _status(client, n3)["registry_syncs_asked"]
            r = client.patch(f"{writer.admin_url}/services/Counter", json={"public": False})
            assert r.status_code == 200 and r.json()["public"] is False, r.text
            # answered once every live node read the change: n3 too, asked by the writer
            assert _status(client, n3)["registry_syncs_asked"] == asked + 1, seen
            r = client.post(f"{n3.ingress_url}/Counter/k/get", json=None)
            assert r.status_code == 400, r.text  # private: refused at once
            # the same through the node that joined last (its request goes to the writer)
            r = client.patch(f"{n3.admin_url}/services/Counter", json={"public": True})
            assert r.status_code == 200 and r.json()["public"] is True, r.text
            for n in nodes:
                r = client.post(f"{n.ingress_url}/Counter/k/get", json=None)
                assert r.status_code == 200, (n.ingress_url, r.text)
    finally:
        for n in nodes:
            n.close()
        services.close()

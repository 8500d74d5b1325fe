"""A durably cluster as one test server: N `durably serve --node-name` processes on one
PostgreSQL database (`DURABLY_TEST_CLUSTER=3`, with `make_server`).

Leases last 5 s: long enough that a loaded CI machine does not make a healthy leader lose
them (which stops it, by design). Each read of `ingress_url` / `admin_url` names the next node, so a suite's requests are
spread over every node's ingress and admin API. kill / stop / restart act on all nodes.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import httpx
from tests.support.harness import DurablyServer, HarnessError, ServerProcess, free_port

# `spread` (the server's default) or `leader` (DURABLY_TEST_PLACEMENT): how the nodes share
# the partitions
PLACEMENT = os.environ.get("DURABLY_TEST_PLACEMENT", "spread")


class ClusterServer(ServerProcess):
    name = "durably cluster"
    store = "postgresql"  # as DurablyServer.store says which store a test runs against

    def __init__(
        self, base_dir: Path, options: Any = None, nodes: int = 3, extra_args: Any = ()
    ) -> None:
        super().__init__(base_dir, options)
        from tests.support.postgres import shared_cluster

        self.postgres_dsn = shared_cluster().new_database()
        self.nodes = [
            DurablyServer(self.base_dir / f"n{i + 1}", options, store=self.postgres_dsn)
            for i in range(nodes)
        ]
        self.extra_args = list(extra_args)
        self._ingress = itertools.cycle(self.nodes)
        self._admin = itertools.cycle(self.nodes)

    @property
    def extra_args(self) -> list[str]:
        """The `durably serve` flags every node gets besides its own name (a test may add
        some before `start`, as it does to a single server)."""
        return list(self._extra_args)

    @extra_args.setter
    def extra_args(self, value: Any) -> None:
        self._extra_args = list(value)
        for i, node in enumerate(self.nodes):
            node.extra_args = ["--node-name", f"n{i + 1}", "--lease-ttl", "5s",
                               "--placement", PLACEMENT, *self._extra_args]

    @property
    def ingress_url(self) -> str:
        return next(self._ingress).ingress_url

    @property
    def admin_url(self) -> str:
        return next(self._admin).admin_url

    @property
    def proc(self) -> Any:  # type: ignore[override]
        return self.nodes[0].proc

    @proc.setter
    def proc(self, value: Any) -> None:
        pass

    def command(self) -> tuple[list[str], dict[str, str]]:
        return self.nodes[0].command()

    def start(self, timeout: float | None = None) -> None:
        """Start every node at once, wait until each is healthy, then until the nodes
        agree on who runs which partition (`wait_settled`)."""
        if timeout is None:
            timeout = float(os.environ.get("DURABLY_TEST_START_TIMEOUT", "60"))
        pending = list(self.nodes)
        for attempt in range(3):
            for node in pending:
                node.launch()
            failed = []
            for node in pending:
                try:
                    node.wait_healthy(timeout)
                except HarnessError as e:
                    # six ports picked at once, on a machine where other tests pick theirs:
                    # one may be taken before the node binds it
                    if "already in use" not in str(e) or attempt == 2:
                        raise
                    node.kill()
                    node.ingress_port, node.admin_port = free_port(), free_port()
                    failed.append(node)
            pending = failed
            if not pending:
                break
        self.wait_settled(timeout)

    def wait_settled(self, timeout: float = 60.0) -> None:
        """Until every node sees all nodes live and the partitions are placed: under spread
        each node runs an even share (the busiest at most one partition more than the
        idlest) and none is still loading; under leader one node leads and the others
        know it. The suites test the API of a steady cluster: what a caller sees while
        partitions move is the subject of tests/cluster."""
        deadline = time.monotonic() + timeout
        last: Any = None
        with httpx.Client(timeout=5.0) as client:
            while True:
                try:
                    statuses = [client.get(f"{n.admin_url}/cluster").json() for n in self.nodes]
                    last = statuses
                    if _settled(statuses, len(self.nodes)):
                        return
                except (httpx.HTTPError, ValueError) as e:
                    last = e
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"the cluster's partitions did not settle within {timeout}s: {last!r}"
                    )
                time.sleep(0.2)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def stop(self, timeout: float = 30.0) -> None:
        # standbys first: stopping the leader first would only promote one of them
        for node in reversed(self.nodes):
            node.stop(timeout)

    def close(self) -> None:
        self.kill()

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(
            f"--- {n.base_dir.name} ---\n{n.log_tail(lines)}" for n in self.nodes
        )

    def store_rows(self, sql: str) -> list[tuple]:
        return self.nodes[0].store_rows(sql)


def key_owned_by(owners: dict[int, str], node: str, prefix: str, partitions: int = 64) -> str:
    """An object key (`prefix-N`) whose partition `node` owns, in `owners` (pid -> node)."""
    from durably.ids import partition_key_for, partition_of

    for i in range(10_000):
        key = f"{prefix}-{i}"
        if owners.get(partition_of(partition_key_for(key=key), partitions)) == node:
            return key
    raise AssertionError(f"no key on {node}")


def _settled(statuses: list[dict[str, Any]], nodes: int) -> bool:
    if any(len(s["nodes"]) != nodes for s in statuses):
        return False
    if all(s.get("placement") == "spread" for s in statuses):
        ready = [s["partitions_ready"] for s in statuses]
        return (
            all(s["partitions_held"] == s["partitions_ready"] for s in statuses)
            and sum(ready) == statuses[0]["partitions"]
            and max(ready) - min(ready) <= 1
        )
    leaders = {s["leader"] for s in statuses}
    return len(leaders) == 1 and None not in leaders and sorted(
        s["role"] for s in statuses
    ) == ["leader"] + ["standby"] * (nodes - 1)

"""Benchmark: one durably cluster of 1, 2 and 3 nodes, the same workload, in turns.

    flock /tmp/durably-bench.lock python -m bench.cluster_nodes [--duration 20] [--rounds 2]
        [--concurrency 32] [--nodes 1,2,3] [--placement leader|spread] [--per-node]
        [--to-owner]

Three clusters stay up for the whole run, each with a PostgreSQL cluster of its own (fsync
and synchronous_commit on, `tests/support/postgres.py`), its own services process
(`bench/services.py`, restate-sdk under hypercorn, one worker) and 1, 2 or 3
`durably serve --node-name` processes. They are measured point by point in turns (the
order alternating each round), because this machine's speed drifts over minutes; the idle
clusters only renew their leases meanwhile.

The load (asyncio + aiohttp, HTTP/1.1 keep-alive, `--concurrency` connections) alternates
a stateless call (`BenchGreeter/greet`) and an object add over 100 keys
(`BenchCounter/k{n}/add`), request n going to node n mod N's ingress. Per point: throughput,
p50/p99 latency, and CPU per invocation (user + system seconds, measured as `bench/run.py`
does) of all durably nodes together, of PostgreSQL (all its processes, reaped backends
included) and of the SDK process.

`--per-node` gives each cluster `--concurrency` connections per node (N nodes: N times
as many), so that every node sees the load one node sees alone: a node's commits group
as many invocations as one node's would (with the same total load split over N nodes,
each node's group commits are smaller and cost more per invocation).

`--to-owner` sends each object call to the node that owns its key's partition (read from
`durably.partition_lease` before each point; under the leader placement: the leader), as a
partition-aware client or load balancer would; stateless calls still go round robin.
Without it requests land on nodes in turn, as behind a plain round-robin load balancer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.harness import DurablyServer, ServicesProcess, register  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402

from bench.run import _post, cpu_seconds, drive_for, pct, postgres_cpu_seconds  # noqa: E402


@dataclass
class Point:
    nodes: int
    round: int
    completed: int
    errors: int
    throughput: float
    p50_ms: float
    p99_ms: float
    nodes_cpu_ms: float  # per invocation, all durably nodes together
    db_cpu_ms: float
    sdk_cpu_ms: float
    commits: float  # PostgreSQL transactions committed per invocation (pg_stat_database)

    @property
    def cost_ms(self) -> float:
        return self.nodes_cpu_ms + self.db_cpu_ms


class Rig:
    """A cluster of `n` nodes on a PostgreSQL of its own, registered, with its load."""

    def __init__(
        self, n: int, base: Path, ttl: str, placement: str | None, per_node: bool = False,
        to_owner: bool = False,
    ) -> None:
        self.n = n
        self.per_node = per_node
        self.to_owner = to_owner
        self.pg = PostgresCluster()
        self.pg.start()
        self.services = ServicesProcess([], base / "services", app="bench.services:app")
        dsn = self.dsn = self.pg.new_database()
        args = ["--lease-ttl", ttl] + (["--placement", placement] if placement else [])
        self.nodes = [
            DurablyServer(base / f"n{i + 1}", store=dsn,
                          extra_args=["--node-name", f"n{i + 1}", *args])
            for i in range(n)
        ]
        try:
            self.services.start()
            for node in self.nodes:
                node.start()
            register(self.nodes[0].admin_url, self.services.url, use_http_11=False)
        except BaseException:
            self.close()
            raise
        self.ingresses = [node.ingress_url for node in self.nodes]
        self.count = 0
        # key -> ingress of its partition's owner (--to-owner), refreshed before each point
        self.owner_of: dict[str, str] = {}

    async def _load_owners(self) -> None:
        import asyncpg

        from durably.ids import partition_key_for, partition_of

        by_name = {f"n{i + 1}": url for i, url in enumerate(self.ingresses)}
        conn = await asyncpg.connect(self.dsn)
        try:
            count = await conn.fetchval("SELECT count(*) FROM durably.partition_lease")
            owners = dict(await conn.fetch(
                "SELECT pid, owner FROM durably.partition_lease WHERE expires_at > now()"
            ))
        finally:
            await conn.close()
        self.owner_of = {}
        for k in range(100):
            key = f"k{k}"
            owner = owners.get(partition_of(partition_key_for(key=key), count))
            if owner in by_name:
                self.owner_of[key] = by_name[owner]

    async def _xact_commits(self) -> int:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            return int(await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            ))
        finally:
            await conn.close()

    async def one(self, session: aiohttp.ClientSession, n: int) -> None:
        ingress = self.ingresses[n % self.n]
        if (n // self.n) % 2:
            await _post(session, f"{ingress}/BenchGreeter/greet", b'"bench"', 200)
        else:
            key = f"k{n % 100}"
            ingress = self.owner_of.get(key, ingress)
            await _post(session, f"{ingress}/BenchCounter/{key}/add", b"1", 200)

    def _cpu(self) -> tuple[float, float, float]:
        nodes = 0.0
        for node in self.nodes:
            assert node.proc is not None
            nodes += cpu_seconds(node.proc.pid)
        assert self.services.proc is not None
        return nodes, postgres_cpu_seconds(self.pg), cpu_seconds(self.services.proc.pid)

    def measure(self, rnd: int, duration: float, warmup: float, c: int) -> Point:
        if self.per_node:
            c *= self.n
        if self.to_owner:
            asyncio.run(self._load_owners())
        _, lat, _ = asyncio.run(drive_for(self.one, warmup, c, self.count))
        self.count += len(lat) + c + 1
        time.sleep(0.2)
        xact0 = asyncio.run(self._xact_commits())
        before = self._cpu()
        elapsed, lat, errors = asyncio.run(drive_for(self.one, duration, c, self.count))
        after = self._cpu()
        time.sleep(1.1)  # a backend reports its commits to pg_stat at most once a second
        xact1 = asyncio.run(self._xact_commits())
        self.count += len(lat) + errors + c + 1
        done = max(1, len(lat))
        lat.sort()
        nodes, db, sdk = ((a - b) * 1000 / done for a, b in zip(after, before, strict=True))
        p = Point(self.n, rnd, len(lat), errors, len(lat) / elapsed, pct(lat, 0.5),
                  pct(lat, 0.99), nodes, db, sdk, (xact1 - xact0) / done)
        print(f"round {rnd} nodes {self.n}: {p.throughput:7.1f}/s p50 {p.p50_ms:6.1f} "
              f"p99 {p.p99_ms:7.1f} ms  cpu ms/inv: nodes {p.nodes_cpu_ms:5.2f} "
              f"db {p.db_cpu_ms:5.2f} sdk {p.sdk_cpu_ms:5.2f}  commits/inv {p.commits:4.2f}"
              + (f"  errors {errors}" if errors else ""), flush=True)
        return p

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        self.services.close()
        self.pg.destroy()


def table(points: list[Point]) -> str:
    by_n: dict[int, list[Point]] = {}
    for p in points:
        by_n.setdefault(p.nodes, []).append(p)
    rows = ["| nodes | req/s | p50 ms | p99 ms | nodes CPU ms/inv | PostgreSQL CPU ms/inv | "
            "nodes + PG ms/inv | SDK CPU ms/inv | PG commits/inv | errors |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for n, ps in sorted(by_n.items()):
        def med(attr: str, ps: list[Point] = ps) -> float:
            return statistics.median(getattr(p, attr) for p in ps)
        rows.append(
            f"| {n} | {med('throughput'):.0f} | {med('p50_ms'):.1f} | {med('p99_ms'):.1f} | "
            f"{med('nodes_cpu_ms'):.2f} | {med('db_cpu_ms'):.2f} | {med('cost_ms'):.2f} | "
            f"{med('sdk_cpu_ms'):.2f} | {med('commits'):.2f} | {sum(p.errors for p in ps)} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster_nodes",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per point (20)")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--nodes", default="1,2,3", help="comma list of cluster sizes")
    ap.add_argument("--ttl", default="6s", help="the nodes' --lease-ttl")
    ap.add_argument("--placement", default=None, help="the nodes' --placement, if set")
    ap.add_argument("--per-node", action="store_true",
                    help="--concurrency connections per node (N nodes: N times as many)")
    ap.add_argument("--to-owner", action="store_true",
                    help="send each object call to its partition's owner (a partition-aware "
                         "client or load balancer); default: nodes in turn")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.nodes.split(",") if x.strip()]
    rigs: list[Rig] = []
    points: list[Point] = []
    with tempfile.TemporaryDirectory(prefix="durably-cluster-bench-") as tmp:
        try:
            for n in sizes:
                rigs.append(
                    Rig(n, Path(tmp) / f"c{n}", args.ttl, args.placement, args.per_node,
                        args.to_owner)
                )
            for rnd in range(1, args.rounds + 1):
                order = rigs if rnd % 2 else list(reversed(rigs))
                for rig in order:
                    points.append(rig.measure(rnd, args.duration, args.warmup, args.concurrency))
        finally:
            for rig in rigs:
                rig.close()
    print()
    print(f"medians over {args.rounds} rounds of {args.duration:g} s, concurrency "
          f"{args.concurrency}{' per node' if args.per_node else ''}, placement "
          f"{args.placement or 'default'}"
          f"{', object calls sent to the owner' if args.to_owner else ''}:")
    print(table(points))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: one durably cluster of 1, 2 and 3 nodes, the same workload, in turns.

    flock /tmp/durably-bench.lock python -m bench.cluster_nodes [--duration 20] [--rounds 2]
        [--concurrency 32] [--nodes 1,2,3] [--placement leader|spread] [--per-node]
        [--to-owner] [--rate-per-node R] [--statements]

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

`--rate-per-node R` drives an open loop instead: each node's ingress gets R requests a
second at fixed intervals (the same alternation of stateless calls and object adds; with
`--to-owner` the object calls of that stream go to their key's owner), whatever the
answers' latency, and a latency is measured from the time the request was due, not from
when it went out (no coordinated omission). Choose R so that even the largest cluster stays
below saturation: the question is then what each node costs at the load it carries, which
is what N machines would give. The open loop also reports each node's CPU (cores busy) and
the nodes' and PostgreSQL's CPU with no load at all (measured for a few seconds before each
point: the fixed cost of a node), and PostgreSQL statements per invocation
(`pg_stat_statements`, nested ones included; `--statements` prints the most frequent ones).
`--profile DIR` samples node 1 of each cluster with py-spy during each point.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.harness import DurablyServer, ServicesProcess, register  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402

from bench.run import (  # noqa: E402
    LOAD_ERRORS,
    _post,
    _session,
    cpu_seconds,
    drive_for,
    pct,
    postgres_cpu_seconds,
)


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
    statements: float = 0.0  # PostgreSQL statements per invocation (pg_stat_statements)
    node_cores: tuple[float, ...] = ()  # each node's CPU seconds per second under load
    idle_nodes_ms_s: float = 0.0  # all nodes' CPU ms per second with no load
    idle_db_ms_s: float = 0.0  # PostgreSQL's CPU ms per second with no load
    round_trips: float = 0.0  # statements the nodes sent per invocation (top-level ones)

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
        self.pg.init()
        with open(self.pg.data / "postgresql.conf", "a") as conf:
            # statements per invocation (and which): the same small overhead at every size
            conf.write("shared_preload_libraries = 'pg_stat_statements'\n"
                       "pg_stat_statements.track = all\n")
        self.pg.start()
        self.services = ServicesProcess([], base / "services", app="bench.services:app")
        dsn = self.dsn = self.pg.new_database()
        self.pg.psql("CREATE EXTENSION pg_stat_statements", dsn.rsplit("/", 1)[1])
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

    async def _statements(self) -> dict[str, int]:
        """Calls per statement of this database so far (pg_stat_statements)."""
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT query, calls, toplevel FROM pg_stat_statements s JOIN pg_database d "
                "ON d.oid = s.dbid WHERE d.datname = current_database()"
            )
        finally:
            await conn.close()
        out: dict[str, int] = {}
        for q, calls, toplevel in rows:
            # "*": a statement a client sent (a round trip); the others run inside functions
            q = ("* " if toplevel else "  ") + " ".join(q.split())[:90]
            out[q] = out.get(q, 0) + int(calls)
        return out

    async def drive_open(
        self, seconds: float, rate: float, start_n: int
    ) -> tuple[float, list[float], int]:
        """Each node's ingress gets `rate` requests a second at fixed intervals; latency is
        measured from the time each request was due."""
        latencies: list[float] = []
        errors = 0
        interval = 1.0 / rate
        tasks: set[asyncio.Task[None]] = set()
        async with _session(1024, 120) as session:

            async def call(n: int, due: float) -> None:
                nonlocal errors
                try:
                    await self.one(session, n)
                except LOAD_ERRORS as e:
                    errors += 1
                    if errors == 1:
                        print(f"first error: {e!r}", file=sys.stderr, flush=True)
                    return
                latencies.append(time.perf_counter() - due)

            async def stream(i: int, t0: float) -> None:
                # request k of node i is number k*N + i: node i's ingress, alternating kinds
                k = 0
                first = t0 + i * interval / self.n  # the nodes' streams interleave
                while True:
                    due = first + k * interval
                    if due >= t0 + seconds:
                        return
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    task = asyncio.create_task(call(start_n + k * self.n + i, due))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    k += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(stream(i, t0) for i in range(self.n)))
            if tasks:
                await asyncio.wait(set(tasks), timeout=60)
            elapsed = time.perf_counter() - t0
        return elapsed, latencies, errors

    async def one(self, session: aiohttp.ClientSession, n: int) -> None:
        ingress = self.ingresses[n % self.n]
        if (n // self.n) % 2:
            await _post(session, f"{ingress}/BenchGreeter/greet", b'"bench"', 200)
        else:
            key = f"k{n % 100}"
            ingress = self.owner_of.get(key, ingress)
            await _post(session, f"{ingress}/BenchCounter/{key}/add", b"1", 200)

    def _cpu(self) -> tuple[float, float, float]:
        nodes = sum(self._node_cpu())
        assert self.services.proc is not None
        return nodes, postgres_cpu_seconds(self.pg), cpu_seconds(self.services.proc.pid)

    def _node_cpu(self) -> list[float]:
        out = []
        for node in self.nodes:
            assert node.proc is not None
            out.append(cpu_seconds(node.proc.pid))
        return out

    def idle_cost(self, seconds: float) -> tuple[float, float]:
        """All nodes' and PostgreSQL's CPU, ms per second, with no load."""
        n0, db0, _ = self._cpu()
        t0 = time.perf_counter()
        time.sleep(seconds)
        n1, db1, _ = self._cpu()
        elapsed = time.perf_counter() - t0
        return (n1 - n0) * 1000 / elapsed, (db1 - db0) * 1000 / elapsed

    def _py_spy(self, out: Path, rnd: int, duration: float) -> subprocess.Popen[bytes]:
        """py-spy samples node 1 for the point (collapsed stacks, `--format raw`)."""
        node = self.nodes[0]
        assert node.proc is not None
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"nodes{self.n}-round{rnd}-n1.txt"
        return subprocess.Popen(
            ["py-spy", "record", "--pid", str(node.proc.pid), "--nonblocking", "--rate", "200",
             "--duration", str(max(1, int(duration))), "--format", "raw", "--output",
             str(target)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def measure_open(
        self, rnd: int, duration: float, warmup: float, rate: float, idle: float,
        show_statements: bool, profile: Path | None = None,
    ) -> Point:
        if self.to_owner:
            asyncio.run(self._load_owners())
        _, lat, _ = asyncio.run(self.drive_open(warmup, rate, self.count))
        self.count += int((warmup + 1) * rate * self.n) + self.n
        time.sleep(1.0)  # the warm-up's stragglers and commits
        idle_nodes, idle_db = self.idle_cost(idle) if idle > 0 else (0.0, 0.0)
        xact0 = asyncio.run(self._xact_commits())
        st0 = asyncio.run(self._statements())
        spy = self._py_spy(profile, rnd, duration) if profile is not None else None
        before, per0 = self._cpu(), self._node_cpu()
        elapsed, lat, errors = asyncio.run(self.drive_open(duration, rate, self.count))
        after, per1 = self._cpu(), self._node_cpu()
        if spy is not None:
            spy.wait(timeout=60)
        time.sleep(1.1)  # a backend reports its commits to pg_stat at most once a second
        xact1 = asyncio.run(self._xact_commits())
        st1 = asyncio.run(self._statements())
        self.count += int((duration + 1) * rate * self.n) + self.n
        done = max(1, len(lat))
        lat.sort()
        nodes, db, sdk = ((a - b) * 1000 / done for a, b in zip(after, before, strict=True))
        cores = tuple((a - b) / elapsed for a, b in zip(per1, per0, strict=True))
        calls = {q: c - st0.get(q, 0) for q, c in st1.items()}
        # the bench's own reads of pg_stat_* are not the nodes' statements
        own = sum(c for q, c in calls.items() if "pg_stat" in q or "xact_commit" in q)
        statements = (sum(calls.values()) - own) / done
        trips = (sum(c for q, c in calls.items() if q.startswith("*")) - own) / done
        p = Point(self.n, rnd, len(lat), errors, len(lat) / elapsed, pct(lat, 0.5),
                  pct(lat, 0.99), nodes, db, sdk, (xact1 - xact0) / done, statements, cores,
                  idle_nodes, idle_db, trips)
        print(f"round {rnd} nodes {self.n}: {p.throughput:6.1f}/s p50 {p.p50_ms:6.1f} "
              f"p99 {p.p99_ms:7.1f} ms  cpu ms/inv: nodes {p.nodes_cpu_ms:5.2f} "
              f"db {p.db_cpu_ms:5.2f} sdk {p.sdk_cpu_ms:5.2f}  commits/inv {p.commits:4.2f} "
              f"stmts/inv {statements:4.2f} round trips/inv {trips:4.2f}  node cores "
              f"{' '.join(f'{c:.3f}' for c in cores)}  idle ms/s: nodes {idle_nodes:.1f} "
              f"db {idle_db:.1f}" + (f"  errors {errors}" if errors else ""), flush=True)
        if show_statements:
            for q, c in sorted(calls.items(), key=lambda kv: -kv[1])[:10]:
                if c:
                    print(f"    {c / done:6.3f}/inv  {q}", flush=True)
        return p

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


def table(points: list[Point], open_loop: bool = False) -> str:
    by_n: dict[int, list[Point]] = {}
    for p in points:
        by_n.setdefault(p.nodes, []).append(p)
    if open_loop:
        return open_table(by_n)
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


def open_table(by_n: dict[int, list[Point]]) -> str:
    rows = ["| nodes | req/s | p50 ms | p99 ms | nodes CPU ms/inv | of it idle | PG CPU ms/inv | "
            "nodes + PG ms/inv | SDK ms/inv | PG commits/inv | PG statements/inv (sent) | "
            "cores per node | idle ms/s per node | PG idle ms/s | errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, ps in sorted(by_n.items()):
        def med(f: Callable[[Point], float], ps: list[Point] = ps) -> float:
            return statistics.median(f(p) for p in ps)
        rows.append(
            f"| {n} | {med(lambda p: p.throughput):.0f} | {med(lambda p: p.p50_ms):.1f} | "
            f"{med(lambda p: p.p99_ms):.1f} | {med(lambda p: p.nodes_cpu_ms):.2f} | "
            f"{med(lambda p: p.idle_nodes_ms_s / max(p.throughput, 1e-9)):.2f} | "
            f"{med(lambda p: p.db_cpu_ms):.2f} | {med(lambda p: p.cost_ms):.2f} | "
            f"{med(lambda p: p.sdk_cpu_ms):.2f} | {med(lambda p: p.commits):.2f} | "
            f"{med(lambda p: p.statements):.1f} ({med(lambda p: p.round_trips):.2f}) | "
            f"{med(lambda p: sum(p.node_cores) / len(p.node_cores)):.3f} | "
            f"{med(lambda p: p.idle_nodes_ms_s / p.nodes):.1f} | "
            f"{med(lambda p: p.idle_db_ms_s):.1f} | {sum(p.errors for p in ps)} |"
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
    ap.add_argument("--rate-per-node", type=float, default=0.0,
                    help="open loop: this many requests a second to each node's ingress, at "
                         "fixed intervals (default: closed loop, --concurrency connections)")
    ap.add_argument("--idle", type=float, default=4.0,
                    help="open loop: seconds of no load measured before each point (4)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="open loop: py-spy node 1 of each cluster during each point, "
                         "collapsed stacks into this directory")
    ap.add_argument("--statements", action="store_true",
                    help="open loop: print the most frequent PostgreSQL statements per point")
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
                    if args.rate_per_node > 0:
                        points.append(rig.measure_open(
                            rnd, args.duration, args.warmup, args.rate_per_node, args.idle,
                            args.statements, args.profile,
                        ))
                    else:
                        points.append(
                            rig.measure(rnd, args.duration, args.warmup, args.concurrency)
                        )
        finally:
            for rig in rigs:
                rig.close()
    print()
    load = (f"open loop, {args.rate_per_node:g} requests/s per node" if args.rate_per_node > 0
            else f"concurrency {args.concurrency}{' per node' if args.per_node else ''}")
    print(f"medians over {args.rounds} rounds of {args.duration:g} s, {load}, placement "
          f"{args.placement or 'default'}"
          f"{', object calls sent to the owner' if args.to_owner else ''}:")
    print(table(points, open_loop=args.rate_per_node > 0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

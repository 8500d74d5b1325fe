"""Benchmark: what 1, 2 and 3 spread nodes on one PostgreSQL cost per second whatever the load.

    flock /tmp/durably-bench.lock env PYTHONPATH=src python -m bench.cluster_idle \
        [--duration 20] [--nodes 1,2,3] [--rate 20] [--ttl 6s] [--statements 8]

One PostgreSQL cluster (fsync on, `tests/support/postgres.py`) with `pg_stat_statements`
preloaded, one services process (`bench/services.py`), and for each cluster size a new
database and N `durably serve --node-name` processes (the default placement, spread) with
the deployment registered. Once every node runs its share of the 64 partitions and the
cluster has settled, two phases of `--duration` seconds each:

- **idle**: no request at all;
- **light**: `--rate` requests per second (open loop, a new request every 1/rate s,
  alternating a stateless call and an object add over 100 keys, request n to node
  n mod N), the load at which fixed costs are most of the bill;
- **owner**: the same, each object add sent to the owner of its key's partition (no
  forwarding hop), which tells the cost of the hops apart from the nodes' own.

Per phase it reports the CPU per second (user + system, as `bench/run.py` measures it) of
each node and of PostgreSQL (the postmaster, its backends, and backends it reaped),
PostgreSQL transactions per second (`pg_stat_database.xact_commit`, this database) and
top-level statements per second (`pg_stat_statements`), the connections each node holds
to PostgreSQL and to the SDK, and the busiest statements by calls. PostgreSQL's own
background (checkpointer, stats, autovacuum launcher) is measured first with no node
(`0 nodes`) so it can be told apart; autovacuum's ANALYZE of an expression index shows
among the statements (`to_char(...)`, the introspection's `durably_ts`) after a load.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.harness import DurablyServer, ServicesProcess, register  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402

from bench.run import _psutil, cpu_seconds, postgres_cpu_seconds  # noqa: E402

PARTITIONS = 64


@dataclass
class Phase:
    nodes: int
    name: str
    seconds: float
    node_cpu_ms_s: list[float]  # per node, CPU ms per second
    pg_cpu_ms_s: float
    xact_s: float
    statements_s: float
    pg_conns: list[int]  # per node
    sdk_conns: list[int]  # per node
    completed: int = 0
    errors: int = 0
    top: list[tuple[float, str]] = field(default_factory=list)  # (calls/s, statement)

    @property
    def nodes_cpu_ms_s(self) -> float:
        return sum(self.node_cpu_ms_s)


def _connections(pid: int, port: int) -> int:
    psutil = _psutil()
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except Exception:
        return 0
    return sum(1 for c in conns if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED")


async def _sql(dsn: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def sql(dsn: str, query: str, *args: Any) -> list[Any]:
    return asyncio.run(_sql(dsn, query, *args))


class Bench:
    def __init__(self, base: Path, ttl: str) -> None:
        self.base = base
        self.ttl = ttl
        self.pg = PostgresCluster()
        self.pg.init()
        with open(self.pg.data / "postgresql.conf", "a") as conf:
            conf.write("shared_preload_libraries = 'pg_stat_statements'\n"
                       "pg_stat_statements.track = top\n")
        self.pg.start()
        self.services = ServicesProcess([], base / "services", app="bench.services:app")
        self.services.start()
        self.sdk_port = self.services.port

    def close(self) -> None:
        self.services.close()
        self.pg.destroy()

    def _counters(self, dsn: str) -> tuple[int, int]:
        xact = sql(dsn, "SELECT xact_commit FROM pg_stat_database "
                        "WHERE datname = current_database()")[0][0]
        calls = sql(dsn, "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s "
                         "JOIN pg_database d ON d.oid = s.dbid "
                         "WHERE d.datname = current_database()")[0][0]
        return int(xact), int(calls)

    def _top(self, dsn: str, seconds: float, k: int) -> list[tuple[float, str]]:
        rows = sql(dsn, "SELECT calls, query FROM pg_stat_statements s "
                        "JOIN pg_database d ON d.oid = s.dbid "
                        "WHERE d.datname = current_database() ORDER BY calls DESC LIMIT $1", k)
        return [(r[0] / seconds, " ".join(r[1].split())[:110]) for r in rows]

    def phase(
        self, n: int, name: str, dsn: str, nodes: list[DurablyServer], duration: float,
        rate: float, top: int,
    ) -> Phase:
        sql(dsn, "SELECT pg_stat_statements_reset()")
        time.sleep(1.1)  # a backend reports its commits to pg_stat at most once a second
        xact0, calls0 = self._counters(dsn)
        pids = [node.proc.pid for node in nodes if node.proc is not None]
        cpu0 = [cpu_seconds(p) for p in pids]
        pg0 = postgres_cpu_seconds(self.pg)
        t0 = time.monotonic()
        completed = errors = 0
        if rate > 0 and nodes:
            owner_of = _owners(dsn, nodes) if name == "owner" else {}
            completed, errors = asyncio.run(
                _drive([x.ingress_url for x in nodes], rate, duration, owner_of)
            )
        else:
            time.sleep(duration)
        elapsed = time.monotonic() - t0
        cpu1 = [cpu_seconds(p) for p in pids]
        pg1 = postgres_cpu_seconds(self.pg)
        conns = [_connections(p, self.pg.port) for p in pids]
        sdk = [_connections(p, self.sdk_port) for p in pids]
        time.sleep(1.1)
        xact1, calls1 = self._counters(dsn)
        # (the counters' own reads: 2 statements and 2 transactions on each side)
        p = Phase(
            n, name, elapsed, [(b - a) * 1000 / elapsed for a, b in zip(cpu0, cpu1, strict=True)],
            (pg1 - pg0) * 1000 / elapsed, max(0, xact1 - xact0 - 2) / elapsed,
            max(0, calls1 - calls0 - 2) / elapsed, conns, sdk, completed, errors,
            self._top(dsn, elapsed, top),
        )
        print(f"{n} nodes {name:5}: nodes CPU ms/s {p.nodes_cpu_ms_s:6.1f} "
              f"({' '.join(f'{c:.1f}' for c in p.node_cpu_ms_s)}), PG {p.pg_cpu_ms_s:5.1f}, "
              f"xact/s {p.xact_s:6.1f}, statements/s {p.statements_s:6.1f}, "
              f"PG conns {conns}, SDK conns {sdk}"
              + (f", {completed} done, {errors} errors" if rate > 0 else ""), flush=True)
        for calls_s, q in p.top:
            print(f"    {calls_s:7.2f}/s  {q}", flush=True)
        return p

    def run(self, n: int, duration: float, rate: float, top: int) -> list[Phase]:
        dsn = self.pg.new_database()
        sql(dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if n == 0:
            try:
                return [self.phase(0, "idle", dsn, [], duration, 0, top)]
            finally:
                self.pg.psql(f"DROP DATABASE {dsn.rsplit('/', 1)[1]}")
        nodes = [
            DurablyServer(self.base / f"c{n}n{i + 1}", store=dsn,
                          extra_args=["--node-name", f"n{i + 1}", "--lease-ttl", self.ttl])
            for i in range(n)
        ]
        try:
            for node in nodes:
                node.start()
            register(nodes[0].admin_url, self.services.url, use_http_11=False)
            _settle(nodes)
            time.sleep(3.0)
            return [
                self.phase(n, "idle", dsn, nodes, duration, 0, top),
                self.phase(n, "light", dsn, nodes, duration, rate, top),
                self.phase(n, "owner", dsn, nodes, duration, rate, top),
            ]
        finally:
            for node in nodes:
                node.close()
            # (each database left behind would have autovacuum visit it: PostgreSQL's own
            # background CPU would grow from one cluster size to the next)
            self.pg.psql(f"DROP DATABASE {dsn.rsplit('/', 1)[1]}")


def _settle(nodes: list[DurablyServer], timeout: float = 60.0) -> None:
    """Until every node runs its share of the partitions (and only that)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = [httpx.get(f"{x.admin_url}/cluster", timeout=5).json() for x in nodes]
            ready = [s["partitions_ready"] for s in status]
            held = [s["partitions_held"] for s in status]
            if sum(ready) == PARTITIONS and ready == held and max(ready) - min(ready) <= 1:
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the nodes did not settle on their shares")
        time.sleep(0.3)


def _owners(dsn: str, nodes: list[DurablyServer]) -> dict[str, str]:
    """Object key -> ingress of the node owning its partition."""
    from durably.ids import partition_key_for, partition_of

    by_name = {f"n{i + 1}": x.ingress_url for i, x in enumerate(nodes)}
    owners = dict(sql(dsn, "SELECT pid, owner FROM durably.partition_lease "
                           "WHERE expires_at > now()"))
    return {
        f"k{k}": by_name[o] for k in range(100)
        if (o := owners.get(partition_of(partition_key_for(key=f"k{k}"), PARTITIONS))) in by_name
    }


async def _drive(
    ingresses: list[str], rate: float, duration: float, owner_of: dict[str, str]
) -> tuple[int, int]:
    """Open loop: a request every 1/rate s, whatever the answers' times."""
    done = errors = 0
    interval = 1.0 / rate
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            nonlocal done, errors
            base = ingresses[i % len(ingresses)]
            key = f"k{i % 100}"
            url = (f"{base}/BenchGreeter/greet" if (i // len(ingresses)) % 2
                   else f"{owner_of.get(key, base)}/BenchCounter/{key}/add")
            body = b'"idle"' if "Greeter" in url else b"1"
            try:
                async with session.post(url, data=body,
                                        headers={"content-type": "application/json"}) as r:
                    await r.read()
                    if r.status == 200:
                        done += 1
                    else:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1

        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        i = 0
        while (now := loop.time()) < start + duration:
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            await asyncio.sleep(max(0.0, start + i * interval - now))
        await asyncio.gather(*tasks)
    return done, errors


def table(phases: list[Phase]) -> str:
    rows = ["| nodes | phase | CPU ms/s per node | nodes CPU ms/s | PostgreSQL CPU ms/s | "
            "nodes + PG ms/s | PG xact/s | PG statements/s | PG conns per node | "
            "SDK conns per node |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for p in phases:
        rows.append(
            f"| {p.nodes} | {p.name} | {' / '.join(f'{c:.1f}' for c in p.node_cpu_ms_s) or '-'} "
            f"| {p.nodes_cpu_ms_s:.1f} | {p.pg_cpu_ms_s:.1f} | "
            f"{p.nodes_cpu_ms_s + p.pg_cpu_ms_s:.1f} | {p.xact_s:.1f} | {p.statements_s:.1f} | "
            f"{' / '.join(map(str, p.pg_conns)) or '-'} | {' / '.join(map(str, p.sdk_conns)) or '-'} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster_idle",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per phase (20)")
    ap.add_argument("--nodes", default="0,1,2,3", help="comma list of cluster sizes")
    ap.add_argument("--rate", type=float, default=20.0, help="requests/s of the light phase")
    ap.add_argument("--ttl", default="6s", help="the nodes' --lease-ttl")
    ap.add_argument("--statements", type=int, default=8, help="busiest statements shown")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.nodes.split(",") if x.strip()]
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="durably-cluster-idle-") as tmp:
        bench = Bench(Path(tmp), args.ttl)
        try:
            for n in sizes:
                phases += bench.run(n, args.duration, args.rate, args.statements)
        finally:
            bench.close()
    print()
    print(f"{args.duration:g} s per phase, light = {args.rate:g} req/s, TTL {args.ttl}:")
    print(table(phases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

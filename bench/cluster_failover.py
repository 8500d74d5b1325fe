"""Failover time of partition leases: three lease-holding processes on a throwaway
PostgreSQL; kill -9 one, time until every partition it held is owned by a survivor at a
new epoch, restart it, wait for the even split, repeat.

    flock /tmp/durably-bench.lock python -m bench.cluster_failover --kills 20 --ttl 2

Measures the lease layer (cluster/keeper.py) only: no engine runs on these nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
from tests.support.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parents[1]


async def _owners(conn: asyncpg.Connection) -> dict[int, tuple[str, int]]:
    rows = await conn.fetch("SELECT pid, owner, epoch FROM durably.partition_lease")
    return {r[0]: (r[1], r[2]) for r in rows}


def _spawn(dsn: str, name: str, ttl: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.lease_node", dsn, name, str(ttl)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
    return proc


async def _until(conn: asyncpg.Connection, check: object, timeout: float = 60) -> float:
    start = time.monotonic()
    while not check(await _owners(conn)):  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def _even(owners: dict[int, tuple[str, int]], names: set[str]) -> bool:
    counts: dict[str, int] = {}
    for owner, _ in owners.values():
        counts[owner] = counts.get(owner, 0) + 1
    return set(counts) == names and max(counts.values()) - min(counts.values()) <= 1


async def run(kills: int, ttl: float) -> list[float]:
    cluster = PostgresCluster()
    cluster.start()
    try:
        dsn = cluster.new_database()
        names = {"a", "b", "c"}
        procs = {n: _spawn(dsn, n, ttl) for n in sorted(names)}
        conn = await asyncpg.connect(dsn)
        times: list[float] = []
        try:
            for i in range(kills):
                await _until(conn, lambda o: _even(o, names))
                # a random moment within the renewal period
                await asyncio.sleep(random.uniform(0, ttl / 3))
                victim = random.choice(sorted(names))
                held = {p: e for p, (o, e) in (await _owners(conn)).items() if o == victim}
                procs[victim].send_signal(signal.SIGKILL)
                procs[victim].wait()

                def moved(
                    o: dict[int, tuple[str, int]], victim: str = victim, held: dict[int, int] = held
                ) -> bool:
                    return all(o[p][0] not in ("", victim) and o[p][1] > e for p, e in held.items())

                took = await _until(conn, moved)
                times.append(took)
                print(f"kill {i + 1:2d}: {victim} ({len(held)} partitions) -> {took:.2f} s",
                      flush=True)
                procs[victim] = _spawn(dsn, victim, ttl)
        finally:
            await conn.close()
            for p in procs.values():
                p.kill()
                p.wait()
        return times
    finally:
        cluster.destroy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--ttl", type=float, default=2.0)
    args = ap.parse_args()
    times = asyncio.run(run(args.kills, args.ttl))
    q = statistics.quantiles(times, n=20)
    print(
        f"TTL {args.ttl} s, {len(times)} kills: min {min(times):.2f} s, median "
        f"{statistics.median(times):.2f} s, p95 {q[-1]:.2f} s, max {max(times):.2f} s"
    )


if __name__ == "__main__":
    main()

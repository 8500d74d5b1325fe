"""Failover times on a throwaway PostgreSQL, two ways:

- leases (default): three lease-holding processes; kill -9 one, time until every partition
  it held is owned by a survivor at a new epoch, restart it, wait for the even split, repeat.
  Measures the lease layer (cluster/keeper.py) alone.
- `--serve`: three `durably serve --node-name` nodes and a Counter service; kill -9 the
  leader, time until a new idempotent call through a standby is answered (leases expire,
  a standby opens the store and recovers), restart the killed node, repeat. With
  `--placement spread`: kill the node that owns the probe key's partition instead (the
  survivors take its partitions over, load and recover them).

    flock /tmp/durably-bench.lock python -m bench.cluster_failover --kills 20 --ttl 2 \
        [--serve [--placement spread]]
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


def run_serve(kills: int, ttl: float, placement: str = "leader") -> list[float]:
    import tempfile

    import httpx
    from tests.support.harness import DurablyServer, ServicesProcess, register
    from tests.support.postgres import fetch

    cluster = PostgresCluster()
    cluster.start()
    base = Path(tempfile.mkdtemp(prefix="durably-failover-"))
    services = ServicesProcess(["Counter"], base / "services")
    nodes: dict[str, DurablyServer] = {}
    times: list[float] = []
    try:
        dsn = cluster.new_database()
        services.start()
        for name in ("n1", "n2", "n3"):
            nodes[name] = DurablyServer(
                base / name, store=dsn,
                extra_args=["--node-name", name, "--lease-ttl", f"{ttl}s",
                            "--placement", placement],
            )
            nodes[name].start()
        register(nodes["n1"].admin_url, services.url, use_http_11=False)
        from durably.ids import partition_key_for, partition_of

        # the node to kill: the leader, or (spread) the owner of the probe key's partition
        probe_pid = 0 if placement == "leader" else partition_of(partition_key_for(key="probe"), 64)
        with httpx.Client(timeout=30) as client:
            for i in range(kills):
                while True:
                    rows = fetch(dsn, f"SELECT owner FROM partition_lease WHERE pid = {probe_pid} "
                                      "AND owner <> '' AND expires_at >= now()")
                    if rows:
                        break
                    time.sleep(0.05)
                leader = rows[0][0]
                time.sleep(random.uniform(0, ttl / 3))
                killed_at = time.monotonic()
                nodes[leader].kill()
                others = [n for name, n in nodes.items() if name != leader]
                attempt = 0
                while True:
                    node = others[attempt % len(others)]
                    attempt += 1
                    try:
                        r = client.post(f"{node.ingress_url}/Counter/probe/add", json=1,
                                        headers={"idempotency-key": f"kill-{i}"})
                        if r.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.02)
                took = time.monotonic() - killed_at
                times.append(took)
                role = "leader" if placement == "leader" else "owner"
                print(f"kill {i + 1:2d}: {role} {leader} -> answered after {took:.2f} s",
                      flush=True)
                nodes[leader].start()
                if placement == "spread":  # until the restarted node runs its share again
                    while len({r[0] for r in fetch(
                        dsn, "SELECT owner FROM partition_lease WHERE owner <> '' "
                             "AND expires_at >= now()")}) < 3:
                        time.sleep(0.1)
    finally:
        for n in nodes.values():
            n.close()
        services.close()
        cluster.destroy()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--ttl", type=float, default=2.0)
    ap.add_argument("--serve", action="store_true", help="durably serve nodes, not lease holders")
    ap.add_argument("--placement", choices=("leader", "spread"), default="leader")
    args = ap.parse_args()
    times = (
        run_serve(args.kills, args.ttl, args.placement) if args.serve
        else asyncio.run(run(args.kills, args.ttl))
    )
    q = statistics.quantiles(times, n=20)
    print(
        f"TTL {args.ttl} s, {len(times)} kills: min {min(times):.2f} s, median "
        f"{statistics.median(times):.2f} s, p95 {q[-1]:.2f} s, max {max(times):.2f} s"
    )


if __name__ == "__main__":
    main()

"""Quick throughput/latency comparison: durably vs the real Restate server.

Same machine, same restate-sdk service (the conformance services under hypercorn, one
worker), same load generator (asyncio + httpx, HTTP/1.1 keep-alive), for a stateless call
(`TestUtilsService/echo`) and a virtual-object update over 100 keys (`Counter/{k}/add`).

    python bench/quick.py --seconds 10 --concurrency 1 16 64

Prints one table row per (server, workload, concurrency) and the durably/Restate ratios.
The full harness of issue 5 (CPU, RSS, plots) is still to come.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import ServicesProcess, free_port, make_server, register  # noqa: E402

SERVICES = ["TestUtilsService", "Counter"]


async def drive(url_for, body_for, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        deadline = time.monotonic() + seconds
        counter = 0

        async def worker(w: int) -> None:
            nonlocal counter
            while time.monotonic() < deadline:
                counter += 1
                n = counter
                t0 = time.perf_counter()
                r = await client.post(
                    url_for(n), content=body_for(n), headers={"content-type": "application/json"}
                )
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code} {r.text}")

        start = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.monotonic() - start
    return len(latencies) / elapsed, latencies


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--targets", nargs="+", default=["durably", "restate"])
    args = ap.parse_args()
    rows: dict[tuple[str, str, int], tuple[float, float, float]] = {}
    import os

    for target in args.targets:
        os.environ["DURABLY_TEST_TARGET"] = target
        base = Path(tempfile.mkdtemp(prefix=f"bench-{target}-"))
        (base / "services").mkdir(parents=True, exist_ok=True)
        services = ServicesProcess(SERVICES, base / "services", port=free_port())
        services.start()
        server = make_server(base / "server")
        server.start()
        try:
            register(server.admin_url, services.url, use_http_11=False)
            ingress = server.ingress_url
            workloads = {
                "stateless call": (lambda n, ingress=ingress: f"{ingress}/TestUtilsService/echo", lambda n: b'"hi"'),
                "object add, 100 keys": (lambda n, ingress=ingress: f"{ingress}/Counter/k{n % 100}/add", lambda n: b"1"),
            }
            for name, (url_for, body_for) in workloads.items():
                for c in args.concurrency:
                    asyncio.run(drive(url_for, body_for, 1.0, c))  # warm-up
                    rps, lat = asyncio.run(drive(url_for, body_for, args.seconds, c))
                    rows[(target, name, c)] = (rps, pct(lat, 0.5), pct(lat, 0.99))
                    print(f"{target:8} {name:22} c={c:<3} {rps:7.0f} req/s  p50 {pct(lat, .5):6.1f} ms"
                          f"  p99 {pct(lat, .99):6.1f} ms  (median {statistics.median(lat)*1000:.1f})",
                          flush=True)
        finally:
            server.kill()
            services.kill()
    if {"durably", "restate"} <= set(args.targets):
        print("\n| workload | c | durably req/s | Restate req/s | ratio | durably p99 ms | Restate p99 ms |")
        print("|---|---|---|---|---|---|---|")
        for (target, name, c), (rps, _, p99) in rows.items():
            if target != "durably":
                continue
            r_rps, _, r_p99 = rows[("restate", name, c)]
            print(f"| {name} | {c} | {rps:.0f} | {r_rps:.0f} | {rps / r_rps:.2f} | {p99:.1f} | {r_p99:.1f} |")


if __name__ == "__main__":
    main()

"""Benchmark: the same workloads against durably and against the real Restate server.

    python -m bench.run                       # full run: 20 s per point, c = 1, 16, 64
    python -m bench.run --quick               # smoke run: a few seconds per point
    python -m bench.run --duration 10 --concurrency 16,64 --workloads a,b --targets durably
    python -m bench.run --targets durably,durably-pg,restate   # with durably on PostgreSQL

Each target gets a fresh data directory and a fresh services process: ``bench.services``
under hypercorn with one worker (``restate-sdk``, the same code for both targets), started
and registered by the test harness (``tests/support/harness.py``), which also installs the
npm ``restate-server``. Both targets stay up for the whole run and are measured point by
point in turns (the order alternating), because this machine's speed drifts by a factor of
two over minutes: ratios are only fair between points taken side by side. One load generator (asyncio + aiohttp, HTTP/1.1 keep-alive, one
connection per concurrent client) drives:

    a  stateless call          POST /BenchGreeter/greet
    b  object add, 100 keys    POST /BenchCounter/k{n % 100}/add
    c  workflow, 3 ctx.run     POST /BenchWorkflow/{new id}/run
    d  send + attach           POST /BenchGreeter/greet/send (idempotency key), then
                               GET /restate/invocation/{id}/attach; latency covers both
    e  1,000 concurrent sleeps 1,000 clients at once call BenchSleeper/sleep (ctx.sleep 1 s);
                               one round, concurrency does not apply

Per point it records throughput, latency percentiles, CPU seconds per invocation of the
server process and of the SDK process (user + system, children included, from psutil),
the server's peak RSS, and the growth of the data directory per completed invocation.
Target ``durably-pg`` is durably with ``--store postgresql://...`` on a PostgreSQL cluster
of its own (``tests/support/postgres.py``, fsync and synchronous_commit on, same machine):
PostgreSQL's CPU (all its processes) is its own column and is counted in durably's cost per
invocation (the ``durably-pg/durably`` row compares server + database CPU), and its disk
growth is the cluster's data directory.
It writes a markdown table with the durably/Restate ratio of every row (``--output``,
default ``docs/benchmarks.md``), a PNG plot (``--plot``) and the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.harness import (  # noqa: E402
    RESTATE_VERSION,
    DurablyServer,
    RestateServer,
    ServerProcess,
    ServicesProcess,
    register,
)

SERVICES_APP = "bench.services:app"
WORKLOADS = {
    "a": "stateless call",
    "b": "object add, 100 keys",
    "c": "workflow, 3 ctx.run",
    "d": "send + attach",
    "e": "1,000 concurrent sleeps (1 s)",
}
SLEEPERS = 1000
JSON = {"content-type": "application/json"}


# ------------------------------------------------------------------------------ measuring


def _psutil() -> Any:
    try:
        import psutil
    except ImportError:  # pragma: no cover - the bench extra installs it
        sys.exit("bench needs psutil and matplotlib: pip install -e '.[bench]'")
    return psutil


def _tree(pid: int) -> list[Any]:
    psutil = _psutil()
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the hypercorn worker)."""
    total = 0.0
    for p in _tree(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:
            pass
    return total


def rss_bytes(pid: int) -> int:
    total = 0
    for p in _tree(pid):
        try:
            total += p.memory_info().rss
        except Exception:
            pass
    return total


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


class RssSampler:
    """Peak RSS of the server while a point runs (sampled every 200 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(0.2)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))] * 1000


@dataclass
class Point:
    target: str
    workload: str
    concurrency: int
    completed: int
    seconds: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    server_cpu_ms: float  # per invocation
    sdk_cpu_ms: float  # per invocation
    server_rss_mb: float
    disk_bytes: float  # per completed invocation
    db_cpu_ms: float = 0.0  # per invocation: PostgreSQL's processes (durably-pg)
    errors: int = 0
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ load


class Load:
    """One workload's request logic: ``one(session, n)`` does invocation number ``n``."""

    def __init__(self, ingress: str, run_id: str) -> None:
        self.ingress = ingress
        self.run_id = run_id

    async def a(self, session: aiohttp.ClientSession, n: int) -> None:
        await _post(session, f"{self.ingress}/BenchGreeter/greet", b'"bench"', 200)

    async def b(self, session: aiohttp.ClientSession, n: int) -> None:
        await _post(session, f"{self.ingress}/BenchCounter/k{n % 100}/add", b"1", 200)

    async def c(self, session: aiohttp.ClientSession, n: int) -> None:
        await _post(
            session, f"{self.ingress}/BenchWorkflow/{self.run_id}-{n}/run", str(n).encode(), 200
        )

    async def d(self, session: aiohttp.ClientSession, n: int) -> None:
        body = await _post(
            session,
            f"{self.ingress}/BenchGreeter/greet/send",
            b'"bench"',
            202,
            {"idempotency-key": f"{self.run_id}-{n}"},
        )
        inv_id = json.loads(body)["invocationId"]
        async with session.get(f"{self.ingress}/restate/invocation/{inv_id}/attach") as r:
            _ok(r, 200, await r.read())

    async def e(self, session: aiohttp.ClientSession, n: int) -> None:
        await _post(session, f"{self.ingress}/BenchSleeper/sleep", b"1000", 200)


class LoadError(RuntimeError):
    pass


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, status: int,
    headers: dict[str, str] | None = None,
) -> bytes:
    async with session.post(url, data=body, headers={**JSON, **(headers or {})}) as r:
        data = await r.read()
        _ok(r, status, data)
        return data


def _ok(r: aiohttp.ClientResponse, status: int, body: bytes) -> None:
    if r.status != status:
        raise LoadError(f"{r.method} {r.url} -> {r.status} {body[:200]!r}")


def _session(connections: int, timeout: float) -> aiohttp.ClientSession:
    # aiohttp: its HTTP parser is in C, so the generator costs the shared CPUs little
    # (an httpx client on this 2-core machine became the bottleneck at concurrency 64)
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
    )


LOAD_ERRORS = (LoadError, aiohttp.ClientError, asyncio.TimeoutError)


async def drive_for(
    one: Callable[[aiohttp.ClientSession, int], Any], seconds: float, concurrency: int,
    start_n: int,
) -> tuple[float, list[float], int]:
    """``concurrency`` clients call ``one`` back to back for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    async with _session(concurrency, 120) as session:
        counter = start_n
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal counter, errors
            while time.monotonic() < deadline:
                counter += 1
                t0 = time.perf_counter()
                try:
                    await one(session, counter)
                except LOAD_ERRORS as e:
                    errors += 1
                    if errors == 1:
                        print(f"first error: {e!r}", file=sys.stderr, flush=True)
                    if errors > 100:
                        raise
                    continue
                latencies.append(time.perf_counter() - t0)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return elapsed, latencies, errors


async def drive_burst(
    one: Callable[[aiohttp.ClientSession, int], Any], count: int, start_n: int
) -> tuple[float, list[float], int]:
    """``count`` calls at once, each on its own connection."""
    latencies: list[float] = []
    errors = 0
    async with _session(count, 300) as session:

        async def call(n: int) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                await one(session, n)
            except LOAD_ERRORS as e:
                errors += 1
                if errors == 1:
                    print(f"first error: {e!r}", file=sys.stderr, flush=True)
                return
            latencies.append(time.perf_counter() - t0)

        started = time.monotonic()
        await asyncio.gather(*(call(start_n + i) for i in range(count)))
        elapsed = time.monotonic() - started
    return elapsed, latencies, errors


# ------------------------------------------------------------------------------ one target


TARGETS = ["durably", "durably-pg", "restate"]


def make_target(name: str, base: Path) -> tuple[ServerProcess, Any]:
    """The server, and the PostgreSQL cluster it stores into (durably-pg) or None."""
    if name == "durably":
        return DurablyServer(base / "server", store="sqlite"), None
    if name == "durably-pg":
        from tests.support.postgres import PostgresCluster

        cluster = PostgresCluster()
        cluster.start()
        return DurablyServer(base / "server", store=cluster.new_database()), cluster
    if name == "restate":
        return RestateServer(base / "server"), None
    raise SystemExit(f"unknown target {name!r} ({', '.join(TARGETS)})")


def postgres_cpu_seconds(cluster: Any) -> float:
    """CPU of a PostgreSQL cluster: the postmaster, its live children, and the children it
    reaped (backends of closed connections)."""
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    psutil = _psutil()
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return cpu_seconds(pid) + t.children_user + t.children_system


class Rig:
    """One target, up and registered: its server, its own services process and a load."""

    def __init__(self, name: str, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.services = ServicesProcess([], base / "services", app=SERVICES_APP)
        self.server, self.cluster = make_target(name, base)
        self.disk_dir = self.cluster.data if self.cluster is not None else self.server.data_dir
        self.services.start()
        try:
            self.server.start()
            register(self.server.admin_url, self.services.url, use_http_11=False)
        except BaseException:
            self.close()
            raise
        assert self.server.proc is not None and self.services.proc is not None
        self.load = Load(self.server.ingress_url, uuid.uuid4().hex[:10])
        self.n = 0

    def measure(self, wl: str, c: int, args: argparse.Namespace) -> Point:
        server, services = self.server, self.services
        assert server.proc is not None and services.proc is not None
        one = getattr(self.load, wl)
        # warm-up: connections, SDK code paths, the server's caches
        if wl == "e":
            asyncio.run(drive_burst(one, 20, self.n))
            self.n += 20
        else:
            _, lat, _ = asyncio.run(drive_for(one, args.warmup, c, self.n))
            self.n += len(lat) + c + 1
        time.sleep(0.2)
        disk0 = dir_bytes(self.disk_dir)
        db0 = postgres_cpu_seconds(self.cluster) if self.cluster is not None else 0.0
        srv0, sdk0 = cpu_seconds(server.proc.pid), cpu_seconds(services.proc.pid)
        with RssSampler(server.proc.pid) as rss:
            if wl == "e":
                elapsed, lat, errors = asyncio.run(drive_burst(one, SLEEPERS, self.n))
            else:
                elapsed, lat, errors = asyncio.run(drive_for(one, args.duration, c, self.n))
        srv1, sdk1 = cpu_seconds(server.proc.pid), cpu_seconds(services.proc.pid)
        db1 = postgres_cpu_seconds(self.cluster) if self.cluster is not None else 0.0
        disk1 = dir_bytes(self.disk_dir)
        self.n += len(lat) + errors + c + 1
        done = max(1, len(lat))
        lat.sort()
        point = Point(
            target=self.name,
            workload=wl,
            concurrency=c,
            completed=len(lat),
            seconds=round(elapsed, 3),
            throughput=len(lat) / elapsed if elapsed > 0 else 0.0,
            p50_ms=pct(lat, 0.50),
            p90_ms=pct(lat, 0.90),
            p99_ms=pct(lat, 0.99),
            server_cpu_ms=(srv1 - srv0) * 1000 / done,
            sdk_cpu_ms=(sdk1 - sdk0) * 1000 / done,
            server_rss_mb=rss.peak / 1e6,
            disk_bytes=(disk1 - disk0) / done,
            db_cpu_ms=(db1 - db0) * 1000 / done,
            errors=errors,
        )
        print(
            f"{self.name:8} {wl} {WORKLOADS[wl]:30} c={c:<4} {point.throughput:8.1f}/s "
            f"p50 {point.p50_ms:7.1f} p90 {point.p90_ms:7.1f} p99 {point.p99_ms:7.1f} ms  "
            f"cpu srv {point.server_cpu_ms:5.2f} db {point.db_cpu_ms:5.2f} "
            f"sdk {point.sdk_cpu_ms:5.2f} ms/inv  "
            f"rss {point.server_rss_mb:6.1f} MB  disk {point.disk_bytes:8.0f} B/inv"
            + (f"  errors {errors}" if errors else ""),
            flush=True,
        )
        return point

    def close(self) -> None:
        self.server.close()
        self.services.close()
        if self.cluster is not None:
            self.cluster.destroy()


def run_points(args: argparse.Namespace, base: Path) -> list[Point]:
    """Every point on every target, the targets interleaved point by point (in alternating
    order), so that a change in the machine's speed during the run hits both alike. Both
    targets are up all the time; the one not measured is idle."""
    rigs: list[Rig] = []
    points: list[Point] = []
    try:
        for target in args.targets:
            rigs.append(Rig(target, base / target))
        k = 0
        for wl in args.workloads:
            for c in [SLEEPERS] if wl == "e" else args.concurrency:
                order = rigs if k % 2 == 0 else list(reversed(rigs))
                k += 1
                for rig in order:
                    points.append(rig.measure(wl, c, args))
    finally:
        for rig in rigs:
            rig.close()
    order_key = {t: i for i, t in enumerate(args.targets)}
    points.sort(key=lambda p: order_key[p.target])  # stable: keeps each target's point order
    return points


# ------------------------------------------------------------------------------ report

COLUMNS = [
    ("throughput", "req/s", "{:.0f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p90_ms", "p90 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("server_cpu_ms", "server CPU ms/inv", "{:.2f}"),
    ("db_cpu_ms", "PostgreSQL CPU ms/inv", "{:.2f}"),
    ("sdk_cpu_ms", "SDK CPU ms/inv", "{:.2f}"),
    ("server_rss_mb", "server RSS MB", "{:.0f}"),
    ("disk_bytes", "disk B/inv", "{:.0f}"),
]


def _ratio(a: float, b: float) -> str:
    if b == 0 or a != a or b != b:
        return "–"
    return f"{a / b:.2f}"


def markdown(points: list[Point], args: argparse.Namespace, command: str) -> str:
    by_key = {(p.target, p.workload, p.concurrency): p for p in points}
    targets = sorted({p.target for p in points}, key=TARGETS.index)
    out: list[str] = ["# Benchmarks: durably and the real Restate server", ""]
    if args.quick:
        out += [
            "> **Smoke run** (`--quick`): a few seconds per point on a busy 2-core machine "
            "shared with other work. It shows that the harness works; its numbers are noise, "
            "not a result. The real run is `python -m bench.run` on a quiet machine.",
            "",
        ]
    out += [
        f"Command: `{command}`",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}; machine: {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"- targets: durably (this repository, `durably serve`, SQLite, `--sync full`), "
        "durably-pg (the same with `--store postgresql://...` on a PostgreSQL 15 cluster of its "
        "own on the same machine, fsync and synchronous_commit on, shared_buffers 32 MB) and "
        f"restate-server {RESTATE_VERSION} (npm); services: `bench/services.py` with restate-sdk "
        "under hypercorn, one worker, registered over HTTP/2",
        f"- {args.duration:g} s per point after {args.warmup:g} s of warm-up; load generator: "
        "asyncio + aiohttp, HTTP/1.1 keep-alive, one connection per concurrent client, on the "
        "same machine; the targets are measured point by point in turns (alternating which "
        "goes first), both up all the time, so that the machine's drift hits both alike",
        "- CPU: user + system seconds of the process (and its children) during the point, "
        "divided by the completed invocations. Disk: growth of the data directory "
        "(allocated blocks) during the point per completed invocation; RocksDB (Restate) "
        "writes memtables out in bursts, SQLite checkpoints its WAL, so short points are rough",
        "- workloads: " + "; ".join(f"({k}) {v}" for k, v in WORKLOADS.items()),
        "",
    ]
    header = ["workload", "c", "target"] + [h for _, h, _ in COLUMNS] + ["errors"]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    keys = sorted({(p.workload, p.concurrency) for p in points})
    for wl, c in keys:
        for t in targets:
            p = by_key.get((t, wl, c))
            if p is None:
                continue
            cells = [f"({wl}) {WORKLOADS[wl]}", str(c), t]
            cells += [fmt.format(getattr(p, attr)) for attr, _, fmt in COLUMNS]
            cells.append(str(p.errors))
            out.append("| " + " | ".join(cells) + " |")
        for a, b in (("durably", "restate"), ("durably-pg", "restate"), ("durably-pg", "durably")):
            if (a, wl, c) not in by_key or (b, wl, c) not in by_key:
                continue
            d, r = by_key[(a, wl, c)], by_key[(b, wl, c)]
            label = {"durably": "durably", "durably-pg": "durably-pg", "restate": "Restate"}
            cells = [f"({wl}) {WORKLOADS[wl]}", str(c), f"**{label[a]}/{label[b]}**"]
            for attr, _, _ in COLUMNS:
                if attr == "db_cpu_ms":
                    cells.append("")
                    continue
                x, y = getattr(d, attr), getattr(r, attr)
                if attr == "server_cpu_ms":  # the database's CPU is part of the cost
                    x, y = x + d.db_cpu_ms, y + r.db_cpu_ms
                cells.append(f"**{_ratio(x, y)}**")
            cells.append("")
            out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "Ratios: above 1 is better for the first target in req/s, worse in every other "
        "column; in ratio rows the server CPU column is server + PostgreSQL CPU.",
        "",
    ]
    if args.plot:
        out += [f"![throughput and p99 latency]({Path(args.plot).name})", ""]
    return "\n".join(out)


def plot(points: list[Point], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(p.workload, p.concurrency) for p in points})
    labels = [f"{wl} c={c}" for wl, c in keys]
    targets = sorted({p.target for p in points}, key=TARGETS.index)
    by_key = {(p.target, p.workload, p.concurrency): p for p in points}
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.9 * len(keys) + 2), 8), sharex=True)
    width = 0.8 / max(1, len(targets))
    for i, t in enumerate(targets):
        xs = [k + (i - (len(targets) - 1) / 2) * width for k in range(len(keys))]
        thr = [by_key[(t, wl, c)].throughput if (t, wl, c) in by_key else 0 for wl, c in keys]
        p99 = [by_key[(t, wl, c)].p99_ms if (t, wl, c) in by_key else 0 for wl, c in keys]
        axes[0].bar(xs, thr, width, label=t)
        axes[1].bar(xs, p99, width, label=t)
    axes[0].set_ylabel("throughput (invocations/s)")
    axes[1].set_ylabel("p99 latency (ms, log)")
    axes[1].set_yscale("log")
    axes[1].set_xticks(range(len(keys)))
    axes[1].set_xticklabels(labels, rotation=45, ha="right")
    axes[0].legend()
    axes[0].set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per point (default 20)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per point")
    ap.add_argument("--concurrency", default="1,16,64", help="comma list (default 1,16,64)")
    ap.add_argument("--workloads", default="a,b,c,d,e", help="comma list of a-e (default all)")
    ap.add_argument(
        "--targets", default="durably,durably-pg,restate", help=",".join(TARGETS)
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 s per point, 0.5 s warm-up")
    ap.add_argument("--output", default=str(REPO_ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--plot", default=str(REPO_ROOT / "docs" / "benchmarks.png"))
    ap.add_argument("--json", default=str(REPO_ROOT / "docs" / "benchmarks.json"))
    args = ap.parse_args(argv)
    if args.quick and "--duration" not in (argv if argv is not None else sys.argv[1:]):
        args.duration = 3.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 2.0
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        ap.error(f"unknown workloads {bad}; choose from {','.join(WORKLOADS)}")
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _psutil()
    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    points: list[Point] = []
    with tempfile.TemporaryDirectory(prefix="durably-bench-") as tmp:
        points = run_points(args, Path(tmp))
    md = markdown(points, args, command.strip())
    if args.plot:
        title = "durably vs Restate" + (" (smoke run, --quick)" if args.quick else "")
        plot(points, Path(args.plot), title)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(md)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"command": command.strip(), "quick": args.quick, "points": [asdict(p) for p in points]},
            indent=1,
        ))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scaling curves: what one invocation costs as the journal, the retained history and the
number of suspended invocations grow (issue 5, point 5).

    python -m bench.scaling                                   # the committed run
    python -m bench.scaling --targets durably --quick         # smoke run
    python -m bench.scaling --steps 10,100,1000 --retained 10000,100000 --suspended 1000,10000

Same rig as ``bench.run`` (``Rig``: a fresh server + ``bench.services`` under hypercorn,
registered over HTTP/2, the same aiohttp load generator and psutil counters), one fresh rig
per curve and target; the targets are measured level by level in turns (alternating which
goes first), because this machine's speed drifts.

1. **Journal length.** ``BenchSteps/{id}/run`` is a workflow doing ``n`` ``ctx.run`` steps one
   after another; a few invocations per ``n``, one at a time. Per step: server CPU, SDK CPU
   and wall time (each ``ctx.run`` is one round trip: the SDK proposes the completion, the
   server commits it and acknowledges it).
2. **Retained completed invocations.** The store is filled to each level with completed
   invocations (``BenchGreeter/greet`` with an idempotency key, so both servers keep them
   for the 24 h idempotency retention; 64 concurrent clients), then the stateless call
   (``bench.run`` workload a, concurrency 16) is measured beside them: throughput, p50/p99,
   server CPU per invocation, data directory size.
3. **Suspended invocations.** ``BenchParked/park`` sleeps an hour; it is served by a second
   services process registered with ``use_http_11: true`` (request/response), so the SDK
   suspends at the sleep and the request ends: the invocation is suspended on the server,
   with a durable timer, not an open stream. At each level: server RSS per suspended
   invocation (RSS growth since the level 0 / invocations parked) and the stateless call at
   concurrency 16 beside them.

Writes ``docs/scaling.md`` (tables), ``docs/scaling.png`` and ``docs/scaling.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.harness import RESTATE_VERSION, ServicesProcess, register  # noqa: E402

from bench.run import (  # noqa: E402
    JSON,
    LOAD_ERRORS,
    Rig,
    _post,
    _psutil,
    _session,
    cpu_seconds,
    dir_bytes,
    drive_for,
    pct,
    rss_bytes,
)

PARKED_APP = "bench.services:parked_app"
PARK_MILLIS = 3_600_000  # an hour: nothing wakes up during the run
# The HTTP/1.1 services process: hypercorn does not close an idle keep-alive connection the
# client has closed (it stays in CLOSE-WAIT) until keep_alive_timeout; the tests' config
# sets that to "never", and durably's invoker then closed the connections beyond a 64-idle
# pool after every burst, so at ~20k parked invocations the services process ran out of file
# descriptors. The invoker now caps and keeps its HTTP/1.1 connections (Http1Transport); the
# published runs used this config, so it stays.
PARKED_HYPERCORN = "workers = 1\nkeep_alive_timeout = 5\n"
TARGET_ORDER = ["durably", "restate"]
COLORS = {"durably": "tab:blue", "restate": "tab:orange"}


# ------------------------------------------------------------------------------ rig


class ScalingRig(Rig):
    """``bench.run.Rig`` plus a second services process (``BenchParked``) registered over
    HTTP/1.1, where invocations suspend for real."""

    def __init__(self, name: str, base: Path) -> None:
        self.parked: ServicesProcess | None = None
        super().__init__(name, base)
        try:
            config = base / "parked-hypercorn.toml"
            config.write_text(PARKED_HYPERCORN)
            self.parked = ServicesProcess([], base / "parked", app=PARKED_APP, config=config)
            self.parked.start()
            register(self.server.admin_url, self.parked.url, use_http_11=True)
        except BaseException:
            self.close()
            raise
        self.http = httpx.Client(timeout=600.0)

    @property
    def srv_pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    @property
    def sdk_pid(self) -> int:
        assert self.services.proc is not None
        return self.services.proc.pid

    def count(self, status: str) -> int:
        """Invocations in ``status`` according to the server's own ``/query`` (sys_invocation)."""
        r = self.http.post(
            f"{self.server.admin_url}/query",
            json={"query": f"SELECT count(*) AS n FROM sys_invocation WHERE status = '{status}'"},
            headers={"accept": "application/json"},
        )
        r.raise_for_status()
        return int(r.json()["rows"][0]["n"])

    def close(self) -> None:
        if getattr(self, "http", None) is not None:
            self.http.close()
        super().close()
        if self.parked is not None:
            self.parked.close()


def start_rigs(targets: list[str], base: Path, curve: str) -> list[ScalingRig]:
    rigs: list[ScalingRig] = []
    try:
        for t in targets:
            rigs.append(ScalingRig(t, base / f"{curve}-{t}"))
    except BaseException:
        for r in rigs:
            r.close()
        raise
    return rigs


def in_turns(rigs: list[ScalingRig], k: int) -> list[ScalingRig]:
    return rigs if k % 2 == 0 else list(reversed(rigs))


# ------------------------------------------------------------------------------ load


async def drive_count(
    one: Callable[[aiohttp.ClientSession, int], Any], count: int, concurrency: int, start_n: int
) -> tuple[float, int]:
    """Exactly ``count`` calls of ``one``, ``concurrency`` at a time; (seconds, errors)."""
    errors = 0
    next_n = start_n
    end = start_n + count
    async with _session(concurrency, 600) as session:

        async def worker() -> None:
            nonlocal next_n, errors
            while next_n < end:
                n = next_n
                next_n += 1
                try:
                    await one(session, n)
                except LOAD_ERRORS as e:
                    errors += 1
                    if errors == 1:
                        print(f"first error: {e!r}", file=sys.stderr, flush=True)
                    if errors > 100:
                        raise

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - started, errors


@dataclass
class CallPoint:
    """The stateless call (bench.run workload a) measured beside a level."""

    throughput: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float
    sdk_cpu_ms: float
    completed: int
    errors: int


def stateless_point(rig: ScalingRig, args: argparse.Namespace) -> CallPoint:
    asyncio.run(drive_for(rig.load.a, args.warmup, args.concurrency, rig.n))
    time.sleep(0.2)
    srv0, sdk0 = cpu_seconds(rig.srv_pid), cpu_seconds(rig.sdk_pid)
    elapsed, lat, errors = asyncio.run(drive_for(rig.load.a, args.duration, args.concurrency, rig.n))
    srv1, sdk1 = cpu_seconds(rig.srv_pid), cpu_seconds(rig.sdk_pid)
    done = max(1, len(lat))
    lat.sort()
    return CallPoint(
        throughput=len(lat) / elapsed if elapsed > 0 else 0.0,
        p50_ms=pct(lat, 0.5),
        p99_ms=pct(lat, 0.99),
        server_cpu_ms=(srv1 - srv0) * 1000 / done,
        sdk_cpu_ms=(sdk1 - sdk0) * 1000 / done,
        completed=len(lat),
        errors=errors,
    )


def settled_rss(pid: int, seconds: float = 1.0) -> int:
    samples = []
    for _ in range(5):
        samples.append(rss_bytes(pid))
        time.sleep(seconds / 5)
    return int(statistics.median(samples))


# ------------------------------------------------------------------------------ curve 1


@dataclass
class StepsPoint:
    target: str
    steps: int
    invocations: int
    wall_ms_per_step: float
    server_cpu_ms_per_step: float
    sdk_cpu_ms_per_step: float
    server_cpu_ms_per_inv: float
    disk_bytes_per_step: float


def journal_curve(args: argparse.Namespace, base: Path) -> list[StepsPoint]:
    rigs = start_rigs(args.targets, base, "journal")
    points: list[StepsPoint] = []
    try:
        for rig in rigs:  # warm-up: code paths, the HTTP/2 connection
            for i in range(3):
                _steps_call(rig, 10, f"warm-{i}")
        for k, n in enumerate(args.steps):
            invocations = max(args.min_invocations, args.steps_per_level // n)
            for rig in in_turns(rigs, k):
                time.sleep(0.2)
                disk0 = dir_bytes(rig.server.data_dir)
                srv0, sdk0 = cpu_seconds(rig.srv_pid), cpu_seconds(rig.sdk_pid)
                t0 = time.perf_counter()
                for i in range(invocations):
                    _steps_call(rig, n, f"n{n}-{i}")
                wall = time.perf_counter() - t0
                srv1, sdk1 = cpu_seconds(rig.srv_pid), cpu_seconds(rig.sdk_pid)
                disk1 = dir_bytes(rig.server.data_dir)
                total = n * invocations
                p = StepsPoint(
                    target=rig.name,
                    steps=n,
                    invocations=invocations,
                    wall_ms_per_step=wall * 1000 / total,
                    server_cpu_ms_per_step=(srv1 - srv0) * 1000 / total,
                    sdk_cpu_ms_per_step=(sdk1 - sdk0) * 1000 / total,
                    server_cpu_ms_per_inv=(srv1 - srv0) * 1000 / invocations,
                    disk_bytes_per_step=(disk1 - disk0) / total,
                )
                points.append(p)
                print(
                    f"journal  {rig.name:8} n={n:<5} x{invocations:<3} wall {p.wall_ms_per_step:6.2f} "
                    f"ms/step  cpu srv {p.server_cpu_ms_per_step:5.2f} sdk "
                    f"{p.sdk_cpu_ms_per_step:5.2f} ms/step  disk {p.disk_bytes_per_step:6.0f} B/step",
                    flush=True,
                )
    finally:
        for rig in rigs:
            rig.close()
    return points


def _steps_call(rig: ScalingRig, n: int, tag: str) -> None:
    r = rig.http.post(
        f"{rig.server.ingress_url}/BenchSteps/{rig.load.run_id}-{tag}/run",
        content=str(n).encode(),
        headers=JSON,
    )
    if r.status_code != 200:
        raise RuntimeError(f"BenchSteps n={n} -> {r.status_code} {r.text[:300]}")


# ------------------------------------------------------------------------------ curve 2


@dataclass
class RetainedPoint:
    target: str
    level: int  # completed invocations filled (idempotency-keyed)
    retained: int  # completed invocations the server reports (its /query)
    fill_seconds: float  # for the fill from the previous level
    fill_rate: float
    fill_server_cpu_ms: float  # per filled invocation
    data_mb: float
    disk_bytes_per_retained: float
    call: CallPoint


def retained_curve(args: argparse.Namespace, base: Path) -> list[RetainedPoint]:
    rigs = start_rigs(args.targets, base, "retained")
    points: list[RetainedPoint] = []
    filled = {r.name: 0 for r in rigs}
    disk_base: dict[str, int] = {}
    fill_id = uuid.uuid4().hex[:8]

    def idem_call(rig: ScalingRig) -> Callable[[aiohttp.ClientSession, int], Any]:
        url = f"{rig.server.ingress_url}/BenchGreeter/greet"

        async def one(session: aiohttp.ClientSession, n: int) -> None:
            await _post(session, url, b'"fill"', 200, {"idempotency-key": f"{fill_id}-{n}"})

        return one

    try:
        for k, level in enumerate([0, *args.retained]):
            for rig in in_turns(rigs, k):
                todo = level - filled[rig.name]
                fill_s, fill_cpu, errors = 0.0, 0.0, 0
                if todo > 0:
                    srv0 = cpu_seconds(rig.srv_pid)
                    fill_s, errors = asyncio.run(
                        drive_count(idem_call(rig), todo, args.fill_concurrency, filled[rig.name])
                    )
                    fill_cpu = (cpu_seconds(rig.srv_pid) - srv0) * 1000 / todo
                    filled[rig.name] = level
                data = dir_bytes(rig.server.data_dir)
                disk_base.setdefault(rig.name, data)
                call = stateless_point(rig, args)
                retained = rig.count("completed")
                p = RetainedPoint(
                    target=rig.name,
                    level=level,
                    retained=retained,
                    fill_seconds=fill_s,
                    fill_rate=todo / fill_s if fill_s else 0.0,
                    fill_server_cpu_ms=fill_cpu,
                    data_mb=data / 1e6,
                    disk_bytes_per_retained=(data - disk_base[rig.name]) / level if level else 0.0,
                    call=call,
                )
                points.append(p)
                print(
                    f"retained {rig.name:8} level={level:<7} reported {retained:<7} fill "
                    f"{fill_s:6.1f} s ({p.fill_rate:5.0f}/s, {fill_cpu:4.2f} ms cpu/inv"
                    f"{f', {errors} errors' if errors else ''})  data {p.data_mb:7.1f} MB  "
                    f"call c={args.concurrency}: {call.throughput:5.0f}/s p50 {call.p50_ms:5.1f} "
                    f"p99 {call.p99_ms:6.1f} ms cpu srv {call.server_cpu_ms:4.2f} ms/inv",
                    flush=True,
                )
    finally:
        for rig in rigs:
            rig.close()
    return points


# ------------------------------------------------------------------------------ curve 3


@dataclass
class SuspendedPoint:
    target: str
    level: int  # invocations parked by this run
    suspended: int  # suspended invocations the server reports (its /query)
    park_seconds: float
    park_rate: float
    server_rss_mb: float
    rss_bytes_per_suspended: float  # (RSS - RSS at level 0) / level
    call: CallPoint


def suspended_curve(args: argparse.Namespace, base: Path) -> list[SuspendedPoint]:
    rigs = start_rigs(args.targets, base, "suspended")
    points: list[SuspendedPoint] = []
    parked = {r.name: 0 for r in rigs}
    rss_base: dict[str, int] = {}
    try:
        for rig in rigs:  # warm-up: the HTTP/1.1 path, suspension, the timer machinery
            _park(rig, 0, 20, args)
            base_count = rig.count("suspended")
            if base_count < 20:
                raise RuntimeError(f"{rig.name}: only {base_count} of 20 warm-up invocations suspended")
        for k, level in enumerate([0, *args.suspended]):
            for rig in in_turns(rigs, k):
                todo = level - parked[rig.name]
                park_s = 0.0
                if todo > 0:
                    park_s = _park(rig, parked[rig.name] + 20, todo, args)
                    parked[rig.name] = level
                time.sleep(1.0)
                rss = settled_rss(rig.srv_pid)
                rss_base.setdefault(rig.name, rss)
                suspended = rig.count("suspended")
                call = stateless_point(rig, args)
                p = SuspendedPoint(
                    target=rig.name,
                    level=level,
                    suspended=suspended,
                    park_seconds=park_s,
                    park_rate=todo / park_s if park_s else 0.0,
                    server_rss_mb=rss / 1e6,
                    rss_bytes_per_suspended=(rss - rss_base[rig.name]) / level if level else 0.0,
                    call=call,
                )
                points.append(p)
                print(
                    f"suspended {rig.name:8} level={level:<7} reported {suspended:<7} park "
                    f"{park_s:6.1f} s ({p.park_rate:5.0f}/s)  rss {p.server_rss_mb:7.1f} MB "
                    f"({p.rss_bytes_per_suspended:6.0f} B/inv)  call c={args.concurrency}: "
                    f"{call.throughput:5.0f}/s p50 {call.p50_ms:5.1f} p99 {call.p99_ms:6.1f} ms "
                    f"cpu srv {call.server_cpu_ms:4.2f} ms/inv",
                    flush=True,
                )
    finally:
        for rig in rigs:
            rig.close()
    return points


def _park(rig: ScalingRig, start_n: int, count: int, args: argparse.Namespace) -> float:
    """Send ``count`` parking invocations in chunks; each chunk waits until the server
    reports them all suspended (so the services process never has thousands of requests in
    flight). Returns the seconds taken."""
    url = f"{rig.server.ingress_url}/BenchParked/park/send"
    body = str(PARK_MILLIS).encode()

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        await _post(session, url, body, 202)

    started = time.monotonic()
    before = rig.count("suspended")
    sent = 0
    while sent < count:
        chunk = min(args.park_chunk, count - sent)
        asyncio.run(drive_count(one, chunk, args.fill_concurrency, start_n + sent))
        sent += chunk
        deadline = time.monotonic() + 120
        while rig.count("suspended") < before + sent:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{rig.name}: {rig.count('suspended') - before} of {sent} parked invocations "
                    "suspended after 120 s"
                )
            time.sleep(0.1)
    return time.monotonic() - started


# ------------------------------------------------------------------------------ report


def _by_target(points: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for p in points:
        out.setdefault(p.target, []).append(p)
    return {t: out[t] for t in TARGET_ORDER if t in out}


def markdown(
    steps: list[StepsPoint], retained: list[RetainedPoint], suspended: list[SuspendedPoint],
    args: argparse.Namespace, command: str, total_s: float, date: str | None = None,
) -> str:
    c = args.concurrency
    out = ["# Scaling curves: cost per invocation as the store grows", ""]
    if args.quick:
        out += ["> **Smoke run** (`--quick`): it shows the harness works; its numbers are noise.", ""]
    out += [
        f"Command: `{command}` ({total_s / 60:.1f} min)",
        "",
        f"- date: {date or time.strftime('%Y-%m-%d %H:%M %Z')}; machine: {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"- targets: durably (`durably serve`, SQLite, `--sync full`) and restate-server "
        f"{RESTATE_VERSION} (npm), same `bench/services.py` (restate-sdk, hypercorn, one worker); "
        "a fresh server per curve; targets measured level by level in turns",
        "- CPU: user + system seconds of the process (children included) during the "
        "measurement, divided by steps or invocations. CPU per invocation is the robust "
        "number here: the machine's speed drifts, and throughput with it",
        f"- \"call beside\": the stateless call `BenchGreeter/greet` at concurrency {c} for "
        f"{args.duration:g} s (after {args.warmup:g} s warm-up), measured at each level",
        "",
    ]
    if steps:
        out += [
            "## 1. Journal length: a workflow with n `ctx.run` steps",
            "",
            "One invocation at a time; each step is a round trip (the SDK proposes the run's "
            "result, the server commits it, then acknowledges).",
            "",
            "| target | n steps | invocations | server CPU ms/step | SDK CPU ms/step | "
            "wall ms/step | server CPU ms/inv | disk B/step |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for t, pts in _by_target(steps).items():
            for p in pts:
                out.append(
                    f"| {t} | {p.steps} | {p.invocations} | {p.server_cpu_ms_per_step:.2f} | "
                    f"{p.sdk_cpu_ms_per_step:.2f} | {p.wall_ms_per_step:.2f} | "
                    f"{p.server_cpu_ms_per_inv:.1f} | {p.disk_bytes_per_step:.0f} |"
                )
        out.append("")
    if retained:
        out += [
            "## 2. Retained completed invocations",
            "",
            f"Filled with `BenchGreeter/greet` calls carrying an idempotency key (kept for the "
            f"24 h idempotency retention) at concurrency {args.fill_concurrency}. \"reported\": "
            "completed invocations the server's `/query` counts (both servers also keep the "
            "calls without a key that the measurements make).",
            "",
            "| target | filled | reported | fill s | fill inv/s | fill server CPU ms/inv | "
            "data MB | disk B/retained | call req/s | call p50 ms | call p99 ms | "
            "call server CPU ms/inv | call SDK CPU ms/inv |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t, pts in _by_target(retained).items():
            for p in pts:
                k = p.call
                out.append(
                    f"| {t} | {p.level:,} | {p.retained:,} | {p.fill_seconds:.0f} | "
                    f"{p.fill_rate:.0f} | {p.fill_server_cpu_ms:.2f} | {p.data_mb:.1f} | "
                    f"{p.disk_bytes_per_retained:.0f} | {k.throughput:.0f} | {k.p50_ms:.1f} | "
                    f"{k.p99_ms:.1f} | {k.server_cpu_ms:.2f} | {k.sdk_cpu_ms:.2f} |"
                )
        out.append("")
    if suspended:
        out += [
            "## 3. Suspended invocations",
            "",
            "`BenchParked/park` sleeps an hour behind an HTTP/1.1 (request/response) "
            f"deployment, so it suspends at once; sent in chunks of {args.park_chunk:,}, each "
            "waited for until the server reports it suspended. RSS/inv: growth of the server's "
            "RSS since level 0, divided by the level (it includes what the first stateless "
            "call point left allocated); marginal: growth since the previous level, divided by "
            "the invocations parked in between (the better estimate).",
            "",
            "| target | parked | reported suspended | park s | park inv/s | server RSS MB | "
            "RSS B/suspended | marginal RSS B/suspended | call req/s | call p50 ms | "
            "call p99 ms | call server CPU ms/inv | call SDK CPU ms/inv |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t, pts in _by_target(suspended).items():
            prev = None
            for p in pts:
                k = p.call
                marginal = "–"
                if prev is not None and p.level > prev.level:
                    marginal = f"{(p.server_rss_mb - prev.server_rss_mb) * 1e6 / (p.level - prev.level):.0f}"
                prev = p
                out.append(
                    f"| {t} | {p.level:,} | {p.suspended:,} | {p.park_seconds:.0f} | "
                    f"{p.park_rate:.0f} | {p.server_rss_mb:.0f} | "
                    f"{p.rss_bytes_per_suspended:.0f} | {marginal} | {k.throughput:.0f} | "
                    f"{k.p50_ms:.1f} | {k.p99_ms:.1f} | {k.server_cpu_ms:.2f} | "
                    f"{k.sdk_cpu_ms:.2f} |"
                )
        out.append("")
    if args.plot:
        out += [f"![scaling curves]({Path(args.plot).name})", ""]
    return "\n".join(out)


# one line of a plot: the value of a point, the line style, the label after the target's name
_Series = tuple[Callable[[Any], float], str, str]


def _curve_column(
    top: Any, bottom: Any, points: list[Any], x: Callable[[Any], float], title: str,
    xlabel: str, top_label: str, top_series: list[_Series], bottom_label: str,
    bottom_series: list[_Series],
) -> None:
    """One curve's two panels (log x axis), a line per target and series."""
    for t, pts in _by_target(points).items():
        xs = [x(p) for p in pts]
        for a, series in ((top, top_series), (bottom, bottom_series)):
            for value, style, suffix in series:
                a.plot(xs, [value(p) for p in pts], style, label=f"{t} {suffix}".strip(),
                       color=COLORS[t])
    top.set_title(title)
    top.set_ylabel(top_label)
    bottom.set_ylabel(bottom_label)
    for a in (top, bottom):
        a.set_xscale("log")
        a.set_xlabel(xlabel)
        a.set_ylim(bottom=0)


def plot(
    steps: list[StepsPoint], retained: list[RetainedPoint], suspended: list[SuspendedPoint],
    path: Path, title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(15, 8))
    cpu_call = [(lambda p: p.call.server_cpu_ms, "o-", "server"),
                (lambda p: p.call.sdk_cpu_ms, "x--", "SDK")]
    _curve_column(
        ax[0][0], ax[1][0], steps, lambda p: p.steps, "1. journal length", "steps per invocation",
        "CPU ms per ctx.run step",
        [(lambda p: p.server_cpu_ms_per_step, "o-", "server"),
         (lambda p: p.sdk_cpu_ms_per_step, "x--", "SDK")],
        "wall ms per ctx.run step", [(lambda p: p.wall_ms_per_step, "o-", "")],
    )
    _curve_column(
        ax[0][1], ax[1][1], retained, lambda p: max(p.retained, 1),
        "2. retained completed invocations", "completed invocations retained",
        "stateless call: CPU ms/inv", cpu_call,
        "stateless call latency ms",
        [(lambda p: p.call.p99_ms, "o-", "p99"), (lambda p: p.call.p50_ms, "x--", "p50")],
    )
    _curve_column(
        ax[0][2], ax[1][2], suspended, lambda p: max(p.suspended, 1),
        "3. suspended invocations", "suspended invocations",
        "stateless call: CPU ms/inv", cpu_call,
        "server RSS MB", [(lambda p: p.server_rss_mb, "o-", "")],
    )
    for row in ax:
        for a in row:
            if a.lines:
                a.legend(fontsize=8)
            a.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------ main


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n")[0])
    ap.add_argument("--curves", default="journal,retained,suspended")
    ap.add_argument("--targets", default="durably,restate", help="durably,restate")
    ap.add_argument("--steps", default="10,100,1000", help="ctx.run steps per invocation")
    ap.add_argument("--steps-per-level", type=int, default=2000,
                    help="steps run per level (invocations = this / n, at least --min-invocations)")
    ap.add_argument("--min-invocations", type=int, default=2)
    ap.add_argument("--retained", default="10000,100000", help="completed invocations to fill to")
    ap.add_argument("--suspended", default="1000,10000", help="suspended invocations to park")
    ap.add_argument("--park-chunk", type=int, default=1000)
    ap.add_argument("--fill-concurrency", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16, help="of the stateless call beside")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of the call beside")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 10,100 steps, 1k retained, 200 suspended, 2 s points")
    ap.add_argument("--output", default=str(REPO_ROOT / "docs" / "scaling.md"))
    ap.add_argument("--plot", default=str(REPO_ROOT / "docs" / "scaling.png"))
    ap.add_argument("--json", default=str(REPO_ROOT / "docs" / "scaling.json"))
    ap.add_argument("--render", metavar="JSON",
                    help="only re-render --output and --plot from a saved --json file")
    args = ap.parse_args(argv)
    if args.quick:
        given = " ".join(argv if argv is not None else sys.argv[1:])
        for opt, value in [("--steps", "10,100"), ("--retained", "1000"), ("--suspended", "200"),
                           ("--duration", 2.0), ("--steps-per-level", 200), ("--park-chunk", 100)]:
            if opt + " " not in given and opt + "=" not in given:
                setattr(args, opt[2:].replace("-", "_"), value)
    args.curves = [c.strip() for c in args.curves.split(",") if c.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.steps = _ints(args.steps) if isinstance(args.steps, str) else args.steps
    args.retained = _ints(args.retained) if isinstance(args.retained, str) else args.retained
    args.suspended = _ints(args.suspended) if isinstance(args.suspended, str) else args.suspended
    return args


def _load(path: str) -> tuple[dict[str, Any], list[StepsPoint], list[RetainedPoint], list[SuspendedPoint]]:
    data = json.loads(Path(path).read_text())
    steps = [StepsPoint(**p) for p in data["journal"]]
    retained = [RetainedPoint(**{**p, "call": CallPoint(**p["call"])}) for p in data["retained"]]
    suspended = [SuspendedPoint(**{**p, "call": CallPoint(**p["call"])}) for p in data["suspended"]]
    return data, steps, retained, suspended


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        # re-render the markdown and the plot from a saved run (no measuring)
        data, steps, retained, suspended = _load(args.render)
        command = data["command"]
        args.quick = "--quick" in command
        Path(args.output).write_text(
            markdown(steps, retained, suspended, args, command, data["seconds"], data.get("date"))
        )
        if args.plot:
            plot(steps, retained, suspended, Path(args.plot), "durably vs Restate: scaling")
        return 0
    _psutil()
    command = "python -m bench.scaling " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    started = time.monotonic()
    steps: list[StepsPoint] = []
    retained: list[RetainedPoint] = []
    suspended: list[SuspendedPoint] = []
    with tempfile.TemporaryDirectory(prefix="durably-scaling-") as tmp:
        base = Path(tmp)
        if "journal" in args.curves:
            steps = journal_curve(args, base)
        if "suspended" in args.curves:
            suspended = suspended_curve(args, base)
        if "retained" in args.curves:
            retained = retained_curve(args, base)
    total = time.monotonic() - started
    md = markdown(steps, retained, suspended, args, command.strip(), total)
    if args.plot:
        plot(steps, retained, suspended, Path(args.plot),
             "durably vs Restate: scaling" + (" (smoke run)" if args.quick else ""))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(md)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": command.strip(), "quick": args.quick, "seconds": round(total, 1),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "journal": [asdict(p) for p in steps],
            "retained": [asdict(p) for p in retained],
            "suspended": [asdict(p) for p in suspended],
        }, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

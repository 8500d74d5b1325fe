"""Soak: mixed load for minutes at a steady rate; RSS, open files, store size and latency
sampled over time, their slopes reported.

    python -m bench.soak                          # 10 minutes at 70 % of the measured maximum
    python -m bench.soak --duration 60 --rate 40  # fixed rate (operations per second)

The load (``tests/faults/services.py`` under hypercorn, started by the test harness):
object calls, sends with a delay, durable sleeps, workflows followed by an attach, sends
cancelled before they are due and long invocations killed while they sleep. Completed
invocations are kept for 10 s (the services' retentions are patched down, the server
sweeps every second), so a store that does not reuse its space shows as growth.

Without ``--rate`` the maximum is measured first (10 s flat out) and the soak runs at 70 %
of it. It writes ``<output>.json`` (every sample) and ``<output>.png`` (the curves), and
prints the slopes. ``tests/abuse/test_soak.py`` runs a 60-second version in CI.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.harness import DurablyServer, Env, ServicesProcess, register  # noqa: E402

FAULT_APP = "tests.faults.services:app"
RETENTION = "10s"
# operation -> weight
MIX = {"call": 30, "send_delayed": 15, "sleep": 15, "workflow_attach": 15, "cancel": 10,
       "kill": 10, "get": 5}


@dataclass
class Sample:
    t: float
    rss_mib: float
    fds: int
    store_mib: float
    ops: int
    errors: int
    p99_ms: float


@dataclass
class SoakResult:
    duration_s: float
    rate: float
    samples: list[Sample] = field(default_factory=list)
    ops: int = 0
    errors: list[str] = field(default_factory=list)

    def slope(self, name: str, skip_fraction: float = 0.25) -> float:
        """Least-squares slope of a sampled quantity per minute, after the warm-up."""
        pts = [(s.t, float(getattr(s, name))) for s in self.samples]
        pts = pts[int(len(pts) * skip_fraction):]
        if len(pts) < 2:
            return 0.0
        n = len(pts)
        mx = sum(t for t, _ in pts) / n
        my = sum(v for _, v in pts) / n
        var = sum((t - mx) ** 2 for t, _ in pts)
        return 60.0 * sum((t - mx) * (v - my) for t, v in pts) / var if var else 0.0


def _store_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("durably.sqlite3*") if p.is_file())


class _Load:
    """Worker threads issuing the mix at ``rate`` operations per second in total."""

    def __init__(self, env: Env, rate: float | None, threads: int, seed: int) -> None:
        self.env = env
        self.rate = rate
        self.threads = threads
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ops = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self._names = list(MIX)
        self._weights = [MIX[n] for n in self._names]

    def _one(self, client: httpx.Client, op: str, n: int) -> None:
        env = self.env
        if op == "call":
            r = env.call("FaultCounter", "add", 1, key=f"k{n % 50}", client=client)
            ok = r.status_code == 200
        elif op == "get":
            r = env.call("FaultCounter", "get", key=f"k{n % 50}", idem=False, client=client)
            ok = r.status_code == 200
        elif op == "send_delayed":
            r = env.send_raw("FaultCounter", "add", 1, key=f"d{n % 50}", delay="500ms")
            ok = r.status_code == 202
        elif op == "sleep":
            r = env.call("Effects", "nap", 200, client=client)
            ok = r.status_code == 200
        elif op == "workflow_attach":
            wid = f"wf-{n}-{random.getrandbits(32)}"
            r = client.post(f"{env.ingress}/FaultWorkflow/{wid}/run/send", json=n % 100)
            ok = r.status_code == 202
            if ok:
                r = client.get(f"{env.ingress}/restate/workflow/FaultWorkflow/{wid}/attach")
                ok = r.status_code == 200 and r.json() == 2 * (n % 100) + 1
        elif op == "cancel":
            r = env.send_raw("FaultCounter", "add", 1, key=f"c{n % 50}", delay="1h")
            ok = r.status_code == 202
            if ok:
                c = client.patch(f"{env.admin}/invocations/{r.json()['invocationId']}/cancel")
                ok = c.status_code in (200, 202)
                r = c
        else:  # kill: a long sleep killed while it sleeps
            r = env.send_raw("Effects", "nap", 60_000)
            ok = r.status_code == 202
            if ok:
                k = client.patch(f"{env.admin}/invocations/{r.json()['invocationId']}/kill")
                ok = k.status_code in (200, 202)
                r = k
        if not ok:
            raise RuntimeError(f"{op}: {r.status_code} {r.text[:200]}")

    def _worker(self) -> None:
        per_thread = self.rate / self.threads if self.rate else None
        next_at = time.monotonic()
        with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0)) as client:
            while not self.stop.is_set():
                with self.lock:
                    op = self.rng.choices(self._names, self._weights)[0]
                    self.ops += 1
                    n = self.ops
                started = time.monotonic()
                try:
                    self._one(client, op, n)
                except Exception as e:
                    with self.lock:
                        self.errors.append(f"{op}: {e!r}"[:300])
                with self.lock:
                    self.latencies.append(time.monotonic() - started)
                if per_thread:
                    next_at += 1.0 / per_thread
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        next_at = time.monotonic()  # behind: do not burst to catch up

    def take_latencies(self) -> list[float]:
        with self.lock:
            out, self.latencies = self.latencies, []
        return out

    def run_threads(self) -> list[threading.Thread]:
        ts = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.threads)]
        for t in ts:
            t.start()
        return ts


def prepare(env: Env) -> None:
    """Short retentions, so that completed work leaves the store while the soak runs."""
    for service in ("FaultCounter", "Effects"):
        r = env.patch_service(service, idempotency_retention=RETENTION, journal_retention=RETENTION)
        assert r.status_code == 200, r.text
    r = env.patch_service("FaultWorkflow", workflow_completion_retention=RETENTION,
                          journal_retention=RETENTION, idempotency_retention=RETENTION)
    assert r.status_code == 200, r.text


def measure_max(env: Env, seconds: float = 10.0, threads: int = 8) -> float:
    load = _Load(env, None, threads, seed=1)
    ts = load.run_threads()
    time.sleep(seconds)
    load.stop.set()
    for t in ts:
        t.join(60)
    return load.ops / seconds


def soak(env: Env, duration_s: float, rate: float, *, threads: int = 6,
         sample_s: float = 2.0, seed: int = 0) -> SoakResult:
    """Run the mix for ``duration_s`` at ``rate`` ops/s; sample the server every ``sample_s``."""
    proc = psutil.Process(env.server.proc.pid)
    result = SoakResult(duration_s, rate)
    load = _Load(env, rate, threads, seed)
    started = time.monotonic()
    ts = load.run_threads()
    try:
        while (now := time.monotonic()) - started < duration_s:
            time.sleep(sample_s)
            lat = sorted(load.take_latencies())
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
            result.samples.append(Sample(
                t=round(time.monotonic() - started, 2),
                rss_mib=round(proc.memory_info().rss / 2**20, 2),
                fds=proc.num_fds(),
                store_mib=round(_store_bytes(env.server.data_dir) / 2**20, 3),
                ops=load.ops, errors=len(load.errors), p99_ms=round(p99, 1),
            ))
            del now
    finally:
        load.stop.set()
        for t in ts:
            t.join(120)
    result.ops = load.ops
    result.errors = list(load.errors)
    return result


def summary(result: SoakResult) -> dict[str, Any]:
    return {
        "duration_s": result.duration_s,
        "rate_target": result.rate,
        "ops": result.ops,
        "ops_per_s": round(result.ops / result.duration_s, 1),
        "errors": len(result.errors),
        "slope_rss_mib_per_min": round(result.slope("rss_mib"), 3),
        "slope_fds_per_min": round(result.slope("fds"), 3),
        "slope_store_mib_per_min": round(result.slope("store_mib"), 4),
        "slope_p99_ms_per_min": round(result.slope("p99_ms"), 2),
    }


def plot(result: SoakResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t / 60 for s in result.samples]
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    for ax, name, label in zip(
        axes, ("rss_mib", "fds", "store_mib", "p99_ms"),
        ("server RSS (MiB)", "open fds", "store + WAL (MiB)", "p99 latency (ms)"), strict=True,
    ):
        ax.plot(t, [getattr(s, name) for s in result.samples])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(f"durably soak: {result.ops} operations in {result.duration_s / 60:.0f} min, "
                 f"{len(result.errors)} errors")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    ap.add_argument("--rate", type=float, default=None, help="ops/s (default: 70%% of max)")
    ap.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "soak")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="durably-soak-"))
    services = ServicesProcess([], base, app=FAULT_APP, env={"EFFECTS_FILE": str(base / "fx")})
    server = DurablyServer(base / "server", options={"cleanup_interval": "1s"})
    services.start()
    server.start()
    env = Env(server, services, "h2")
    try:
        register(server.admin_url, services.url, use_http_11=False)
        prepare(env)
        rate = args.rate
        if rate is None:
            peak = measure_max(env)
            rate = round(0.7 * peak, 1)
            print(f"maximum {peak:.1f} ops/s; soaking at {rate} ops/s", flush=True)
        result = soak(env, args.duration, rate)
    finally:
        env.close()
        server.close()
        services.close()
    doc = {"summary": summary(result), "samples": [asdict(s) for s in result.samples],
           "errors": result.errors[:20], "command": " ".join(["python -m bench.soak", *(argv or sys.argv[1:])])}
    args.output.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    plot(result, args.output.with_suffix(".png"))
    print(json.dumps(doc["summary"], indent=1))
    return 0 if not result.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: the CPU one node spends forwarding a request to another (`cluster.node.Forwarder`).

    flock /tmp/durably-bench.lock env PYTHONPATH=src python -m bench.forwarding [--duration 6]
        [--concurrency 16]

Two uvicorn processes (httptools, as `durably serve` runs its ports): a *peer* whose app
answers every request at once with a small JSON body (the cheapest possible owner), and
a *forwarder* whose app is the real `Forwarder`, on a node that always names the peer as
the leader (no database: only the hop is measured). aiohttp drives POSTs through the
forwarder; it prints the CPU (user + system) per request of each process. The peer's
figure is what uvicorn alone costs per request, the floor of any HTTP hop here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


async def peer_app(scope: Any, receive: Any, send: Any) -> None:
    """The cheapest owner: reads the request, answers 200 with a small body."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"newValue":1}'
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _Keeper:
    ttl_s = 6.0


class _Node:
    """A node that always names the peer (`DURABLY_BENCH_PEER`) as the leader."""

    name = "bench"
    secret = "bench-secret"
    keeper = _Keeper()

    def __init__(self) -> None:
        from durably.cluster.peers import Peers

        self.peers = Peers(idle_timeout_s=30.0)

    def leader_url(self, kind: str) -> str:
        return os.environ["DURABLY_BENCH_PEER"]

    def forget_leader(self) -> None:
        pass


def forwarder_app() -> Any:
    from durably.cluster.node import Forwarder

    return Forwarder(_Node(), "ingress")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--http", "httptools",
         "--log-level", "warning", "--no-access-log", *(["--factory"] if "forwarder" in app else [])],
        env=env, cwd=REPO_ROOT,
    )


async def _drive(url: str, seconds: float, concurrency: int) -> int:
    import aiohttp

    done = 0
    headers = {"content-type": "application/json", "idempotency-key": "bench"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with s.post(url, data=b"1", headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"forwarded request answered {r.status}")
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def _wait_up(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    import psutil

    ap = argparse.ArgumentParser(prog="python -m bench.forwarding",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=6.0, help="seconds measured (6)")
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args(argv)
    peer_port, forwarder_port = _free_port(), _free_port()
    env = dict(os.environ, DURABLY_BENCH_PEER=f"http://127.0.0.1:{peer_port}")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT / "src"), str(REPO_ROOT), env.get("PYTHONPATH")]))
    peer = _serve("bench.forwarding:peer_app", peer_port, env)
    forwarder = _serve("bench.forwarding:forwarder_app", forwarder_port, env)
    try:
        url = f"http://127.0.0.1:{forwarder_port}/Counter/k/add"
        asyncio.run(_wait_up(peer_port))
        asyncio.run(_wait_up(forwarder_port))
        asyncio.run(_drive(url, 1.5, args.concurrency))  # warm up, connections pooled
        procs = [psutil.Process(forwarder.pid), psutil.Process(peer.pid)]
        before = [sum(p.cpu_times()[:2]) for p in procs]
        started = time.monotonic()
        n = asyncio.run(_drive(url, args.duration, args.concurrency))
        elapsed = time.monotonic() - started
        after = [sum(p.cpu_times()[:2]) for p in procs]
    finally:
        peer.kill()
        forwarder.kill()
        peer.wait()
        forwarder.wait()
    fwd_ms, peer_ms = ((a - b) * 1000 / max(n, 1) for a, b in zip(after, before, strict=True))
    print(f"{n} requests in {elapsed:.1f} s ({n / elapsed:.0f}/s), concurrency {args.concurrency}: "
          f"forwarder {fwd_ms:.3f} ms CPU/request, peer (uvicorn alone) {peer_ms:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

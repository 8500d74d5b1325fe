"""What a burst of HTTP/1.1 attempts leaves behind in the services process.

Serves a trivial ASGI app with hypercorn under the tests' config
(`tests/conformance/hypercorn.toml`: keep_alive_timeout = 2**31 - 1), runs a burst of
`--burst` concurrent exchanges through durably's `Http1Transport`, then counts the services
process's file descriptors and the server-side sockets by TCP state (from /proc/net/tcp):
after the burst, after the transport's idle timeout, and after the transport is closed.

    PYTHONPATH=src python -m bench.http1_pool --burst 1000
    PYTHONPATH=src python -m bench.http1_pool --burst 1000 --max-connections 0  # no cap
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from durably.invoker.http1 import Http1Transport

REPO_ROOT = Path(__file__).resolve().parent.parent
HYPERCORN_CONFIG = REPO_ROOT / "tests" / "conformance" / "hypercorn.toml"
TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree(pid: int) -> list[int]:
    pids = [pid]
    for p in pids:
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        pids.extend(int(c) for c in children)
    return pids


def fds(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return total


def server_sockets(port: int) -> dict[str, int]:
    """Sockets whose local port is `port` (the services side), by TCP state."""
    counts: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) != port:
                continue
            state = TCP_STATES.get(fields[3], fields[3])
            if state != "LISTEN":
                counts[state] = counts.get(state, 0) + 1
    return counts


def report(label: str, pid: int, port: int) -> None:
    print(f"{label:<34} services fds {fds(pid):>5}   server-side sockets {server_sockets(port)}")


async def burst(transport: Http1Transport, n: int) -> float:
    async def one(i: int) -> None:
        stream = await transport.open_stream("POST", "/invoke/S/h", [])
        await stream.send(b"%d" % i)
        await stream.end()
        status, _ = await stream.response_head()
        assert status == 200
        while await stream.receive() is not None:
            pass

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.monotonic() - started


async def run(args: argparse.Namespace, pid: int, port: int) -> None:
    params = inspect.signature(Http1Transport).parameters
    options = {}
    if "max_connections" in params:
        options["max_connections"] = args.max_connections
        options["idle_timeout"] = args.idle_timeout
    transport = Http1Transport(f"http://127.0.0.1:{port}", **options)
    print(f"Http1Transport options: {options or '(this version has none)'}")
    report("before", pid, port)
    for round_ in range(args.rounds):
        took = await burst(transport, args.burst)
        await asyncio.sleep(0.5)
        pooled = transport.idle_connection_count
        report(f"after burst {round_ + 1} ({took:.2f}s, {pooled} pooled)", pid, port)
    if "idle_timeout" in options:
        await asyncio.sleep(args.idle_timeout + 1)
        report(
            f"after idle {args.idle_timeout + 1:.0f}s ({transport.idle_connection_count} pooled)",
            pid,
            port,
        )
    await transport.close()
    await asyncio.sleep(0.5)
    report("after transport.close()", pid, port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--idle-timeout", type=float, default=3.0)
    args = parser.parse_args()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), *sys.path]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hypercorn",
            "--config",
            str(HYPERCORN_CONFIG),
            "--bind",
            f"127.0.0.1:{port}",
            "bench.http1_pool:app",
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("hypercorn did not start") from None
                time.sleep(0.05)
        time.sleep(0.5)
        asyncio.run(run(args, proc.pid, port))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()

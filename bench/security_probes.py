"""The resource probes of the security review (F2-F5), measured on a running durably: status,
answer size, time and the server's peak RSS for each.

    python -m bench.security_probes [--src DIR]

`--src` picks the durably sources to start (default: this checkout's `src`), so the same
probes can be run against another branch for comparison.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson
import psutil
from tests.security.probes import is_closed, open_idle_connections
from tests.support.harness import DurablyServer, ServicesProcess


class _Peak:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.01)

    def __enter__(self) -> _Peak:
        self.before = self.proc.memory_info().rss
        self.peak = self.before
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--src", type=Path, default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="security-probes-"))
    services = ServicesProcess([], base / "services", app="tests.security.signed_app:app")
    services.start()
    server = DurablyServer(base / "server")
    if args.src is not None:
        original = server.command

        def command() -> tuple[list[str], dict[str, str]]:
            cmd, env = original()
            env["PYTHONPATH"] = str(args.src)
            return cmd, env

        server.command = command  # type: ignore[method-assign]
    server.start()
    assert server.proc is not None
    rows = []
    try:
        httpx.post(f"{server.admin_url}/deployments", json={"uri": services.url},
                   timeout=30).raise_for_status()

        def probe(name: str, fn) -> None:  # type: ignore[no-untyped-def]
            with _Peak(server.proc.pid) as peak:  # type: ignore[union-attr]
                start = time.monotonic()
                outcome = fn()
                took = time.monotonic() - start
            rows.append((name, outcome, f"{took:.1f} s", _mb(peak.before), _mb(peak.peak)))

        def f2() -> str:
            sql = ("SELECT zeroblob(4000000) AS b FROM sys_service a, sys_service b, "
                   "sys_service c, sys_service d, sys_service e")
            r = httpx.post(f"{server.admin_url}/query", content=orjson.dumps({"query": sql}),
                           headers={"content-type": "application/json",
                                    "accept": "application/json"}, timeout=120)
            return f"{r.status_code}, {len(r.content):,} bytes"

        def f3() -> str:
            size = 100_000_055
            body = b'{"query":"SELECT 1 AS x","pad":"' + b"x" * (size - 35) + b'"}'
            r = httpx.post(f"{server.admin_url}/query", content=body,
                           headers={"content-type": "application/json",
                                    "accept": "application/json"}, timeout=120)
            return f"{r.status_code}"

        def f4() -> str:
            head = (b"POST /Greeter/greet HTTP/1.1\r\nHost: x\r\ncontent-type: application/json"
                    b"\r\ncontent-length: 4\r\nX-Big: ")
            with socket.create_connection(("127.0.0.1", server.ingress_port), timeout=60) as s:
                try:
                    s.sendall(head + b"a" * 40_000_000 + b'\r\n\r\n"hi"')
                except OSError:
                    pass
                try:
                    answer = s.recv(200)
                except OSError as e:
                    answer = f"({e.__class__.__name__})".encode()
            return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(closed)"

        def f5() -> str:
            socks = open_idle_connections(server.ingress_port)
            time.sleep(15)
            still = sum(not is_closed(s) for s in socks)
            for s in socks:
                s.close()
            return f"{still} of 200 still open after 15 s"

        probe("F2 zeroblob cross join", f2)
        probe("F3 100 MB /query body", f3)
        probe("F4 40 MB ingress header", f4)
        probe("F5 200 idle/half-sent connections", f5)
    finally:
        server.close()
        services.close()
    print("| probe | answer | time | RSS before | RSS peak |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

"""A TCP proxy on loopback that can black-hole its traffic: connections stay open, bytes in
either direction are swallowed (what a network partition looks like to both ends, unlike
a refused or reset connection).

`BlackholeProxy(port)` runs `python -m tests.support.tcp_proxy LISTEN TARGET` in a process
of its own; SIGUSR1 black-holes, SIGUSR2 heals."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class BlackholeProxy:
    def __init__(self, target_port: int) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.tcp_proxy", str(self.port), str(target_port)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def blackhole(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def heal(self) -> None:
        self.proc.send_signal(signal.SIGUSR2)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def _main(listen: int, target: int) -> None:
    state = {"blackholed": False}
    running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: state.update(blackholed=True))
    loop.add_signal_handler(signal.SIGUSR2, lambda: state.update(blackholed=False))

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if not state["blackholed"]:
                    dst.write(data)
                    await dst.drain()
        except OSError:
            pass
        if not state["blackholed"]:
            dst.close()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        for coro in (pipe(reader, up_w), pipe(up_r, writer)):
            task = asyncio.create_task(coro)
            running.add(task)
            task.add_done_callback(running.discard)

    server = await asyncio.start_server(client, "127.0.0.1", listen)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2])))

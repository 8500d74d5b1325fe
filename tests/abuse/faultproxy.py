"""A TCP proxy on loopback that injects network faults between durably and its services.

``FaultProxy(upstream_port)`` listens on a free port of 127.0.0.1 and forwards every
connection to the upstream port, in an asyncio loop on a thread of its own. ``set(...)``
switches the fault for all connections, current and new:

* ``latency=s``: every chunk is delivered ``s`` seconds late (order kept);
* ``bandwidth=bytes_per_s``: each direction is throttled to that rate;
* ``"reset"``: every open connection is closed with a TCP RST, new ones are reset at once;
* ``"blackhole"``: bytes in both directions are dropped, connections stay open, new ones
  are accepted and then hear nothing;
* ``"half_close"``: the proxy sends FIN to both ends of every connection (and of new ones
  right after accepting) but keeps reading from them: each side sees the other stop
  writing while its own writes still go through;

``clear()`` returns to plain forwarding (connections broken meanwhile stay broken: the
client has to notice and reconnect, which is what the tests check).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass

from tests.support.harness import free_port

MODES = ("pass", "reset", "blackhole", "half_close")


@dataclass
class Fault:
    mode: str = "pass"
    latency: float = 0.0
    bandwidth: float = 0.0  # bytes per second; 0: unlimited


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.fault = Fault()
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # control (from the test's thread) ----------------------------------------------------
    def set(self, mode: str = "pass", *, latency: float = 0.0, bandwidth: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.fault = Fault(mode, latency, bandwidth)
        if mode in ("reset", "half_close") and self._loop is not None:
            fut = asyncio.run_coroutine_threadsafe(self._apply_to_open(mode), self._loop)
            fut.result(10)

    def clear(self) -> None:
        self.set("pass")

    # the proxy ---------------------------------------------------------------------------
    async def _apply_to_open(self, mode: str) -> None:
        for w in list(self._writers):
            if mode == "reset":
                _reset(w)
            else:
                _half_close(w)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.fault.mode == "reset":
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(writer)
            return
        self._writers.add(writer)
        self._writers.add(up_writer)
        if self.fault.mode == "half_close":
            _half_close(writer)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer), self._pump(up_reader, writer),
                return_exceptions=True,
            )
        finally:
            self._writers.discard(writer)
            self._writers.discard(up_writer)
            for w in (writer, up_writer):
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                fault = self.fault
                if fault.mode in ("blackhole", "reset") or writer.is_closing():
                    continue
                if fault.bandwidth:
                    await asyncio.sleep(len(data) / fault.bandwidth)
                try:
                    writer.write(data)
                    await writer.drain()
                except (OSError, RuntimeError):
                    return
            if writer.can_write_eof() and not writer.is_closing():
                try:
                    writer.write_eof()
                except OSError:
                    pass

        deliverer = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(65536)
                await queue.put((loop.time() + self.fault.latency, data))
                if not data:
                    break
            await deliverer
        finally:
            deliverer.cancel()

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                asyncio.start_server(self._accept, "127.0.0.1", self.port))
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault proxy did not start")

    def close(self) -> None:
        if self._loop is not None:
            async def stop() -> None:
                for w in list(self._writers):
                    _reset(w)
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN: linger on, timeout zero."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def _half_close(writer: asyncio.StreamWriter) -> None:
    if writer.can_write_eof() and not writer.is_closing():
        try:
            writer.write_eof()
        except OSError:
            pass

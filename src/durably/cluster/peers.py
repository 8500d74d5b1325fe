"""How a node reaches the other nodes of its cluster: one pooled HTTP/1.1 client per peer
port (`durably.invoker.http1`, the client the invoker uses for HTTP/1.1 deployments).

Forwarding is on the path of every request that lands on a node that does not serve it,
so its cost per request matters: a general-purpose client scans its whole pool and builds
several layers of objects per request, this one takes the most recently used idle
connection and writes one buffer. Peers speak plain HTTP (`NodeBase.url_of` builds
`http://` URLs; the cluster secret authenticates them), so no TLS is needed here.
"""

from __future__ import annotations

import asyncio

from durably.invoker.http1 import Http1Transport

__all__ = ["CONNECT_TIMEOUT_S", "Peers"]

# A peer that does not accept a connection within this is treated as gone (the request was
# not sent: the forwarder may send it to the next owner).
CONNECT_TIMEOUT_S = 2.0
# Idle connections kept per peer port: enough for a burst's steady state; the others close.
MAX_IDLE = 64


class Peers:
    """The connection pools of one node to its peers, keyed by base URL
    (`http://host:port`). `idle_timeout_s` should be below the peers' keep-alive timeout
    (the nodes of a cluster share their settings: half of this node's), so that a pooled
    connection is almost never one the peer is closing at the moment it is reused."""

    def __init__(self, idle_timeout_s: float) -> None:
        self.idle_timeout_s = idle_timeout_s
        self._pools: dict[str, Http1Transport] = {}

    def pool(self, base: str) -> Http1Transport:
        pool = self._pools.get(base)
        if pool is None:
            # no cap: each forwarded request stands for one caller's connection to this
            # node, which this node's own server limits; a cap would make long waits
            # (attach, output) hold up short requests behind them
            pool = self._pools[base] = Http1Transport(
                base,
                connect_timeout=CONNECT_TIMEOUT_S,
                max_connections=None,
                max_idle_connections=MAX_IDLE,
                idle_timeout=self.idle_timeout_s,
            )
        return pool

    async def request(
        self, base: str, method: str, target: str, headers: list[tuple[str, str]],
        body: bytes = b"", timeout: float = 5.0,
    ) -> tuple[int, bytes]:
        """One whole exchange (status, body) within `timeout` seconds. Raises
        `TransportError` or `TimeoutError`."""
        stream = await self.pool(base).open_stream(method, target, headers)
        try:
            async with asyncio.timeout(timeout):
                await stream.send(body)
                status, _ = await stream.response_head()
                chunks = []
                while (chunk := await stream.receive()) is not None:
                    chunks.append(chunk)
        except BaseException:
            stream.reset()
            raise
        return status, b"".join(chunks)

    async def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.close()

"""Requests of the security review that both the tests and `bench.security_probes` send."""

from __future__ import annotations

import socket

# half of F5's connections stop in the middle of a header
HALF_SENT = b"POST /Echo/echo_ HTTP/1.1\r\nHost: x\r\nX-Slow: "


def open_idle_connections(port: int, count: int = 200) -> list[socket.socket]:
    """F5: `count` connections, every other one stopped in the middle of its headers."""
    socks = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        if i % 2:
            s.sendall(HALF_SENT)
        socks.append(s)
    return socks


def is_closed(s: socket.socket) -> bool:
    """Whether the server closed (or reset) the connection; waits at most 10 ms."""
    s.settimeout(0.01)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True

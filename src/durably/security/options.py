"""The security settings of `durably serve`, with defaults safe for a port anyone can reach."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Limits", "SecurityOptions", "is_loopback", "split_tokens"]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may cost a port."""

    # Restate's admin API (axum's Json extractor) refuses bodies beyond 2 MB
    max_admin_body_bytes: int = 2 * 1024 * 1024
    # request line plus all headers; nginx answers 431/400 around 32 KiB, hyper near 400 KiB
    max_header_bytes: int = 64 * 1024
    # from accepting a connection (or finishing a response) to a request's complete headers
    header_timeout_s: float = 10.0
    # a kept-alive connection with nothing in flight is closed after this long
    idle_timeout_s: float = 60.0
    # open connections per port; beyond it a new connection is closed at once
    max_connections: int = 4096


@dataclass(frozen=True, slots=True)
class SecurityOptions:
    request_identity_key_file: Path | None = None
    request_identity_expiration_s: float = 60.0
    admin_tokens: tuple[str, ...] = ()
    ingress_tokens: tuple[str, ...] = ()
    metrics_public: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    limits: Limits = field(default_factory=Limits)

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


def split_tokens(text: str | None) -> tuple[str, ...]:
    """`a,b` -> ("a", "b"): several tokens are accepted at once while one replaces another."""
    if not text:
        return ()
    return tuple(t.strip() for t in text.split(",") if t.strip())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

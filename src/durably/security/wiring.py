"""How `durably serve` puts this room's pieces around its two apps and their servers."""

from __future__ import annotations

import logging
from typing import Any

from durably.security.identity import IdentityKeyError, RequestSigner
from durably.security.middleware import AdminGuard, App, IngressGuard
from durably.security.options import SecurityOptions, is_loopback
from durably.security.protocol import guarded_protocol

__all__ = ["exposure_warnings", "guard_apps", "load_signer", "uvicorn_options"]

log = logging.getLogger("durably.security")


def load_signer(options: SecurityOptions) -> RequestSigner | None:
    """The request signer, or None without a key file. Raises ValueError with one line."""
    if options.request_identity_key_file is None:
        return None
    try:
        signer = RequestSigner.from_pem_file(
            options.request_identity_key_file, options.request_identity_expiration_s
        )
    except IdentityKeyError as e:
        raise ValueError(str(e)) from None
    log.info(
        "signing requests to deployments; services accept them with the identity key %s",
        signer.kid,
    )
    return signer


def guard_apps(ingress: App, admin: App, options: SecurityOptions, bind: str) -> tuple[App, App]:
    return (
        IngressGuard(ingress, tokens=options.ingress_tokens),
        AdminGuard(
            admin,
            tokens=options.admin_tokens,
            max_body_bytes=options.limits.max_admin_body_bytes,
            bind=bind,
            metrics_public=options.metrics_public,
        ),
    )


def uvicorn_options(options: SecurityOptions) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` of either port."""
    limits = options.limits
    out: dict[str, Any] = {
        "http": guarded_protocol(limits),
        "timeout_keep_alive": max(1, round(limits.idle_timeout_s)),
    }
    if options.tls_cert_file is not None:
        out["ssl_certfile"] = str(options.tls_cert_file)
        if options.tls_key_file is not None:
            out["ssl_keyfile"] = str(options.tls_key_file)
    return out


def exposure_warnings(options: SecurityOptions, bind: str) -> list[str]:
    """What an operator should hear about before exposing the ports beyond this machine."""
    if is_loopback(bind):
        return []
    out = []
    if not options.admin_tokens:
        out.append(
            f"the admin API listens on {bind} without a token: anyone who reaches it can "
            "register deployments and read every journal (set --admin-token)"
        )
    if not options.ingress_tokens:
        out.append(
            f"the ingress listens on {bind} without a token: anyone who reaches it can call "
            "every public handler (set --ingress-token)"
        )
    if not options.tls:
        out.append("tokens and payloads travel in clear text (set --tls-cert-file/--tls-key-file)")
    return out

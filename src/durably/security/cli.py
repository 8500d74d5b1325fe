"""The command line of this room: `durably keys generate`, and the checks of the security
options of `durably serve` (the options themselves are declared beside the others)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from durably.security.identity import KEY_ENV_VARS, generate_key_pem
from durably.security.options import Limits, SecurityOptions, split_tokens

__all__ = ["keys_app", "security_options"]

keys_app = typer.Typer(
    help="Request identity keys: durably signs its requests to services with one.",
    no_args_is_help=True,
)


@keys_app.command("generate")
def keys_generate(
    out: Path = typer.Option(
        Path("durably-identity.pem"),
        "--out",
        "-o",
        help="Where to write the private key (PEM, PKCS#8, Ed25519); it must not exist.",
    ),
) -> None:
    """Write a new private key and print the key id services are configured with."""
    pem, kid = generate_key_pem()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        typer.echo(f"durably: {out} exists; choose another --out", err=True)
        raise typer.Exit(2) from None
    except OSError as e:
        typer.echo(f"durably: cannot write {out}: {e.strerror}", err=True)
        raise typer.Exit(2) from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    typer.echo(kid)
    typer.echo(
        f"wrote {out}; start durably with --request-identity-private-key-pem-file {out} and "
        f'give services identity_keys=["{kid}"]',
        err=True,
    )


def _fail(message: str) -> typer.Exit:
    typer.echo(f"durably: {message}", err=True)
    return typer.Exit(2)


def security_options(
    *,
    key_file: Path | None,
    expiration_s: float | None,
    admin_token: str | None,
    ingress_token: str | None,
    metrics_public: bool,
    tls_cert_file: Path | None,
    tls_key_file: Path | None,
    max_header_bytes: int,
    header_timeout_s: float,
    idle_timeout_s: float,
    max_connections: int,
) -> SecurityOptions:
    """The checked options; bad values exit with one line."""
    if key_file is None:
        for name in KEY_ENV_VARS:
            if os.environ.get(name, "").strip():
                key_file = Path(os.environ[name].strip())
                break
    if expiration_s is not None and expiration_s < 1:
        raise _fail("--request-identity-expiration must be at least 1 second")
    if (tls_cert_file is None) != (tls_key_file is None):
        raise _fail("--tls-cert-file and --tls-key-file go together")
    for path in (tls_cert_file, tls_key_file):
        if path is not None and not path.is_file():
            raise _fail(f"no such file: {path}")
    if max_header_bytes < 1024:
        raise _fail("--max-header-bytes must be at least 1024")
    if header_timeout_s <= 0 or idle_timeout_s <= 0:
        raise _fail("--header-timeout and --idle-timeout must be positive")
    if max_connections < 1:
        raise _fail("--max-connections must be at least 1")
    return SecurityOptions(
        request_identity_key_file=key_file,
        request_identity_expiration_s=60.0 if expiration_s is None else expiration_s,
        admin_tokens=split_tokens(admin_token),
        ingress_tokens=split_tokens(ingress_token),
        metrics_public=metrics_public,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
        limits=Limits(
            max_header_bytes=max_header_bytes,
            header_timeout_s=header_timeout_s,
            idle_timeout_s=idle_timeout_s,
            max_connections=max_connections,
        ),
    )

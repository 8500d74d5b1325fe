"""Fixtures of the security tests: durably started with security flags, and SDK services that
check request identity."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from tests.support.harness import DurablyServer, ServicesProcess

SIGNED_APP = "tests.security.signed_app:app"

# Restate's published test vectors (restatedev/restate service-client request_identity/v1.rs
# and the e2e test ProxyRequestSigning) with the key ids Restate derives from them.
VECTOR_V1_RS = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VwBCIEIPe++4ZTPQDF81otpoU/mOGHC2vOAVp9WbiCblvn3nXO\n"
    b"-----END PRIVATE KEY-----\n",
    "publickeyv1_AfQwmwfgEZhrWpvv8N52SHpRtZqGGaFr4AZN6qtYWSiY",
)
VECTOR_E2E = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VwBCIEIHsQRVQ+AZX9/Yy1b0Zw+OA+bb7xDxGsAd5kB45jZhoc\n"
    b"-----END PRIVATE KEY-----\n",
    "publickeyv1_ChjENKeMvCtRnqG2mrBK1HmPKufgFUc98K8B3ononQvp",
)

StartDurably = Callable[..., DurablyServer]
StartServices = Callable[..., ServicesProcess]


@pytest.fixture
def start_durably(tmp_path: Path) -> Iterator[StartDurably]:
    """``start_durably(*extra_args, env={...})``: a fresh durably with extra serve flags."""
    made: list[DurablyServer] = []

    def start(*args: str, env: Mapping[str, str] | None = None) -> DurablyServer:
        server = EnvDurably(tmp_path / f"durably{len(made)}", extra_args=args, env=env)
        made.append(server)
        server.start()
        return server

    yield start
    for server in made:
        server.close()


class EnvDurably(DurablyServer):
    """durably with extra flags and environment (and none of the caller's tokens)."""

    def __init__(self, base: Path, extra_args: tuple[str, ...], env: Mapping[str, str] | None):
        super().__init__(base, extra_args=extra_args)
        self.extra_env = dict(env or {})

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        for name in ("DURABLY_ADMIN_TOKEN", "DURABLY_INGRESS_TOKEN", "RESTATE_AUTH_TOKEN"):
            env.pop(name, None)
        env.update(self.extra_env)
        return cmd, env


@pytest.fixture
def start_services(tmp_path: Path) -> Iterator[StartServices]:
    """``start_services(identity_keys)``: the signed app, checking those keys."""
    made: list[ServicesProcess] = []

    def start(identity_keys: list[str]) -> ServicesProcess:
        services = ServicesProcess(
            [],
            tmp_path / f"services{len(made)}",
            app=SIGNED_APP,
            env={"IDENTITY_KEYS": ",".join(identity_keys)},
        )
        made.append(services)
        services.start()
        return services

    yield start
    for services in made:
        services.close()


def write_key(tmp_path: Path, pem: bytes, name: str = "key.pem") -> Path:
    path = tmp_path / name
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    return path

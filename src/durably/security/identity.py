"""Request identity: durably signs every request it makes to a deployment, as Restate does.

A deployment whose SDK was given `identity_keys=["publickeyv1_..."]` accepts only requests
that carry `x-restate-signature-scheme: v1` and an EdDSA (Ed25519) JWT in `x-restate-jwt-v1`
whose audience is the request's path (`/discover` or `/invoke/{service}/{handler}`, without the
deployment's own path prefix), valid now. The key id is `publickeyv1_` + the base58 (Bitcoin
alphabet) of the raw 32-byte public key; SDKs are configured with it.

The token is built by hand with `cryptography` (a JWT is three base64url segments); the JSON is
compact with the claims in Restate's order, so the same key and clock give Restate's bytes.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "DEFAULT_EXPIRATION_S",
    "JWT_HEADER",
    "KEY_ENV_VARS",
    "SCHEME_HEADER",
    "IdentityKeyError",
    "RequestSigner",
    "base58",
    "generate_key_pem",
    "key_id",
]

SCHEME_HEADER = "x-restate-signature-scheme"
JWT_HEADER = "x-restate-jwt-v1"
DEFAULT_EXPIRATION_S = 60.0
KEY_PREFIX = "publickeyv1_"
# ours first, then the name Restate reads, so one environment can configure either server
KEY_ENV_VARS = (
    "DURABLY_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE",
    "RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE",
)

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class IdentityKeyError(Exception):
    """The private key file cannot be used (one line, for the operator)."""


def base58(data: bytes) -> str:
    """Base58 with the Bitcoin alphabet: leading zero bytes become leading '1's."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_id(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return KEY_PREFIX + base58(raw)


def generate_key_pem() -> tuple[bytes, str]:
    """A new PKCS#8 PEM Ed25519 private key (what `openssl genpkey -algorithm ed25519`
    writes) and its key id."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, key_id(key)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The one Ed25519 key of a PEM file; as Restate, any other number of PEM blocks is an
    error."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise IdentityKeyError(
            f"cannot read the request identity key {path}: {e.strerror or e}"
        ) from None
    blocks = data.count(b"-----BEGIN ")
    if blocks != 1:
        raise IdentityKeyError(
            f"the request identity key file {path} must hold exactly one PEM private key, "
            f"found {blocks}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise IdentityKeyError(f"the request identity key file {path} is not usable: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityKeyError(
            f"the request identity key file {path} holds a {type(key).__name__.lstrip('_')}, "
            "not an Ed25519 key (generate one with `durably keys generate`)"
        )
    return key


def key_file_from_env(environ: dict[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    for name in KEY_ENV_VARS:
        value = env.get(name, "").strip()
        if value:
            return Path(value)
    return None


@dataclass
class RequestSigner:
    """Signs requests to deployments with one Ed25519 key."""

    private_key: Ed25519PrivateKey
    expiration_s: float = DEFAULT_EXPIRATION_S
    clock: Callable[[], float] = field(default=time.time)

    def __post_init__(self) -> None:
        self.kid = key_id(self.private_key)
        self._header = _b64url(
            orjson.dumps({"typ": "JWT", "alg": "EdDSA", "kid": self.kid})
        ).encode("ascii")

    @classmethod
    def from_pem_file(cls, path: Path, expiration_s: float = DEFAULT_EXPIRATION_S) -> RequestSigner:
        if expiration_s < 1:
            raise IdentityKeyError("the request identity expiration must be at least 1 second")
        return cls(load_private_key(path), expiration_s)

    def token(self, audience: str, subject: str | None = None) -> str:
        """A JWT for one request: `audience` is its path (`/discover`,
        `/invoke/{service}/{handler}`), `subject` the key of a keyed target."""
        now = int(self.clock())
        leeway = int(self.expiration_s)
        claims: dict[str, object] = {
            "aud": audience,
            "exp": now + leeway,
            "iat": now,
            "nbf": max(0, now - leeway),
        }
        if subject is not None:
            claims["sub"] = subject
        signing_input = self._header + b"." + _b64url(orjson.dumps(claims)).encode("ascii")
        signature = self.private_key.sign(signing_input)
        return (signing_input + b"." + _b64url(signature).encode("ascii")).decode("ascii")

    def headers(self, audience: str, subject: str | None = None) -> list[tuple[str, str]]:
        return [(SCHEME_HEADER, "v1"), (JWT_HEADER, self.token(audience, subject))]

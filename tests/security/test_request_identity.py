"""Request identity: durably signs discovery and every attempt as Restate does, and
`restate-sdk` apps configured with `identity_keys` accept it (and only with the right key)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from restate._internal import IdentityVerificationException, PyIdentityVerifier
from tests.security.conftest import VECTOR_E2E, VECTOR_V1_RS, StartDurably, StartServices, write_key
from tests.support.harness import REPO_ROOT, RestateServer, ServerProcess

from durably.security.identity import RequestSigner, base58, key_id

# Restate's own test token (sdk-shared-core request_identity.rs `bad_key`, made with the
# v1.rs key above at iat 1721662649): the same key and clock must give the same bytes.
RESTATE_TOKEN = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6InB1YmxpY2tleXYxX0FmUXdtd2ZnRVpocldwdnY4TjUy"
    "U0hwUnRacUdHYUZyNEFaTjZxdFlXU2lZIn0.eyJhdWQiOiIvaW52b2tlL2ZvbyIsImV4cCI6MTcyMTY2MjcwOSwia"
    "WF0IjoxNzIxNjYyNjQ5LCJuYmYiOjE3MjE2NjI1ODl9.UBReG_9cdFQ5VcaJxAV0rM8U_zaNw9kMXJZt691SiI0SW"
    "w7Ucmz5Zz3wtmVUc1jrkNsnTDhNEvOFGEZoKXTMCQ"
)


@pytest.mark.parametrize("vector", [VECTOR_V1_RS, VECTOR_E2E], ids=["v1.rs", "e2e"])
def test_published_vectors_give_published_key_ids(tmp_path: Path, vector: tuple[bytes, str]) -> None:
    pem, kid = vector
    assert RequestSigner.from_pem_file(write_key(tmp_path, pem)).kid == kid


def test_same_key_and_clock_give_restates_token_bytes() -> None:
    key = serialization.load_pem_private_key(VECTOR_V1_RS[0], None)
    signer = RequestSigner(key, clock=lambda: 1721662649)  # type: ignore[arg-type]
    assert signer.token("/invoke/foo") == RESTATE_TOKEN


def test_base58_keeps_leading_zero_bytes() -> None:
    assert base58(b"\0\0\x01") == "112"
    assert base58(b"") == ""


def _sdk_accepts(signer: RequestSigner, keys: list[str], aud: str, path: str, sub: str | None = None) -> bool:
    verifier = PyIdentityVerifier(keys)
    headers = [("x-restate-signature-scheme", "v1"), ("x-restate-jwt-v1", signer.token(aud, sub))]
    try:
        verifier.verify(headers, path)
    except IdentityVerificationException:
        return False
    return True


def test_the_sdks_verifier_accepts_our_tokens() -> None:
    key = serialization.load_pem_private_key(VECTOR_E2E[0], None)
    signer = RequestSigner(key)  # type: ignore[arg-type]
    keys = [VECTOR_E2E[1]]
    assert _sdk_accepts(signer, keys, "/discover", "/discover")
    assert _sdk_accepts(signer, keys, "/discover", "/svc/discover")  # a prefixed mount
    assert _sdk_accepts(signer, keys, "/invoke/Counter/add", "/invoke/Counter/add", sub="alice")
    assert not _sdk_accepts(signer, [VECTOR_V1_RS[1]], "/discover", "/discover")
    assert not _sdk_accepts(signer, keys, "/invoke/Counter/get", "/invoke/Counter/add")
    stale = RequestSigner(key, expiration_s=60, clock=lambda: 1_000_000)  # type: ignore[arg-type]
    assert not _sdk_accepts(stale, keys, "/discover", "/discover")


def test_keys_generate_writes_a_key_that_signs(tmp_path: Path) -> None:
    out = tmp_path / "id.pem"
    r = subprocess.run(
        [sys.executable, "-m", "durably", "keys", "generate", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, env=_env(),
    )
    assert r.returncode == 0, r.stderr
    kid = r.stdout.strip()
    assert kid.startswith("publickeyv1_")
    assert out.stat().st_mode & 0o777 == 0o600
    signer = RequestSigner.from_pem_file(out)
    assert signer.kid == kid
    assert _sdk_accepts(signer, [kid], "/discover", "/discover")
    again = subprocess.run(
        [sys.executable, "-m", "durably", "keys", "generate", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, env=_env(),
    )
    assert again.returncode == 2 and "exists" in again.stderr


def test_a_bad_key_file_stops_serve_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    r = subprocess.run(
        [sys.executable, "-m", "durably", "serve", "--data-dir", str(tmp_path / "d"),
         "--ingress-port", "0", "--admin-port", "0",
         "--request-identity-private-key-pem-file", str(bad)],
        capture_output=True, text=True, timeout=60, env=_env(),
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "exactly one PEM" in r.stderr


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT / "src")
    return env


def _register(admin: str, services_url: str) -> httpx.Response:
    return httpx.post(f"{admin}/deployments", json={"uri": services_url}, timeout=30)


@pytest.mark.parametrize("target", ["durably", "restate"])
def test_signed_quickstart(
    tmp_path: Path,
    start_durably: StartDurably,
    start_services: StartServices,
    target: str,
    request: pytest.FixtureRequest,
) -> None:
    """The README quickstart with signing on; the real Restate server, given the same key the
    same way, is the oracle."""
    pem, kid = VECTOR_E2E
    services = start_services([kid])
    key = write_key(tmp_path, pem)
    # the key through Restate's own environment variable
    env = {"RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE": str(key)}
    server: ServerProcess
    if target == "restate":
        server = RestateServer(tmp_path / "restate", extra_env=env)
        server.start()
        request.addfinalizer(server.close)
    else:
        server = start_durably(env=env)
        assert kid in server.log_tail(200)
    r = _register(server.admin_url, services.url)
    assert r.status_code == 201, r.text
    r = httpx.post(f"{server.ingress_url}/Greeter/greet", json="Alice", timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == "Hello Alice! (1)"
    # a keyed handler: the token carries the key as subject, and the SDK accepts it
    totals = [
        httpx.post(f"{server.ingress_url}/Counter/alice/add", json=n, timeout=60).json()
        for n in (2, 3)
    ]
    assert totals == [2, 5]


def test_registration_with_another_key_says_the_service_refused(
    tmp_path: Path, start_durably: StartDurably, start_services: StartServices
) -> None:
    services = start_services([VECTOR_V1_RS[1]])
    key = write_key(tmp_path, VECTOR_E2E[0])
    server = start_durably("--request-identity-private-key-pem-file", str(key))
    r = _register(server.admin_url, services.url)
    assert r.status_code == 500
    message = r.json()["message"]
    assert "401" in message
    assert "refused durably's request identity" in message
    assert VECTOR_E2E[1] in message


def test_registration_without_a_key_says_the_service_wants_signed_requests(
    start_durably: StartDurably, start_services: StartServices
) -> None:
    services = start_services([VECTOR_E2E[1]])
    server = start_durably()
    r = _register(server.admin_url, services.url)
    assert r.status_code == 500
    assert "--request-identity-private-key-pem-file" in r.json()["message"]


def test_a_fresh_token_for_every_request(tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(VECTOR_E2E[0], None)
    now = [1000.0]
    signer = RequestSigner(key, clock=lambda: now[0])  # type: ignore[arg-type]
    first = signer.token("/invoke/A/b")
    now[0] += 1
    assert signer.token("/invoke/A/b") != first
    assert key_id(key) == VECTOR_E2E[1]  # type: ignore[arg-type]


def test_signed_attempts_over_http11(
    tmp_path: Path, start_durably: StartDurably, start_services: StartServices
) -> None:
    """The HTTP/1.1 transport signs its attempts too (hypercorn speaks both versions)."""
    pem, kid = VECTOR_V1_RS
    services = start_services([kid])
    server = start_durably("--request-identity-private-key-pem-file", str(write_key(tmp_path, pem)))
    r = httpx.post(f"{server.admin_url}/deployments",
                   json={"uri": services.url, "use_http_11": True}, timeout=30)
    assert r.status_code == 201, r.text
    r = httpx.post(f"{server.ingress_url}/Counter/h1/add", json=7, timeout=60)
    assert r.status_code == 200 and r.json() == 7, r.text


@pytest.mark.parametrize("right_key", [True, False], ids=["right-key", "other-key"])
def test_the_typescript_sdk_accepts_our_identity(
    tmp_path: Path, start_durably: StartDurably, right_key: bool
) -> None:
    """A second, independent verifier: the official TypeScript SDK (its own WebCrypto code)."""
    import os
    import shutil

    from tests.e2e.test_typescript_service import TS_DIR, ensure_npm_deps
    from tests.support.harness import free_port, poll, port_accepts

    ensure_npm_deps()
    node = shutil.which("node")
    assert node is not None, "node is not on PATH"
    port = free_port()
    log = open(tmp_path / "node.log", "wb")
    proc = subprocess.Popen(
        [node, "signed_service.mjs"], cwd=TS_DIR, stdout=log, stderr=subprocess.STDOUT,
        env=dict(os.environ, PORT=str(port), IDENTITY_KEYS=VECTOR_E2E[1]),
    )
    try:
        poll(lambda: port_accepts(port) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, (tmp_path / "node.log").read_text()
        pem = VECTOR_E2E[0] if right_key else VECTOR_V1_RS[0]
        server = start_durably("--request-identity-private-key-pem-file", str(write_key(tmp_path, pem)))
        r = _register(server.admin_url, f"http://127.0.0.1:{port}")
        if not right_key:
            assert r.status_code == 500
            assert "refused durably's request identity" in r.json()["message"]
            return
        assert r.status_code == 201, r.text
        r = httpx.post(f"{server.ingress_url}/TsGreeter/greet", json="Node", timeout=60)
        assert r.status_code == 200 and r.json() == "Hello Node! (1)", r.text
    finally:
        proc.kill()
        proc.wait()
        log.close()

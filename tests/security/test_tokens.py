"""Bearer tokens on the admin API and the ingress: rotation, /health open, the token kept out
of journals, and every client that should send it does (durably's CLI and client from the
environment, the official `restate` CLI from RESTATE_AUTH_TOKEN)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.security.conftest import SIGNED_APP, EnvDurably, StartDurably
from tests.support.harness import REPO_ROOT, DurablyServer, ServicesProcess

from durably.client import Client

ADMIN = ("admin-old-1", "admin-new-2")
INGRESS = "ingress-token-3"


@pytest.fixture(scope="module")
def protected(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DurablyServer, ServicesProcess]]:
    """One protected durably for the module, with the signed app (checking no keys)
    registered."""
    base = tmp_path_factory.mktemp("tokens")
    services = ServicesProcess([], base / "services", app=SIGNED_APP)
    services.start()
    server = EnvDurably(base / "server", extra_args=("--admin-token", ",".join(ADMIN)),
                      env={"DURABLY_INGRESS_TOKEN": INGRESS})
    server.start()
    r = httpx.post(f"{server.admin_url}/deployments", json={"uri": services.url},
                   headers=bearer(ADMIN[1]), timeout=30)
    assert r.status_code == 201, r.text
    yield server, services
    server.close()
    services.close()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_admin_token_and_rotation(protected: tuple[DurablyServer, ServicesProcess]) -> None:
    server, _ = protected
    admin = server.admin_url
    r = httpx.get(f"{admin}/deployments")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "admin token" in r.json()["message"]
    for wrong in ("admin-old", "admin-old-1x", "Bearer admin-old-1", "ADMIN-OLD-1"):
        assert httpx.get(f"{admin}/deployments", headers=bearer(wrong)).status_code == 401
    for raw in (ADMIN[0], "Bearer", f"Basic {ADMIN[0]}"):
        assert httpx.get(f"{admin}/deployments", headers={"authorization": raw}).status_code == 401
    for token in ADMIN:  # both the old and the new token, while one replaces the other
        assert httpx.get(f"{admin}/deployments", headers=bearer(token)).status_code == 200
    # /query, /metrics and the OpenAPI document are behind the token too; /health is not
    for method, path in (("POST", "/query"), ("GET", "/metrics"), ("GET", "/openapi")):
        assert httpx.request(method, f"{admin}{path}").status_code == 401, path
    assert httpx.get(f"{admin}/health").status_code == 200
    assert httpx.get(f"{server.ingress_url}/restate/health").status_code == 200


def test_ingress_token_is_checked_and_never_journaled(
    protected: tuple[DurablyServer, ServicesProcess],
) -> None:
    server, _ = protected
    url = f"{server.ingress_url}/Counter/k/add"
    r = httpx.post(url, json=1, timeout=30)
    assert r.status_code == 401
    assert r.json()["source"] == "ingress"
    r = httpx.post(url, json=1, headers={**bearer(INGRESS), "x-kept": "yes"}, timeout=60)
    assert r.status_code == 200, r.text
    rows = httpx.post(
        f"{server.admin_url}/query", json={"query": "SELECT raw FROM sys_journal"},
        headers={**bearer(ADMIN[0]), "accept": "application/json"}, timeout=30,
    ).json()["rows"]
    raw = b"".join(bytes.fromhex(row["raw"]) for row in rows if "raw" in row)
    assert b"x-kept" in raw  # other headers are stored as before
    assert INGRESS.encode() not in raw and b"authorization" not in raw


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DURABLY_ADMIN_TOKEN", "DURABLY_INGRESS_TOKEN", "RESTATE_AUTH_TOKEN")}
    env["PYTHONPATH"] = str(REPO_ROOT / "src")
    env.update(extra)
    return env


def test_durably_cli_sends_the_admin_token(protected: tuple[DurablyServer, ServicesProcess]) -> None:
    server, _ = protected
    cmd = [sys.executable, "-m", "durably", "deployments", "list", "--admin-url", server.admin_url]
    denied = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=60)
    assert denied.returncode != 0 and "admin token" in denied.stderr
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                        env=_env(DURABLY_ADMIN_TOKEN=ADMIN[1]))
    assert ok.returncode == 0, ok.stderr


def test_durably_client_sends_tokens_from_the_environment(
    protected: tuple[DurablyServer, ServicesProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = protected
    monkeypatch.setenv("DURABLY_INGRESS_TOKEN", INGRESS)
    monkeypatch.setenv("DURABLY_ADMIN_TOKEN", ADMIN[0])
    with Client(server.ingress_url, admin_url=server.admin_url) as client:
        assert client.object("Counter", "c").call("add", 4, output=int) == 4
        handle = client.object("Counter", "c").send("add", 1)
        client.invocation(handle.invocation_id).attach(output=int)
        client.invocation(handle.invocation_id).purge()  # an admin request: the admin token


def restate_cli() -> Path:
    """The official `restate` CLI (npm @restatedev/restate), installed once into the cache."""
    from tests.support.harness import CACHE_DIR, RESTATE_VERSION

    prefix = CACHE_DIR / f"restate-cli-{RESTATE_VERSION}"
    binary = prefix / "node_modules" / ".bin" / "restate"
    if not binary.exists():
        import fcntl

        prefix.mkdir(parents=True, exist_ok=True)
        with open(prefix / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not binary.exists():
                subprocess.run(
                    ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                     f"@restatedev/restate@{RESTATE_VERSION}"],
                    check=True, capture_output=True, timeout=600,
                )
    return binary


def test_the_official_restate_cli_works_with_restate_auth_token(
    protected: tuple[DurablyServer, ServicesProcess], tmp_path: Path
) -> None:
    server, _ = protected
    cli = restate_cli()
    base = {"RESTATE_ADMIN_URL": server.admin_url, "HOME": str(tmp_path), "NO_COLOR": "1"}
    cmd = [str(cli), "services", "list"]
    denied = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env(**base))
    assert denied.returncode != 0
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                        env=_env(**base, RESTATE_AUTH_TOKEN=ADMIN[1]))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Counter" in ok.stdout and "Greeter" in ok.stdout


def test_bound_beyond_loopback_without_tokens_warns(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface: the warnings come first, then binding fails,
    # so nothing listens beyond loopback during the test
    r = subprocess.run(
        [sys.executable, "-m", "durably", "serve", "--bind", "192.0.2.1",
         "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=60, env=_env(),
    )
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert "admin API listens on 192.0.2.1 without a token" in out
    assert "ingress listens on 192.0.2.1 without a token" in out
    assert "cannot listen on 192.0.2.1" in out
    quiet = subprocess.run(
        [sys.executable, "-m", "durably", "serve", "--bind", "192.0.2.1",
         "--data-dir", str(tmp_path / "d"), "--admin-token", "a", "--ingress-token", "b"],
        capture_output=True, text=True, timeout=60, env=_env(),
    )
    assert "without a token" not in quiet.stdout + quiet.stderr


def test_metrics_public_leaves_only_metrics_open(start_durably: StartDurably) -> None:
    server = start_durably("--admin-token", ADMIN[0], "--metrics-public")
    assert httpx.get(f"{server.admin_url}/metrics").status_code == 200
    assert httpx.get(f"{server.admin_url}/deployments").status_code == 401


def test_ui_signs_in_with_the_admin_token(protected: tuple[DurablyServer, ServicesProcess]) -> None:
    """A browser sends no bearer header: the UI's pages send it to a sign-in form, which
    sets an HttpOnly, SameSite=Strict cookie for a right token and refuses a wrong one."""
    server, _ = protected
    admin = server.admin_url
    with httpx.Client(base_url=admin, timeout=30) as browser:
        r = browser.get("/ui/invocations")
        assert r.status_code == 303 and r.headers["location"] == "login"
        r = browser.get("/ui/invocations/inv_x")
        assert r.status_code == 303 and r.headers["location"] == "../login"
        page = browser.get("/ui/login")
        assert page.status_code == 200 and 'name="token"' in page.text
        assert browser.post("/ui/login", data={"token": "admin-wrong"}).status_code == 401
        forged = browser.post("/ui/login", data={"token": ADMIN[0]},
                              headers={"origin": "http://evil.example"})
        assert forged.status_code == 403 and "set-cookie" not in forged.headers
        r = browser.post("/ui/login", data={"token": ADMIN[0]})
        assert r.status_code == 303
        assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
        assert browser.get("/ui/").status_code == 200
        assert browser.get("/ui/invocations").status_code == 200
        # the cookie opens the UI only, not the API
        assert browser.get("/deployments").status_code == 401

"""`durably serve --store` / `DURABLY_STORE` as a user runs it: PostgreSQL DSNs (a real
PostgreSQL started by the tests), `sqlite:///PATH`, and the one-line errors."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from tests.e2e.test_serve_cli import (
    START_TIMEOUT,
    assert_one_clear_line,
    durably,
    free_port,
    read_line_until,
    spawn,
    stop,
)
from tests.support.postgres import PASSWORD, shared_cluster

from durably.storage.postgres_schema import LATEST


def test_help_documents_the_store() -> None:
    result = durably("serve", "--help")
    assert result.returncode == 0, result.stderr
    assert "--store" in result.stdout and "DURABLY_STORE" in result.stdout
    assert "postgresql://" in result.stdout and "sqlite:///" in result.stdout


def test_postgresql_from_the_environment_then_a_newer_schema(tmp_path: Path) -> None:
    cluster = shared_cluster()
    dsn = cluster.new_database()
    ingress, admin = free_port(), free_port()
    args = ("--ingress-port", str(ingress), "--admin-port", str(admin))
    proc = spawn(*args, DURABLY_STORE=dsn)
    try:
        line = read_line_until(proc, "ready", START_TIMEOUT)
        assert "store postgresql://durably@127.0.0.1:" in line and PASSWORD not in line, line
        assert httpx.get(f"http://127.0.0.1:{ingress}/restate/health", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        stop(proc)
    assert not (tmp_path / "durably-data").exists()
    db = dsn.rsplit("/", 1)[1]
    assert cluster.psql("SELECT version FROM durably.schema_version", database=db) == str(LATEST)
    cluster.psql(f"UPDATE durably.schema_version SET version = {LATEST + 1}", database=db)
    result = durably("serve", *args, "--store", dsn)
    assert result.returncode == 1
    assert_one_clear_line(result.stderr, f"version {LATEST + 1}", "upgrade durably")


def test_wrong_password_is_one_clear_line() -> None:
    dsn = shared_cluster().new_database().replace(PASSWORD, "not-the-password")
    result = durably("serve", "--ingress-port", str(free_port()), "--admin-port",
                     str(free_port()), "--store", dsn)
    assert result.returncode == 1
    assert_one_clear_line(result.stderr, "authentication failed")
    assert "not-the-password" not in result.stderr + result.stdout


def test_unreachable_database_is_one_clear_line() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = durably("serve", "--ingress-port", str(free_port()), "--admin-port",
                     str(free_port()), "--store", f"postgresql://u:p@127.0.0.1:{port}/db")
    assert result.returncode == 1
    assert_one_clear_line(result.stderr, "cannot connect", f"127.0.0.1:{port}/db")
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("value", ["mysql://x", "sqlite://relative", "postgresql://"])
def test_bad_store_exits_2(tmp_path: Path, value: str) -> None:
    result = durably("serve", "--store", value, "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert_one_clear_line(result.stderr, "--store")
    assert not (tmp_path / "d").exists()


def test_sqlite_url_is_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "via-url"
    proc = spawn("--ingress-port", str(free_port()), "--admin-port", str(free_port()),
                 "--store", f"sqlite:///{data}")
    try:
        line = read_line_until(proc, "ready", START_TIMEOUT)
        assert str(data) in line
        assert (data / "durably.sqlite3").exists()
    finally:
        stop(proc)

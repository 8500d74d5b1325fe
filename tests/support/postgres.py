"""A throwaway PostgreSQL cluster for tests: Debian's server binaries on a loopback port.

`initdb` and `pg_ctl` refuse to run as root, so as root they run as the `postgres` user
(`runuser`). The cluster keeps PostgreSQL's durable defaults (`fsync=on`,
`synchronous_commit=on`): the tests check durability against the real thing. Each durably
server under test gets a database of its own (`new_database`), so one cluster serves a
whole pytest session; tests that restart or break PostgreSQL start a cluster of their own.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

USER = "durably"
PASSWORD = "durably-test"


def _bin_dirs() -> list[str]:
    # Debian installs each major version's server under /usr/lib/postgresql/N/bin
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: float(p.parent.name) if p.parent.name.replace(".", "").isdigit() else 0,
    )
    return [str(p) for p in reversed(versions)] + ["/usr/local/bin", "/usr/bin"]


class PostgresError(RuntimeError):
    """The test cluster could not be created, started or driven."""


def _binary(name: str) -> str:
    for d in _bin_dirs():
        p = Path(d) / name
        if p.exists():
            return str(p)
    found = shutil.which(name)
    if found is None:
        raise PostgresError(
            f"PostgreSQL's {name} is not installed (apt-get install postgresql); "
            "the PostgreSQL tests need a real server"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PostgresCluster:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="durably-pg-"))
        self.data = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.log = self.base / "postgres.log"
        self.port = _free_port()
        self._started = False

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str, user: str = USER, password: str = PASSWORD) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def _run(self, cmd: list[str], timeout: float = 120) -> str:
        proc = subprocess.run(
            _as_postgres(cmd), capture_output=True, text=True, timeout=timeout, cwd=self.base
        )
        if proc.returncode != 0:
            raise PostgresError(
                f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}\n"
                f"{self.log_tail()}"
            )
        return proc.stdout

    def init(self) -> None:
        self.socket_dir.mkdir()
        pwfile = self.base / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.socket_dir, "postgres")
            shutil.chown(pwfile, "postgres")
        self._run(
            [
                _binary("initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
                "--locale=C", "--no-instructions",
            ]
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = on\nsynchronous_commit = on\nmax_connections = 200\n"
                "shared_buffers = 32MB\n"
            )

    def start(self) -> None:
        if not self.data.exists():
            self.init()
        self._run([_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start"])
        self._started = True

    def stop(self, mode: str = "fast") -> None:
        if self._started:
            self._run([_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])
            self._started = False

    def restart(self, mode: str = "fast") -> None:
        self._run(
            [_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-m", mode, "-w",
             "restart"]
        )

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except PostgresError:
            pass
        shutil.rmtree(self.base, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the unix socket; returns the unaligned output."""
        return self._run(
            [
                _binary("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", str(self.socket_dir), "-p", str(self.port), "-U", USER, "-d", database,
                "-c", sql,
            ]
        ).strip()

    def new_database(self) -> str:
        name = "d_" + uuid.uuid4().hex[:12]
        self.psql(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


_shared: PostgresCluster | None = None
_lock = threading.Lock()


def shared_cluster() -> PostgresCluster:
    """One cluster for the whole test session, removed at exit."""
    global _shared
    with _lock:
        if _shared is None:
            cluster = PostgresCluster()
            cluster.start()
            atexit.register(cluster.destroy)
            _shared = cluster
        return _shared


def wait_until_accepting(cluster: PostgresCluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            cluster.psql("SELECT 1")
            return
        except PostgresError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def fetch(dsn: str, sql: str) -> list[tuple]:
    """Rows of one query on durably's tables (schema `durably` first on the search path),
    from any thread, sync or async test alike."""
    import asyncio

    import asyncpg

    async def run() -> list[tuple]:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": "durably"})
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    out: list[list[tuple]] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(run())))
    thread.start()
    thread.join(60)
    if not out:
        raise PostgresError(f"query failed or timed out: {sql}")
    return out[0]

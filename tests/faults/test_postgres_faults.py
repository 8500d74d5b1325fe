"""PostgreSQL faults under load: the database restarted (fast and immediate), away for a
while, its connections killed in the middle of commits, and made read-only.

Each test has a PostgreSQL cluster of its own (it restarts or breaks it) and drives the
load of `test_server_kill`: idempotent adds and workflow runs, re-sent until answered. At
the end the same check holds: every answered operation happened exactly once.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.faults.conftest import FAULT_APP
from tests.faults.test_server_kill import Driver, check_accepted_work
from tests.support.harness import DurablyServer, Env, ServicesProcess, poll, register
from tests.support.postgres import PostgresCluster

pytestmark = [pytest.mark.restart, pytest.mark.timeout(240)]


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    c = PostgresCluster()
    c.start()
    try:
        yield c
    finally:
        c.destroy()


@pytest.fixture
def pg_env(cluster: PostgresCluster, tmp_path: Path) -> Iterator[Env]:
    services = ServicesProcess([], tmp_path / "env", app=FAULT_APP)
    server = DurablyServer(tmp_path / "env" / "server", store=cluster.new_database())
    env = Env(server, services, "h2")
    try:
        services.start()
        server.start()
        register(server.admin_url, services.url, use_http_11=False)
        yield env
    finally:
        env.close()
        server.close()
        services.close()


def _until_enough_load(driver: Driver, timeout: float = 90) -> None:
    """Keep the load on until `check_accepted_work` has enough answered work to judge."""

    def enough() -> None:
        answered = [op for op in driver.ops if op.answer is not None]
        assert sum(op.kind == "add" for op in answered) > 25
        assert sum(op.kind == "workflow" for op in answered) > 6

    poll(enough, timeout=timeout, interval=0.5)


def _exit_code(server: DurablyServer, timeout: float = 30) -> int:
    """The server's exit code, once it stopped by itself."""
    proc = server.proc
    assert proc is not None

    def exited() -> int:
        code = proc.poll()
        assert code is not None, "still running"
        return code

    return poll(exited, timeout=timeout)


def _load(env: Env) -> tuple[Driver, int, random.Random]:
    seed = random.randrange(1 << 30)
    driver = Driver(env, seed)
    driver.start()
    return driver, seed, random.Random(seed)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_under_load(pg_env: Env, cluster: PostgresCluster, mode: str) -> None:
    driver, seed, rng = _load(pg_env)
    try:
        for _ in range(3):
            time.sleep(rng.uniform(0.5, 1.5))
            cluster.restart(mode)
        _until_enough_load(driver)
    finally:
        driver.finish()
    check_accepted_work(pg_env, driver, seed, rng)
    assert pg_env.server.proc is not None and pg_env.server.proc.poll() is None


def test_answers_503_while_the_database_is_away(pg_env: Env, cluster: PostgresCluster) -> None:
    driver, seed, rng = _load(pg_env)
    try:
        time.sleep(1.0)
        cluster.stop("immediate")
        try:
            # the first commit after the stop finds it away; from then on: 503, quickly
            def refused() -> httpx.Response:
                r = httpx.post(
                    f"{pg_env.ingress}/FaultCounter/probe/add", json=1, timeout=5.0
                )
                assert r.status_code == 503, r.status_code
                return r

            answer = poll(refused, timeout=30, interval=0.2)
            assert "database is unavailable" in answer.json()["message"], answer.text
            started = time.monotonic()
            r = httpx.post(f"{pg_env.ingress}/FaultCounter/probe/add", json=1, timeout=5.0)
            assert r.status_code == 503 and time.monotonic() - started < 2.0
            time.sleep(2.0)  # away for a while: nothing crashes, nothing is answered 200
            assert pg_env.server.proc is not None and pg_env.server.proc.poll() is None
        finally:
            cluster.start()
        _until_enough_load(driver)
    finally:
        driver.finish()
    check_accepted_work(pg_env, driver, seed, rng)
    assert "reachable again" in pg_env.server.log_tail(400)


def test_connections_killed_mid_commit(pg_env: Env, cluster: PostgresCluster) -> None:
    """The writer's connection is terminated again and again while it commits: each
    batch is either committed once or redone, and nothing is answered before."""
    driver, seed, rng = _load(pg_env)
    stop = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        while not stop.is_set():
            out = cluster.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'durably' AND state = 'active'"
            )
            kills += int(out or 0)
            time.sleep(rng.uniform(0.05, 0.3))

    thread = threading.Thread(target=killer, daemon=True)
    try:
        time.sleep(0.5)
        thread.start()
        time.sleep(6.0)
    finally:
        stop.set()
        thread.join(timeout=30)
        _until_enough_load(driver)
        driver.finish()
    check_accepted_work(pg_env, driver, seed, rng)
    assert kills > 0, "no commit was caught in flight"
    print(f"{kills} connections terminated while active")


def test_read_only_database_stops_durably_and_loses_nothing(
    pg_env: Env, cluster: PostgresCluster
) -> None:
    server = pg_env.server
    assert isinstance(server, DurablyServer) and server.postgres_dsn is not None
    db = server.postgres_dsn.rsplit("/", 1)[1]
    answered = 0
    for i in range(1, 6):
        assert pg_env.call_json("FaultCounter", "add", i, key="ro", idem=False) == answered + i
        answered += i
    cluster.psql(f"ALTER DATABASE {db} SET default_transaction_read_only = on")
    cluster.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE application_name = 'durably' AND datname = '{db}'"
    )
    try:
        r = httpx.post(f"{pg_env.ingress}/FaultCounter/ro/add", json=100, timeout=10.0)
        assert r.status_code != 200, "answered although the database refuses writes"
    except httpx.HTTPError:
        pass  # the server stopped before answering
    assert _exit_code(server) != 0
    log = server.log_tail(200)
    stopped = [line for line in log.splitlines() if line.startswith("durably: stopped")]
    assert len(stopped) == 1 and "25006" in stopped[0] and "read-only" in stopped[0], log
    cluster.psql(f"ALTER DATABASE {db} RESET default_transaction_read_only")
    server.start()
    register(server.admin_url, pg_env.services.url, use_http_11=False)
    assert pg_env.call_json("FaultCounter", "get", key="ro", idem=False) == answered


def test_disk_full_stops_durably_and_loses_nothing(pg_env: Env, cluster: PostgresCluster) -> None:
    """durably's tables on a 2 MiB tmpfs (a tablespace) that fills up while it runs."""
    from tests.faults.test_storage_errors import _fill, _tmpfs, add_until_refused

    server = pg_env.server
    assert isinstance(server, DurablyServer) and server.postgres_dsn is not None
    db = server.postgres_dsn.rsplit("/", 1)[1]
    # under the cluster's own directory: the postgres user cannot reach pytest's tmp_path
    with _tmpfs(cluster.base / "mnt", "2m") as mnt:
        location = mnt / "ts"
        location.mkdir()
        shutil.chown(location, "postgres")
        cluster.psql(f"CREATE TABLESPACE small LOCATION '{location}'")
        for table in ("journal", "invocation", "state"):
            cluster.psql(f"ALTER TABLE durably.{table} SET TABLESPACE small", database=db)
        filler = _fill(mnt, 16 * 1024)
        answered, sent = add_until_refused(f"{pg_env.ingress}/FaultCounter/full/add", 2000)
        assert _exit_code(server) != 0
        log = server.log_tail(200)
        stopped = [line for line in log.splitlines() if line.startswith("durably: stopped")]
        assert len(stopped) == 1 and "53100" in stopped[0] and "disk is full" in stopped[0], log
        server.kill()
        filler.unlink()
        # every answered add is in the database; re-sending every add with its key after a
        # restart gives exactly one increment per key
        server.start()
        assert pg_env.call_json("FaultCounter", "get", key="full", idem=False) >= len(answered)
        with httpx.Client(timeout=30) as client:
            for ik in sent:
                r = client.post(f"{pg_env.ingress}/FaultCounter/full/add", json=1,
                                headers={"idempotency-key": ik})
                assert r.status_code == 200, r.text
                if ik in answered:
                    assert r.json() == answered[ik]
        assert pg_env.call_json("FaultCounter", "get", key="full", idem=False) == len(sent)
        server.kill()
        for table in ("journal", "invocation", "state"):
            cluster.psql(f"ALTER TABLE durably.{table} SET TABLESPACE pg_default", database=db)
        cluster.psql("DROP TABLESPACE small")

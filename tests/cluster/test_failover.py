"""Failover of leases between processes on one PostgreSQL: three lease-holding processes
(`tests/support/lease_node.py`); SIGKILL of one lets the others take its partitions once
the TTL passed, SIGTERM of one hands its partitions over before the process exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.postgres import PostgresCluster, shared_cluster

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
TTL_S = 2.0
P = 64


@pytest.fixture
def dsn() -> str:
    cluster: PostgresCluster = shared_cluster()
    return cluster.new_database()


def _owners(dsn: str) -> dict[int, tuple[str, int]]:
    import asyncio

    import asyncpg

    async def read() -> dict[int, tuple[str, int]]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT pid, owner, epoch FROM durably.partition_lease")
            return {r[0]: (r[1], r[2]) for r in rows}
        finally:
            await conn.close()

    return asyncio.run(read())


def _wait(what: str, check: object, timeout: float = 60.0) -> float:
    """Poll `check` until true; returns the seconds it took."""
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def nodes(dsn: str) -> Iterator[dict[str, subprocess.Popen[str]]]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    procs: dict[str, subprocess.Popen[str]] = {}
    for name in ("a", "b", "c"):
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "tests.support.lease_node", dsn, name, str(TTL_S)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
    try:
        for p in procs.values():
            assert p.stdout is not None and p.stdout.readline().startswith("ready")
        yield procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()


def _even(dsn: str, names: set[str]) -> bool:
    counts: dict[str, int] = {}
    for owner, _ in _owners(dsn).values():
        counts[owner] = counts.get(owner, 0) + 1
    if set(counts) != names:
        return False
    return max(counts.values()) - min(counts.values()) <= 1


def test_kill_9_moves_the_partitions_to_the_survivors(
    dsn: str, nodes: dict[str, subprocess.Popen[str]]
) -> None:
    _wait("an even split over three nodes", lambda: _even(dsn, {"a", "b", "c"}))
    before = _owners(dsn)
    victim = {pid: epoch for pid, (owner, epoch) in before.items() if owner == "b"}
    nodes["b"].send_signal(signal.SIGKILL)
    nodes["b"].wait()

    def moved() -> bool:
        now = _owners(dsn)
        return all(now[p][0] in ("a", "c") and now[p][1] > e for p, e in victim.items())

    taken = _wait("b's partitions on the survivors", moved)
    print(f"\nSIGKILL: {len(victim)} partitions taken over after {taken:.2f} s (TTL {TTL_S} s)")
    _wait("an even split over the survivors", lambda: _even(dsn, {"a", "c"}))


def test_sigterm_hands_the_partitions_over_before_exiting(
    dsn: str, nodes: dict[str, subprocess.Popen[str]]
) -> None:
    _wait("an even split over three nodes", lambda: _even(dsn, {"a", "b", "c"}))
    nodes["c"].send_signal(signal.SIGTERM)
    assert nodes["c"].wait(30) == 0
    # released, not left to expire: nothing is owned by c the moment it is gone
    assert all(owner != "c" for owner, _ in _owners(dsn).values())
    taken = _wait("an even split over the survivors", lambda: _even(dsn, {"a", "b"}))
    print(f"\nSIGTERM: survivors hold c's partitions {taken:.2f} s after it exited")


def test_sigstop_past_the_ttl_then_sigcont_gives_the_old_leases_up(
    dsn: str, nodes: dict[str, subprocess.Popen[str]]
) -> None:
    _wait("an even split over three nodes", lambda: _even(dsn, {"a", "b", "c"}))
    before = {pid: epoch for pid, (owner, epoch) in _owners(dsn).items() if owner == "a"}
    nodes["a"].send_signal(signal.SIGSTOP)
    try:
        _wait(
            "a's partitions on the others while a is paused",
            lambda: all(o in ("b", "c") for pid, (o, _) in _owners(dsn).items() if pid in before),
        )
        time.sleep(TTL_S)  # paused for twice the TTL in all
    finally:
        nodes["a"].send_signal(signal.SIGCONT)
    # a rejoins with its share, every lease it holds at an epoch newer than the one it had
    _wait("an even split over three nodes again", lambda: _even(dsn, {"a", "b", "c"}))
    after = {pid: epoch for pid, (owner, epoch) in _owners(dsn).items() if owner == "a"}
    assert all(after[p] > before[p] for p in after if p in before)
    assert nodes["a"].poll() is None  # it gave its leases up and went on, it did not crash

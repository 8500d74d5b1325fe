"""The durability gate: effects wait for an fsync that started after their commit."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from durably.storage.durability import DurabilityGate
from durably.storage.sqlite import SqliteStore


async def test_effects_wait_for_the_sync_that_follows_them() -> None:
    loop = asyncio.get_running_loop()
    release = threading.Event()
    started: list[int] = []

    def sync() -> None:
        started.append(1)
        release.wait(5)

    fatal: list[BaseException] = []
    gate = DurabilityGate(loop, sync, fatal.append)
    ran: list[str] = []

    def run(effects: list) -> None:  # type: ignore[type-arg]
        for fx in effects:
            fx()

    try:
        gate.after_sync([lambda: ran.append("a")], run)
        await asyncio.sleep(0.05)
        # a second batch arrives while the first fsync is running: it needs its own fsync
        gate.after_sync([lambda: ran.append("b")], run)
        await asyncio.sleep(0.05)
        assert ran == [] and len(started) == 1
        release.set()
        for _ in range(100):
            if ran == ["a", "b"]:
                break
            await asyncio.sleep(0.01)
        assert ran == ["a", "b"] and len(started) == 2 and gate.syncs == 2
        assert fatal == []
    finally:
        release.set()
        gate.close()


async def test_a_failed_sync_is_fatal_and_releases_nothing() -> None:
    loop = asyncio.get_running_loop()

    def sync() -> None:
        raise OSError(5, "Input/output error")

    fatal: list[BaseException] = []
    gate = DurabilityGate(loop, sync, fatal.append)
    ran: list[int] = []
    try:
        gate.after_sync([lambda: ran.append(1)], lambda effects: [fx() for fx in effects])
        for _ in range(100):
            if fatal:
                break
            await asyncio.sleep(0.01)
        assert isinstance(fatal[0], OSError) and ran == []
        gate.after_sync([lambda: ran.append(2)], lambda effects: [fx() for fx in effects])
        await asyncio.sleep(0.05)
        assert ran == []
    finally:
        gate.close()


def test_store_in_full_mode_commits_with_normal_and_syncs_the_log(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path, synchronous="FULL")
    try:
        assert store.deferred_sync
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        store.save_meta("k", b"v")
        store.commit()
        store.sync()  # flushes the WAL file; callable from any thread
        t = threading.Thread(target=store.sync)
        t.start()
        t.join()
    finally:
        store.close()
    reopened = SqliteStore(tmp_path, synchronous="NORMAL")
    try:
        assert not reopened.deferred_sync
        assert reopened.load_meta("k") == b"v"
    finally:
        reopened.close()

"""Disk I/O errors injected under a running server (``diskfault.c``, LD_PRELOAD).

The server runs with the shim loaded; a client adds to a counter with an idempotency key
per add; then the fault is armed: from the Nth call on, ``fsync``, ``fdatasync`` or
``pwrite`` fails with EIO. The server must stop by itself with a non-zero exit and one
clear line (no traceback), and after a restart without the fault every answered add is in
the store; re-sending every add with its key gives exactly the accepted work.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from tests.abuse import diskfault
from tests.faults.test_storage_errors import add_until_refused, resend_all
from tests.support.harness import DurablyServer, ServicesProcess, register

pytestmark = [pytest.mark.restart, pytest.mark.timeout(180)]

FAULT_APP = "tests.faults.services:app"


class FaultyServer(DurablyServer):
    """``durably serve`` with extra environment (the shim) while ``fault_env`` is set."""

    fault_env: dict[str, str] = {}

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        env.update(self.fault_env)
        return cmd, env


def _stored(data_dir: Path) -> int:
    db = sqlite3.connect(f"file:{data_dir / 'durably.sqlite3'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        row = db.execute(
            "SELECT value FROM state WHERE service = 'FaultCounter' AND key = 'a'").fetchone()
    finally:
        db.close()
    return 0 if row is None else int(bytes(row[0]))


@pytest.mark.parametrize("call,nth", [("fsync", 3), ("fdatasync", 3), ("pwrite", 20)])
def test_io_error_stops_cleanly(tmp_path: Path, call: str, nth: int) -> None:
    lib = diskfault.build(tmp_path)
    arm = tmp_path / "armed"
    services = ServicesProcess([], tmp_path / "services", app=FAULT_APP)
    services.start()
    server = FaultyServer(tmp_path / "srv")
    server.fault_env = diskfault.environment(lib, call, nth, arm)
    try:
        server.start()
        register(server.admin_url, services.url, use_http_11=False)
        answered, sent = add_until_refused(
            f"{server.ingress_url}/FaultCounter/a/add", 2000,
            before_each=lambda i: arm.touch() if i == 20 else None)
        deadline = time.monotonic() + 30
        while server.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        code = server.proc.poll()
        assert code is not None, f"the server kept running after {call} failed:\n{server.log_tail(60)}"
        assert code != 0
        assert len(answered) < len(sent), f"the {call} fault never hit"
        log = server.log_tail(200)
        assert "Traceback" not in log, log
        stops = [line for line in log.splitlines() if line.startswith("durably: stopped")]
        assert len(stops) == 1, log
        server.kill()
        arm.unlink()
        server.fault_env = {}

        stored = _stored(server.data_dir)
        assert len(answered) <= stored <= len(sent), (stored, len(answered), len(sent))
        server.start()
        resend_all(server, answered, sent)
        print(f"{call} #{nth} failed: {len(answered)} answered of {len(sent)} sent; "
              f"stop line: {stops[0]}")
    finally:
        server.close()
        services.close()

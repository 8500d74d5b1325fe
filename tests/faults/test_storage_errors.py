"""A data directory that cannot be written: a clear one-line error, a non-zero exit, and
the store left exactly as it was (``PRAGMA integrity_check``, the committed state intact).

* read-only data directory, new or holding a store: ``chmod``. As root, permission bits do
  not bind, so the server is started without CAP_DAC_OVERRIDE (dropped from the bounding
  set before ``exec``: the new program's root has no way around the mode bits);
* full disk at start: a small tmpfs filled up (needs ``mount``, which a root CI machine
  has; skipped where it is not allowed), and a file-size limit (RLIMIT_FSIZE, which works
  everywhere);
* the disk filling up while the server runs: it stops with a non-zero exit, every answered
  request is in the store, and re-sending the unanswered ones with their idempotency keys
  after a restart (with space again) gives exactly the accepted work.

These are durably's own start-up checks: they always run ``durably serve``, on SQLite
whatever ``DURABLY_TEST_STORE`` says (a data directory is SQLite's; PostgreSQL's refusals
are tested in ``test_postgres_faults.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import resource
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.harness import DurablyServer, ServicesProcess, register

pytestmark = [pytest.mark.restart, pytest.mark.timeout(180)]

FAULT_APP = "tests.faults.services:app"
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1


def _no_dac_override() -> None:
    """preexec_fn: as root, give up CAP_DAC_OVERRIDE for the program about to be exec'd."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)")


def _file_size_limit(limit: int) -> Callable[[], None]:
    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


def _serve_expecting_failure(server: DurablyServer, preexec: Callable[[], None] | None) -> str:
    """Run ``durably serve`` until it exits; it must fail within 30 s. Returns stderr."""
    cmd, env = server.command()
    try:
        p = subprocess.run(cmd, env=env, cwd=server.base_dir, capture_output=True, text=True,
                           timeout=30, preexec_fn=preexec)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"durably serve kept running: {e.stdout!r} {e.stderr!r}") from None
    assert p.returncode != 0, f"exit code 0; stdout {p.stdout!r} stderr {p.stderr!r}"
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("durably: "), (
        f"expected one clear line on stderr, got:\n{p.stderr}"
    )
    assert "Traceback" not in p.stderr + p.stdout
    return lines[0]


def _fingerprint(data_dir: Path) -> dict[str, str]:
    """Hashes of the store's files. An empty ``-wal`` and its ``-shm`` index that SQLite
    may leave behind after failing to open on a full disk hold no data: not counted."""
    prints = {}
    for p in sorted(data_dir.iterdir()):
        if not p.is_file():
            continue
        if p.name.endswith("-shm") or (p.name.endswith("-wal") and p.stat().st_size == 0):
            continue
        prints[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return prints


def _check_store(data_dir: Path, expected_counter: int) -> None:
    db = sqlite3.connect(f"file:{data_dir / 'durably.sqlite3'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        value = db.execute(
            "SELECT value FROM state WHERE service = 'FaultCounter' AND key = 'a'"
        ).fetchone()
    finally:
        db.close()
    assert value is not None and int(bytes(value[0])) == expected_counter


@pytest.fixture
def services(tmp_path: Path) -> Iterator[ServicesProcess]:
    s = ServicesProcess([], tmp_path / "services", app=FAULT_APP)
    s.start()
    yield s
    s.close()


def _populated(base: Path, data_dir: Path, services: ServicesProcess, adds: int = 3) -> DurablyServer:
    """A server whose store holds a registered deployment and FaultCounter/a = ``adds``;
    stopped gracefully (the WAL checkpointed into the main file)."""
    server = DurablyServer(base, store="sqlite")
    server.data_dir = data_dir
    server.start()
    try:
        register(server.admin_url, services.url, use_http_11=False)
        for i in range(adds):
            r = httpx.post(f"{server.ingress_url}/FaultCounter/a/add", json=1, timeout=30,
                           headers={"idempotency-key": f"seed-{i}"})
            assert r.status_code == 200, r.text
    finally:
        server.stop()
    return server


def _restart_and_read(server: DurablyServer, key: str = "a") -> int:
    server.start()
    try:
        r = httpx.post(f"{server.ingress_url}/FaultCounter/{key}/get", timeout=30)
        assert r.status_code == 200, r.text
        return r.json()
    finally:
        server.stop()


# ---------------------------------------------------------------------------- read-only


def test_read_only_new_data_dir(tmp_path: Path) -> None:
    server = DurablyServer(tmp_path / "srv", store="sqlite")
    server.data_dir.mkdir(parents=True)
    server.data_dir.chmod(0o555)
    try:
        line = _serve_expecting_failure(server, _no_dac_override)
        assert str(server.data_dir) in line and "not writable" in line, line
        assert list(server.data_dir.iterdir()) == []
    finally:
        server.data_dir.chmod(0o755)


def test_read_only_existing_store(tmp_path: Path, services: ServicesProcess) -> None:
    server = _populated(tmp_path / "srv", tmp_path / "data", services)
    data_dir = server.data_dir
    before = _fingerprint(data_dir)
    for p in [data_dir, *data_dir.iterdir()]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        line = _serve_expecting_failure(server, _no_dac_override)
        assert str(data_dir) in line, line
        assert _fingerprint(data_dir) == before, "the store changed"
    finally:
        for p in [data_dir, *data_dir.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    _check_store(data_dir, 3)
    assert _restart_and_read(server) == 3


# ---------------------------------------------------------------------------- disk full


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    try:
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def _fill(mount: Path, leave: int) -> Path:
    """Fill the file system up to ``leave`` free bytes; returns the filler file."""
    filler = mount / "filler"
    st = os.statvfs(mount)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(0, free - leave))
    return filler


@pytest.mark.parametrize("leave", [0, 8192], ids=["no-byte-free", "8KiB-free"])
def test_disk_full_at_start(tmp_path: Path, services: ServicesProcess, leave: int) -> None:
    with _tmpfs(tmp_path / "mnt", "2m") as mnt:
        server = _populated(tmp_path / "srv", mnt / "data", services)
        filler = _fill(mnt, leave)
        before = _fingerprint(server.data_dir)
        line = _serve_expecting_failure(server, None)
        assert str(server.data_dir) in line, line
        assert _fingerprint(server.data_dir) == before, "the store changed"
        filler.unlink()
        _check_store(server.data_dir, 3)
        assert _restart_and_read(server) == 3


def test_file_size_limit_at_start(tmp_path: Path, services: ServicesProcess) -> None:
    # a new data dir where the database cannot grow past 20 kB: SQLite fails creating it
    fresh = DurablyServer(tmp_path / "fresh", store="sqlite")
    line = _serve_expecting_failure(fresh, _file_size_limit(20_000))
    assert "cannot open the database" in line and "disk full" in line, line
    # an existing store, no byte may be written
    server = _populated(tmp_path / "srv", tmp_path / "data", services)
    before = _fingerprint(server.data_dir)
    line = _serve_expecting_failure(server, _file_size_limit(0))
    assert str(server.data_dir) in line, line
    assert _fingerprint(server.data_dir) == before
    _check_store(server.data_dir, 3)
    assert _restart_and_read(server) == 3


def add_until_refused(
    url: str, most: int, before_each: Callable[[int], None] | None = None,
) -> tuple[dict[str, int], list[str]]:
    """Adds of 1, each with its own idempotency key, until one is not answered 200:
    (answers by key, every key sent). ``before_each(i)`` runs before the i-th add."""
    answered: dict[str, int] = {}
    sent: list[str] = []
    with httpx.Client(timeout=10) as client:
        for i in range(most):
            if before_each is not None:
                before_each(i)
            ik = f"k-{i}"
            sent.append(ik)
            try:
                r = client.post(url, json=1, headers={"idempotency-key": ik})
            except httpx.TransportError:
                break
            if r.status_code != 200:
                break
            answered[ik] = r.json()
    return answered, sent


def resend_all(server: DurablyServer, answered: dict[str, int], sent: list[str],
               initial: int = 0) -> None:
    """Every add again with its key: an answered one gives its first answer, and the
    counter ends at exactly ``initial`` plus one per key sent."""
    with httpx.Client(timeout=30) as client:
        for ik in sent:
            r = client.post(f"{server.ingress_url}/FaultCounter/a/add", json=1,
                            headers={"idempotency-key": ik})
            assert r.status_code == 200, r.text
            if ik in answered:
                assert r.json() == answered[ik], (ik, r.json(), answered[ik])
        r = client.post(f"{server.ingress_url}/FaultCounter/a/get")
        assert r.json() == initial + len(sent)


def test_disk_fills_while_running(tmp_path: Path, services: ServicesProcess) -> None:
    with _tmpfs(tmp_path / "mnt", "2m") as mnt:
        server = _populated(tmp_path / "srv", mnt / "data", services, adds=1)
        server.start()
        filler = _fill(mnt, 48 * 1024)
        answered, sent = add_until_refused(f"{server.ingress_url}/FaultCounter/a/add", 400)
        deadline = time.monotonic() + 30
        while server.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        code = server.proc.poll()
        assert code is not None, "the server kept running on a full disk"
        assert code != 0, "the server stopped on a full disk with exit code 0"
        # (200 lines: an answer cancelled by the stop may log a long traceback after it)
        assert "storage commit failed" in server.log_tail(200)
        server.kill()  # closes the log
        filler.unlink()
        # every answered add is in the store (an unanswered one may be too: re-sent below)
        db = sqlite3.connect(f"file:{server.data_dir / 'durably.sqlite3'}?mode=ro", uri=True)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            stored = int(bytes(db.execute(
                "SELECT value FROM state WHERE service = 'FaultCounter' AND key = 'a'"
            ).fetchone()[0]))
        finally:
            db.close()
        assert 1 + len(answered) <= stored <= 1 + len(sent), (stored, len(answered), len(sent))
        assert len(answered) < len(sent), "the disk never filled up"
        # with space again: re-send everything with the same keys; exactly the accepted work
        server.start()
        try:
            resend_all(server, answered, sent, initial=1)
        finally:
            server.stop()
        _check_store(server.data_dir, 1 + len(sent))

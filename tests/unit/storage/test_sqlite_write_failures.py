"""A write or COMMIT that fails (disk full) poisons the store: the lost batch is rolled back
and no later write or commit is accepted, so a batch built on it never reaches the disk.

The file-size limit (RLIMIT_FSIZE) plays the full disk, in a child process so that the test
process keeps its own limits; Python ignores SIGXFSZ, so writes fail with EFBIG.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import resource, sqlite3, sys
    from durably.storage.sqlite import SqliteStore, StorageError

    data = sys.argv[1]
    store = SqliteStore(data)
    store.set_state("Counter", "a", b"n", b"1")
    store.commit()
    size = sum(p.stat().st_size for p in store.path.parent.iterdir())
    # room for the WAL to grow a little, not for 2 MB more
    limit = size + 64 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    failed = None
    try:
        for i in range(64):
            store.set_state("Counter", "big", str(i).encode(), b"x" * 32768)
        store.commit()
    except (sqlite3.Error, StorageError) as e:
        failed = e
    assert failed is not None, "the oversized batch was committed"
    for attempt in (lambda: store.set_state("Counter", "a", b"n", b"2"), store.commit):
        try:
            attempt()
        except StorageError as e:
            assert "failed commit" in str(e), e
        else:
            raise AssertionError("the store accepted work after a failed commit")
    store.close()
    print("ok", type(failed).__name__)
    """
)


def test_failed_commit_poisons_the_store(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[3] / "src"
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
    )
    assert p.returncode == 0 and p.stdout.startswith("ok"), p.stdout + p.stderr
    # what was committed before the failure is intact; nothing of the lost batch is there
    import sqlite3

    db = sqlite3.connect(f"file:{tmp_path / 'data' / 'durably.sqlite3'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT key, name, value FROM state ORDER BY key").fetchall()
    finally:
        db.close()
    assert rows == [("a", b"n", b"1")]

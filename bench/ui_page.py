"""How fast the web UI's invocation list answers with a million retained invocations.

    python -m bench.ui_page --rows 1000000 [--data-dir DIR]

Generates the rows straight into a SQLite store (same schema as `durably serve`: the store
creates it), then times the UI's list page (through the ASGI app, as a browser would get it):
the default view, a status filter, a service filter, the next page (keyset) and the
overview. Prints one line per view with the median and worst of several runs.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from durably.ids import InvocationId

_STATUSES = ["completed"] * 90 + ["suspended"] * 4 + ["invoked"] * 2 + ["backing-off"] * 2 + [
    "paused",
    "scheduled",
]
_SERVICES = [("Greeter", "greet", None, "service"), ("Counter", "add", "k", "virtual_object"),
             ("Checkout", "run", "w", "workflow"), ("Payments", "charge", None, "service")]


def generate(data_dir: Path, rows: int) -> Path:
    from durably.storage.sqlite import SqliteStore

    store = SqliteStore(data_dir, synchronous="OFF")
    path = Path(store.path)
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    (have,) = db.execute("SELECT count(*) FROM invocation").fetchone()
    if have >= rows:
        db.close()
        return path
    rnd = random.Random(7)
    t0 = 1_760_000_000_000
    batch = []
    db.execute("BEGIN")
    for n in range(have, rows):
        service, handler, key, ty = _SERVICES[n % len(_SERVICES)]
        k = None if key is None else f"{key}{n % 1000}"
        status = rnd.choice(_STATUSES)
        iid = InvocationId(rnd.getrandbits(64), rnd.getrandbits(128).to_bytes(16, "big"))
        created = t0 + n * 10
        done = status == "completed"
        batch.append((
            str(iid), iid.partition_key >> 1, service, handler, k, ty,
            None if ty == "service" else "exclusive", status, created, created + 5,
            "ingress", created + 5 if done else None, b"V\"ok\"" if done else None,
            created + 86_400_000 if done else None, 2, created + 1,
        ))
        if len(batch) == 50_000:
            db.executemany(_INSERT, batch)
            batch.clear()
    if batch:
        db.executemany(_INSERT, batch)
    db.execute("COMMIT")
    db.close()
    return path


_INSERT = (
    "INSERT INTO invocation (id, partition_key, service, handler, key, service_ty, handler_ty, "
    "status, created_at, modified_at, invoked_by, completed_at, result, expires_at, "
    "journal_length, running_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

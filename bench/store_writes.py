"""What the SQLite store's writes of invocation rows cost: CPU and bytes per invocation.

    python -m bench.store_writes [--invocations 30000] [--batch 16] [--failures 0.0]

Writes invocation rows through `SqliteStore` the way the engine does for a call that
completes: the row inserted (pending), then written as running, then completed with its
result; `--batch` invocations share each commit (the engine's group commit at c = 16), and
`--failures` is the share of invocations that fail one attempt first (one more write, with
the attempt in `extra`). Journals are left out: this isolates what the invocation table and
its indexes cost. Prints the CPU time per invocation (the process's own, which a loaded
machine does not inflate) and the growth of the database per invocation (after a
checkpoint). Run it against two source trees (PYTHONPATH) to compare schemas.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from durably.engine.model import Result
from durably.ids import InvocationId
from durably.storage.base import InvocationRow
from durably.storage.sqlite import SqliteStore


def run(data_dir: Path, invocations: int, batch: int, failures: float) -> tuple[float, float]:
    store = SqliteStore(data_dir, synchronous="NORMAL")
    db = Path(store.path)
    rnd = random.Random(3)
    ok = Result(value=b'{"greeting":"Hello"}').encode()

    def size() -> int:
        wal = Path(f"{db}-wal")
        return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    start_bytes = size()
    c0 = time.process_time()
    for first in range(0, invocations, batch):
        rows = []
        for n in range(first, min(first + batch, invocations)):
            iid = InvocationId(rnd.getrandbits(64), rnd.getrandbits(128).to_bytes(16, "big"))
            now = int(time.time() * 1000)
            row = InvocationRow(
                id=str(iid), partition_key=iid.partition_key, service="BenchGreeter",
                handler="greet", key=None, service_ty="service", handler_ty=None,
                status="inboxed", created_at=now, modified_at=now, deployment_id="dp_1",
                random_seed=n,
            )
            store.put_invocation(row)
            rows.append(row)
        store.commit()
        for row in rows:
            row.status, row.running_at, row.protocol_version = "invoked", row.created_at, 5
            store.put_invocation(row)
        store.commit()
        for row in rows:
            if rnd.random() < failures:
                row.status, row.retry_count = "backing-off", 1
                row.last_failure, row.last_failure_code = "boom", 500
                row.extra["attempts"] = [{"at": row.created_at, "code": 500,
                                          "message": "boom", "entry": None, "retry": 1}]
                store.put_invocation(row)
        store.commit()
        for row in rows:
            row.status, row.result = "completed", ok
            row.completed_at = row.expires_at = row.created_at + 1
            store.put_invocation(row)
        store.commit()
    cpu = time.process_time() - c0
    store.close()
    # what the rows take once the write-ahead log is copied back: the database's growth
    db_conn = sqlite3.connect(db)
    db_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db_conn.close()
    return cpu / invocations * 1e6, (size() - start_bytes) / invocations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invocations", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--failures", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="durably-store-writes-") as d:
            results.append(run(Path(d), args.invocations, args.batch, args.failures))
    cpus = sorted(r[0] for r in results)
    print(f"store: {SqliteStore.__init__.__code__.co_filename}")
    print(f"CPU per invocation: {cpus[len(cpus) // 2]:.1f} µs (median of {args.repeat}; "
          f"all {', '.join(f'{c:.1f}' for c in cpus)})")
    sizes = sorted(r[1] for r in results)
    print(f"database growth per invocation (after a checkpoint): {sizes[len(sizes) // 2]:.0f} bytes")


if __name__ == "__main__":
    main()

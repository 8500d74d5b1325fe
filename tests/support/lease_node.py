"""A process that only holds leases, for the cluster tests: `python -m tests.support.lease_node
DSN NAME TTL`. It keeps its share of the partitions until SIGTERM (then hands them back)
or SIGKILL (then they expire)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from durably.cluster.keeper import LeaseKeeper
from durably.cluster.leases import Membership


async def main(dsn: str, name: str, ttl_s: float) -> None:
    keeper = LeaseKeeper(dsn, Membership(name, "127.0.0.1", 0, 0), ttl_s=ttl_s)
    await keeper.start()
    print(f"ready {name}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await keeper.stop(release=True)
    print(f"stopped {name}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))

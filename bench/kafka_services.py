"""The Kafka benchmark's service: ``hypercorn bench.kafka_services:app`` (one worker).

``KafkaBench/take`` (exclusive, per key) counts the key's records in its state and appends the
record's produce-to-handler latency (now - the record's ``kafka.timestamp``, ms) to the file
named by ``BENCH_KAFKA_FILE``: one line per execution, outside the server under test.
"""

from __future__ import annotations

import os
import time

import restate
from restate import ObjectContext

bench = restate.VirtualObject("KafkaBench")
_FILE = os.environ.get("BENCH_KAFKA_FILE", "kafka-bench.txt")


@bench.handler()
async def take(ctx: ObjectContext, value: int) -> int:
    sent = int(ctx.request().headers["kafka.timestamp"])
    with open(_FILE, "a") as f:
        f.write(f"{time.time() * 1000 - sent:.1f}\n")
    n = (await ctx.get("n", type_hint=int) or 0) + 1
    ctx.set("n", n)
    return n


app = restate.app(services=[bench])

"""Kafka consumption failover under the spread placement: three `durably serve` nodes on a
throwaway PostgreSQL, a noida-db broker, a subscription of an exclusive object handler to
an 8-partition topic fed continuously over 24 keys (48 records/s). Each round kill -9's the node that
consumes the most Kafka partitions, times until every one of them was taken further by a
survivor (its stored offset advanced), restarts the node and waits until the partitions
are spread again. At the end: one invocation per record and every key's records in order.

    flock /tmp/durably-bench.lock env PYTHONPATH=src python -m bench.kafka_failover \\
        --kills 10 --ttl 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from tests.kafka.broker import Broker
from tests.kafka.test_spread import KEYS, NAMES, Nodes, _offsets, _records, _subscribe, _wait
from tests.support.harness import register


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--ttl", type=float, default=2.0)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="durably-kafka-failover-"))
    broker = Broker(base / "broker")
    broker.start()
    nodes = Nodes(base, [], ttl=f"{args.ttl:g}s")
    nodes.services.start()
    done = threading.Event()
    per_key = 0

    def stream() -> None:
        nonlocal per_key
        while not done.is_set():
            broker.produce(topic, _records(per_key, per_key + 1))
            per_key += 1
            time.sleep(0.5)  # 48 records/s: below what the services handle, no backlog

    try:
        for node in nodes.nodes.values():
            node.start()
        _wait(lambda: nodes.ready(list(NAMES)), 90, "partitions spread")
        register(nodes.nodes["n2"].admin_url, nodes.services.url, use_http_11=False)
        topic, sub_id = _subscribe(nodes, broker, 8)
        producer = threading.Thread(target=stream, daemon=True)
        producer.start()
        _wait(lambda: nodes.invocations() >= 5 * len(KEYS), 120, "first records")
        times: list[float] = []
        for i in range(args.kills):
            consumers = {p: nodes.home_owner(sub_id, topic, p) for p in range(8)}
            victim = max(NAMES, key=lambda n: sum(1 for o in consumers.values() if o == n))
            theirs = [p for p, o in consumers.items() if o == victim]
            killed = time.monotonic()
            nodes.nodes[victim].kill()
            # read once it is gone: a commit it had sent may still have landed
            before = _offsets(nodes, sub_id)
            _wait(lambda before=before, theirs=theirs: all(  # type: ignore[misc]
                _offsets(nodes, sub_id).get(p, -1) > before.get(p, -1) for p in theirs
            ), 120, "consumption resumed", 0.02)
            times.append(time.monotonic() - killed)
            print(f"kill {i + 1}: {victim} consumed {len(theirs)} Kafka partitions; "
                  f"resumed after {times[-1]:.2f} s", flush=True)
            nodes.nodes[victim].start()
            _wait(lambda: nodes.ready(list(NAMES)), 90, "partitions spread again")
        done.set()
        producer.join()
        expected = list(range(per_key))
        _wait(lambda: all(nodes.seen(k) == expected for k in KEYS), 300, "all handled", 1.0)
        assert nodes.invocations() == per_key * len(KEYS), nodes.invocations()
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(f"{len(times)} kills at TTL {args.ttl:g} s: resumed after "
              f"min {times[0]:.2f} s, median {statistics.median(times):.2f} s, "
              f"p95 {p95:.2f} s, max {times[-1]:.2f} s; {per_key * len(KEYS)} records, each "
              "handled once and in order per key")
    finally:
        done.set()
        for node in nodes.nodes.values():
            node.close()
        nodes.services.close()
        nodes.client.close()
        broker.close()


if __name__ == "__main__":
    main()

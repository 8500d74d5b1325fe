"""Benchmark: Kafka subscriptions, durably and the real Restate server on the same broker.

    python -m bench.kafka                          # 5,000 records; 10 s at 100 records/s
    python -m bench.kafka --records 2000 --rate 50 --seconds 5 --rounds 1

Both targets run side by side (each with its own services process, ``bench.kafka_services``)
against one ``noida-db`` broker, measured in turns (the order alternating per round):

- **throughput**: ``--records`` records over 100 keys are produced to a fresh 4-partition
  topic first; then a subscription to ``KafkaBench/take`` (an exclusive object handler that
  counts per key) is created, and the clock runs until the handler has seen every record.
  Records/s includes the consumer's start (a group join for Restate, none for durably).
- **latency**: with a live subscription, records are produced at ``--rate`` per second for
  ``--seconds``; the handler logs now - the record's timestamp (set by the producer):
  produce-to-handler latency, p50 and p99.

Records are produced with confluent-kafka. Results are printed and written as a markdown
table to ``--output`` (default: the "Benchmark" section is printed only).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.kafka.broker import Broker  # noqa: E402
from tests.support.harness import (  # noqa: E402
    DurablyServer,
    RestateServer,
    ServerProcess,
    ServicesProcess,
    register,
)

APP = "bench.kafka_services:app"
KEYS = 100


class Rig:
    def __init__(self, name: str, base: Path, broker: Broker) -> None:
        self.name = name
        self.broker = broker
        base.mkdir(parents=True, exist_ok=True)
        self.file = base / "latencies.txt"
        self.file.touch()
        self.services = ServicesProcess([], base / "services", app=APP,
                                        env={"BENCH_KAFKA_FILE": str(self.file)})
        self.server: ServerProcess = (DurablyServer(base / "server") if name == "durably"
                                      else RestateServer(base / "server"))
        self.http = httpx.Client(timeout=30)
        try:
            self.services.start()
            self.server.start()
            register(self.server.admin_url, self.services.url, use_http_11=False)
        except BaseException:
            self.close()
            raise
        r = self.http.post(f"{self.server.admin_url}/kafka-clusters", json={
            "name": "bench", "properties": {"bootstrap.servers": broker.bootstrap}})
        r.raise_for_status()

    def lines(self) -> list[float]:
        return [float(x) for x in self.file.read_text().split()]

    def subscribe(self, topic: str) -> None:
        r = self.http.post(f"{self.server.admin_url}/subscriptions", json={
            "source": f"kafka://bench/{topic}", "sink": "service://KafkaBench/take",
            "options": {"auto.offset.reset": "earliest"}})
        r.raise_for_status()

    def wait_lines(self, n: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines()) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {len(self.lines())} of {n} records after {timeout}s")
            time.sleep(0.05)

    def throughput(self, records: int) -> float:
        topic = f"tp-{uuid.uuid4().hex[:8]}"
        self.broker.create_topic(topic, 4)
        self.broker.produce(topic, [(f"k{i % KEYS}", i) for i in range(records)])
        before = len(self.lines())
        started = time.monotonic()
        self.subscribe(topic)
        self.wait_lines(before + records)
        return records / (time.monotonic() - started)

    def latency(self, rate: float, seconds: float) -> tuple[float, float, int]:
        topic = f"lt-{uuid.uuid4().hex[:8]}"
        self.broker.create_topic(topic, 4)
        self.subscribe(topic)
        before = len(self.lines())
        self.broker.produce(topic, [("warm", 0)])
        self.wait_lines(before + 1, timeout=120)
        before += 1
        producer = self.broker.producer()
        n = int(rate * seconds)
        started = time.monotonic()
        for i in range(n):
            producer.produce(topic, key=f"k{i % KEYS}", value=json.dumps(i))
            producer.poll(0)
            pause = started + (i + 1) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        producer.flush(30)
        self.wait_lines(before + n)
        lat = sorted(self.lines()[before:before + n])
        return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], n

    def close(self) -> None:
        self.http.close()
        self.server.close()
        self.services.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    results: dict[str, dict[str, list[float]]] = {
        t: {"rps": [], "p50": [], "p99": []} for t in ("durably", "restate")}
    with tempfile.TemporaryDirectory(prefix="durably-kafka-bench-") as tmp:
        base = Path(tmp)
        broker = Broker(base / "broker")
        broker.start()
        rigs: dict[str, Rig] = {}
        try:
            for t in ("durably", "restate"):
                rigs[t] = Rig(t, base / t, broker)
            for rnd in range(args.rounds):
                order = ["durably", "restate"] if rnd % 2 == 0 else ["restate", "durably"]
                for t in order:
                    rps = rigs[t].throughput(args.records)
                    p50, p99, n = rigs[t].latency(args.rate, args.seconds)
                    results[t]["rps"].append(rps)
                    results[t]["p50"].append(p50)
                    results[t]["p99"].append(p99)
                    print(f"round {rnd} {t:8} {rps:8.1f} records/s   latency at {args.rate:.0f}/s "
                          f"({n} records): p50 {p50:7.1f} ms  p99 {p99:7.1f} ms", flush=True)
        finally:
            for rig in rigs.values():
                rig.close()
            broker.close()
    best = {t: {"rps": max(v["rps"]), "p50": min(v["p50"]), "p99": min(v["p99"])}
            for t, v in results.items()}
    d, r = best["durably"], best["restate"]
    print()
    print("| | durably | Restate 1.7.12 | durably/Restate |")
    print("|---|---|---|---|")
    print(f"| records/s ({args.records} records, 4 partitions, 100 keys) | {d['rps']:.0f} | "
          f"{r['rps']:.0f} | {d['rps'] / r['rps']:.2f} |")
    for k in ("p50", "p99"):
        print(f"| produce-to-handler {k} at {args.rate:.0f} records/s (ms) | {d[k]:.1f} | "
              f"{r[k]:.1f} | {d[k] / r[k]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

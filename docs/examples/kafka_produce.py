"""Produce a few orders to the topic `orders` (docs/kafka.md).

    python docs/examples/kafka_produce.py 127.0.0.1:9092
"""

from __future__ import annotations

import json
import sys

from confluent_kafka import Producer


def main(bootstrap: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for n, customer in enumerate(["alice", "bob", "alice", "carol", "alice"]):
        order = {"order": n, "item": f"book-{n}"}
        producer.produce("orders", key=customer, value=json.dumps(order))
    producer.flush(30)
    print("produced 5 orders")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092")

"""A real Kafka-protocol broker for the tests, and a producer that is not aiokafka.

The broker is ``noida-db`` (PyPI; keeps topics and committed offsets across its restarts)
started on a free 127.0.0.1 port with a data directory of its own. Records are produced
with confluent-kafka (librdkafka, the client Restate's consumer is built on), so that a
quirk of aiokafka, durably's consumer, cannot hide on both ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.harness import HarnessError, free_port, port_accepts, tail


def noida_binary() -> Path:
    import noida_db  # the test extra installs it; missing = a failure, never a skip

    path = Path(noida_db.__file__).parent / "noida-db"
    if not path.is_file():
        raise HarnessError(f"noida-db binary not found at {path}")
    return path


class Broker:
    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "broker-data"
        self.log_path = self.base_dir / "broker.log"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(noida_binary()), "start", "--only", "kafka", "--kafka-port", str(self.port),
               "--data-dir", str(self.data_dir)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"the broker did not start:\n{tail(self.log_path)}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (noida saves its data), then wait."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        deadline = time.monotonic() + 10
        while port_accepts(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.stop()

    # -- topics and records ------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions,
                                                replication_factor=1)])
        futures[name].result(timeout=30)
        deadline = time.monotonic() + 30
        while True:  # visible in the metadata with all its partitions
            meta = admin.list_topics(topic=name, timeout=10)
            t = meta.topics.get(name)
            if t is not None and t.error is None and len(t.partitions) == partitions:
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"topic {name} did not appear")
            time.sleep(0.1)

    def producer(self) -> Any:
        from confluent_kafka import Producer

        return Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5,
                         "enable.idempotence": False, "acks": "all"})

    def produce(self, topic: str, records: list[tuple[bytes | str | None, Any]],
                partition: int | None = None) -> None:
        """Produce (key, value) records; a dict/list/int value is sent as JSON."""
        p = self.producer()
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for key, value in records:
            if not isinstance(value, bytes | str) and value is not None:
                value = json.dumps(value)
            kw: dict[str, Any] = {"key": key, "value": value, "on_delivery": delivered}
            if partition is not None:
                kw["partition"] = partition
            while True:
                try:
                    p.produce(topic, **kw)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
        remaining = p.flush(30)
        if remaining or errors:
            raise HarnessError(f"producing to {topic} failed: {remaining} left, {errors[:3]}")

"""Exactly once across crashes: kill -9 of the server in the middle of a stream (records
produced while it is down are taken once after the restart), kill -9 of the services
process, and a restart of the (persistent) broker. Every key's state must list each of its
records once, in order, and there must be exactly one invocation per record.

Run against durably and (DURABLY_TEST_TARGET=restate) Restate."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tests.kafka.broker import Broker
from tests.kafka.conftest import KafkaEnv
from tests.support.harness import poll

pytestmark = pytest.mark.restart

KEYS = [f"r{i}" for i in range(20)]


def _records(start: int, stop: int) -> list[tuple[str, dict]]:
    return [(k, {"seq": seq}) for seq in range(start, stop) for k in KEYS]


def _taken(kenv: KafkaEnv) -> int:
    rows = kenv.env.query("SELECT count(*) AS n FROM sys_invocation "
                          "WHERE target_service_name = 'KafkaLog' AND invoked_by = 'subscription'")
    return int(rows[0]["n"])


def _exactly_once(kenv: KafkaEnv, per_key: int) -> None:
    kenv.wait_seen({k: list(range(per_key)) for k in KEYS}, timeout=240)

    def counted() -> None:
        assert _taken(kenv) == per_key * len(KEYS)

    poll(counted, timeout=60)


def _stream(kenv: KafkaEnv) -> tuple[str, threading.Thread]:
    """A subscribed 4-partition topic, and a thread producing 10 records per key to it."""
    topic = kenv.topic(partitions=4)
    kenv.subscribe(topic, "service://KafkaLog/append")
    stream = threading.Thread(target=kenv.broker.produce, args=(topic, _records(0, 10)))
    stream.start()
    return topic, stream


def test_kill_server_mid_stream(kenv: KafkaEnv) -> None:
    topic, stream = _stream(kenv)
    poll(lambda: _assert_at_least(_taken(kenv), 20), timeout=120, interval=0.05)
    if kenv.target == "restate":
        # Restate's consumer is a member of the broker's consumer group; noida-db never
        # rebalances a group whose member was killed with -9, so a killed Restate never
        # consumes again. It is stopped gracefully here (it leaves the group). durably
        # assigns the partitions itself and is killed for real (docs/kafka.md).
        kenv.env.server.stop()
    else:
        kenv.env.server.kill()  # kill -9 while records are still being taken
    stream.join()
    kenv.broker.produce(topic, _records(10, 15))  # produced while the server is down
    kenv.env.server.start()
    _exactly_once(kenv, 15)


def test_kill_services_mid_stream(kenv: KafkaEnv) -> None:
    _topic, stream = _stream(kenv)
    poll(lambda: _assert_at_least(_completed(kenv), 20), timeout=120, interval=0.05)
    kenv.env.services.kill()
    stream.join()
    time.sleep(1)  # records keep arriving while the handlers are gone
    kenv.env.services.start()
    _exactly_once(kenv, 10)


def _completed(kenv: KafkaEnv) -> int:
    rows = kenv.env.query("SELECT count(*) AS n FROM sys_invocation WHERE "
                          "target_service_name = 'KafkaLog' AND status = 'completed'")
    return int(rows[0]["n"])


def _assert_at_least(value: int, n: int) -> None:
    assert value >= n, value


def test_broker_restart(kenv: KafkaEnv, tmp_path: Path) -> None:
    own = Broker(tmp_path / "own-broker")
    own.start()
    try:
        r = kenv.env.client.post(f"{kenv.admin}/kafka-clusters", json={
            "name": "own", "properties": {"bootstrap.servers": own.bootstrap}})
        assert r.status_code == 201, r.text
        topic = "restarting"
        own.create_topic(topic, 2)
        kenv.subscribe(topic, "service://KafkaLog/append", cluster="own")
        own.produce(topic, _records(0, 5))
        kenv.wait_seen({k: list(range(5)) for k in KEYS}, timeout=120)
        own.stop()
        time.sleep(2)  # the consumer notices the broker is gone
        own.start()
        own.produce(topic, _records(5, 10))
        _exactly_once(kenv, 10)
    finally:
        own.close()

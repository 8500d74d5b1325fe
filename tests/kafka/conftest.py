"""Fixtures of the Kafka subscription tests: one broker per session (each test uses topics
of its own), and per test a server under test (durably, or Restate with
DURABLY_TEST_TARGET=restate) plus the services of ``tests.kafka.services``, with the broker
registered as the Kafka cluster ``test``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.kafka.broker import Broker
from tests.support.harness import (
    Env,
    ServicesProcess,
    make_server,
    poll,
    register,
    start_together,
)

KAFKA_APP = "tests.kafka.services:app"
CLUSTER = "test"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("kafka-broker"))
    b.start()
    yield b
    b.close()


class KafkaEnv:
    def __init__(self, env: Env, broker: Broker) -> None:
        self.env = env
        self.broker = broker

    @property
    def admin(self) -> str:
        return self.env.admin

    @property
    def target(self) -> str:
        return self.env.target

    def topic(self, partitions: int = 1) -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        self.broker.create_topic(name, partitions)
        return name

    def add_cluster(self, name: str = CLUSTER) -> None:
        r = self.env.client.post(f"{self.admin}/kafka-clusters", json={
            "name": name, "properties": {"bootstrap.servers": self.broker.bootstrap}})
        assert r.status_code == 201, r.text

    def subscribe(self, topic: str, sink: str, cluster: str = CLUSTER,
                  **options: str) -> dict[str, Any]:
        opts = {"auto.offset.reset": "earliest", **options}
        r = self.env.client.post(f"{self.admin}/subscriptions", json={
            "source": f"kafka://{cluster}/{topic}", "sink": sink, "options": opts})
        assert r.status_code == 201, r.text
        return r.json()

    def object(self, service: str, key: str, handler: str) -> Any:
        return self.env.call_json(service, handler, key=key, idem=False)

    def wait_seen(self, expected: dict[str, list[int]], timeout: float = 120.0) -> None:
        """Poll each key's `KafkaLog/seen` until it equals the expected list."""
        pending = dict(expected)

        def check() -> None:
            for key in list(pending):
                got = self.object("KafkaLog", key, "seen")
                if got == pending[key]:
                    del pending[key]
                else:
                    assert len(got) <= len(pending[key]) and got == pending[key][: len(got)], (
                        f"{key}: got {got}, expected {pending[key]}")
                    raise AssertionError(f"{key}: {len(got)} of {len(pending[key])}")

        poll(check, timeout=timeout, interval=0.5)

    def subscription_invocations(self, service: str) -> list[dict[str, Any]]:
        return self.env.query(
            "SELECT id, target_service_key, invoked_by, invoked_by_id, "
            "invoked_by_subscription_id, status FROM sys_invocation "
            f"WHERE target_service_name = '{service}'"
        )

    def logs(self) -> str:
        return self.env.logs() + f"\n--- broker log ---\n{self.broker.log_path.read_text()[-3000:]}"


@pytest.fixture
def kenv(broker: Broker, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[KafkaEnv]:
    services = ServicesProcess([], tmp_path, app=KAFKA_APP)
    server = make_server(tmp_path / "server")
    env = Env(server, services, "h2")
    request.node.kafka_env = env
    try:
        start_together(services, server)
        register(server.admin_url, services.url, use_http_11=False)
        k = KafkaEnv(env, broker)
        k.add_cluster()
        yield k
    finally:
        env.close()
        server.close()
        services.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    env = getattr(item, "kafka_env", None)
    if rep.failed and rep.when == "call" and env is not None:
        rep.sections.append(("kafka test process logs", env.logs()))


__all__ = ["KafkaEnv", "httpx"]

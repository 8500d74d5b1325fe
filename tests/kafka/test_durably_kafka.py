"""What durably does beyond Restate's subscriptions (docs/kafka.md, "Differences"), so these
run against durably only: parked records instead of a jammed partition; a bounded number of
invocations in flight per partition with the consumer lag as a metric; clusters given with
`durably serve --kafka-cluster`; the CLI; subscriptions that survive a restart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.kafka.broker import Broker
from tests.kafka.conftest import KAFKA_APP, KafkaEnv
from tests.support.harness import REPO_ROOT, DurablyServer, Env, ServicesProcess, poll, register

pytestmark = pytest.mark.skipif(
    os.environ.get("DURABLY_TEST_TARGET", "durably") != "durably",
    reason="durably's own Kafka features (Restate has no equivalent to compare with)",
)


@pytest.fixture
def durably_env(broker: Broker, tmp_path: Path) -> Iterator[KafkaEnv]:
    services = ServicesProcess([], tmp_path, app=KAFKA_APP)
    server = DurablyServer(tmp_path / "server", extra_args=[
        "--kafka-cluster", f"test={broker.bootstrap}", "--kafka-max-in-flight", "4"])
    env = Env(server, services, "h2")
    try:
        services.start()
        server.start()
        register(server.admin_url, services.url, use_http_11=False)
        yield KafkaEnv(env, broker)
    finally:
        env.close()
        server.close()
        services.close()


def cli(env: KafkaEnv, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "durably", *args, "--admin-url", env.admin],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "COLUMNS": "240"},
    )
    assert run.returncode == 0, f"durably {' '.join(args)}: {run.returncode}\n{run.stderr}"
    return run.stdout


def test_a_record_that_cannot_be_delivered_is_parked(durably_env: KafkaEnv) -> None:
    kenv = durably_env
    topic = kenv.topic()
    sub = kenv.subscribe(topic, "service://KafkaLog/append")
    kenv.broker.produce(topic, [("p", {"seq": 0}), (b"\xff\xfe", {"seq": 9}), ("p", {"seq": 1})])
    kenv.wait_seen({"p": [0, 1]})  # the partition went on past the bad record

    parked = kenv.env.client.get(f"{kenv.admin}/kafka-parked-records").json()["records"]
    assert len(parked) == 1, parked
    record = parked[0]
    assert record["subscription_id"] == sub["id"] and record["offset"] == 1
    assert record["error"].startswith("The Kafka record key must be valid UTF-8")
    assert "parked the record" in kenv.env.server.log_tail(200)
    assert "must be valid UTF-8" in cli(kenv, "subscriptions", "parked")
    rows = kenv.env.query("SELECT subscription_id, topic, offset, error, value_utf8 "
                          "FROM durably_kafka_parked_record")
    assert rows == [{"subscription_id": sub["id"], "topic": topic, "offset": 1,
                     "error": record["error"], "value_utf8": '{"seq": 9}'}]
    r = kenv.env.client.get(
        f"{kenv.env.admin}/metrics")
    assert "durably_kafka_parked_records 1.0" in r.text

    # still undeliverable: replay says why and keeps it; drop removes it
    r = kenv.env.client.post(f"{kenv.admin}/kafka-parked-records/{record['id']}/replay")
    assert r.status_code == 409 and "UTF-8" in r.json()["message"]
    cli(kenv, "subscriptions", "drop", str(record["id"]), "--yes")
    assert kenv.env.client.get(f"{kenv.admin}/kafka-parked-records").json() == {"records": []}
    r = kenv.env.client.delete(f"{kenv.admin}/kafka-parked-records/{record['id']}")
    assert r.status_code == 404


def _lag(text: str, sub_id: str) -> int:
    total = 0
    for m in re.finditer(r'^durably_kafka_consumer_lag\{([^}]*)\} (\S+)$', text, re.M):
        if f'subscription="{sub_id}"' in m.group(1):
            total += int(float(m.group(2)))
    return total


def test_a_slow_handler_pauses_its_partition_and_shows_lag(durably_env: KafkaEnv) -> None:
    kenv = durably_env  # --kafka-max-in-flight 4
    topic = kenv.topic()
    kenv.broker.produce(topic, [("slow", {"seq": 0, "sleep_ms": 12000})]
                        + [("slow", {"seq": i}) for i in range(1, 40)])
    sub = kenv.subscribe(topic, "service://KafkaLog/append")

    def paused_with_lag() -> None:
        metrics = kenv.env.client.get(f"{kenv.admin}/metrics").text
        assert _lag(metrics, sub["id"]) > 0
        taken = kenv.env.query("SELECT count(*) AS n FROM sys_invocation "
                               "WHERE target_service_name = 'KafkaLog'")[0]["n"]
        # 4 in flight, plus at most one fetch (4 records) taken before the pause
        assert 0 < taken <= 8, taken

    poll(paused_with_lag, timeout=60)
    # records produced while the partition is paused show in the lag at once
    kenv.broker.produce(topic, [("slow", {"seq": i}) for i in range(40, 50)])

    def lag_counts_new_records() -> None:
        metrics = kenv.env.client.get(f"{kenv.admin}/metrics").text
        taken = kenv.env.query("SELECT count(*) AS n FROM sys_invocation "
                               "WHERE target_service_name = 'KafkaLog'")[0]["n"]
        assert _lag(metrics, sub["id"]) + taken == 50
        assert kenv.object("KafkaLog", "slow", "seen") == []  # still paused

    poll(lag_counts_new_records, timeout=30)
    kenv.wait_seen({"slow": list(range(50))}, timeout=180)

    def caught_up() -> None:
        assert _lag(kenv.env.client.get(f"{kenv.admin}/metrics").text, sub["id"]) == 0

    poll(caught_up, timeout=30)


def test_cli_static_cluster_and_restart(durably_env: KafkaEnv) -> None:
    kenv = durably_env
    listed = cli(kenv, "kafka-clusters", "list")
    assert "test" in listed and kenv.broker.bootstrap in listed
    r = kenv.env.client.get(f"{kenv.admin}/kafka-clusters/test").json()
    assert r["created_at"] == "1970-01-01T00:00:00.000000000Z" and r["info"]
    r = kenv.env.client.delete(f"{kenv.admin}/kafka-clusters/test")
    assert r.status_code == 400

    assert "created kafka cluster api" in cli(
        kenv, "kafka-clusters", "create", "api", kenv.broker.bootstrap)
    topic = kenv.topic(partitions=2)
    out = cli(kenv, "subscriptions", "create", f"kafka://api/{topic}",
              "service://KafkaLog/append", "-o", "auto.offset.reset=earliest")
    sub_id = re.search(r"created subscription (sub_\w+)", out).group(1)  # type: ignore[union-attr]
    assert sub_id in cli(kenv, "subscriptions", "list")
    kenv.broker.produce(topic, [("c", {"seq": 0}), ("c", {"seq": 1})])
    kenv.wait_seen({"c": [0, 1]})

    kenv.env.server.restart(graceful=True)
    assert sub_id in cli(kenv, "subscriptions", "list", "--source", f"kafka://api/{topic}")
    assert "api" in cli(kenv, "kafka-clusters", "list")
    kenv.broker.produce(topic, [("c", {"seq": 2}), ("c", {"seq": 3})])
    kenv.wait_seen({"c": [0, 1, 2, 3]})

    assert "deleted kafka cluster api" in cli(kenv, "kafka-clusters", "delete", "api", "--yes")
    assert cli(kenv, "subscriptions", "list").strip() == "no subscriptions"
    r = httpx.get(f"{kenv.admin}/openapi").json()
    assert {"/subscriptions", "/kafka-clusters/{cluster_name}"} <= set(r["paths"])


def test_a_topic_created_after_the_subscription(durably_env: KafkaEnv) -> None:
    kenv = durably_env
    topic = f"later-{os.getpid()}"
    kenv.subscribe(topic, "service://KafkaLog/append")
    kenv.broker.produce(topic, [("late", {"seq": 0}), ("late", {"seq": 1})])  # auto-created
    kenv.wait_seen({"late": [0, 1]}, timeout=60)


def test_a_record_for_a_missing_handler_is_parked_then_replayed(durably_env: KafkaEnv) -> None:
    kenv = durably_env
    c = kenv.env.client
    topic = kenv.topic()
    kenv.subscribe(topic, "service://KafkaLog/append")
    kenv.broker.produce(topic, [("m", {"seq": 0})])
    kenv.wait_seen({"m": [0]})
    (deployment,) = c.get(f"{kenv.admin}/deployments").json()["deployments"]
    r = c.delete(f"{kenv.admin}/deployments/{deployment['id']}", params={"force": "true"})
    assert r.status_code == 202
    kenv.broker.produce(topic, [("m", {"seq": 1})])

    def parked() -> dict:
        (record,) = c.get(f"{kenv.admin}/kafka-parked-records").json()["records"]
        return record

    record = poll(parked, timeout=60)
    assert "KafkaLog" in record["error"] and record["key_utf8"] == "m"
    register(kenv.admin, kenv.env.services.url, use_http_11=False)
    out = cli(kenv, "subscriptions", "replay", str(record["id"]))
    assert re.search(r"invocation inv_\w+", out), out
    kenv.wait_seen({"m": [0, 1]})
    assert c.get(f"{kenv.admin}/kafka-parked-records").json() == {"records": []}


def test_the_documented_example(broker: Broker, tmp_path: Path) -> None:
    """docs/kafka.md's example: its service, `--kafka-cluster`, the CLI, its producer."""
    services = ServicesProcess([], tmp_path, app="docs.examples.kafka_orders:app")
    server = DurablyServer(tmp_path / "server",
                           extra_args=["--kafka-cluster", f"local={broker.bootstrap}"])
    env = Env(server, services, "h2")
    try:
        services.start()
        server.start()
        kenv = KafkaEnv(env, broker)
        cli(kenv, "deployments", "register", services.url)
        cli(kenv, "subscriptions", "create", "kafka://local/orders", "service://Orders/add",
            "-o", "auto.offset.reset=earliest")
        sys.path.insert(0, str(REPO_ROOT))
        from docs.examples.kafka_produce import main as produce

        produce(broker.bootstrap)

        def alice() -> None:
            orders = env.call_json("Orders", "list_orders", key="alice", idem=False)
            assert [o["order"] for o in orders] == [0, 2, 4], orders

        poll(alice, timeout=60)
    finally:
        env.close()
        server.close()
        services.close()


def test_a_bad_kafka_cluster_flag_is_one_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "durably", "serve", "--kafka-cluster", "local=nohost",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    assert run.returncode == 2
    assert run.stderr.strip() == "durably: --kafka-cluster local: 'nohost' is not HOST:PORT"

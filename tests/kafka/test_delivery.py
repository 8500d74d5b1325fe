"""Records on a topic invoke handlers as Restate delivers them: input, key, headers,
invoked_by, per-key order with retries, one invocation per record, consumer groups,
workflow runs, deletion. Run against durably and (DURABLY_TEST_TARGET=restate) Restate."""

from __future__ import annotations

import base64
import time

from tests.kafka.conftest import KafkaEnv
from tests.support.harness import poll

HEADER_NAMES = {"kafka.offset", "kafka.topic", "kafka.partition", "kafka.timestamp",
                "restate.subscription.id"}


def test_headers_key_and_invoked_by(kenv: KafkaEnv) -> None:
    topic = kenv.topic(partitions=2)
    sub = kenv.subscribe(topic, "service://KafkaLog/append")
    p = kenv.broker.producer()
    p.produce(topic, key=b"user-0", value=b'{"seq": 0}', headers=[("x-app", b"1")])
    p.produce(topic, key=b"key-1", value=b'{"seq": 1}')
    p.produce(topic, key=None, value=b'{"seq": 2}')
    assert p.flush(30) == 0
    kenv.wait_seen({"user-0": [0], "key-1": [1], "": [2]})

    for key, seq in (("user-0", 0), ("key-1", 1)):
        (call,) = kenv.object("KafkaLog", key, "calls")
        assert call["seq"] == seq
        headers = call["headers"]
        # the record's own header (x-app) is not forwarded
        assert set(headers) == HEADER_NAMES | {"kafka.key"}, headers
        assert headers["kafka.topic"] == topic
        assert headers["restate.subscription.id"] == sub["id"]
        assert base64.urlsafe_b64decode(headers["kafka.key"]) == key.encode()
        assert headers["kafka.key"] == base64.urlsafe_b64encode(key.encode()).decode()
        assert headers["kafka.offset"] in ("0", "1", "2")
        assert headers["kafka.partition"] in ("0", "1")
        assert abs(int(headers["kafka.timestamp"]) - time.time() * 1000) < 600_000
    (call,) = kenv.object("KafkaLog", "", "calls")
    assert set(call["headers"]) == HEADER_NAMES  # no key: no kafka.key

    rows = poll(lambda: _all_completed(kenv, "KafkaLog", 3), timeout=30)
    for row in rows:
        assert row["invoked_by"] == "subscription"
        assert row["invoked_by_subscription_id"] == sub["id"]
        assert row.get("invoked_by_id") is None


def _all_completed(kenv: KafkaEnv, service: str, n: int) -> list[dict]:
    rows = [r for r in kenv.subscription_invocations(service) if r["invoked_by"] == "subscription"]
    assert len(rows) == n and all(r["status"] == "completed" for r in rows), rows
    return rows


def test_per_key_order_four_partitions_hundred_keys(kenv: KafkaEnv) -> None:
    """An exclusive handler appends each record's seq to its key's state: every key sees its
    records once, in partition order, while a record that fails twice holds back the later
    records of its key."""
    topic = kenv.topic(partitions=4)
    keys = [f"k{i}" for i in range(100)]
    per_key = 5
    records = []
    for seq in range(per_key):
        for key in keys:
            value: dict = {"seq": seq}
            if key == "k7" and seq == 1:
                value["fail"] = 2
            records.append((key, value))
    kenv.subscribe(topic, "service://KafkaLog/append")
    kenv.broker.produce(topic, records[:250])
    kenv.broker.produce(topic, records[250:])
    kenv.wait_seen({k: list(range(per_key)) for k in keys}, timeout=240)
    poll(lambda: _all_completed(kenv, "KafkaLog", len(records)), timeout=60)


def test_two_consumer_groups_each_see_every_record_once(kenv: KafkaEnv) -> None:
    topic = kenv.topic(partitions=2)
    kenv.subscribe(topic, "service://KafkaLog/append", **{"group.id": "first"})
    kenv.subscribe(topic, "service://KafkaRaw/take", **{"group.id": "second"})
    keys = ["a", "b", "c"]
    kenv.broker.produce(topic, [(k, {"seq": i}) for i in range(4) for k in keys])
    kenv.wait_seen({k: [0, 1, 2, 3] for k in keys})
    poll(lambda: _counts(kenv, keys, 4), timeout=60)
    poll(lambda: _all_completed(kenv, "KafkaRaw", 12), timeout=30)


def _counts(kenv: KafkaEnv, keys: list[str], n: int) -> None:
    for k in keys:
        assert kenv.object("KafkaRaw", k, "count") == n


def test_workflow_run_sink_starts_one_workflow_per_key(kenv: KafkaEnv) -> None:
    topic = kenv.topic()
    kenv.subscribe(topic, "service://KafkaSignup/run")
    kenv.broker.produce(topic, [("alice", {"n": 1}), ("alice", {"n": 2}), ("bob", {"n": 3})])

    def runs() -> list[dict]:
        rows = kenv.env.query(
            "SELECT target_service_key, status FROM sys_invocation "
            "WHERE target_service_name = 'KafkaSignup' AND target_handler_name = 'run'")
        assert sorted(r["target_service_key"] for r in rows) == ["alice", "bob"], rows
        assert all(r["status"] == "completed" for r in rows), rows
        return rows

    poll(runs, timeout=60)
    r = kenv.env.client.post(f"{kenv.env.ingress}/KafkaSignup/alice/get")
    assert r.status_code == 200 and r.json() == {"n": 1}
    # the third record (offset 2) was taken too: wait until nothing else appears
    kenv.broker.produce(topic, [("carol", {"n": 4})])
    poll(lambda: kenv.env.client.post(f"{kenv.env.ingress}/KafkaSignup/carol/get").json()
         == {"n": 4}, timeout=60)
    rows = kenv.env.query("SELECT count(*) AS n FROM sys_invocation "
                          "WHERE target_service_name = 'KafkaSignup' AND target_handler_name = 'run'")
    assert rows[0]["n"] == 3


def test_deleting_a_subscription_stops_consumption(kenv: KafkaEnv) -> None:
    topic = kenv.topic()
    sub = kenv.subscribe(topic, "service://KafkaLog/append")
    kenv.broker.produce(topic, [("d", {"seq": 0}), ("d", {"seq": 1})])
    kenv.wait_seen({"d": [0, 1]})
    r = kenv.env.client.delete(f"{kenv.admin}/subscriptions/{sub['id']}")
    assert r.status_code == 202
    kenv.broker.produce(topic, [("d", {"seq": 2}), ("e", {"seq": 0})])
    # a second subscription on the topic (its own group) takes the new records: by the time
    # it has, the deleted one would have had every chance to take them too
    kenv.subscribe(topic, "service://KafkaRaw/take", **{"group.id": "after-delete"})
    poll(lambda: _counts(kenv, ["d"], 3) or _counts(kenv, ["e"], 1), timeout=60)
    time.sleep(2)
    assert kenv.object("KafkaLog", "d", "seen") == [0, 1]
    assert kenv.object("KafkaLog", "e", "seen") == []

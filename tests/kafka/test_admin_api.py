"""Restate's admin API for Kafka clusters and subscriptions: paths, bodies, status codes.

Run against durably and, with DURABLY_TEST_TARGET=restate, against restate-server 1.7.12:
both must answer the same.
"""

from __future__ import annotations

import re

from tests.kafka.conftest import CLUSTER, KafkaEnv

SUB_ID = re.compile(r"^sub_1[0-9A-Za-z]{22}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def test_kafka_clusters(kenv: KafkaEnv) -> None:
    c, a = kenv.env.client, kenv.admin
    bootstrap = kenv.broker.bootstrap

    r = c.post(f"{a}/kafka-clusters", json={"name": CLUSTER,
                                             "properties": {"bootstrap.servers": bootstrap}})
    assert r.status_code == 409
    assert r.json() == {"message": f"kafka cluster '{CLUSTER}' already exists in schema registry",
                        "restate_code": None}

    r = c.post(f"{a}/kafka-clusters", json={"name": "bad", "properties": {}})
    assert r.status_code == 400
    assert r.json()["message"] == ("kafka cluster 'bad' properties must contain either "
                                   "'bootstrap.servers' or 'metadata.broker.list'")

    r = c.post(f"{a}/kafka-clusters", json={"properties": {}})
    assert r.status_code == 422
    assert r.text.startswith(
        "Failed to deserialize the JSON body into the target type: missing field `name`")

    r = c.post(f"{a}/kafka-clusters", json={"name": "second",
                                             "properties": {"metadata.broker.list": bootstrap}})
    assert r.status_code == 201
    assert r.headers["location"] == "kafka-clusters/second"
    body = r.json()
    assert body["name"] == "second" and body["properties"] == {"metadata.broker.list": bootstrap}
    assert TIMESTAMP.match(body["created_at"]), body

    r = c.get(f"{a}/kafka-clusters")
    assert r.status_code == 200
    names = sorted(k["name"] for k in r.json()["clusters"])
    assert names == ["second", CLUSTER]

    r = c.get(f"{a}/kafka-clusters/second")
    assert r.status_code == 200
    assert r.json() == {**body, "subscriptions": []}

    r = c.get(f"{a}/kafka-clusters/nope")
    assert r.status_code == 404
    assert r.json() == {"message": "The requested Kafka cluster 'nope' does not exist",
                        "restate_code": None}

    r = c.patch(f"{a}/kafka-clusters/second",
                json={"properties": {"bootstrap.servers": bootstrap, "client.id": "x"}})
    assert r.status_code == 200
    assert r.json()["properties"] == {"bootstrap.servers": bootstrap, "client.id": "x"}
    r = c.patch(f"{a}/kafka-clusters/second", json={"properties": {}})
    assert r.status_code == 400
    r = c.patch(f"{a}/kafka-clusters/nope", json={"properties": {"bootstrap.servers": "a:1"}})
    assert r.status_code == 404
    assert r.json()["message"] == "not found in the schema registry: kafka cluster 'nope'"

    r = c.delete(f"{a}/kafka-clusters/second")
    assert r.status_code == 202 and r.content == b""
    r = c.delete(f"{a}/kafka-clusters/second")
    assert r.status_code == 404
    assert r.json() == {"message": "not found in the schema registry: kafka cluster named 'second'",
                        "restate_code": None}


def test_subscriptions(kenv: KafkaEnv) -> None:
    c, a = kenv.env.client, kenv.admin
    topic = kenv.topic()
    source = f"kafka://{CLUSTER}/{topic}"

    r = c.post(f"{a}/subscriptions", json={"source": source, "sink": "service://Nope/add"})
    assert r.status_code == 400
    assert r.json() == {
        "message": "[META0009] invalid sink URI 'service://Nope/add': cannot find "
        "service/handler specified in the sink URI.",
        "restate_code": "META0009",
    }
    r = c.post(f"{a}/subscriptions", json={"source": source, "sink": "http://KafkaLog/append"})
    assert r.status_code == 400
    assert r.json()["message"] == (
        "[META0009] invalid sink URI 'http://KafkaLog/append': must have a scheme segment, "
        "with supported schemes: [service].")
    r = c.post(f"{a}/subscriptions",
               json={"source": f"http://{CLUSTER}/{topic}", "sink": "service://KafkaLog/append"})
    assert r.status_code == 400
    assert r.json() == {
        "message": f"[META0009] invalid source URI 'http://{CLUSTER}/{topic}': must have a "
        "scheme segment, with supported schemes: [kafka].",
        "restate_code": "META0009",
    }
    r = c.post(f"{a}/subscriptions",
               json={"source": f"kafka://nope/{topic}", "sink": "service://KafkaLog/append"})
    assert r.status_code == 400, r.text
    assert r.json() == {"message": f"Kafka cluster 'nope' not found. Available clusters: "
                        f'["{CLUSTER}"]', "restate_code": None}
    r = c.post(f"{a}/subscriptions", json={"source": source})
    assert r.status_code == 422
    assert r.text.startswith(
        "Failed to deserialize the JSON body into the target type: missing field `sink`")

    r = c.post(f"{a}/subscriptions", json={
        "source": source, "sink": "service://KafkaLog/append",
        "options": {"auto.offset.reset": "earliest"}})
    assert r.status_code == 201, r.text
    sub = r.json()
    assert SUB_ID.match(sub["id"]), sub
    assert r.headers["location"] == f"subscriptions/{sub['id']}"
    assert sub == {"id": sub["id"], "source": source, "sink": "service://KafkaLog/append",
                   "options": {"auto.offset.reset": "earliest", "group.id": sub["id"],
                               "client.id": "restate"}}

    r = c.post(f"{a}/subscriptions", json={
        "source": source, "sink": "service://KafkaSignup/run",
        "options": {"group.id": "mine", "auto.offset.reset": "earliest"}})
    assert r.status_code == 201
    other = r.json()
    assert other["options"] == {"group.id": "mine", "auto.offset.reset": "earliest",
                                "client.id": "restate"}

    r = c.get(f"{a}/subscriptions")
    assert r.status_code == 200
    assert sorted(s["id"] for s in r.json()["subscriptions"]) == sorted([sub["id"], other["id"]])
    r = c.get(f"{a}/subscriptions", params={"sink": "service://KafkaSignup/run"})
    assert r.json() == {"subscriptions": [other]}
    r = c.get(f"{a}/subscriptions", params={"source": source, "sink": "service://KafkaLog/append"})
    assert r.json() == {"subscriptions": [sub]}
    r = c.get(f"{a}/subscriptions", params={"source": "kafka://x/y"})
    assert r.json() == {"subscriptions": []}

    r = c.get(f"{a}/subscriptions/{sub['id']}")
    assert r.status_code == 200 and r.json() == sub
    r = c.get(f"{a}/kafka-clusters/{CLUSTER}")
    listed = sorted(s["id"] for s in r.json()["subscriptions"])
    # Restate 1.7.12 answers an empty list here even with subscriptions on the cluster;
    # durably lists them (deliberately: docs/kafka.md, "Differences")
    assert listed == ([] if kenv.target == "restate" else sorted([sub["id"], other["id"]]))

    unknown = "sub_12N17Kh5QGFT0OXEC4FKPS1"
    r = c.get(f"{a}/subscriptions/{unknown}")
    assert r.status_code == 404
    assert r.json() == {"message": f"The requested subscription '{unknown}' does not exist",
                        "restate_code": None}
    for method in ("GET", "DELETE"):
        r = c.request(method, f"{a}/subscriptions/foo")
        assert r.status_code == 400
        assert r.headers["content-type"].startswith("text/plain")
        assert r.text == "Invalid URL: Cannot parse `subscription` with value `foo`: bad format"

    r = c.delete(f"{a}/subscriptions/{sub['id']}")
    assert r.status_code == 202 and r.content == b""
    r = c.delete(f"{a}/subscriptions/{sub['id']}")
    assert r.status_code == 404
    assert r.json() == {
        "message": f"not found in the schema registry: subscription with id '{sub['id']}'",
        "restate_code": None,
    }
    r = c.get(f"{a}/subscriptions")
    assert r.json() == {"subscriptions": [other]}

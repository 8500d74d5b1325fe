"""durably.kafka.model and .records: URIs, ids, options, the persisted document, and how a
record becomes an invocation's key and headers."""

from __future__ import annotations

import pytest

from durably.kafka.model import (
    KafkaCluster,
    KafkaDoc,
    Subscription,
    fill_options,
    new_subscription_id,
    parse_cluster_arg,
    parse_sink,
    parse_source,
    valid_subscription_id,
)
from durably.kafka.records import (
    Record,
    Unusable,
    invocation_headers,
    invocation_key,
    record_of_invocation,
)
from durably.schema.errors import AdminError


def test_sink_and_source_uris() -> None:
    assert parse_sink("service://Counter/add") == ("Counter", "add")
    assert parse_source("kafka://my-cluster/orders") == ("my-cluster", "orders")
    with pytest.raises(AdminError) as e:
        parse_sink("http://Counter/add")
    assert e.value.status == 400 and e.value.restate_code == "META0009"
    assert "supported schemes: [service]" in e.value.message
    with pytest.raises(AdminError) as e:
        parse_source("http://c/orders")
    assert "supported schemes: [kafka]" in e.value.message
    for bad in ("service://Counter", "service://Counter/a/b", "service:///add"):
        with pytest.raises(AdminError):
            parse_sink(bad)
    with pytest.raises(AdminError):
        parse_source("kafka://cluster")


def test_subscription_ids() -> None:
    sub_id = new_subscription_id()
    assert sub_id.startswith("sub_1") and len(sub_id) == 27
    assert valid_subscription_id(sub_id)
    assert valid_subscription_id("sub_12N17Kh5QGFT0OXEC4FKPS1")  # one of Restate's
    for bad in ("foo", "sub_1", "sub_12N17Kh5QGFT0OXEC4FKPS!", "inv_12N17Kh5QGFT0OXEC4FKPS1"):
        assert not valid_subscription_id(bad)


def test_options_are_filled_in_as_restate_does() -> None:
    cluster = KafkaCluster("c", {"bootstrap.servers": "h:1"}, 0)
    assert fill_options("sub_x", {"auto.offset.reset": "earliest"}, cluster) == {
        "auto.offset.reset": "earliest", "group.id": "sub_x", "client.id": "restate"}
    grouped = KafkaCluster("c", {"bootstrap.servers": "h:1", "group.id": "g"}, 0)
    assert fill_options("sub_x", {}, grouped)["group.id"] == "g"
    assert fill_options("sub_x", {"group.id": "mine", "client.id": "me"}, grouped) == {
        "group.id": "mine", "client.id": "me"}


def test_cluster_argument_and_bootstrap_servers() -> None:
    c = parse_cluster_arg("local=127.0.0.1:9092,127.0.0.1:9093")
    assert c.static and c.name == "local"
    assert c.bootstrap_servers == ["127.0.0.1:9092", "127.0.0.1:9093"]
    for bad in ("local", "local=", "=h:1", "local=host", "local=h:x", "bad name=h:1"):
        with pytest.raises(ValueError):
            parse_cluster_arg(bad)
    listed = KafkaCluster("x", {"metadata.broker.list": "PLAINTEXT://b:9092, c:9093"}, 0)
    assert listed.bootstrap_servers == ["b:9092", "c:9093"]


def test_document_round_trip_leaves_out_static_clusters() -> None:
    doc = KafkaDoc()
    doc.clusters["api"] = KafkaCluster("api", {"bootstrap.servers": "h:1"}, 5)
    doc.clusters["flag"] = parse_cluster_arg("flag=h:2")
    doc.subscriptions["sub_a"] = Subscription("sub_a", "kafka://api/t", "service://S/h",
                                              {"group.id": "g"})
    again = KafkaDoc.load(doc.dump())
    assert list(again.clusters) == ["api"]
    assert again.clusters["api"] == doc.clusters["api"]
    assert again.subscriptions == doc.subscriptions
    assert again.subscriptions["sub_a"].group_id == "g"
    assert again.subscriptions["sub_a"].topic == "t"


def test_record_key_and_headers() -> None:
    rec = Record("orders", 2, 7, b"key-1", b"{}", 1795967891621)
    assert invocation_headers(rec, "sub_x") == [
        ("kafka.offset", "7"), ("kafka.topic", "orders"), ("kafka.partition", "2"),
        ("kafka.timestamp", "1795967891621"), ("restate.subscription.id", "sub_x"),
        ("kafka.key", "a2V5LTE="),
    ]
    assert invocation_key(rec, "virtual_object") == "key-1"
    assert invocation_key(rec, "service") is None
    keyless = Record("orders", 0, 0, None, None, 0)
    assert "kafka.key" not in dict(invocation_headers(keyless, "s"))
    assert invocation_key(keyless, "workflow") == ""
    with pytest.raises(Unusable, match="must be valid UTF-8"):
        invocation_key(Record("t", 0, 0, b"\xff", None, 0), "virtual_object")
    assert invocation_key(Record("t", 0, 0, b"\xff", None, 0), "service") is None


def test_a_record_is_read_back_from_its_invocation_headers() -> None:
    # (spread placement) the owner that finds the handler gone parks the record from these
    for rec in (Record("orders", 2, 7, b"\xff\x00k", b"{}", 1795967891621),
                Record("orders", 0, 3, None, b"", 5)):
        assert record_of_invocation(invocation_headers(rec, "sub_x"), rec.value or b"") == (
            "sub_x", rec)
    assert record_of_invocation([("kafka.topic", "t")], b"") is None  # not from a record
    headers = invocation_headers(Record("t", 0, 1, None, None, 0), "s")
    assert record_of_invocation([(k, "x" if k == "kafka.offset" else v) for k, v in headers],
                                b"") is None

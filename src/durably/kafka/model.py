"""Clusters and subscriptions: what Restate's admin API accepts and answers (sans-IO).

A cluster is a name and librdkafka-style properties (`bootstrap.servers` or
`metadata.broker.list` required). A subscription ties `kafka://CLUSTER/TOPIC` to
`service://SERVICE/HANDLER` with consumer options; its `group.id` defaults to the cluster's
`group.id` property, else to the subscription id, and `client.id` to "restate" (what Restate
fills in, kept so that both servers answer the same body).

Both persist as one JSON document in the store's meta table (`KafkaDoc`).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from durably.ids import _b62_decode, _b62_encode
from durably.schema.errors import AdminError

SUBSCRIPTION_PREFIX = "sub_1"  # resource "sub", scheme version 1 (as Restate's ids)
_ID_CHARS = 22
DEFAULT_CLIENT_ID = "restate"
BROKER_KEYS = ("bootstrap.servers", "metadata.broker.list")
STATIC_CREATED_AT = 0
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9._~-]+$")


class BadRequest(Exception):
    """A request body that does not fit the model (Restate: 422 text/plain)."""


def new_subscription_id() -> str:
    ms = time.time_ns() // 1_000_000
    raw = (ms & ((1 << 48) - 1)).to_bytes(6, "big") + os.urandom(10)
    return SUBSCRIPTION_PREFIX + _b62_encode(int.from_bytes(raw, "little"), _ID_CHARS)


def valid_subscription_id(value: str) -> bool:
    if not value.startswith(SUBSCRIPTION_PREFIX) or len(value) != len(SUBSCRIPTION_PREFIX) + _ID_CHARS:
        return False
    try:
        return _b62_decode(value[len(SUBSCRIPTION_PREFIX) :]) < 1 << 128
    except ValueError:
        return False


@dataclass(slots=True)
class KafkaCluster:
    name: str
    properties: dict[str, str]
    created_at: int  # epoch ms; 0 for a cluster given on the command line
    static: bool = False

    @property
    def bootstrap_servers(self) -> list[str]:
        raw = self.properties.get("bootstrap.servers") or self.properties.get(
            "metadata.broker.list", ""
        )
        servers = []
        for part in raw.split(","):
            part = part.strip()
            if "://" in part:  # PLAINTEXT://host:port, as librdkafka accepts
                part = part.split("://", 1)[1]
            if part:
                servers.append(part)
        return servers


@dataclass(slots=True)
class Subscription:
    id: str
    source: str  # kafka://cluster/topic
    sink: str  # service://Service/handler
    options: dict[str, str]

    @property
    def cluster(self) -> str:
        return parse_source(self.source)[0]

    @property
    def topic(self) -> str:
        return parse_source(self.source)[1]

    @property
    def service(self) -> str:
        return parse_sink(self.sink)[0]

    @property
    def handler(self) -> str:
        return parse_sink(self.sink)[1]

    @property
    def group_id(self) -> str:
        return self.options.get("group.id", self.id)

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "sink": self.sink, "options": self.options}


def _meta0009(message: str) -> AdminError:
    return AdminError(400, f"[META0009] {message}", "META0009")


def _split_uri(uri: str) -> tuple[str, str, str] | None:
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(/[^?#]*)?$", uri)
    if m is None:
        return None
    return m.group(1).lower(), m.group(2), (m.group(3) or "")


def _parse(uri: str, scheme: str, what: str, missing: str) -> tuple[str, str]:
    """`SCHEME://AUTHORITY/NAME` -> (authority, name), or META0009 as Restate answers."""
    parts = _split_uri(uri)
    if parts is None or parts[0] != scheme:
        raise _meta0009(
            f"invalid {what} URI '{uri}': must have a scheme segment, with supported "
            f"schemes: [{scheme}]."
        )
    authority, path = parts[1], parts[2].strip("/")
    if not authority or not path or "/" in path:
        raise _meta0009(f"invalid {what} URI '{uri}': {missing}")
    return authority, path


def parse_sink(sink: str) -> tuple[str, str]:
    """`service://SERVICE/HANDLER` -> (service, handler)."""
    return _parse(sink, "service", "sink",
                  "cannot find service/handler specified in the sink URI.")


def parse_source(source: str) -> tuple[str, str]:
    """`kafka://CLUSTER/TOPIC` -> (cluster, topic)."""
    return _parse(source, "kafka", "source",
                  "must have a cluster name and a topic, as kafka://CLUSTER/TOPIC.")


def string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest(f"{what}: invalid type: expected a map of strings")
    return dict(value)


def check_properties(name: str, properties: dict[str, str]) -> None:
    if not any(k in properties for k in BROKER_KEYS):
        raise AdminError(
            400,
            f"kafka cluster '{name}' properties must contain either 'bootstrap.servers' or "
            "'metadata.broker.list'",
        )


def check_cluster_name(name: Any) -> str:
    if not isinstance(name, str):
        raise BadRequest("name: invalid type: expected a string")
    if not _CLUSTER_NAME.match(name):
        raise BadRequest("name: invalid uri character")
    return name


def fill_options(sub_id: str, options: dict[str, str], cluster: KafkaCluster) -> dict[str, str]:
    """The options a subscription is stored with (group.id and client.id filled in)."""
    filled = dict(options)
    if "group.id" not in filled:
        filled["group.id"] = cluster.properties.get("group.id", sub_id)
    filled.setdefault("client.id", DEFAULT_CLIENT_ID)
    return filled


@dataclass(slots=True)
class KafkaDoc:
    """What persists: clusters created through the API and every subscription."""

    clusters: dict[str, KafkaCluster] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)

    def dump(self) -> dict[str, Any]:
        return {
            "clusters": [
                {"name": c.name, "properties": c.properties, "created_at": c.created_at}
                for c in self.clusters.values()
                if not c.static
            ],
            "subscriptions": [s.json() for s in self.subscriptions.values()],
        }

    @classmethod
    def load(cls, doc: dict[str, Any] | None) -> KafkaDoc:
        out = cls()
        if not doc:
            return out
        for c in doc.get("clusters", []):
            out.clusters[c["name"]] = KafkaCluster(
                c["name"], dict(c["properties"]), int(c["created_at"])
            )
        for s in doc.get("subscriptions", []):
            out.subscriptions[s["id"]] = Subscription(
                s["id"], s["source"], s["sink"], dict(s["options"])
            )
        return out


def parse_cluster_arg(text: str) -> KafkaCluster:
    """`NAME=HOST:PORT[,HOST:PORT]` (durably serve --kafka-cluster)."""
    name, sep, servers = text.partition("=")
    name = name.strip()
    if not sep or not servers.strip() or not _CLUSTER_NAME.match(name):
        raise ValueError(f"--kafka-cluster must be NAME=HOST:PORT[,HOST:PORT], not {text!r}")
    for server in servers.split(","):
        host, colon, port = server.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"--kafka-cluster {name}: {server.strip()!r} is not HOST:PORT")
    return KafkaCluster(
        name, {"bootstrap.servers": servers.strip()}, STATIC_CREATED_AT, static=True
    )

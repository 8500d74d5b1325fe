"""Server configuration: CLI flags > environment (DURABLY_*) > defaults equal to Restate's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from durably.security.options import SecurityOptions


@dataclass(slots=True)
class ServerConfig:
    bind: str = "127.0.0.1"
    ingress_port: int = 8080
    admin_port: int = 9070
    data_dir: Path = Path("durably-data")
    sync: str = "full"  # SQLite synchronous level: full | normal
    enable_protocol_v7: bool = False
    cleanup_interval_s: float = 60.0
    log_level: str = "info"
    log_format: str = "text"  # text | json
    log_json: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
    # connections per HTTP/1.1 deployment (0: no cap); attempts beyond it wait for a free one
    http1_max_connections: int = 256
    # request identity, tokens, TLS and connection limits (durably.security)
    security: SecurityOptions = field(default_factory=SecurityOptions)
    # the web UI on the admin port (/ui/), and whether it may act
    ui: bool = True
    ui_read_only: bool = False
    # a postgresql:// DSN: the store lives in that database instead of `data_dir`
    postgres_dsn: str | None = None
    # Kafka clusters known at start (`--kafka-cluster NAME=HOST:PORT[,HOST:PORT]`)
    kafka_clusters: list[str] = field(default_factory=list)
    kafka_max_in_flight: int = 1000  # unfinished invocations per partition before pausing it
    # cluster mode (durably.cluster): several nodes on one PostgreSQL
    node_name: str | None = None
    advertise_address: str | None = None  # how other nodes reach this one (default: bind)
    cluster_secret: str | None = None  # required when bound beyond loopback
    lease_ttl_s: float = 6.0
    # `spread`: each live node runs its share of the partitions; `leader`: one node runs
    # every partition, the others stand by
    placement: str = "spread"
    # OTLP/HTTP collector spans are exported to (durably.tracing); None: no tracing
    tracing_endpoint: str | None = None

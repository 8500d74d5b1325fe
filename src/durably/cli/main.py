"""The `durably` command line."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from durably import __version__

app = typer.Typer(
    name="durably",
    help="durably: a durable invocation server that speaks Restate's protocols.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """durably: a durable invocation server that speaks Restate's protocols."""


def _register_ops() -> None:
    from durably.cli import ops

    app.add_typer(ops.deployments_app, name="deployments")
    app.add_typer(ops.services_app, name="services")
    app.add_typer(ops.invocations_app, name="invocations")
    app.add_typer(ops.state_app, name="state")
    app.command("sql")(ops.sql_command)
    from durably.kafka import cli as kafka_cli

    app.add_typer(kafka_cli.subscriptions_app, name="subscriptions")
    app.add_typer(kafka_cli.clusters_app, name="kafka-clusters")
    from durably.security.cli import keys_app

    app.add_typer(keys_app, name="keys")


_register_ops()


def _register_dev() -> None:
    from durably.cli import dev

    app.command("dev")(dev.dev_command)


_register_dev()


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def serve(
    ingress_port: int = typer.Option(
        8080, "--ingress-port", envvar="DURABLY_INGRESS_PORT", help="Port of the HTTP ingress."
    ),
    admin_port: int = typer.Option(
        9070, "--admin-port", envvar="DURABLY_ADMIN_PORT", help="Port of the admin API."
    ),
    bind: str = typer.Option(
        "127.0.0.1", "--bind", envvar="DURABLY_BIND", help="Address both ports listen on."
    ),
    data_dir: Path = typer.Option(
        Path("durably-data"),
        "--data-dir",
        envvar="DURABLY_DATA_DIR",
        help="Where the SQLite database lives (created if missing).",
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        envvar="DURABLY_STORE",
        help="Where invocations, journals, timers and state live: "
        "'postgresql://USER:PASSWORD@HOST:PORT/DB' (schema created and migrated at start) "
        "or 'sqlite:///PATH' (the same as --data-dir PATH). Default: SQLite in --data-dir.",
    ),
    sync: str = typer.Option(
        "full",
        "--sync",
        envvar="DURABLY_SYNC",
        help="SQLite synchronous level: 'full' (fsync every commit, survives power loss) "
        "or 'normal' (survives a process crash).",
    ),
    enable_protocol_v7: bool = typer.Option(
        False,
        "--enable-protocol-v7",
        envvar="DURABLY_ENABLE_PROTOCOL_V7",
        help="Negotiate service protocol V7 with deployments that support it (default V6).",
    ),
    cleanup_interval: str = typer.Option(
        "60s",
        "--cleanup-interval",
        envvar="DURABLY_CLEANUP_INTERVAL",
        help="How often to remove invocations past their retention (e.g. 1s, 5m, 60).",
    ),
    http1_max_connections: int = typer.Option(
        256,
        "--http1-max-connections",
        envvar="DURABLY_HTTP1_MAX_CONNECTIONS",
        help="Most connections open to one HTTP/1.1 deployment (0: no cap); attempts beyond "
        "it wait for a free connection within their inactivity timeout.",
    ),
    # the web UI (issue 13)
    no_ui: bool = typer.Option(
        False, "--no-ui", envvar="DURABLY_NO_UI", help="Do not serve the web UI at /ui/."
    ),
    ui_read_only: bool = typer.Option(
        False,
        "--ui-read-only",
        envvar="DURABLY_UI_READ_ONLY",
        help="Serve the web UI without any action (the admin API itself is unchanged).",
    ),
    # cluster mode (issue 12)
    node_name: str | None = typer.Option(
        None,
        "--node-name",
        envvar="DURABLY_NODE_NAME",
        help="Run as one node of a cluster on the --store PostgreSQL database, under this "
        "name (unique per node). See docs/cluster.md.",
    ),
    advertise_address: str | None = typer.Option(
        None,
        "--advertise-address",
        envvar="DURABLY_ADVERTISE_ADDRESS",
        help="How other cluster nodes reach this one (default: --bind).",
    ),
    cluster_secret: str | None = typer.Option(
        None,
        "--cluster-secret",
        envvar="DURABLY_CLUSTER_SECRET",
        help="Shared by all nodes of a cluster; required unless every node is on loopback.",
    ),
    lease_ttl: str = typer.Option(
        "6s",
        "--lease-ttl",
        envvar="DURABLY_LEASE_TTL",
        help="How long a node's partition leases last without renewal (cluster mode).",
    ),
    placement: str = typer.Option(
        "spread",
        "--placement",
        envvar="DURABLY_PLACEMENT",
        help="Cluster mode: 'spread' (every live node runs an even share of the partitions) "
        "or 'leader' (one node runs every partition, the others stand by). See "
        "docs/cluster.md.",
    ),
    # traces (issue 17)
    tracing_endpoint: str | None = typer.Option(
        None,
        "--tracing-endpoint",
        envvar="DURABLY_TRACING_ENDPOINT",
        help="Export OpenTelemetry spans of invocations to this OTLP/HTTP collector, e.g. "
        "http://localhost:4318 (needs durably[tracing]).",
    ),
    log_level: str = typer.Option(
        "info", "--log-level", envvar="DURABLY_LOG_LEVEL", help="debug, info, warning or error."
    ),
    log_format: str = typer.Option(
        "text",
        "--log-format",
        envvar="DURABLY_LOG_FORMAT",
        help="'text' or 'json' (one object per line, with invocation_id when about one).",
    ),
    kafka_cluster: list[str] = typer.Option(
        [],
        "--kafka-cluster",
        help="A Kafka cluster subscriptions can use, NAME=HOST:PORT[,HOST:PORT] (repeatable).",
    ),
    kafka_max_in_flight: int = typer.Option(
        1000,
        "--kafka-max-in-flight",
        envvar="DURABLY_KAFKA_MAX_IN_FLIGHT",
        min=1,
        help="Unfinished invocations per subscribed partition before its consumption pauses.",
    ),
    # -- security (durably.security; docs/security.md) ----------------------------------
    request_identity_key: Path | None = typer.Option(
        None,
        "--request-identity-private-key-pem-file",
        help="Ed25519 private key (PEM) to sign requests to services with; also "
        "$DURABLY_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE or "
        "$RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE. `durably keys generate` makes one.",
    ),
    request_identity_expiration: str = typer.Option(
        "60s",
        "--request-identity-expiration",
        envvar="DURABLY_REQUEST_IDENTITY_EXPIRATION",
        help="How long a signed request stays valid (at least 1s).",
    ),
    admin_token: str | None = typer.Option(
        None,
        "--admin-token",
        envvar="DURABLY_ADMIN_TOKEN",
        help="Bearer token(s) the admin API requires, comma-separated for rotation.",
    ),
    ingress_token: str | None = typer.Option(
        None,
        "--ingress-token",
        envvar="DURABLY_INGRESS_TOKEN",
        help="Bearer token(s) the ingress requires, comma-separated; never journaled.",
    ),
    metrics_public: bool = typer.Option(
        False, "--metrics-public", envvar="DURABLY_METRICS_PUBLIC",
        help="Serve /metrics without the admin token.",
    ),
    tls_cert_file: Path | None = typer.Option(
        None, "--tls-cert-file", envvar="DURABLY_TLS_CERT_FILE",
        help="Serve both ports over TLS with this certificate chain (PEM).",
    ),
    tls_key_file: Path | None = typer.Option(
        None, "--tls-key-file", envvar="DURABLY_TLS_KEY_FILE", help="The TLS private key (PEM)."
    ),
    max_header_bytes: int = typer.Option(
        65536, "--max-header-bytes", envvar="DURABLY_MAX_HEADER_BYTES",
        help="Most bytes of a request's line and headers (beyond: 431).",
    ),
    header_timeout: str = typer.Option(
        "10s", "--header-timeout", envvar="DURABLY_HEADER_TIMEOUT",
        help="A request's headers must arrive within this long, else the connection closes.",
    ),
    idle_timeout: str = typer.Option(
        "60s", "--idle-timeout", envvar="DURABLY_IDLE_TIMEOUT",
        help="Close a kept-alive connection idle for this long.",
    ),
    max_connections: int = typer.Option(
        4096, "--max-connections", envvar="DURABLY_MAX_CONNECTIONS",
        help="Most open connections per port; more are closed at once.",
    ),
) -> None:
    """Run the server: HTTP ingress, admin API and the invocation engine."""
    from durably.config import ServerConfig
    from durably.server import serve as run_server

    if sync.lower() not in ("full", "normal"):
        typer.echo(f"durably: --sync must be 'full' or 'normal', not {sync!r}", err=True)
        raise typer.Exit(2)
    interval_s = _seconds(cleanup_interval)
    if interval_s is None or interval_s <= 0:
        typer.echo(f"durably: bad --cleanup-interval {cleanup_interval!r}", err=True)
        raise typer.Exit(2)
    if http1_max_connections < 0:
        typer.echo(f"durably: bad --http1-max-connections {http1_max_connections}", err=True)
        raise typer.Exit(2)
    postgres_dsn = None
    if store is not None and store.strip():
        from durably.cli.store import parse_store

        try:
            data_dir, postgres_dsn = parse_store(store, data_dir)
        except ValueError as e:
            typer.echo(f"durably: {e}", err=True)
            raise typer.Exit(2) from None
    lease_ttl_s = _seconds(lease_ttl)
    if node_name is not None:
        from durably.cluster.node import check_settings

        try:
            if not node_name.strip():
                raise ValueError("--node-name must not be empty")
            if lease_ttl_s is None or lease_ttl_s <= 0:
                raise ValueError(f"bad --lease-ttl {lease_ttl!r}")
            if placement not in ("leader", "spread"):
                raise ValueError(f"--placement must be 'leader' or 'spread', not {placement!r}")
            check_settings(bind, advertise_address, cluster_secret, postgres_dsn)
        except ValueError as e:
            typer.echo(f"durably: {e}", err=True)
            raise typer.Exit(2) from None
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        typer.echo(f"durably: unknown log level {log_level!r}", err=True)
        raise typer.Exit(2)
    if log_format.lower() not in ("text", "json"):
        typer.echo(f"durably: --log-format must be 'text' or 'json', not {log_format!r}", err=True)
        raise typer.Exit(2)
    from durably.kafka.model import parse_cluster_arg

    for text in kafka_cluster:
        try:
            parse_cluster_arg(text)
        except ValueError as e:
            typer.echo(f"durably: {e}", err=True)
            raise typer.Exit(2) from None
    from durably.security.cli import security_options

    security = security_options(
        key_file=request_identity_key,
        expiration_s=_seconds(request_identity_expiration) or -1.0,
        admin_token=admin_token,
        ingress_token=ingress_token,
        metrics_public=metrics_public,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
        max_header_bytes=max_header_bytes,
        header_timeout_s=_seconds(header_timeout) or -1.0,
        idle_timeout_s=_seconds(idle_timeout) or -1.0,
        max_connections=max_connections,
    )
    if tracing_endpoint:
        _check_tracing(tracing_endpoint)
    from durably.logs import configure_logging

    configure_logging(level, log_format.lower())
    # one line per discovery request from the HTTP client library is noise at INFO
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    config = ServerConfig(
        bind=bind,
        ingress_port=ingress_port,
        admin_port=admin_port,
        data_dir=data_dir,
        sync=sync.lower(),
        enable_protocol_v7=enable_protocol_v7,
        cleanup_interval_s=interval_s,
        http1_max_connections=http1_max_connections,
        postgres_dsn=postgres_dsn,
        log_level=log_level.lower(),
        log_format=log_format.lower(),
        kafka_clusters=list(kafka_cluster),
        kafka_max_in_flight=kafka_max_in_flight,
        security=security,
        ui=not no_ui,
        ui_read_only=ui_read_only,
        node_name=node_name,
        advertise_address=advertise_address,
        cluster_secret=cluster_secret,
        lease_ttl_s=lease_ttl_s or 6.0,
        placement=placement,
        tracing_endpoint=tracing_endpoint or None,
    )
    raise typer.Exit(run_server(config))


def _check_tracing(endpoint: str) -> None:
    try:
        from durably.tracing import traces_url
    except ImportError:
        typer.echo("durably: --tracing-endpoint needs OpenTelemetry: "
                   "pip install 'durably[tracing]'", err=True)
        raise typer.Exit(2) from None
    try:
        traces_url(endpoint)
    except ValueError as e:
        typer.echo(f"durably: {e}", err=True)
        raise typer.Exit(2) from None


def _seconds(text: str) -> float | None:
    """A plain number of seconds, or a duration such as `1s`, `500ms`, `PT5M`."""
    from durably.schema.durations import parse_duration

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text).total_seconds()
    except ValueError:
        return None


if __name__ == "__main__":
    app()

"""`durably subscriptions list|create|delete|parked|replay|drop` and
`durably kafka-clusters list|create|delete`, over the admin API (any durably or Restate
server for the Restate routes). Same options and exit codes as the other operator commands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from durably.cli.ops import (
    AdminUrl,
    JsonOut,
    Yes,
    _client,
    _confirm,
    _console,
    _err,
    _print_json,
    _table,
)

subscriptions_app = typer.Typer(
    help="Subscribe handlers to Kafka topics; list, delete; parked records.", no_args_is_help=True
)
clusters_app = typer.Typer(help="The Kafka clusters subscriptions read from.", no_args_is_help=True)


def _options(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not name.strip():
            _err(f"{what} must be NAME=VALUE, not {v!r}")
            raise typer.Exit(2)
        out[name.strip()] = value.strip()
    return out


def _show(items: list[dict[str, Any]], json_out: bool, empty: str,
          row: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Print `items` as JSON, or one table row each (`row` picks the columns)."""
    if json_out:
        _print_json(items)
    elif not items:
        typer.echo(empty)
    else:
        rows = [row(i) for i in items]
        _console().print(_table(rows, list(rows[0])))


def _delete(question: str, path: str, done: str, yes: bool, admin_url: str) -> None:
    _confirm(question, yes)
    with _client(admin_url) as c:
        c.request("DELETE", path)
    typer.echo(done)


# -- subscriptions -----------------------------------------------------------------------


@subscriptions_app.command("list")
def subscriptions_list(
    sink: str | None = typer.Option(None, "--sink", help="Only this sink (service://S/h)."),
    source: str | None = typer.Option(None, "--source", help="Only this source (kafka://C/t)."),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """List subscriptions."""
    params = {k: v for k, v in {"sink": sink, "source": source}.items() if v is not None}
    with _client(admin_url) as c:
        subs = c.json("GET", "/subscriptions", params=params)["subscriptions"]
    _show(subs, json_out, "no subscriptions", lambda s: {
        "id": s["id"], "source": s["source"], "sink": s["sink"],
        "group": s["options"].get("group.id")})


@subscriptions_app.command("create")
def subscriptions_create(
    source: str = typer.Argument(..., help="kafka://CLUSTER/TOPIC"),
    sink: str = typer.Argument(..., help="service://SERVICE/HANDLER"),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Consumer option NAME=VALUE, e.g. auto.offset.reset=earliest."
    ),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """Subscribe a handler to a topic: each record becomes one invocation."""
    body = {"source": source, "sink": sink, "options": _options(option, "--option")}
    with _client(admin_url) as c:
        sub = c.json("POST", "/subscriptions", json=body)
    if json_out:
        _print_json(sub)
        return
    typer.echo(f"created subscription {sub['id']}: {sub['source']} -> {sub['sink']}")


@subscriptions_app.command("delete")
def subscriptions_delete(
    subscription_id: str = typer.Argument(..., metavar="ID"),
    yes: bool = Yes,
    admin_url: str = AdminUrl,
) -> None:
    """Delete a subscription: its consumer stops; invocations already created still run."""
    _delete(f"Delete subscription {subscription_id}?", f"/subscriptions/{subscription_id}",
            f"deleted subscription {subscription_id}", yes, admin_url)


@subscriptions_app.command("parked")
def subscriptions_parked(
    subscription_id: str | None = typer.Argument(None, metavar="[ID]"),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """Records that could not become invocations (durably only), with the reason."""
    params = {"subscription": subscription_id} if subscription_id else {}
    with _client(admin_url) as c:
        records = c.json("GET", "/kafka-parked-records", params=params)["records"]
    _show(records, json_out, "no parked records", lambda r: {
        "id": r["id"], "subscription": r["subscription_id"],
        "record": f"{r['topic']}/{r['partition']}@{r['offset']}",
        "key": r["key_utf8"] if r["key_utf8"] is not None else r["key"],
        "error": r["error"]})


@subscriptions_app.command("replay")
def subscriptions_replay(
    record_id: int = typer.Argument(..., metavar="RECORD"),
    admin_url: str = AdminUrl,
) -> None:
    """Deliver a parked record again (e.g. after registering the missing handler)."""
    with _client(admin_url) as c:
        doc = c.json("POST", f"/kafka-parked-records/{record_id}/replay")
    typer.echo(f"replayed parked record {record_id}: invocation {doc.get('invocation_id')}")


@subscriptions_app.command("drop")
def subscriptions_drop(
    record_id: int = typer.Argument(..., metavar="RECORD"),
    yes: bool = Yes,
    admin_url: str = AdminUrl,
) -> None:
    """Drop a parked record for good."""
    _delete(f"Drop parked record {record_id}?", f"/kafka-parked-records/{record_id}",
            f"dropped parked record {record_id}", yes, admin_url)


# -- clusters ----------------------------------------------------------------------------


@clusters_app.command("list")
def clusters_list(admin_url: str = AdminUrl, json_out: bool = JsonOut) -> None:
    """List Kafka clusters."""
    with _client(admin_url) as c:
        clusters = c.json("GET", "/kafka-clusters")["clusters"]
    _show(clusters, json_out, "no kafka clusters", lambda k: {
        "name": k["name"],
        "brokers": k["properties"].get("bootstrap.servers")
        or k["properties"].get("metadata.broker.list"),
        "created_at": k["created_at"]})


@clusters_app.command("create")
def clusters_create(
    name: str = typer.Argument(...),
    bootstrap_servers: str = typer.Argument(..., help="HOST:PORT[,HOST:PORT]"),
    prop: list[str] = typer.Option([], "--property", "-p", help="More properties NAME=VALUE."),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """Add a Kafka cluster that subscriptions can name (kafka://NAME/topic)."""
    properties = {"bootstrap.servers": bootstrap_servers, **_options(prop, "--property")}
    with _client(admin_url) as c:
        cluster = c.json("POST", "/kafka-clusters", json={"name": name, "properties": properties})
    if json_out:
        _print_json(cluster)
        return
    typer.echo(f"created kafka cluster {cluster['name']}")


@clusters_app.command("delete")
def clusters_delete(
    name: str = typer.Argument(...),
    yes: bool = Yes,
    admin_url: str = AdminUrl,
) -> None:
    """Delete a Kafka cluster (and the subscriptions that read from it)."""
    _delete(f"Delete kafka cluster {name} and its subscriptions?", f"/kafka-clusters/{name}",
            f"deleted kafka cluster {name}", yes, admin_url)

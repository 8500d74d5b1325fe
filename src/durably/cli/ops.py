"""Operator commands: deployments, services, invocations, state and SQL over the admin API.

Everything goes through the admin API (`--admin-url`, env `DURABLY_ADMIN_URL`), so these
commands work against any durably (or Restate) server. Exit codes: see `cli.client`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from durably.cli.client import (
    EXIT_ABORTED,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    AdminClient,
    CliError,
    sql_string,
)

DEFAULT_ADMIN_URL = "http://127.0.0.1:9070"

deployments_app = typer.Typer(help="Register, list, describe and remove deployments.",
                              no_args_is_help=True)
services_app = typer.Typer(help="List and describe services; change their configuration.",
                           no_args_is_help=True)
invocations_app = typer.Typer(help="Find, inspect, cancel, kill and purge invocations.",
                              no_args_is_help=True)
state_app = typer.Typer(help="Read the state of virtual objects and workflows.",
                        no_args_is_help=True)

AdminUrl = typer.Option(
    DEFAULT_ADMIN_URL, "--admin-url", envvar="DURABLY_ADMIN_URL",
    help="Base URL of the admin API.",
)
JsonOut = typer.Option(False, "--json", help="Print JSON instead of a table.")
Yes = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")


def _console() -> Console:
    # Piped output (scripts, tests) gets a wide console so ids are never cut or wrapped.
    if sys.stdout.isatty():
        return Console()
    return Console(width=int(os.environ.get("COLUMNS", "240")), no_color=True)


def _err(message: str) -> None:
    typer.echo(f"durably: {message}", err=True)


@contextmanager
def _client(admin_url: str) -> Iterator[AdminClient]:
    client = AdminClient(admin_url)
    try:
        yield client
    except CliError as e:
        _err(e.message)
        raise typer.Exit(e.code) from None
    finally:
        client.close()


def _print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty() and os.environ.get("DURABLY_CLI_FORCE_PROMPT") is None:
        # read the answer from the pipe if there is one; nothing to read means no
        line = sys.stdin.readline()
        typer.echo(f"{question} [y/N]: {line.strip()}", err=True)
        if line.strip().lower() in ("y", "yes"):
            return
    elif typer.confirm(question, default=False, err=True):
        return
    _err("aborted (nothing was changed); use --yes to skip the confirmation")
    raise typer.Exit(EXIT_ABORTED)


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> Table:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(_cell(r.get(c)) for c in columns))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return str(value)


# -- deployments ------------------------------------------------------------------------


@deployments_app.command("register")
def deployments_register(
    uri: str = typer.Argument(..., help="The deployment's URL, e.g. http://localhost:9080"),
    use_http_11: bool = typer.Option(False, "--use-http-11", help="Talk HTTP/1.1 (request/response)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing deployment at that URL."),
    header: list[str] = typer.Option([], "--header", "-H", help="Extra header NAME:VALUE."),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """Register a deployment: discover its services and make them callable."""
    headers: dict[str, str] = {}
    for h in header:
        name, sep, value = h.partition(":")
        if not sep:
            _err(f"--header must be NAME:VALUE, not {h!r}")
            raise typer.Exit(2)
        headers[name.strip()] = value.strip()
    body: dict[str, Any] = {"uri": uri, "use_http_11": use_http_11, "force": force}
    if headers:
        body["additional_headers"] = headers
    with _client(admin_url) as c:
        doc = c.json("POST", "/deployments", json=body)
    if json_out:
        _print_json(doc)
        return
    typer.echo(f"registered deployment {doc['id']}")
    for s in doc.get("services", []):
        typer.echo(f"  {s['name']} ({s['ty']}, revision {s['revision']}): "
                   + ", ".join(h["name"] for h in s.get("handlers", [])))


@deployments_app.command("list")
def deployments_list(admin_url: str = AdminUrl, json_out: bool = JsonOut) -> None:
    """List the registered deployments."""
    with _client(admin_url) as c:
        deployments = c.json("GET", "/deployments")["deployments"]
    if json_out:
        _print_json(deployments)
        return
    rows = [
        {
            "id": d["id"],
            "endpoint": d.get("uri") or d.get("arn"),
            "protocol": d.get("protocol_type"),
            "services": ", ".join(s["name"] for s in d.get("services", [])),
            "created_at": d.get("created_at"),
        }
        for d in deployments
    ]
    _console().print(_table(rows, ["id", "endpoint", "protocol", "services", "created_at"]))


@deployments_app.command("describe")
def deployments_describe(
    deployment_id: str = typer.Argument(..., metavar="ID"),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """Show one deployment and the services it serves."""
    with _client(admin_url) as c:
        d = c.json("GET", f"/deployments/{deployment_id}")
    if json_out:
        _print_json(d)
        return
    out = _console()
    for k in ("id", "uri", "protocol_type", "http_version", "min_protocol_version",
              "max_protocol_version", "sdk_version", "created_at"):
        if d.get(k) is not None:
            out.print(f"{k + ':':<22}{d[k]}")
    rows = [
        {"service": s["name"], "type": s["ty"], "revision": s["revision"],
         "handlers": ", ".join(h["name"] for h in s.get("handlers", []))}
        for s in d.get("services", [])
    ]
    out.print(_table(rows, ["service", "type", "revision", "handlers"]))


@deployments_app.command("remove")
def deployments_remove(
    deployment_id: str = typer.Argument(..., metavar="ID"),
    yes: bool = Yes,
    admin_url: str = AdminUrl,
) -> None:
    """Remove a deployment (its services stay callable only if another deployment has them)."""
    _confirm(f"Remove deployment {deployment_id}?", yes)
    with _client(admin_url) as c:
        c.request("DELETE", f"/deployments/{deployment_id}", params={"force": "true"})
    typer.echo(f"removed deployment {deployment_id}")


# -- services ---------------------------------------------------------------------------


@services_app.command("list")
def services_list(admin_url: str = AdminUrl, json_out: bool = JsonOut) -> None:
    """List the registered services."""
    with _client(admin_url) as c:
        services = c.json("GET", "/services")["services"]
    if json_out:
        _print_json(services)
        return
    rows = [
        {"name": s["name"], "type": s["ty"], "revision": s["revision"],
         "public": s.get("public"), "deployment": s.get("deployment_id"),
         "handlers": len(s.get("handlers", []))}
        for s in sorted(services, key=lambda s: s["name"])
    ]
    _console().print(_table(rows, ["name", "type", "revision", "public", "deployment", "handlers"]))


_CONFIG_KEYS = ("public", "idempotency_retention", "workflow_completion_retention",
                "journal_retention", "inactivity_timeout", "abort_timeout", "retry_policy")


@services_app.command("describe")
def services_describe(
    name: str = typer.Argument(..., metavar="SERVICE"),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """Show a service: its type, deployment, configuration and handlers."""
    with _client(admin_url) as c:
        s = c.json("GET", f"/services/{name}")
    if json_out:
        _print_json(s)
        return
    out = _console()
    for k in ("name", "ty", "revision", "deployment_id", *_CONFIG_KEYS):
        if s.get(k) is not None:
            out.print(f"{k + ':':<32}{_cell(s[k])}")
    rows = [
        {"handler": h["name"], "type": h.get("ty", ""), "input": h.get("input_description"),
         "output": h.get("output_description"), "public": h.get("public")}
        for h in s.get("handlers", [])
    ]
    out.print(_table(rows, ["handler", "type", "input", "output", "public"]))


@services_app.command("config")
def services_config(
    name: str = typer.Argument(..., metavar="SERVICE"),
    public: bool | None = typer.Option(None, "--public/--private", help="Reachable from the ingress?"),
    idempotency_retention: str | None = typer.Option(None, help="e.g. 1d, 12h"),
    workflow_completion_retention: str | None = typer.Option(None, help="workflows only"),
    journal_retention: str | None = typer.Option(None),
    inactivity_timeout: str | None = typer.Option(None),
    abort_timeout: str | None = typer.Option(None),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """Show a service's configuration, or change it with the options."""
    changes = {
        k: v for k, v in {
            "public": public,
            "idempotency_retention": idempotency_retention,
            "workflow_completion_retention": workflow_completion_retention,
            "journal_retention": journal_retention,
            "inactivity_timeout": inactivity_timeout,
            "abort_timeout": abort_timeout,
        }.items() if v is not None
    }
    with _client(admin_url) as c:
        if changes:
            s = c.json("PATCH", f"/services/{name}", json=changes)
        else:
            s = c.json("GET", f"/services/{name}")
    config = {k: s[k] for k in _CONFIG_KEYS if k in s}
    if json_out:
        _print_json(config)
        return
    out = _console()
    for k, v in config.items():
        out.print(f"{k + ':':<32}{_cell(v)}")


# -- invocations ------------------------------------------------------------------------

_STATUSES = ("pending", "scheduled", "ready", "running", "paused", "backing-off",
             "suspended", "completed")


@invocations_app.command("list")
def invocations_list(
    status: list[str] = typer.Option([], "--status", help=f"One of {', '.join(_STATUSES)} (repeatable)."),
    service: str | None = typer.Option(None, "--service", help="Only this service."),
    key: str | None = typer.Option(None, "--key", help="Only this object/workflow key."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many (newest first)."),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """List invocations, newest first."""
    for s in status:
        if s not in _STATUSES:
            _err(f"unknown status {s!r}; use one of: {', '.join(_STATUSES)}")
            raise typer.Exit(2)
    where = []
    if status:
        where.append(f"status IN ({', '.join(sql_string(s) for s in status)})")
    if service:
        where.append(f"target_service_name = {sql_string(service)}")
    if key is not None:
        where.append(f"target_service_key = {sql_string(key)}")
    sql = (
        "SELECT id, target, status, retry_count, created_at, modified_at, last_failure "
        "FROM sys_invocation"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY created_at DESC, id LIMIT {limit}"
    )
    with _client(admin_url) as c:
        rows = c.query(sql)
    if json_out:
        _print_json(rows)
        return
    if not rows:
        typer.echo("no invocations")
        return
    _console().print(_table(rows, ["id", "target", "status", "retry_count", "created_at",
                                   "last_failure"]))


def _fmt_time(ts: str | None) -> str:
    if not ts:
        return ""
    return ts.replace("T", " ").removesuffix("Z")


def _describe_entry(e: dict[str, Any]) -> str:
    text = e.get("entry_type", "?")
    if e.get("name"):
        text += f" {e['name']!r}"
    if e.get("invoked_target"):
        text += f" -> {e['invoked_target']}"
        if e.get("invoked_id"):
            text += f" ({e['invoked_id']})"
    if e.get("sleep_wakeup_at"):
        text += f" until {_fmt_time(e['sleep_wakeup_at'])}"
    if e.get("promise_name"):
        text += f" promise {e['promise_name']!r}"
    return text


@invocations_app.command("describe")
def invocations_describe(
    invocation_id: str = typer.Argument(..., metavar="ID"),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """Show an invocation: target, status, retries, last failure, its journal, and the
    request (body and headers) and output it was called with and answered."""
    from durably.cli.payloads import JOURNAL_QUERY, describe_lines, request_and_output

    with _client(admin_url) as c:
        rows = c.query(f"SELECT * FROM sys_invocation WHERE id = {sql_string(invocation_id)}")
        if not rows:
            raise CliError(f"invocation {invocation_id} not found", EXIT_NOT_FOUND)
        inv = rows[0]
        journal = c.query(
            "SELECT index, entry_type, name, invoked_id, invoked_target, sleep_wakeup_at, "
            "promise_name, appended_at, entry_lite_json FROM sys_journal "
            f"WHERE id = {sql_string(invocation_id)} ORDER BY index"
        )
        request, output = request_and_output(
            c.query(JOURNAL_QUERY.format(id=sql_string(invocation_id)))
        )
    if json_out:
        _print_json({"invocation": inv, "journal": journal, "request": request,
                     "output": output})
        return
    out = _console()
    fields = [
        ("id", inv.get("id")),
        ("target", inv.get("target")),
        ("status", inv.get("status")),
        ("invoked by", inv.get("invoked_by")
         + (f" {inv['invoked_by_target']} ({inv['invoked_by_id']})"
            if inv.get("invoked_by_id") else "")),
        ("idempotency key", inv.get("idempotency_key")),
        ("deployment", inv.get("pinned_deployment_id")),
        ("created", _fmt_time(inv.get("created_at"))),
        ("modified", _fmt_time(inv.get("modified_at"))),
        ("retries", inv.get("retry_count")),
        ("next retry", _fmt_time(inv.get("next_retry_at"))),
        ("last failure", inv.get("last_failure")),
        ("completed", _fmt_time(inv.get("completed_at"))),
        ("result", inv.get("completion_result")),
        ("failure", inv.get("completion_failure")),
    ]
    for label, value in fields:
        if value not in (None, ""):
            out.print(Text(f"{label + ':':<18}") + Text(str(value)))
    out.print(Text(f"journal ({len(journal)} entries):"))
    for i, e in enumerate(journal):
        branch = "└──" if i == len(journal) - 1 else "├──"
        out.print(
            Text(f"  {branch} #{e.get('index')} [{_fmt_time(e.get('appended_at'))}] ")
            + Text(_describe_entry(e))
        )
    for line in describe_lines(request, output):
        out.print(Text(line))


def _act(
    action: str,
    ids: list[str],
    query: str | None,
    yes: bool,
    admin_url: str,
) -> None:
    verb = {"cancel": "Cancel", "kill": "Kill", "purge": "Purge"}[action]
    with _client(admin_url) as c:
        targets = list(ids)
        if query:
            rows = c.query(query)
            if rows and "id" not in rows[0]:
                raise CliError("the --query must select a column named id")
            targets += [str(r["id"]) for r in rows]
        targets = list(dict.fromkeys(targets))
        if not targets:
            if query:
                typer.echo("the query matched no invocations")
                return
            _err("give invocation ids or --query")
            raise typer.Exit(2)
        what = targets[0] if len(targets) == 1 else f"{len(targets)} invocations"
        if action == "kill":
            what += " (no compensation runs: prefer cancel)"
        _confirm(f"{verb} {what}?", yes)
        failures: list[tuple[str, CliError]] = []
        done = 0

        def one(inv_id: str) -> None:
            nonlocal done
            try:
                c.request("PATCH", f"/invocations/{inv_id}/{action}")
                done += 1
            except CliError as e:
                if e.code in (EXIT_ERROR, EXIT_NOT_FOUND, EXIT_REFUSED):
                    failures.append((inv_id, e))
                else:
                    raise

        _run_all(targets, one, f"{verb.lower().rstrip('e')}ing")
    for inv_id, e in failures:
        _err(f"{inv_id}: {e.message}")
    past = {"cancel": "cancelled", "kill": "killed", "purge": "purged"}[action]
    typer.echo(f"{past} {done} of {len(targets)} invocation{'s' if len(targets) != 1 else ''}")
    if failures:
        raise typer.Exit(failures[0][1].code if len(failures) == len(targets) else EXIT_ERROR)


def _run_all(items: list[str], fn: Callable[[str], None], label: str) -> None:
    if len(items) == 1:
        fn(items[0])
        return
    with Progress(
        TextColumn(f"{label}"), BarColumn(), MofNCompleteColumn(),
        console=Console(stderr=True), transient=True,
    ) as progress:
        task = progress.add_task(label, total=len(items))
        for item in items:
            fn(item)
            progress.advance(task)


_ActQuery = typer.Option(
    None, "--query", "-q",
    help="SQL selecting an `id` column: act on every invocation it returns, "
    "e.g. \"SELECT id FROM sys_invocation WHERE status = 'backing-off'\".",
)
_Ids = typer.Argument(None, metavar="ID...", help="Invocation ids.")


@invocations_app.command("cancel")
def invocations_cancel(
    ids: list[str] = _Ids, query: str | None = _ActQuery, yes: bool = Yes,
    admin_url: str = AdminUrl,
) -> None:
    """Cancel invocations: they end with a 409 'canceled' after running their compensations."""
    _act("cancel", ids or [], query, yes, admin_url)


@invocations_app.command("kill")
def invocations_kill(
    ids: list[str] = _Ids, query: str | None = _ActQuery, yes: bool = Yes,
    admin_url: str = AdminUrl,
) -> None:
    """Kill invocations: stop them at once, without running any more of their code."""
    _act("kill", ids or [], query, yes, admin_url)


@invocations_app.command("purge")
def invocations_purge(
    ids: list[str] = _Ids, query: str | None = _ActQuery, yes: bool = Yes,
    admin_url: str = AdminUrl,
) -> None:
    """Purge completed invocations: forget their result, journal and idempotency key."""
    _act("purge", ids or [], query, yes, admin_url)


# -- state ------------------------------------------------------------------------------


@state_app.command("get")
def state_get(
    service: str = typer.Argument(...),
    key: str = typer.Argument(...),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """Print the state of one virtual object or workflow instance."""
    with _client(admin_url) as c:
        rows = c.query(
            "SELECT key, value_utf8, value_length FROM state "
            f"WHERE service_name = {sql_string(service)} AND service_key = {sql_string(key)} "
            "ORDER BY key"
        )
    if json_out:
        out: dict[str, Any] = {}
        for r in rows:
            text = r.get("value_utf8")
            try:
                out[r["key"]] = orjson.loads(text) if text is not None else None
            except orjson.JSONDecodeError:
                out[r["key"]] = text
        _print_json(out)
        return
    if not rows:
        typer.echo(f"no state for {service}/{key}")
        return
    _console().print(_table(
        [{"key": r["key"], "value": r.get("value_utf8"), "bytes": r.get("value_length")}
         for r in rows],
        ["key", "value", "bytes"],
    ))


# -- sql --------------------------------------------------------------------------------


def sql_command(
    query: str = typer.Argument(..., help="A SELECT over sys_invocation, sys_journal, state, ..."),
    admin_url: str = AdminUrl,
    json_out: bool = JsonOut,
) -> None:
    """Run a SQL query over the introspection tables (see docs/operations.md)."""
    with _client(admin_url) as c:
        rows = c.query(query)
    if json_out:
        _print_json(rows)
        return
    if not rows:
        typer.echo("(no rows)")
        return
    out = _console()
    out.print(_table(rows))
    out.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")


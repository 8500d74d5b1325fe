"""The operator CLI (`durably deployments|services|invocations|state|sql`), run as a
subprocess against a real server with the conformance services registered.

Checks what a script relies on: the output, and the exit codes (0 ok, 3 not found,
4 refused, 5 declined confirmation, 6 unreachable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from tests.support.harness import REPO_ROOT, Env, free_port, start_env, stop_env

SERVICES = ["Counter", "BlockAndWaitWorkflow", "OpsTestService", "Proxy"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if os.environ.get("DURABLY_TEST_TARGET", "durably") != "durably":
        pytest.skip("the durably CLI is tested against durably")
    e = start_env(tmp_path_factory.mktemp("ops-cli"), SERVICES, "h2")
    try:
        yield e
    finally:
        stop_env(e)


def durably(env: Env | None, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"),
                                                          environ.get("PYTHONPATH")]))
    environ.pop("DURABLY_ADMIN_URL", None)
    if env is not None:
        environ["DURABLY_ADMIN_URL"] = env.admin
    return subprocess.run(
        [sys.executable, "-m", "durably", *args],
        input=input, capture_output=True, text=True, env=environ, timeout=60,
    )


def ok(env: Env, *args: str, input: str = "") -> str:
    r = durably(env, *args, input=input)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    return r.stdout


def test_services_list_and_describe(env: Env) -> None:
    out = ok(env, "services", "list")
    for name in SERVICES:
        assert name in out
    assert "VirtualObject" in out
    services = json.loads(ok(env, "services", "list", "--json"))
    assert {s["name"] for s in services} == set(SERVICES)
    out = ok(env, "services", "describe", "Counter")
    assert "add" in out and "get" in out and "VirtualObject" in out


def test_services_config(env: Env) -> None:
    config = json.loads(ok(env, "services", "config", "Proxy", "--json"))
    assert config["idempotency_retention"] == "1d"
    out = ok(env, "services", "config", "Proxy", "--idempotency-retention", "2h")
    assert "2h" in out
    assert json.loads(ok(env, "services", "config", "Proxy", "--json"))[
        "idempotency_retention"] == "2h"


def test_deployments(env: Env) -> None:
    deployments = json.loads(ok(env, "deployments", "list", "--json"))
    assert len(deployments) == 1
    dep_id = deployments[0]["id"]
    assert dep_id in ok(env, "deployments", "list")
    out = ok(env, "deployments", "describe", dep_id)
    assert env.services.url.rstrip("/") in out and "Counter" in out
    # registering the same endpoint again answers the same deployment
    out = ok(env, "deployments", "register", env.services.url)
    assert dep_id in out and "Counter" in out
    r = durably(env, "deployments", "describe", "dp_10000000000000000000000")
    assert r.returncode == 3, r.stderr


def test_deployments_remove_and_register(env: Env) -> None:
    dep_id = json.loads(ok(env, "deployments", "list", "--json"))[0]["id"]
    r = durably(env, "deployments", "remove", dep_id, input="n\n")
    assert r.returncode == 5
    assert "aborted" in r.stderr
    assert json.loads(ok(env, "deployments", "list", "--json"))
    assert "removed" in ok(env, "deployments", "remove", dep_id, "--yes")
    assert json.loads(ok(env, "deployments", "list", "--json")) == []
    out = ok(env, "deployments", "register", env.services.url)
    assert "registered deployment dp_" in out


def test_invocations_list_describe_state(env: Env) -> None:
    key = env.new_key()
    assert env.call_json("Counter", "add", 7, key=key) == {"oldValue": 0, "newValue": 7}
    rows = json.loads(ok(env, "invocations", "list", "--service", "Counter", "--key", key,
                         "--json"))
    assert len(rows) == 1 and rows[0]["status"] == "completed"
    inv_id = rows[0]["id"]
    out = ok(env, "invocations", "list", "--service", "Counter", "--key", key)
    assert inv_id in out and f"Counter/{key}/add" in out
    out = ok(env, "invocations", "describe", inv_id)
    assert f"Counter/{key}/add" in out
    assert "completed" in out
    assert "Command: Input" in out and "Command: SetState" in out and "Command: Output" in out
    assert json.loads(ok(env, "state", "get", "Counter", key, "--json")) == {"counter": 7}
    out = ok(env, "state", "get", "Counter", key)
    assert "counter" in out and "7" in out
    r = durably(env, "invocations", "describe", "inv_1bL5rC1l88Ju2w0YQcY0ltumzgWIukBap3")
    assert r.returncode == 3 and "not found" in r.stderr


def test_failing_invocation_describe_and_kill(env: Env) -> None:
    inv_id, _ = env.send("OpsTestService", "alwaysFails", "cli")

    def retried() -> None:
        rows = env.query(f"SELECT retry_count FROM sys_invocation WHERE id = '{inv_id}'")
        assert rows and rows[0].get("retry_count", 0) >= 2

    env.poll(retried, timeout=30)
    out = ok(env, "invocations", "describe", inv_id)
    assert "retries:" in out and "always failing: cli" in out
    listed = ok(env, "invocations", "list", "--status", "backing-off", "--status", "running")
    assert inv_id in listed
    # declined, then confirmed with --yes
    r = durably(env, "invocations", "kill", inv_id, input="n\n")
    assert r.returncode == 5
    assert "killed 1 of 1" in ok(env, "invocations", "kill", inv_id, "--yes")
    rows = env.query(f"SELECT status, completion_failure FROM sys_invocation WHERE id = '{inv_id}'")
    assert rows[0]["status"] == "completed"
    # purge it; a second purge finds nothing
    assert "purged 1 of 1" in ok(env, "invocations", "purge", inv_id, "--yes")
    r = durably(env, "invocations", "purge", inv_id, "--yes")
    assert r.returncode == 3


def test_bulk_cancel_by_query(env: Env) -> None:
    keys = [env.new_key() for _ in range(3)]
    ids = [env.send("BlockAndWaitWorkflow", "run", "x", key=k, idem=False)[0] for k in keys]
    sql = ("SELECT id FROM sys_invocation WHERE target_service_name = 'BlockAndWaitWorkflow' "
           "AND status != 'completed'")

    def started() -> None:
        assert len(env.query(sql)) >= 3

    env.poll(started)
    out = ok(env, "invocations", "cancel", "--yes", "--query", sql)
    assert "cancelled 3 of 3 invocations" in out

    def cancelled() -> None:
        for inv_id in ids:
            rows = env.query(f"SELECT status, completion_failure FROM sys_invocation "
                             f"WHERE id = '{inv_id}'")
            assert rows[0]["status"] == "completed"
            assert "[409]" in rows[0]["completion_failure"]

    env.poll(cancelled)
    assert "matched no invocations" in ok(env, "invocations", "cancel", "--yes", "--query", sql)


def test_cancel_completed_is_refused(env: Env) -> None:
    key = env.new_key()
    env.call_json("Counter", "add", 1, key=key)
    inv_id = env.query(f"SELECT id FROM sys_invocation WHERE target_service_key = '{key}'")[0]["id"]
    r = durably(env, "invocations", "cancel", inv_id, "--yes")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "completed" in r.stderr


def test_sql(env: Env) -> None:
    out = ok(env, "sql", "SELECT name, ty FROM sys_service ORDER BY name")
    assert "Counter" in out and "virtual_object" in out and "4 rows" in out
    rows = json.loads(ok(env, "sql", "--json", "SELECT name FROM sys_service ORDER BY name"))
    assert [r["name"] for r in rows] == sorted(SERVICES)
    r = durably(env, "sql", "DELETE FROM state")
    assert r.returncode == 4 and "only SELECT" in r.stderr
    r = durably(env, "sql", "SELEC 1")
    assert r.returncode == 1 and "syntax error" in r.stderr
    assert "Traceback" not in r.stderr


def test_unreachable_server_is_one_line_and_exit_6() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["services", "list"], ["invocations", "list"], ["sql", "SELECT 1"]):
        r = durably(None, *args, "--admin-url", url)
        assert r.returncode == 6, (args, r.stderr)
        assert r.stderr.count("\n") == 1
        assert "cannot reach the admin API" in r.stderr
        assert "Traceback" not in r.stderr


def test_no_stack_trace_on_bad_usage() -> None:
    r = durably(None, "invocations", "list", "--status", "nope")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr




"""schemathesis against the admin API and the ingress of a running server.

No answer may be a 5xx, none may hang (each request has a timeout), and every answer must
match its document: the admin API's own ``GET /openapi`` (so routes other parts of durably
add to that document are fuzzed too) and, for the ingress, a document written from the
registered services (``ingress_openapi``).

Registering a deployment makes durably connect to the given URI, so ``POST /deployments``
is fuzzed in a run of its own, with positive data only, whose document pins ``uri`` to
the test's loopback services: nothing here can make durably connect beyond this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.abuse.ingress_openapi import ingress_openapi
from tests.support.harness import Env

pytestmark = [pytest.mark.timeout(600)]

FUZZ_APP = "tests.abuse.services:app"
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = os.environ.get("DURABLY_FUZZ_EXAMPLES", "25")
# stateful links and negative cases each round; "stateful" needs links we do not declare
PHASES = "examples,coverage,fuzzing"


def _schemathesis(doc: dict[str, Any], base_url: str, tmp: Path, name: str,
                  *extra: str) -> None:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(doc))
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
        "run", str(path), "--url", base_url,
        "--checks", "all",
        # Not checked: auth (none exists yet); resources "owned" by a path (the ingress's
        # keyed paths never are); and that every schema-valid request is accepted: a
        # duration string or an SQL text is valid only if it parses, which a JSON schema
        # cannot say (rejecting invalid data *is* checked: negative_data_rejection).
        "--exclude-checks",
        "ignored_auth,use_after_free,ensure_resource_availability,positive_data_acceptance",
        "--phases", PHASES, "--max-examples", EXAMPLES, "--request-timeout", "20",
        "--seed", os.environ.get("DURABLY_FUZZ_SEED", "1"),
        # one worker: with two threads, hypothesis's lambda descriptions call ast.parse
        # concurrently, which CPython 3.11 does not support ("AST constructor recursion
        # depth mismatch": a runtime error of the tool, not an answer of durably's)
        "--workers", "1",
        "--suppress-health-check", "all", "--no-color", *extra,
    ]
    # cwd: schemathesis keeps a cache directory where it runs (not in the repository)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=540, cwd=tmp)
    assert p.returncode == 0, f"schemathesis ({name}) found problems:\n{p.stdout[-20000:]}\n{p.stderr[-3000:]}"


def _loopback_only(doc: dict[str, Any], services_url: str) -> dict[str, Any]:
    """The admin document with ``RegisterDeploymentRequest.uri`` fixed to ``services_url``."""
    doc = json.loads(json.dumps(doc))
    req = doc["components"]["schemas"]["RegisterDeploymentRequest"]
    req["properties"]["uri"] = {"const": services_url}
    req["additionalProperties"] = False
    return doc


def test_admin_api(fault_env, tmp_path: Path) -> None:
    env: Env = fault_env(app=FUZZ_APP)
    doc = httpx.get(f"{env.admin}/openapi").json()
    # everything but registration, positive and negative data
    _schemathesis(doc, env.admin, tmp_path, "admin",
                  "--exclude-operation-id", "create_deployment")
    # registration, only ever with the test's own loopback services
    _schemathesis(_loopback_only(doc, env.services.url), env.admin, tmp_path, "register",
                  "--include-operation-id", "create_deployment", "--mode", "positive")
    assert env.server.proc.poll() is None, "the server died during the fuzz run"


def test_ingress(fault_env, tmp_path: Path) -> None:
    env: Env = fault_env(app=FUZZ_APP)
    services = httpx.get(f"{env.admin}/services").json()["services"]
    assert {s["name"] for s in services} == {"Echo", "Box", "Flow"}
    _schemathesis(ingress_openapi(services), env.ingress, tmp_path, "ingress")
    assert env.server.proc.poll() is None, "the server died during the fuzz run"

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from _sdk_harness import asgi_request, make_app

from durably.protocol.discovery import (
    DISCOVERY_ACCEPT,
    InputRules,
    ManifestError,
    media_type_matches,
    parse_manifest,
)

FIXTURE = Path(__file__).parent / "fixtures" / "python_sdk_manifest.json"
CT4 = "application/vnd.restate.endpointmanifest.v4+json"


def load() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(FIXTURE.read_bytes())
    return doc


def parse(doc: dict[str, Any], ct: str = CT4) -> Any:
    return parse_manifest(ct, json.dumps(doc).encode())


def test_accept_header_is_what_restate_sends() -> None:
    assert DISCOVERY_ACCEPT == (
        "application/vnd.restate.endpointmanifest.v1+json, "
        "application/vnd.restate.endpointmanifest.v2+json, "
        "application/vnd.restate.endpointmanifest.v3+json, "
        "application/vnd.restate.endpointmanifest.v4+json"
    )


async def test_live_sdk_discovery_matches_fixture() -> None:
    # The fixture was captured from this very app; if the SDK changes its output, we notice.
    resp = await asgi_request(make_app(), "GET", "/discover", {"accept": DISCOVERY_ACCEPT})
    assert resp.status == 200
    assert resp.headers["content-type"] == CT4
    assert json.loads(resp.body) == load()
    m = parse_manifest(resp.headers["content-type"], resp.body)
    assert m.protocol_mode == "bidi"


async def test_sdk_over_http11_reports_request_response() -> None:
    resp = await asgi_request(
        make_app(), "GET", "/discover", {"accept": DISCOVERY_ACCEPT}, http_version="1.1"
    )
    m = parse_manifest(resp.headers["content-type"], resp.body)
    assert m.protocol_mode == "request_response"


def test_parse_real_manifest() -> None:
    m = parse(load())
    assert m.manifest_version == 4
    assert (m.min_protocol_version, m.max_protocol_version) == (5, 7)
    assert [s.name for s in m.services] == ["Greeter", "Counter", "Signup"]

    greeter = m.services[0]
    assert greeter.ty == "service" and not greeter.is_keyed
    assert greeter.documentation == "Says hello"
    assert greeter.metadata == {"team": "core"}
    greet = greeter.handler("greet")
    assert greet is not None
    assert greet.ty is None
    assert greet.input.present and not greet.input.required
    assert greet.input.content_type == "application/json"
    assert greet.input.json_schema == {"type": "string"}
    assert greet.output.content_type == "application/json"
    assert greet.raw["name"] == "greet"
    describe = greeter.handler("describe")
    assert describe is not None and describe.inactivity_timeout_ms == 30_000
    ping = greeter.handler("ping")
    assert ping is not None and not ping.input.present
    assert ping.output.content_type is None
    assert greeter.handler("nope") is None

    counter = m.service("Counter")
    assert counter is not None and counter.ty == "virtual_object"
    assert counter.inactivity_timeout_ms == 120_000
    assert counter.idempotency_retention_ms == 3_600_000
    add, get = counter.handlers
    assert (add.ty, get.ty) == ("exclusive", "shared")

    signup = m.service("Signup")
    assert signup is not None and signup.ty == "workflow"
    assert signup.journal_retention_ms == 86_400_000
    run = signup.handler("run")
    confirm = signup.handler("confirm")
    assert run is not None and confirm is not None
    assert run.ty == "workflow" and confirm.ty == "shared"
    assert run.workflow_completion_retention_ms == 172_800_000
    assert run.enable_lazy_state is True
    assert signup.raw["ty"] == "WORKFLOW"


def test_handler_type_defaults() -> None:
    doc = load()
    for h in doc["services"][1]["handlers"]:
        h.pop("ty")
    doc["services"][2]["handlers"] = [{"name": "run", "input": {}, "output": {}}]
    m = parse(doc)
    assert [h.ty for h in m.services[1].handlers] == ["exclusive", "exclusive"]
    assert m.services[2].handlers[0].ty == "workflow"


def test_options_and_retry_policy() -> None:
    doc = load()
    svc = doc["services"][0]
    svc.update(
        abortTimeout=1,
        enableLazyState=False,
        ingressPrivate=True,
        retryPolicyInitialInterval=50,
        retryPolicyMaxInterval=60_000,
        retryPolicyMaxAttempts=3,
        retryPolicyExponentiationFactor=2,
        retryPolicyOnMaxAttempts="KILL",
    )
    svc["handlers"][0].update(retryPolicyMaxAttempts=10, documentation="d", metadata={"a": "b"})
    m = parse(doc)
    s = m.services[0]
    assert s.abort_timeout_ms == 1 and s.ingress_private is True and s.enable_lazy_state is False
    assert s.retry_policy is not None
    assert s.retry_policy.exponentiation_factor == 2.0
    assert s.retry_policy.on_max_attempts == "KILL"
    h = s.handlers[0]
    assert h.retry_policy is not None and h.retry_policy.max_attempts == 10
    assert h.retry_policy.initial_interval_ms is None
    assert h.documentation == "d" and h.metadata == {"a": "b"}
    assert s.handlers[1].retry_policy is None


def test_older_manifest_versions_and_parameters() -> None:
    doc = load()
    for v in (1, 2, 3):
        assert (
            parse(doc, f"application/vnd.restate.endpointmanifest.v{v}+json").manifest_version == v
        )
    assert parse(doc, CT4.upper() + "; charset=utf-8").manifest_version == 4


def _mutate(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(load())
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


_DELETE = object()

BAD_DOCS = [
    ("protocolMode", _DELETE, "protocolMode"),
    ("protocolMode", "LAMBDA", "protocolMode"),
    ("minProtocolVersion", _DELETE, "minProtocolVersion"),
    ("minProtocolVersion", "5", "minProtocolVersion"),
    ("maxProtocolVersion", 4, "greater than"),
    ("services", {}, "list"),
    ("services.0.name", "1bad", "invalid name"),
    ("services.0.name", "", "no name"),
    ("services.0.ty", "ACTOR", "unknown ty"),
    ("services.0.handlers.0.name", "bad-name", "invalid name"),
    ("services.0.handlers.0.name", "describe", "more than once"),
    ("services.0.handlers.0.ty", "EXCLUSIVE", "not allowed"),
    ("services.1.handlers.0.ty", "WORKFLOW", "not allowed"),
    ("services.1.handlers.0.ty", "PRIVATE", "unknown ty"),
    ("services.2.handlers", [{"name": "confirm", "ty": "SHARED"}], "found 0"),
    ("services.2.handlers.1.ty", "WORKFLOW", "found 2 (run, confirm)"),
    ("services.2.handlers.1.ty", "EXCLUSIVE", "not allowed"),
    ("services.1.name", "Greeter", "more than once"),
    ("services.1.inactivityTimeout", -1, "non-negative"),
    ("services.1.inactivityTimeout", True, "non-negative"),
    ("services.1.ingressPrivate", "yes", "boolean"),
    ("services.1.metadata", {"a": 1}, "metadata"),
    ("services.1.retryPolicyOnMaxAttempts", "RETRY", "PAUSE or KILL"),
    ("services.1.retryPolicyExponentiationFactor", 0.5, ">= 1"),
    ("services.0.handlers.0.input", [], "'input'"),
    ("services.0.handlers.0.output", "x", "'output'"),
    ("services.0.handlers.0.workflowCompletionRetention", 5, "WORKFLOW handler"),
    ("services.0.handlers", {}, "list"),
    ("services.0", "Greeter", "JSON object"),
]


@pytest.mark.parametrize(
    "path,value,fragment", BAD_DOCS, ids=[f"{p}={v!r}" for p, v, _ in BAD_DOCS]
)
def test_bad_manifests(path: str, value: Any, fragment: str) -> None:
    with pytest.raises(ManifestError) as ei:
        parse(_mutate(path, value))
    assert fragment in str(ei.value), str(ei.value)


@pytest.mark.parametrize(
    "lo,hi",
    [(1, 4), (8, 9), (0, 4)],
)
def test_no_version_overlap(lo: int, hi: int) -> None:
    doc = load()
    doc.update(minProtocolVersion=lo, maxProtocolVersion=hi)
    with pytest.raises(ManifestError, match="supports service protocol versions"):
        parse(doc)


def test_partial_overlap_is_fine() -> None:
    doc = load()
    doc.update(minProtocolVersion=3, maxProtocolVersion=5)
    assert parse(doc).max_protocol_version == 5


@pytest.mark.parametrize(
    "ct",
    [
        "application/json",
        "application/vnd.restate.endpointmanifest.v5+json",
        "application/vnd.restate.endpointmanifest.v0+json",
        "",
    ],
)
def test_unexpected_content_type(ct: str) -> None:
    with pytest.raises(ManifestError, match="not one we asked for"):
        parse(load(), ct)


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b"\xff\xfe", b""])
def test_bad_json(body: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(CT4, body)


def test_empty_services_is_allowed() -> None:
    doc = load()
    doc["services"] = []
    assert parse(doc).services == ()


# --- input validation ----------------------------------------------------------------------

JSON_IN = InputRules(required=False, content_type="application/json", present=True)


def test_no_input_handler() -> None:
    rules = InputRules(present=False)
    assert rules.validate(None, b"") is None
    # Restate answers 400 for a content-type even with an empty body (http-api.md pitfall)
    assert rules.validate("application/json", b"") is not None
    assert rules.validate(None, b"{}") is not None


def test_optional_json_input() -> None:
    assert JSON_IN.validate(None, b"") is None
    assert JSON_IN.validate("application/json", b"") is None
    assert JSON_IN.validate("application/json", b'"x"') is None
    assert JSON_IN.validate("application/json; charset=utf-8", b'"x"') is None
    assert JSON_IN.validate("Application/JSON", b'"x"') is None
    assert JSON_IN.validate(None, b'"x"') is not None
    assert JSON_IN.validate("text/plain", b"x") is not None
    assert JSON_IN.validate("text/plain", b"") is not None


def test_required_input() -> None:
    rules = InputRules(required=True, content_type="application/json", present=True)
    assert rules.validate(None, b"") is not None
    assert rules.validate("application/json", b"") is not None
    assert rules.validate("application/json", b"1") is None


def test_wildcards() -> None:
    any_in = InputRules(content_type="*/*", present=True)
    assert any_in.validate("text/plain", b"x") is None
    app_in = InputRules(content_type="application/*", present=True)
    assert app_in.validate("application/octet-stream", b"x") is None
    assert app_in.validate("text/plain", b"x") is not None
    untyped = InputRules(present=True)
    assert untyped.validate(None, b"x") is None
    assert untyped.validate("whatever/thing", b"x") is None
    assert media_type_matches("text/plain, application/json", "application/json")
    assert not media_type_matches("text/*", "application/json")

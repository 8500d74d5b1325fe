"""`PATCH /services/{service}`: the options Restate lets one change on a registered service
(public, idempotency/journal/workflow-completion retention, inactivity and abort timeouts),
the form the answer prints them in, and the refusals. The web UI's service page edits
options through this route. Passes against the real Restate server too, except that
Restate ends its 422 messages with the JSON position (" at line 1 column 27")."""

from __future__ import annotations

from typing import Any

from tests.support.harness import Env

SERVICES = ["Counter", "BlockAndWaitWorkflow"]


def _get(env: Env, service: str) -> dict[str, Any]:
    r = env.client.get(f"{env.admin}/services/{service}")
    assert r.status_code == 200, r.text
    return r.json()


def _options(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer without its handlers (Restate lists them in no fixed order)."""
    return {k: v for k, v in answer.items() if k != "handlers"}


def _request_response(env: Env, service: str) -> bool:
    dep = _get(env, service)["deployment_id"]
    r = env.client.get(f"{env.admin}/deployments/{dep}")
    assert r.status_code == 200, r.text
    return bool(r.json()["protocol_type"] == "RequestResponse")


def test_durations_and_public(env: Env) -> None:
    before = _get(env, "Counter")
    r = env.patch_service("Counter")
    assert r.status_code == 200 and _options(r.json()) == _options(before)
    r = env.patch_service("Counter", journal_retention="2h", idempotency_retention="PT3H",
                          abort_timeout="1 day 2 hours")
    assert r.status_code == 200, r.text
    after = r.json()
    assert (after["journal_retention"], after["idempotency_retention"],
            after["abort_timeout"]) == ("2h", "3h", "1d 2h")
    assert _options(_get(env, "Counter")) == _options(after)
    r = env.patch_service("Counter", journal_retention="0s")
    assert r.status_code == 200 and r.json()["journal_retention"] == "0s"
    # null leaves a field as it is
    r = env.patch_service("Counter", journal_retention=None)
    assert r.status_code == 200 and r.json()["journal_retention"] == "0s"
    r = env.patch_service("Counter", public=False)
    assert r.status_code == 200 and r.json()["public"] is False
    r = env.patch_service("Counter", public=True)
    assert r.status_code == 200 and r.json()["public"] is True
    # fields Restate does not let one change are ignored, not refused
    r = env.patch_service("Counter", retry_policy={"max_attempts": 3})
    assert r.status_code == 200
    assert r.json()["retry_policy"] == before["retry_policy"]


def test_inactivity_timeout(env: Env) -> None:
    """Over HTTP/2 the timeout is applied; a deployment that speaks request/response (the
    HTTP/1.1 variant) keeps it but does not apply it, and Restate says so."""
    r = env.patch_service("Counter", inactivity_timeout="90s")
    assert r.status_code == 200, r.text
    body = r.json()
    if not _request_response(env, "Counter"):
        assert body["inactivity_timeout"] == "1m 30s" and "info" not in body
        return
    assert body["inactivity_timeout"] == "0s"
    assert body["info"] == [{
        "code": "RT0021",
        "message": "The configured inactivity_timeout 1m 30s will not be applied because "
                   "the service is exposed in Request/Response mode."}]
    assert _get(env, "Counter")["info"] == body["info"]


def test_workflow_completion_retention(env: Env) -> None:
    r = env.patch_service("BlockAndWaitWorkflow", workflow_completion_retention="2d")
    assert r.status_code == 200 and r.json()["workflow_completion_retention"] == "2d"
    r = env.patch_service("Counter", workflow_completion_retention="1d")
    assert r.status_code == 400
    assert r.json()["message"] == ("modifying retention time for service type VirtualObject "
                                   "is unsupported")


def test_refusals(env: Env) -> None:
    prefix = "Failed to deserialize the JSON body into the target type: "
    for body, message in [
        ({"journal_retention": "nope"}, "journal_retention: failed to parse input in the "
         "\"friendly\" duration format: expected duration to start with a unit value"),
        ({"journal_retention": ""}, "journal_retention: an empty string is not a valid "
         "duration in either the ISO 8601 format or Jiff's \"friendly\" format"),
        ({"journal_retention": 5}, "journal_retention: invalid type: integer `5`, expected a "),
        ({"public": "yes"}, "public: invalid type: string \"yes\", expected a boolean"),
    ]:
        r = env.patch_service("Counter", **body)
        assert r.status_code == 422, (body, r.text)
        assert r.text.startswith(prefix + message), (body, r.text)
    r = env.patch_service("Nope", public=True)
    assert r.status_code == 404
    assert r.json()["message"] == "not found in the schema registry: service with name 'Nope'"
    r = env.client.patch(f"{env.admin}/services/Counter", content=b"{}")
    assert r.status_code == 415
    r = env.client.patch(f"{env.admin}/services/Counter", content=b"{",
                         headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.text.startswith("Failed to parse the request body as JSON")

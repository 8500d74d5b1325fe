"""Request-response calls: services, virtual objects, typed outputs, raw bytes, headers,
idempotency keys."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, TypedDict

import pydantic
import pytest
from tests.client.support import RETRY

from durably.client import Client, OutputError

SERVICES = ["Counter", "TestUtilsService"]


@dataclasses.dataclass
class AddResult:
    oldValue: int
    newValue: int


class AddResultModel(pydantic.BaseModel):
    oldValue: int
    newValue: int


class AddResultDict(TypedDict):
    oldValue: int
    newValue: int


@dataclasses.dataclass
class Greeting:
    text: str


def key() -> str:
    return str(uuid.uuid4())


def test_service_call_returns_json(c: Any) -> None:
    assert c.service("TestUtilsService").call("echo", "Alice", output=str) == "Alice"
    assert c.service("TestUtilsService").call("uppercaseEcho", "alice") == "ALICE"


def test_object_call_typed_outputs(c: Any) -> None:
    counter = c.object("Counter", key())
    assert counter.call("add", 1, output=AddResult) == AddResult(0, 1)
    assert counter.call("add", 2, output=AddResultModel) == AddResultModel(oldValue=1, newValue=3)
    assert counter.call("add", 3, output=AddResultDict) == {"oldValue": 3, "newValue": 6}
    assert counter.call("add", 4) == {"oldValue": 6, "newValue": 10}
    # no input: no body and no content type (Restate rejects both for such handlers)
    assert counter.call("get", output=int) == 10


def test_handler_returning_nothing_gives_none(c: Any) -> None:
    counter = c.object("Counter", key())
    counter.call("add", 5)
    assert counter.call("reset") is None
    assert counter.call("get", output=int) == 0


def test_output_that_does_not_validate_raises_output_error(c: Any) -> None:
    with pytest.raises(OutputError) as exc:
        c.service("TestUtilsService").call("echo", "not a number", output=int)
    assert exc.value.retry_safe is False


def test_dataclass_and_model_inputs_are_serialised_as_json(c: Any) -> None:
    # echo takes a str; a JSON string is what a dataclass field or a model field holds
    svc = c.service("TestUtilsService")
    assert svc.call("echo", Greeting("hi").text) == "hi"
    counter = c.object("Counter", key())
    assert counter.call("add", pydantic.RootModel[int](7), output=AddResult) == AddResult(0, 7)


def test_raw_bytes_in_and_out(c: Any) -> None:
    data = bytes(range(256))
    svc = c.service("TestUtilsService")
    assert svc.call("rawEcho", data) == data
    assert svc.call("rawEcho", data, output=bytes, content_type="application/x-custom") == data


def test_extra_headers_reach_the_handler(c: Any) -> None:
    seen = c.service("TestUtilsService").call(
        "echoHeaders", headers={"x-custom": "42", "x-tenant": "acme"}, output=dict[str, str]
    )
    assert seen["x-custom"] == "42"
    assert seen["x-tenant"] == "acme"


def test_client_wide_headers_reach_the_handler(env: Any) -> None:
    with Client(env.ingress, admin_url=env.admin, headers={"x-app": "cli"}, retry=RETRY) as client:
        seen = client.service("TestUtilsService").call("echoHeaders", output=dict[str, str])
    assert seen["x-app"] == "cli"


def test_idempotent_call_runs_once(c: Any) -> None:
    counter = c.object("Counter", key())
    ik = key()
    first = counter.call("add", 2, idempotency_key=ik, output=AddResult)
    again = counter.call("add", 2, idempotency_key=ik, output=AddResult)
    assert first == again == AddResult(0, 2)
    assert counter.call("get", output=int) == 2
    # the result stays reachable by the idempotency key
    by_key = counter.invocation("add", idempotency_key=ik)
    assert by_key.output(output=AddResult) == AddResult(0, 2)
    assert by_key.attach(output=AddResult) == AddResult(0, 2)
    assert by_key.lookup().startswith("inv_")


def test_service_idempotency_key_lookup(c: Any) -> None:
    svc = c.service("TestUtilsService")
    ik = key()
    assert svc.call("echo", "once", idempotency_key=ik) == "once"
    assert svc.call("echo", "twice", idempotency_key=ik) == "once"
    assert svc.invocation("echo", idempotency_key=ik).attach(output=str) == "once"
    assert svc.invocation("echo", idempotency_key=ik).output() == "once"


def test_keys_with_reserved_characters_are_escaped(c: Any) -> None:
    k = f"a/b c?d#{key()}"
    counter = c.object("Counter", k)
    assert counter.call("add", 1, output=AddResult) == AddResult(0, 1)
    ik = "ik/with spaces?"
    assert counter.call("add", 1, idempotency_key=ik + k, output=AddResult) == AddResult(1, 2)
    assert counter.invocation("add", idempotency_key=ik + k).output(output=AddResult) == AddResult(1, 2)


def test_call_with_timeout_that_is_long_enough(c: Any) -> None:
    assert c.service("TestUtilsService").call("echo", "t", timeout=30.0) == "t"

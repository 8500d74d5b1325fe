"""The examples of docs/client.md (docs/examples/*.py) run against the server under test."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs.examples import (
    cli_app,
    idempotent_payment,
    scheduler,
    web_fastapi,
    webhook_receiver,
    workflow_progress,
)
from fastapi.testclient import TestClient
from starlette.testclient import TestClient as StarletteTestClient
from tests.client.support import RETRY, eventually
from tests.support.harness import Env

from durably.client import Client, InvocationFailed

SERVICES = ["Greeter", "Orders", "Payments", "Reminders", "Signup"]


def key() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def client(env: Env) -> Iterator[Client]:
    with Client(env.ingress, admin_url=env.admin, retry=RETRY) as c:
        yield c


@pytest.fixture
def from_env(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The web examples build their client from the environment, as deployed apps do."""
    monkeypatch.setenv("DURABLY_URL", env.ingress)
    monkeypatch.setenv("DURABLY_ADMIN_URL", env.admin)


def test_cli_app(env: Env, from_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_app.main(["greet", "Alice"]) == 0
    assert capsys.readouterr().out.strip() == "Hello Alice!"
    assert cli_app.main(["output", "inv_1imxCwYSsgrw07uIPAUk3mcmqJOL1G4fIX"]) == 1
    assert "invocation not found" in capsys.readouterr().err


def test_web_fastapi(from_env: None) -> None:
    with TestClient(web_fastapi.app) as web:
        assert web.get("/greet/Bob").json() == {"greeting": "Hello Bob!"}
        email = f"{key()}@example.com"
        r = web.post("/signups", json={"email": email})
        assert r.status_code == 202, r.text

        def finished() -> None:
            body = web.get(f"/signups/{email}").json()
            assert body["result"] == f"welcome aboard, {email}", body

        eventually(finished)
        assert web.get("/signups/nobody").status_code == 404


def test_scheduler(client: Client) -> None:
    user = key()
    day = dt.date(2026, 1, 2)
    first = scheduler.schedule_reminders(client, [user], day, dt.timedelta(milliseconds=200))
    again = scheduler.schedule_reminders(client, [user], day, dt.timedelta(milliseconds=200))
    assert [h.status for h in first + again] == ["Accepted", "PreviouslyAccepted"]
    first[0].attach()
    assert client.object("Reminders", user).call("sent") == ["your report for 2026-01-02 is ready"]


def test_webhook_receiver(client: Client, from_env: None) -> None:
    order = key()
    event = {"id": f"evt_{key()}", "type": "payment.succeeded", "order_id": order}
    with StarletteTestClient(webhook_receiver.app) as web:
        first = web.post("/webhooks/payments", json=event)
        again = web.post("/webhooks/payments", json=event)
    assert (first.status_code, again.status_code) == (202, 202)
    assert (first.json()["status"], again.json()["status"]) == ("Accepted", "PreviouslyAccepted")
    client.invocation(first.json()["invocation"]).attach()
    assert client.object("Orders", order).call("events") == ["payment.succeeded"]


def test_idempotent_payment(client: Client) -> None:
    order = f"order-{key()}"
    receipt = idempotent_payment.pay(client, order, 1999)
    assert receipt.order_id == order and receipt.payment_id.startswith("pay_")
    assert idempotent_payment.pay(client, order, 1999) == receipt
    with pytest.raises(InvocationFailed) as exc:
        idempotent_payment.pay(client, f"order-{key()}", 0)
    assert exc.value.code == 400


def test_workflow_progress(client: Client) -> None:
    email = f"{key()}@example.com"
    assert workflow_progress.run_signup(client, email, poll_every=0.05) == f"welcome aboard, {email}"


@pytest.mark.parametrize(
    "name",
    ["cli_app", "web_fastapi", "scheduler", "webhook_receiver", "idempotent_payment",
     "workflow_progress", "services"],
)
def test_docs_show_each_example_as_it_is(name: str) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    code = (docs / "examples" / f"{name}.py").read_text()
    assert f"```python\n{code}```" in (docs / "client.md").read_text()

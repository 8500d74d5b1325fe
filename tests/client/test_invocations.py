"""Sends, delayed sends, handles, attach/output by id, idempotency key and workflow id,
workflows, awakeables and the admin operations cancel/kill/purge."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import uuid
from typing import Any

import pytest
from tests.client.support import eventually

from durably.client import (
    AlreadyCompleted,
    AlreadyInvoked,
    IngressError,
    InvocationFailed,
    NotFound,
    NotReady,
)

SERVICES = ["BlockAndWaitWorkflow", "ClientAwakeable", "Counter", "TestUtilsService"]
WF = "BlockAndWaitWorkflow"

_pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)


def key() -> str:
    return str(uuid.uuid4())


def background(fn: Any, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
    return _pool.submit(fn, *args, **kwargs)


def started_workflow(c: Any, value: str = "started") -> Any:
    """A BlockAndWaitWorkflow run that blocks until ``unblock`` is called."""
    wf = c.workflow(WF, key())
    h = wf.submit(value)
    assert h.status == "Accepted"
    eventually(lambda: _assert_eq(wf.call("getState", output=str), value))
    return wf


def _assert_eq(a: Any, b: Any) -> None:
    assert a == b, (a, b)


# -------------------------------------------------------------------------- sends


def test_send_then_attach_and_output_by_handle(c: Any) -> None:
    h = c.service("TestUtilsService").send("echo", "hello")
    assert h.invocation_id.startswith("inv_")
    assert h.status == "Accepted"
    assert h.execution_time is None
    assert h.attach(output=str) == "hello"
    assert h.output(output=str) == "hello"
    assert c.invocation(h.invocation_id).output() == "hello"
    assert c.invocation(h.invocation_id).attach(output=str) == "hello"


def test_idempotent_send_is_previously_accepted(c: Any) -> None:
    counter = c.object("Counter", key())
    ik = key()
    first = counter.send("add", 1, idempotency_key=ik)
    again = counter.send("add", 1, idempotency_key=ik)
    assert (first.status, again.status) == ("Accepted", "PreviouslyAccepted")
    assert again.invocation_id == first.invocation_id
    assert first.attach() == {"oldValue": 0, "newValue": 1}
    assert counter.invocation("add", idempotency_key=ik).output() == {"oldValue": 0, "newValue": 1}
    assert counter.call("get", output=int) == 1


@pytest.mark.parametrize("delay", [dt.timedelta(milliseconds=1500), 0.5])
def test_delayed_send_reports_execution_time_and_runs(c: Any, delay: Any) -> None:
    before = dt.datetime.now(dt.UTC)
    counter = c.object("Counter", key())
    h = counter.send("add", 3, delay=delay)
    assert h.status == "Accepted"
    assert h.execution_time is not None
    assert h.execution_time > before - dt.timedelta(seconds=5)
    assert h.attach() == {"oldValue": 0, "newValue": 3}


def test_delay_on_a_call_is_refused_before_sending(c: Any) -> None:
    with pytest.raises(TypeError):
        c.service("TestUtilsService").call("echo", "x", delay=1)


def test_output_of_running_invocation_is_not_ready(c: Any) -> None:
    wf = started_workflow(c)
    with pytest.raises(NotReady) as exc:
        wf.output()
    assert exc.value.status == 470
    assert exc.value.source == "ingress"
    assert exc.value.retry_safe
    handle_id = wf.handle.lookup()
    with pytest.raises(NotReady):
        c.invocation(handle_id).output()
    wf.call("unblock", "done")
    assert wf.attach(output=str) == "done"


# -------------------------------------------------------------------------- workflows


def test_workflow_lifecycle(c: Any) -> None:
    wf = c.workflow(WF, key())
    with pytest.raises(NotFound):
        wf.output()
    with pytest.raises(NotFound):
        wf.attach()
    h = wf.submit("Francesco")
    assert h.status == "Accepted"
    eventually(lambda: _assert_eq(wf.call("getState", output=str), "Francesco"))

    attached = background(wf.attach, output=str)
    with pytest.raises(NotReady):
        wf.output()
    wf.call("unblock", "Till")
    assert attached.result(timeout=60) == "Till"
    assert wf.output(output=str) == "Till"
    assert h.attach() == "Till"

    again = wf.submit("Francesco")
    assert again.status == "PreviouslyAccepted"
    assert again.invocation_id == h.invocation_id
    with pytest.raises(AlreadyInvoked) as exc:
        wf.call("run", "Francesco")
    assert exc.value.status == 409
    assert exc.value.invocation_id == h.invocation_id
    # shared handlers keep working after the run ended
    assert wf.call("getState", output=str) == "Francesco"


def test_workflow_run_rejects_idempotency_key(c: Any) -> None:
    wf = c.workflow(WF, key())
    with pytest.raises(IngressError) as exc:
        wf.send("run", "x", idempotency_key="k")
    assert exc.value.status == 400
    assert exc.value.source == "ingress"
    assert exc.value.retry_safe


# -------------------------------------------------------------------------- awakeables


def _awakeable_id(c: Any, obj: Any) -> str:
    def get() -> str:
        value = obj.call("awakeableId")
        assert isinstance(value, str) and value, value
        return value

    result: str = eventually(get)
    return result


def test_resolve_awakeable(c: Any) -> None:
    obj = c.object("ClientAwakeable", key())
    h = obj.send("wait")
    c.resolve_awakeable(_awakeable_id(c, obj), "resolved!")
    assert h.attach(output=str) == "resolved!"


def test_reject_awakeable(c: Any) -> None:
    obj = c.object("ClientAwakeable", key())
    h = obj.send("wait")
    c.reject_awakeable(_awakeable_id(c, obj), "no thanks")
    with pytest.raises(InvocationFailed) as exc:
        h.attach()
    assert exc.value.code == 500
    assert "no thanks" in exc.value.message


# -------------------------------------------------------------------------- admin


def test_cancel_then_purge(c: Any) -> None:
    wf = started_workflow(c)
    inv = c.invocation(wf.handle.lookup())
    attached = background(inv.attach)
    inv.cancel()
    with pytest.raises(InvocationFailed) as exc:
        attached.result(timeout=60)
    assert exc.value.code == 409
    assert exc.value.source == "invocation"
    with pytest.raises(InvocationFailed):
        wf.output()
    with pytest.raises(AlreadyCompleted) as done:
        inv.cancel()
    assert done.value.status == 409
    inv.purge()
    with pytest.raises(NotFound):
        inv.output()
    with pytest.raises(NotFound):
        inv.purge()


def test_kill_by_idempotency_key(c: Any) -> None:
    obj = c.object("ClientAwakeable", key())
    ik = key()
    obj.send("wait", idempotency_key=ik)
    _awakeable_id(c, obj)
    handle = obj.invocation("wait", idempotency_key=ik)
    handle.kill()
    with pytest.raises(InvocationFailed) as exc:
        handle.attach()
    assert exc.value.code == 409
    assert exc.value.retry_safe  # attach only reads


def test_workflow_cancel(c: Any) -> None:
    wf = started_workflow(c)
    wf.cancel()
    with pytest.raises(InvocationFailed) as exc:
        wf.attach()
    assert exc.value.code == 409


def test_admin_on_unknown_invocation_is_not_found(c: Any) -> None:
    unknown = "inv_1imxCwYSsgrw07uIPAUk3mcmqJOL1G4fIX"
    with pytest.raises(NotFound) as exc:
        c.invocation(unknown).cancel()
    assert exc.value.source == "admin"
    with pytest.raises(NotFound):
        c.invocation(unknown).kill()
    with pytest.raises(NotFound):
        c.invocation(unknown).output()
    with pytest.raises(NotFound):
        c.invocation(unknown).attach()


def test_attach_to_unknown_invocation_fails_like_an_invocation(c: Any) -> None:
    unknown = "inv_1imxCwYSsgrw07uIPAUk3mcmqJOL1G4fIX"
    with pytest.raises(NotFound) as exc:
        c.invocation(unknown).attach()
    # Restate answers attach with the invocation's failure (source "invocation") and
    # output with an ingress refusal
    assert (exc.value.source, exc.value.invocation_id) == ("invocation", unknown)
    with pytest.raises(NotFound) as exc:
        c.service("TestUtilsService").invocation("echo", idempotency_key=key()).attach()
    assert exc.value.source == "invocation"
    with pytest.raises(NotFound) as exc:
        c.invocation(unknown).output()
    assert exc.value.source == "ingress"


def test_lookup_predicts_the_id_of_an_idempotent_invocation(c: Any) -> None:
    ik = key()
    predicted = c.service("TestUtilsService").invocation("echo", idempotency_key=ik).lookup()
    sent = c.service("TestUtilsService").send("echo", "x", idempotency_key=ik)
    assert sent.invocation_id == predicted
    wf = c.workflow(WF, key())
    assert wf.handle.lookup() == wf.submit("x").invocation_id

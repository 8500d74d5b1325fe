"""WorkflowAPI: workflow run + shared handler + durable promise, attach/output by workflow
id, re-submission deduplicated."""

from __future__ import annotations

from tests.support.harness import Env

SERVICES = ["BlockAndWaitWorkflow"]


def test_set_and_resolve(env: Env) -> None:
    wf = env.new_key()
    # No idempotency key: Restate rejects one on a workflow's run handler (400).
    inv_id, status = env.send("BlockAndWaitWorkflow", "run", "Francesco", key=wf, idem=False)
    assert status == "Accepted"
    assert inv_id.startswith("inv_")

    def state_set() -> None:
        assert env.call_json("BlockAndWaitWorkflow", "getState", key=wf, idem=False) == "Francesco"

    env.poll(state_set)

    assert env.call("BlockAndWaitWorkflow", "unblock", "Till", key=wf).status_code == 200

    r = env.workflow_attach("BlockAndWaitWorkflow", wf)
    assert r.status_code == 200, r.text
    assert r.json() == "Till"
    r = env.workflow_output("BlockAndWaitWorkflow", wf)
    assert r.status_code == 200, r.text
    assert r.json() == "Till"

    inv_id2, status2 = env.send("BlockAndWaitWorkflow", "run", "Francesco", key=wf, idem=False)
    assert status2 == "PreviouslyAccepted"
    assert inv_id2 == inv_id
    r = env.workflow_output("BlockAndWaitWorkflow", wf)
    assert r.status_code == 200 and r.json() == "Till", r.text


def test_idempotency_key_rejected_on_workflow_run(env: Env) -> None:
    """Extra check (from the suite's comment): an idempotency key on a workflow run is a 400."""
    r = env.send_raw("BlockAndWaitWorkflow", "run", "x", key=env.new_key(), idem=True)
    assert r.status_code == 400, r.text

"""Which partition a web UI request belongs to when a cluster spreads its partitions
(`durably.ui.routing`): the path names an invocation, the form names a key or a change of
the registry, and everything that reads the database's views goes anywhere."""

from __future__ import annotations

from urllib.parse import urlencode

from durably.ids import InvocationId, partition_key_for
from durably.ui.routing import REGISTRY, ui_partition_key


def test_an_invocations_page_and_actions_go_to_its_partition() -> None:
    inv = InvocationId.generate(service="S", handler="h", key="k", idempotency_key=None,
                                workflow_run=False)
    for method in ("GET", "POST"):
        assert ui_partition_key(method, f"/invocations/{inv}", b"action=kill") == (
            inv.partition_key)
    assert ui_partition_key("GET", "/invocations/not-an-id", b"") is None


def test_a_state_edit_goes_to_its_keys_partition() -> None:
    body = urlencode({"key": "alice/ü", "entry": "items", "value": "[]"}).encode()
    assert ui_partition_key("POST", "/state/Cart", body) == partition_key_for(key="alice/ü")
    assert ui_partition_key("GET", "/state/Cart", b"") is None


def test_registry_changes_go_to_partition_0s_owner() -> None:
    assert ui_partition_key("POST", "/deployments", b"uri=http://x") == REGISTRY
    assert ui_partition_key("POST", "/deployments/dp_1", b"confirm=yes") == REGISTRY
    assert ui_partition_key("POST", "/services/Shop", b"op=options&public=false") == REGISTRY
    # the playground calls the ingress, which routes the call itself
    assert ui_partition_key("POST", "/services/Shop", b"handler=order&body=%7B%7D") is None


def test_reads_of_the_views_go_anywhere() -> None:
    for path in ("/", "/invocations", "/journal/inv_1", "/state", "/sql", "/services/Shop",
                 "/static/ui.js"):
        assert ui_partition_key("GET", path, b"") is None
    assert ui_partition_key("POST", "/bulk", b"action=kill&id=inv_1") is None

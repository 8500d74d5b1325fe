"""Where a UI request must be served when a cluster spreads its partitions over nodes.

A page or an action about one invocation reads or changes what only the owner of the
invocation's partition holds in memory (its live attempt, its failure's detail, its
journal being written); a state edit writes one key, whose partition's owner alone may
commit it; a deployment or a change of a service's options changes the registry, which the
owner of partition 0 writes. `ui_partition_key` names that partition from the request
(path, and the form for POSTs whose subject is in the body); the cluster's router sends
the request there (`durably.cluster.spread`). Everything else reads the database's views
and is served by any node.

A forwarded request reaches the owner with the owner's own `Host`: the node that received
it from the browser puts the browser's `Host` in `ORIGIN_HOST` (`durably.cluster.node`),
and the same-origin check compares the browser's `Origin` with that.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from durably.ids import InvocationId, partition_key_for

__all__ = ["ORIGIN_HOST", "REGISTRY", "ui_partition_key"]

ORIGIN_HOST = "x-durably-host"
REGISTRY = -1  # the request changes the registry (the owner of partition 0 writes it)


def _invocation_key(invocation_id: str) -> int | None:
    try:
        return InvocationId.parse(invocation_id).partition_key
    except ValueError:
        return None  # answered by any node (the page says the id is not valid / not found)


def ui_partition_key(method: str, path: str, body: bytes) -> int | None:
    """The partition key a request below `/ui/` is about (`path` without the `/ui`);
    `REGISTRY` for a change of the registry; None: any node serves it."""
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "invocations":
        # the page (live attempt, failure detail, deadlock) and its actions
        return _invocation_key(parts[1])
    if method != "POST":
        return None
    if parts[0] == "deployments":
        return REGISTRY
    if len(parts) != 2 or parts[0] not in ("state", "services"):
        return None
    form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    if parts[0] == "state":
        # state edits write the key's state at its owner (`modify_state`)
        return partition_key_for(key=form.get("key", [""])[0])
    if form.get("op", [""])[0] == "options":
        return REGISTRY  # the options form patches the service
    return None  # the playground calls the ingress, which routes the call itself

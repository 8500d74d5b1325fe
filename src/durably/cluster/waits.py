"""What invocations of other nodes' partitions wait on, read from the database, for the
engine's deadlock search under the spread placement (`engine.deadlock`).

An invocation waits on the invocations it called or attached to that have not completed
(their subscriber rows, on the callee's partition), and an inboxed one on the holder of
its key (an exclusive invocation of the same object key that has started and not
ended; same partition). Both are rows their owners commit anyway: nothing is written
for the search, and a partition that moves leaves no edge behind. The search reads only
when it reaches another node's invocation, one query per hop, on the node's side
connection (`cluster.side`; never the store's writer).
"""

from __future__ import annotations

from typing import Any

from durably.cluster.side import SideConnection
from durably.engine.deadlock import Waits
from durably.protocol.messages import MessageType

WAIT_TYPES = [int(MessageType.CALL_COMPLETION), int(MessageType.ATTACH_INVOCATION_COMPLETION)]
# the statuses of an invocation that holds its key (engine: `locks`)
HOLDING = ["invoked", "backing-off", "suspended", "paused"]

# one row per asked invocation (its target and status), one per edge (waits_on set)
WAITS_SQL = """
WITH asked AS (
    SELECT id, partition_key, service, handler, key, status
    FROM durably.invocation WHERE id = ANY($1::text[])
)
SELECT a.id, a.service, a.handler, a.key, a.status, NULL::text AS waits_on FROM asked a
UNION ALL
SELECT s.subscriber_id, NULL, NULL, NULL, NULL, s.target_id
FROM durably.subscriber s
JOIN durably.invocation t ON t.id = s.target_id AND t.status <> 'completed'
WHERE s.subscriber_id = ANY($1::text[]) AND s.notification_type = ANY($2::integer[])
UNION ALL
SELECT a.id, NULL, NULL, NULL, NULL, h.id
FROM asked a
JOIN durably.invocation h
  ON h.partition_key = a.partition_key AND h.service = a.service AND h.key = a.key
 AND h.status = ANY($3::text[]) AND h.service_ty = 'virtual_object'
 AND h.handler_ty IS DISTINCT FROM 'shared'
WHERE a.status = 'inboxed'
"""


def waits_from_rows(rows: list[tuple[Any, ...]]) -> dict[str, Waits]:
    """The answer of `WAITS_SQL` as the search wants it (ids not in the database are left
    out: the search takes them as waiting on nothing)."""
    targets: dict[str, tuple[str, bool]] = {}
    edges: dict[str, list[str]] = {}
    for inv_id, service, handler, key, status, waits_on in rows:
        if waits_on is None:
            target = f"{service}/{handler}" if key is None else f"{service}/{key}/{handler}"
            targets[inv_id] = (target, status == "inboxed")
        elif waits_on != inv_id:
            edges.setdefault(inv_id, []).append(waits_on)
    return {
        inv_id: Waits(target, queued, tuple(dict.fromkeys(edges.get(inv_id, ()))))
        for inv_id, (target, queued) in targets.items()
    }


class WaitsReader:
    """`engine.read_waits` of a spread node: one query per call on the node's side
    connection (`cluster.side`), which gives up on a black-holed connection and reopens."""

    def __init__(self, side: SideConnection) -> None:
        self._side = side

    async def __call__(self, ids: set[str]) -> dict[str, Waits]:
        rows = await self._side.run(
            lambda conn: conn.fetch(WAITS_SQL, sorted(ids), WAIT_TYPES, HOLDING)  # type: ignore[no-any-return]
        )
        return waits_from_rows([tuple(r) for r in rows])

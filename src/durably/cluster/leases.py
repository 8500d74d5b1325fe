"""The lease table and the membership table: each operation one statement on a connection.

Time is always the database's `now()`: nodes' clocks may disagree, PostgreSQL's is the one
every node reads. An acquisition always raises the epoch, so the previous holder (another
node, or an earlier incarnation of this one) is fenced off even if it is still running.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


class LeaseError(Exception):
    """A lease or membership operation that cannot go ahead (one line, for the operator)."""


@dataclass(frozen=True, slots=True)
class Lease:
    pid: int
    owner: str
    epoch: int
    expires_in_s: float  # by the database's clock at the time of reading; < 0: expired


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    address: str
    ingress_port: int
    admin_port: int
    heartbeat_age_s: float
    stopped: bool


class Membership:
    """The `node` table: join, heartbeat, leave, and who is alive."""

    def __init__(self, name: str, address: str, ingress_port: int, admin_port: int) -> None:
        self.name = name
        self.address = address
        self.ingress_port = ingress_port
        self.admin_port = admin_port
        # tells this process's row from a previous (or concurrent) one with the same name
        self.incarnation = uuid.uuid4().hex

    async def join(self, conn: Any, ttl_s: float) -> float:
        """Take the node's row. Returns 0, or how long to wait (seconds) because a live
        process (heartbeat younger than the TTL) still runs under this name."""
        row = await conn.fetchrow(
            """
            INSERT INTO durably.node AS n (name, incarnation, address, ingress_port, admin_port)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (name) DO UPDATE SET
                incarnation = EXCLUDED.incarnation, address = EXCLUDED.address,
                ingress_port = EXCLUDED.ingress_port, admin_port = EXCLUDED.admin_port,
                started_at = now(), heartbeat_at = now(), stopped = false
            WHERE n.stopped OR n.heartbeat_at < now() - make_interval(secs => $6)
            RETURNING 0.0 AS wait
            """,
            self.name, self.incarnation, self.address, self.ingress_port, self.admin_port,
            ttl_s,
        )
        if row is not None:
            return 0.0
        age = await conn.fetchval(
            "SELECT extract(epoch FROM now() - heartbeat_at) FROM durably.node WHERE name = $1",
            self.name,
        )
        return max(0.05, ttl_s - float(age or 0.0))

    async def heartbeat(self, conn: Any) -> bool:
        """Stamp the heartbeat; False when another incarnation took the name over."""
        status = await conn.execute(
            "UPDATE durably.node SET heartbeat_at = now() WHERE name = $1 AND incarnation = $2",
            self.name, self.incarnation,
        )
        return bool(status.endswith(" 1"))

    async def leave(self, conn: Any) -> None:
        await conn.execute(
            "UPDATE durably.node SET stopped = true WHERE name = $1 AND incarnation = $2",
            self.name, self.incarnation,
        )


async def live_nodes(conn: Any, ttl_s: float) -> list[NodeInfo]:
    rows = await conn.fetch(
        """
        SELECT name, address, ingress_port, admin_port,
               extract(epoch FROM now() - heartbeat_at)::float8 AS age, stopped
        FROM durably.node
        WHERE NOT stopped AND heartbeat_at >= now() - make_interval(secs => $1)
        ORDER BY name
        """,
        ttl_s,
    )
    return [NodeInfo(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


@dataclass(frozen=True, slots=True)
class Round:
    """What one keeper round learnt (`renew_round`)."""

    beat: bool  # False: another incarnation took the node's name over
    renewed: set[int]  # the pids still held (renewed at their epochs)
    nodes: list[NodeInfo]  # the live nodes, this one first when `beat`
    owners: dict[int, str]  # pid -> owner of every unexpired lease (renewals included)


# One statement per round: heartbeat, renewal of every lease held, the live nodes and the
# owners of every partition. The reads see the database as of the statement's start (the
# updates' effects are not visible to the rest of a statement), so this node's own row is
# taken from `beat` and its renewed leases from `renewed`. A renewal goes ahead only with
# the heartbeat: a process whose name was taken over renews nothing.
_ROUND_SQL = """
WITH beat AS (
    UPDATE durably.node SET heartbeat_at = now()
    WHERE name = $1 AND incarnation = $2
    RETURNING address, ingress_port, admin_port
), renewed AS (
    UPDATE durably.partition_lease l SET expires_at = now() + make_interval(secs => $5)
    FROM unnest($3::integer[], $4::bigint[]) AS h(pid, epoch)
    WHERE l.pid = h.pid AND l.epoch = h.epoch AND l.owner = $1 AND EXISTS (SELECT 1 FROM beat)
    RETURNING l.pid
)
SELECT 'b' AS what, NULL::integer AS pid, $1::text AS name, address, ingress_port, admin_port,
       0.0::float8 AS age
FROM beat
UNION ALL
SELECT 'r', pid, $1::text, NULL, NULL, NULL, NULL FROM renewed
UNION ALL
SELECT 'n', NULL, name, address, ingress_port, admin_port,
       extract(epoch FROM now() - heartbeat_at)::float8
FROM durably.node
WHERE NOT stopped AND heartbeat_at >= now() - make_interval(secs => $5) AND name <> $1
UNION ALL
SELECT 'l', pid, owner, NULL, NULL, NULL, NULL
FROM durably.partition_lease WHERE owner <> '' AND expires_at >= now()
"""


async def renew_round(
    conn: Any, membership: Membership, held: dict[int, int], ttl_s: float
) -> Round:
    """Heartbeat, renew `held`, read the live nodes and the lease owners: one round trip."""
    rows = await conn.fetch(
        _ROUND_SQL, membership.name, membership.incarnation, list(held), list(held.values()),
        ttl_s,
    )
    beat = False
    renewed: set[int] = set()
    nodes: list[NodeInfo] = []
    owners: dict[int, str] = {}
    for what, pid, name, address, ingress_port, admin_port, age in rows:
        if what == "b":
            beat = True
            nodes.append(NodeInfo(name, address, ingress_port, admin_port, 0.0, False))
        elif what == "r":
            renewed.add(pid)
        elif what == "n":
            nodes.append(NodeInfo(name, address, ingress_port, admin_port, age, False))
        else:
            owners[pid] = name
    for pid in renewed:  # (read as of before their renewal: one may have been past expiry)
        owners[pid] = membership.name
    nodes.sort(key=lambda n: n.name)
    return Round(beat, renewed, nodes, owners)


async def all_leases(conn: Any) -> list[Lease]:
    rows = await conn.fetch(
        """
        SELECT pid, owner, epoch,
               CASE WHEN expires_at = '-infinity' THEN -1e9
                    ELSE extract(epoch FROM expires_at - now())::float8 END
        FROM durably.partition_lease ORDER BY pid
        """
    )
    return [Lease(r[0], r[1], r[2], r[3]) for r in rows]


async def acquire(
    conn: Any, node: str, pids: list[int], ttl_s: float, limit: int | None = None
) -> dict[int, int]:
    """Take up to `limit` of `pids` (in their order) that are free, expired, or held by an
    earlier incarnation of this node (it restarted). Returns {pid: new epoch}. Rows another
    transaction holds locked (a commit in flight, a competing taker) are skipped rather
    than waited for."""
    rows = await conn.fetch(
        """
        UPDATE durably.partition_lease l
        SET owner = $1, epoch = l.epoch + 1, expires_at = now() + make_interval(secs => $3)
        FROM (
            SELECT pid FROM durably.partition_lease
            WHERE pid = ANY($2::integer[])
              AND (owner = '' OR owner = $1 OR expires_at < now())
            ORDER BY array_position($2::integer[], pid)
            LIMIT $4
            FOR UPDATE SKIP LOCKED
        ) AS free
        WHERE l.pid = free.pid
        RETURNING l.pid, l.epoch
        """,
        node, pids, ttl_s, len(pids) if limit is None else limit,
    )
    return {r[0]: r[1] for r in rows}


async def take_over(conn: Any, node: str, pid: int, ttl_s: float) -> int | None:
    """Take one expired or free partition, waiting for a commit in flight that share-locks
    it (the fence) to finish. Returns the new epoch, or None when it is not takeable."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        UPDATE durably.partition_lease
        SET owner = $1, epoch = epoch + 1, expires_at = now() + make_interval(secs => $3)
        WHERE pid = $2 AND (owner = '' OR owner = $1 OR expires_at < now())
        RETURNING epoch
        """,
        node, pid, ttl_s,
    )


async def renew(conn: Any, node: str, held: dict[int, int], ttl_s: float) -> set[int]:
    """Extend the leases `node` holds at the given epochs; returns the pids still held."""
    if not held:
        return set()
    rows = await conn.fetch(
        """
        UPDATE durably.partition_lease l
        SET expires_at = now() + make_interval(secs => $4)
        FROM unnest($2::integer[], $3::bigint[]) AS h(pid, epoch)
        WHERE l.pid = h.pid AND l.epoch = h.epoch AND l.owner = $1
        RETURNING l.pid
        """,
        node, list(held), list(held.values()), ttl_s,
    )
    return {r[0] for r in rows}


async def release(conn: Any, node: str, held: dict[int, int]) -> set[int]:
    """Hand partitions back at once (the epoch stays: the next taker raises it)."""
    if not held:
        return set()
    rows = await conn.fetch(
        """
        UPDATE durably.partition_lease l SET owner = '', expires_at = '-infinity'
        FROM unnest($2::integer[], $3::bigint[]) AS h(pid, epoch)
        WHERE l.pid = h.pid AND l.epoch = h.epoch AND l.owner = $1
        RETURNING l.pid
        """,
        node, list(held), list(held.values()),
    )
    return {r[0] for r in rows}


async def acquire_all(conn: Any, node: str, ttl_s: float) -> dict[int, int]:
    """Take every partition at once, or none: the leader placement (one node runs all
    partitions, the others stand by). Waits at most `ttl_s` for rows locked by a commit in
    flight, so a standby never hangs on a cut-off leader's open transaction."""
    import asyncpg

    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{max(1, int(ttl_s * 1000))}ms'")
            rows = await conn.fetch(
                """
                SELECT owner = '' OR owner = $1 OR expires_at < now()
                FROM durably.partition_lease ORDER BY pid FOR UPDATE
                """,
                node,
            )
            if not rows or not all(r[0] for r in rows):
                return {}
            rows = await conn.fetch(
                """
                UPDATE durably.partition_lease
                SET owner = $1, epoch = epoch + 1,
                    expires_at = now() + make_interval(secs => $2)
                RETURNING pid, epoch
                """,
                node, ttl_s,
            )
            return {r[0]: r[1] for r in rows}
    except asyncpg.LockNotAvailableError:
        return {}


async def leader_of(conn: Any) -> str | None:
    """The node holding partition 0 unexpired (under the leader placement: all of them)."""
    owner = await conn.fetchval(
        "SELECT owner FROM durably.partition_lease WHERE pid = 0 AND owner <> '' "
        "AND expires_at >= now()"
    )
    return None if owner is None else str(owner)

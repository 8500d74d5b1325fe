"""The cluster's tables in the `durably` schema, with versioned migrations of their own.

Kept apart from the store's migrations (`storage.postgres_schema`) so that a single node
never creates them and the two evolve independently; they run after the store's, under
the same kind of advisory lock.

- `cluster` holds the partition count, fixed when the first node creates the tables.
- `node` is the membership: one row per node name with the incarnation that runs it now,
  its advertised address and ports, a heartbeat stamped with the database's clock, and the
  sequence number of its writer's last commit (how a lost COMMIT answer is told apart from
  a lost batch when several writers share the database).
- `partition_lease` has one row per partition: owner ('' when free), epoch (the fencing
  token, raised by every acquisition) and expiry (`now()` of the database decides).
- `cluster_fence(...)` runs inside every commit of a node: it share-locks the lease rows of
  the partitions the batch writes and raises DF001 unless the node still holds each one at
  the epoch it believes in. A takeover's UPDATE waits for such a commit; once the epoch
  moved, the former owner's commit fails.
- `outbox` holds the messages between partitions (spread placement): `outbox_write(...)`
  runs in the same statement as the sender's commit (and notifies the owners of the
  partitions it wrote to, version 3), and the receiver's commit deletes what it applied.
"""

from __future__ import annotations

from typing import Any

from durably.storage.postgres_schema import apply_migrations

_V1 = """
CREATE TABLE durably.cluster (
    id integer PRIMARY KEY CHECK (id = 1),
    num_partitions integer NOT NULL CHECK (num_partitions > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE durably.node (
    name text PRIMARY KEY,
    incarnation text NOT NULL,
    address text NOT NULL,
    ingress_port integer NOT NULL,
    admin_port integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped boolean NOT NULL DEFAULT false,
    writer_seq bigint NOT NULL DEFAULT 0
);
CREATE TABLE durably.partition_lease (
    pid integer PRIMARY KEY,
    owner text NOT NULL DEFAULT '',
    epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE SEQUENCE durably.timer_block;

CREATE FUNCTION durably.cluster_fence(
    p_node text, p_seq bigint, p_pids integer[], p_epochs bigint[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    held integer;
BEGIN
    SELECT count(*) INTO held FROM (
        SELECT 1 FROM durably.partition_lease l
        JOIN unnest(p_pids, p_epochs) AS f(pid, epoch) ON l.pid = f.pid
        WHERE l.owner = p_node AND l.epoch = f.epoch
        FOR SHARE OF l
    ) AS still_held;
    IF held <> cardinality(p_pids) THEN
        RAISE EXCEPTION 'partition lease lost: node % no longer holds all of partitions %',
            p_node, p_pids USING ERRCODE = 'DF001';
    END IF;
    UPDATE durably.node SET writer_seq = p_seq WHERE name = p_node;
END
$$;
"""

# spread placement: messages between partitions (engine.partitions), written in the
# sender's commit and deleted in the receiver's; NOTIFY wakes the receivers at COMMIT
_V2 = """
CREATE TABLE durably.outbox (
    id bigserial PRIMARY KEY,
    pid integer NOT NULL,
    kind text NOT NULL,
    body bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_by_partition ON durably.outbox (pid, id);

CREATE FUNCTION durably.outbox_write(
    p_pids integer[], p_kinds text[], p_bodies bytea[], p_del_pids integer[], p_del_ids bigint[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_del_ids) > 0 THEN
        DELETE FROM durably.outbox WHERE id = ANY(p_del_ids);
    END IF;
    IF cardinality(p_pids) > 0 THEN
        INSERT INTO durably.outbox (pid, kind, body)
        SELECT u.pid, u.kind, u.body
        FROM unnest(p_pids, p_kinds, p_bodies) WITH ORDINALITY AS u(pid, kind, body, n)
        ORDER BY u.n;
        PERFORM pg_notify('durably_outbox', '');
    END IF;
END
$$;
"""

# an outbox NOTIFY names the partitions the commit wrote messages for (comma-separated), so
# that only their owners read the outbox (`spread.notified_partitions_concern`); a payload
# too long for NOTIFY (8000 bytes: thousands of partitions) is sent empty, which wakes all
_V3 = """
CREATE OR REPLACE FUNCTION durably.outbox_write(
    p_pids integer[], p_kinds text[], p_bodies bytea[], p_del_pids integer[], p_del_ids bigint[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    targets text;
BEGIN
    IF cardinality(p_del_ids) > 0 THEN
        DELETE FROM durably.outbox WHERE id = ANY(p_del_ids);
    END IF;
    IF cardinality(p_pids) > 0 THEN
        INSERT INTO durably.outbox (pid, kind, body)
        SELECT u.pid, u.kind, u.body
        FROM unnest(p_pids, p_kinds, p_bodies) WITH ORDINALITY AS u(pid, kind, body, n)
        ORDER BY u.n;
        SELECT string_agg(DISTINCT t.pid::text, ',') INTO targets FROM unnest(p_pids) AS t(pid);
        PERFORM pg_notify('durably_outbox', CASE WHEN length(targets) < 7900 THEN targets
                                                 ELSE '' END);
    END IF;
END
$$;
"""

MIGRATIONS: list[tuple[int, str]] = [(1, _V1), (2, _V2), (3, _V3)]

# every node's commit records its sequence number on its own `node` row (cluster_fence);
# the single-writer row `durably.writer` that `commit_batch` also updates would make the
# COMMITs of all nodes wait for each other's row lock. A node's store connections name the
# node (`durably.node`), and for them that update does nothing. Created by the first node
# that opens the store (`fence.attach`): the store's tables come after the cluster's.
WRITER_PER_NODE = """
CREATE OR REPLACE RULE writer_per_node AS ON UPDATE TO durably.writer
    WHERE coalesce(current_setting('durably.node', true), '') <> ''
    DO INSTEAD NOTHING
"""
# spread placement: a commit that changes the schema registry or the Kafka clusters and
# subscriptions wakes every node at COMMIT (`spread.SpreadNode._reader` listens), which
# re-reads them at once instead of at its next idle round; only these documents notify
# (they change rarely), never the write path. Created with the writer rule, once the
# store's tables exist; 'kafka' in the trigger's definition tells this version's trigger
# from an earlier one (registry only), which it replaces (`fence._has_registry_trigger`).
REGISTRY_CHANNEL = "durably_registry"
REGISTRY_NOTIFY = f"""
CREATE OR REPLACE FUNCTION durably.registry_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{REGISTRY_CHANNEL}', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS registry_changed ON durably.meta;
CREATE TRIGGER registry_changed AFTER INSERT OR UPDATE ON durably.meta
    FOR EACH ROW WHEN (NEW.key IN ('schema_registry', 'kafka'))  -- REGISTRY_KEY, kafka's
    EXECUTE FUNCTION durably.registry_changed();
"""
LATEST = MIGRATIONS[-1][0]

_LOCK = 0x64757261626C7A  # the migration lock of the cluster tables


class ClusterMismatch(Exception):
    """The database was set up for a different cluster (partition count, newer schema)."""


def _too_new(current: int, latest: int) -> Exception:
    return ClusterMismatch(
        f"the database's cluster tables are version {current}, newer than this "
        f"durably's {latest}: upgrade durably"
    )


async def migrate(conn: Any, num_partitions: int) -> int:
    """Create or upgrade the cluster tables; returns the partition count of the cluster.

    The first node fixes the count; a node configured with another one is refused rather
    than silently reinterpreting which partition owns which key."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await conn.execute("CREATE SCHEMA IF NOT EXISTS durably")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS durably.cluster_version (version integer NOT NULL)"
        )
        await apply_migrations(conn, "durably.cluster_version", MIGRATIONS, _too_new)
        existing = await conn.fetchval("SELECT num_partitions FROM durably.cluster WHERE id = 1")
        if existing is None:
            await conn.execute(
                "INSERT INTO durably.cluster (id, num_partitions) VALUES (1, $1)", num_partitions
            )
            await conn.execute(
                "INSERT INTO durably.partition_lease (pid) SELECT generate_series(0, $1 - 1)",
                num_partitions,
            )
            return num_partitions
        if int(existing) != num_partitions:
            raise ClusterMismatch(
                f"the cluster was created with {existing} partitions, this node is configured "
                f"with {num_partitions}: the count cannot change after creation"
            )
        return num_partitions

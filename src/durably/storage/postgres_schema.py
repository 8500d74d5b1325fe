"""The PostgreSQL schema of durably and its versioned migrations.

Everything lives in the schema `durably` of the database the DSN names, so durably's tables
never mix with an application's. `durably.schema_version` holds the version the database is
at; `migrate` applies the missing steps in one transaction each, under an advisory lock so
that several servers starting at once migrate the database once.

Every row carries the partition key of the invocation or object it belongs to (u64 stored
as a signed bigint, as on SQLite): partitions, cut as contiguous ranges of that key
(`ids.partition_of`), are the unit a node will own once several share one database.
`writer` records the sequence number of the last batch committed, which is how a batch
whose COMMIT's answer was lost is told apart from one that never reached the database.

All of a batch's writes go through one call of `durably.commit_batch(...)` with an array
per table (one round trip, one transaction): deletes first, then inserts and upserts.
Journal rows are plain INSERTs: an entry is written once, so a second writer of the same
entry fails instead of silently replacing it.

Room left for several nodes on one database: a later migration adds a lease table
(partition, owner, epoch, expiry) and makes the first statement of `commit_batch` a fence
(`SELECT ... FOR SHARE` of the batch's partitions, compared with the epochs the caller
passes as two more arrays), so that a batch of a node that lost a partition rolls back
whole; `writer` then gets a row per node instead of the single row 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from durably.storage import postgres_introspection

SCHEMA = "durably"

_V1 = """
CREATE SCHEMA IF NOT EXISTS durably;
CREATE TABLE durably.schema_version (version integer NOT NULL);
CREATE TABLE durably.writer (id integer PRIMARY KEY, seq bigint NOT NULL);
INSERT INTO durably.writer VALUES (1, 0);
CREATE TABLE durably.meta (
    key text PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE durably.invocation (
    id text PRIMARY KEY,
    partition_key bigint NOT NULL,
    service text NOT NULL,
    handler text NOT NULL,
    key text,
    service_ty text NOT NULL,
    handler_ty text,
    status text NOT NULL,
    created_at bigint NOT NULL,
    modified_at bigint NOT NULL,
    idempotency_key text,
    deployment_id text,
    protocol_version integer,
    invoked_by text NOT NULL,
    invoked_by_id text,
    invoked_by_target text,
    execution_time bigint,
    inbox_seq bigint,
    inboxed_at bigint,
    running_at bigint,
    completed_at bigint,
    retry_count integer NOT NULL DEFAULT 0,
    last_failure text,
    last_failure_code integer,
    next_retry_at bigint,
    random_seed bigint NOT NULL DEFAULT 0,
    journal_length integer NOT NULL DEFAULT 0,
    waiting text,
    result bytea,
    expires_at bigint,
    extra bytea
);
CREATE INDEX invocation_active ON durably.invocation (partition_key)
    WHERE status <> 'completed';
CREATE INDEX invocation_expiry ON durably.invocation (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE durably.journal (
    partition_key bigint NOT NULL,
    invocation_id text NOT NULL,
    idx integer NOT NULL,
    entry_type integer NOT NULL,
    body bytea NOT NULL,
    appended_at bigint NOT NULL,
    PRIMARY KEY (invocation_id, idx)
);
CREATE TABLE durably.state (
    partition_key bigint NOT NULL,
    service text NOT NULL,
    key text NOT NULL,
    name bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (service, key, name)
);
CREATE TABLE durably.promise (
    partition_key bigint NOT NULL,
    service text NOT NULL,
    key text NOT NULL,
    name text NOT NULL,
    result bytea NOT NULL,
    PRIMARY KEY (service, key, name)
);
CREATE TABLE durably.promise_listener (
    partition_key bigint NOT NULL,
    service text NOT NULL,
    key text NOT NULL,
    name text NOT NULL,
    invocation_id text NOT NULL,
    completion_id integer NOT NULL,
    PRIMARY KEY (service, key, name, invocation_id, completion_id)
);
CREATE TABLE durably.subscriber (
    partition_key bigint NOT NULL,
    target_id text NOT NULL,
    subscriber_id text NOT NULL,
    completion_id integer NOT NULL,
    notification_type integer NOT NULL,
    PRIMARY KEY (target_id, subscriber_id, completion_id)
);
CREATE TABLE durably.timer (
    partition_key bigint NOT NULL,
    id bigint PRIMARY KEY,
    fire_at bigint NOT NULL,
    kind text NOT NULL,
    invocation_id text NOT NULL,
    completion_id integer NOT NULL
);
CREATE INDEX timer_by_partition ON durably.timer (partition_key, fire_at);
"""

# The one function a batch is committed through; later versions add their arrays at the
# end (each migration drops the previous signature and creates it anew).
_COMMIT_BATCH = """
CREATE FUNCTION durably.commit_batch(
    p_seq bigint,
    meta_put durably.meta[],
    inv_del text[],
    inv_put durably.invocation[],
    journal_clear text[],
    journal_put durably.journal[],
    state_del_service text[], state_del_key text[], state_del_name bytea[],
    state_put durably.state[],
    promise_del_service text[], promise_del_key text[], promise_del_name text[],
    promise_put durably.promise[],
    listener_del durably.promise_listener[],
    listener_put durably.promise_listener[],
    sub_del durably.subscriber[],
    sub_put durably.subscriber[],
    timer_del bigint[],
    timer_put durably.timer[]{kafka_args}
) RETURNS void LANGUAGE plpgsql AS $${declare}
BEGIN
    IF cardinality(meta_put) > 0 THEN
        INSERT INTO durably.meta SELECT * FROM unnest(meta_put)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
    END IF;
    IF cardinality(inv_del) > 0 THEN
        DELETE FROM durably.invocation WHERE id = ANY(inv_del);
    END IF;
    IF cardinality(journal_clear) > 0 THEN
        DELETE FROM durably.journal WHERE invocation_id = ANY(journal_clear);
    END IF;
    IF cardinality(inv_put) > 0 THEN
        INSERT INTO durably.invocation SELECT * FROM unnest(inv_put)
        ON CONFLICT (id) DO UPDATE SET
            status = EXCLUDED.status, modified_at = EXCLUDED.modified_at,
            deployment_id = EXCLUDED.deployment_id,
            protocol_version = EXCLUDED.protocol_version,
            execution_time = EXCLUDED.execution_time, inbox_seq = EXCLUDED.inbox_seq,
            inboxed_at = EXCLUDED.inboxed_at, running_at = EXCLUDED.running_at,
            completed_at = EXCLUDED.completed_at, retry_count = EXCLUDED.retry_count,
            last_failure = EXCLUDED.last_failure,
            last_failure_code = EXCLUDED.last_failure_code,
            next_retry_at = EXCLUDED.next_retry_at, journal_length = EXCLUDED.journal_length,
            waiting = EXCLUDED.waiting, result = EXCLUDED.result,
            expires_at = EXCLUDED.expires_at, extra = EXCLUDED.extra;
    END IF;
    IF cardinality(journal_put) > 0 THEN
        INSERT INTO durably.journal SELECT * FROM unnest(journal_put);
    END IF;
    IF cardinality(state_del_service) > 0 THEN
        DELETE FROM durably.state s
        USING unnest(state_del_service, state_del_key, state_del_name) AS d(service, key, name)
        WHERE s.service = d.service AND s.key = d.key AND s.name = d.name;
    END IF;
    IF cardinality(state_put) > 0 THEN
        INSERT INTO durably.state SELECT * FROM unnest(state_put)
            ON CONFLICT (service, key, name) DO UPDATE SET value = EXCLUDED.value;
    END IF;
    IF cardinality(promise_del_service) > 0 THEN
        DELETE FROM durably.promise p
        USING unnest(promise_del_service, promise_del_key, promise_del_name)
            AS d(service, key, name)
        WHERE p.service = d.service AND p.key = d.key AND p.name = d.name;
    END IF;
    IF cardinality(promise_put) > 0 THEN
        INSERT INTO durably.promise SELECT * FROM unnest(promise_put)
            ON CONFLICT (service, key, name) DO UPDATE SET result = EXCLUDED.result;
    END IF;
    IF cardinality(listener_del) > 0 THEN
        DELETE FROM durably.promise_listener l USING unnest(listener_del) AS d
        WHERE l.service = d.service AND l.key = d.key AND l.name = d.name
            AND l.invocation_id = d.invocation_id AND l.completion_id = d.completion_id;
    END IF;
    IF cardinality(listener_put) > 0 THEN
        INSERT INTO durably.promise_listener SELECT * FROM unnest(listener_put)
            ON CONFLICT DO NOTHING;
    END IF;
    IF cardinality(sub_del) > 0 THEN
        DELETE FROM durably.subscriber s USING unnest(sub_del) AS d
        WHERE s.target_id = d.target_id AND s.subscriber_id = d.subscriber_id
            AND s.completion_id = d.completion_id;
    END IF;
    IF cardinality(sub_put) > 0 THEN
        INSERT INTO durably.subscriber SELECT * FROM unnest(sub_put)
            ON CONFLICT (target_id, subscriber_id, completion_id)
            DO UPDATE SET notification_type = EXCLUDED.notification_type;
    END IF;
    IF cardinality(timer_del) > 0 THEN
        DELETE FROM durably.timer WHERE id = ANY(timer_del);
    END IF;
    IF cardinality(timer_put) > 0 THEN
        INSERT INTO durably.timer SELECT * FROM unnest(timer_put);
    END IF;{kafka_body}
    UPDATE durably.writer SET seq = p_seq WHERE id = 1;
END
$$;
"""
_V1 += _COMMIT_BATCH.format(kafka_args="", declare="", kafka_body="")

# 2: Kafka subscriptions (durably.kafka). Both tables are keyed by partition first: the
# partition key of a Kafka partition's rows is derived from (subscription, topic,
# partition), so one consumer's offset and its parked records share a partition. The
# offset row is advanced in the same `commit_batch` transaction as the invocation made
# from the record, with a conditional upsert: a batch whose offset is not above the
# stored one (a record some other writer took already) raises and rolls back whole.
_V2 = """
CREATE TABLE durably.kafka_offset (
    partition_key bigint NOT NULL,
    subscription_id text NOT NULL,
    group_id text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    PRIMARY KEY (partition_key, subscription_id, group_id, topic, partition)
);
CREATE INDEX kafka_offset_by_subscription ON durably.kafka_offset (subscription_id);
CREATE TABLE durably.kafka_parked (
    partition_key bigint NOT NULL,
    id bigint NOT NULL,
    subscription_id text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    key bytea,
    value bytea,
    timestamp bigint NOT NULL,
    error text NOT NULL,
    parked_at bigint NOT NULL,
    PRIMARY KEY (partition_key, id)
);

DROP FUNCTION durably.commit_batch(
    bigint, durably.meta[], text[], durably.invocation[], text[], durably.journal[],
    text[], text[], bytea[], durably.state[], text[], text[], text[], durably.promise[],
    durably.promise_listener[], durably.promise_listener[], durably.subscriber[],
    durably.subscriber[], bigint[], durably.timer[]
);
""" + _COMMIT_BATCH.format(
    kafka_args=""",
    kafka_offset_del text[],
    kafka_offset_put durably.kafka_offset[],
    parked_del bigint[],
    parked_put durably.kafka_parked[]""",
    declare="\nDECLARE\n    advanced bigint;",
    kafka_body="""
    IF cardinality(kafka_offset_del) > 0 THEN
        DELETE FROM durably.kafka_offset WHERE subscription_id = ANY(kafka_offset_del);
    END IF;
    IF cardinality(kafka_offset_put) > 0 THEN
        INSERT INTO durably.kafka_offset SELECT * FROM unnest(kafka_offset_put)
            ON CONFLICT (partition_key, subscription_id, group_id, topic, partition)
            DO UPDATE SET "offset" = EXCLUDED."offset"
            WHERE EXCLUDED."offset" > durably.kafka_offset."offset";
        GET DIAGNOSTICS advanced = ROW_COUNT;
        IF advanced < cardinality(kafka_offset_put) THEN
            RAISE EXCEPTION 'a Kafka offset of this batch was taken already by another writer'
                USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;
    IF cardinality(parked_del) > 0 THEN
        DELETE FROM durably.kafka_parked WHERE id = ANY(parked_del);
    END IF;
    IF cardinality(parked_put) > 0 THEN
        INSERT INTO durably.kafka_parked SELECT * FROM unnest(parked_put);
    END IF;""",
)

# 5: Restate's introspection tables as views in the schema `durably_query`, the query role,
# and indexes for the web UI's list (storage.postgres_introspection)
_V5 = postgres_introspection.migration_sql()

# 7: the wait-for edges of an invocation (subscriber rows by subscriber): what a deadlock
# search reads for invocations of other nodes' partitions (durably.cluster.waits)
_V7 = """
CREATE INDEX subscriber_by_subscriber ON durably.subscriber (subscriber_id);
"""

# (version, SQL). Append new steps; never edit a released one.
MIGRATIONS: list[tuple[int, str]] = [(1, _V1), (2, _V2), (5, _V5), (7, _V7)]
LATEST = MIGRATIONS[-1][0]

# an arbitrary constant: the advisory lock that serialises migrations of one database
_MIGRATION_LOCK = 0x64757261626C79


class SchemaTooNew(Exception):
    """The database was migrated by a newer durably than this one."""


async def apply_migrations(
    conn: Any,
    version_table: str,
    migrations: list[tuple[int, str]],
    too_new: Callable[[int, int], Exception],
) -> int:
    """Apply the steps of `migrations` newer than the version recorded in `version_table`.

    Runs inside the caller's transaction, after it took its migration lock. A database
    recorded at a version newer than the last step raises `too_new(current, latest)`.
    Returns the version the database was at before."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", version_table)
    current = 0
    if exists:
        current = int(await conn.fetchval(f"SELECT max(version) FROM {version_table}") or 0)
    latest = migrations[-1][0]
    if current > latest:
        raise too_new(current, latest)
    for version, sql in migrations:
        if version > current:
            await conn.execute(sql)
            await conn.execute(f"DELETE FROM {version_table}")
            await conn.execute(f"INSERT INTO {version_table} VALUES ($1)", version)
    return current


def _store_too_new(current: int, latest: int) -> Exception:
    return SchemaTooNew(
        f"the database's durably schema is version {current}, newer than this "
        f"durably's {latest}: upgrade durably"
    )


async def migrate(conn: object) -> int:
    """Bring the database to `LATEST`; returns the version it was at before."""
    import asyncpg

    assert isinstance(conn, asyncpg.Connection)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        return await apply_migrations(conn, "durably.schema_version", MIGRATIONS, _store_too_new)

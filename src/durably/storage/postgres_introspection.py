"""Restate's `sys_*` tables as PostgreSQL views, in a schema of their own (`durably_query`).

The views are rendered from the same description as SQLite's (`storage.introspection`:
`COLUMNS` and `view_definitions`, in the PostgreSQL dialect), so both stores answer with the
same columns and values. What SQLite computes in Python user functions is here in SQL and
PL/pgSQL: timestamps and durations as text, results and UTF-8 text out of bytes, and the
journal's protobuf entries decoded by a small wire-format reader driven by a table of the
protocol's message descriptors (generated from the protobuf classes when the migration is
built), rendered as the same JSON as `storage.journal_view` (protobuf's JSON mapping).

Reaching only the views is by privileges, not by reading the SQL: user queries run inside
`durably_query.run`, a SECURITY DEFINER function owned by a NOLOGIN role (one per database)
that has USAGE on `durably_query`, SELECT on the views and nothing on `durably`. PostgreSQL
refuses a role change (`set_config('role', ...)`) inside a security-definer function, so a
query cannot climb back to the server's own role. See `storage.postgres_query` for the runner.
"""

from __future__ import annotations

from typing import Any

import orjson

from durably.protocol.messages import MESSAGE_CLASSES, is_command, is_notification, pb
from durably.storage.introspection import (
    COLUMNS,
    POSTGRESQL,
    RESTATE_STATUS,
    TABLES,
    view_definitions,
    view_select,
)
from durably.storage.journal_view import entry_type_name

__all__ = ["ROLE_SETUP", "SCHEMA", "migration_sql"]

SCHEMA = "durably_query"

# protobuf field types (descriptor.proto's numbering) -> the reader's names
_KINDS = {
    3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32", 8: "bool",
    9: "string", 11: "message", 12: "bytes", 13: "uint32", 14: "enum", 15: "sfixed32",
    16: "sfixed64", 17: "sint32", 18: "sint64",
}
_HEAVY = ("value", "parameter", "headers", "content", "result", "failure", "state_keys")


def _q(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _descriptor_rows() -> tuple[list[str], list[str]]:
    """(message type rows, field rows) for every journal entry's message and what it nests."""
    types = []
    seen: dict[str, Any] = {}

    def walk(d: Any) -> None:
        if d.full_name in seen:
            return
        seen[d.full_name] = d
        for f in d.fields:
            if f.message_type is not None:
                walk(f.message_type)

    for type_id, cls in sorted(MESSAGE_CLASSES.items()):
        if not (is_command(type_id) or is_notification(type_id)):
            continue
        name = entry_type_name(type_id)
        kind, short = name.split(": ", 1)
        types.append(f"({type_id}, {_q(cls.DESCRIPTOR.full_name)}, {_q(name)}, {_q(kind)}, "
                     f"{_q(short)})")
        walk(cls.DESCRIPTOR)
    walk(pb.NotificationTemplate.DESCRIPTOR)
    fields = []
    for full_name, d in sorted(seen.items()):
        for f in d.fields:
            enum = None
            if f.enum_type is not None:
                enum = orjson.dumps({str(v.number): v.name for v in f.enum_type.values}).decode()
            fields.append(
                f"({_q(full_name)}, {f.number}, {_q(f.name)}, {_q(_KINDS[f.type])}, "
                f"{_q(f.message_type.full_name if f.message_type else None)}, "
                f"{_q(bool(f.is_repeated))}, {_q(bool(f.has_presence))}, "
                f"{_q(enum)}::jsonb)"
            )
    return types, fields


# The protobuf wire-format reader: one message -> its JSON (fields in number order, as
# protobuf's MessageToDict lists them; 64-bit integers as strings, bytes as base64, enums by
# name; proto3 scalars at their default value left out unless they belong to a oneof).
_PB_JSON = r"""
CREATE FUNCTION durably_query.pb_varint(b bytea, pos integer, OUT v numeric, OUT next integer)
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    byte integer;
    mul numeric := 1;
BEGIN
    v := 0;
    next := pos;
    LOOP
        byte := get_byte(b, next);
        next := next + 1;
        v := v + (byte & 127) * mul;
        mul := mul * 128;
        EXIT WHEN byte < 128;
    END LOOP;
END
$$;

CREATE FUNCTION durably_query.pb_json(b bytea, msg text, lite boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    n integer := length(b);
    pos integer := 0;
    byte integer;
    mul numeric;
    v numeric;
    wt integer;
    len integer;
    nums integer[] := '{}';
    wts integer[] := '{}';
    ivals numeric[] := '{}';
    bvals bytea[] := '{}';
    f record;
    i integer;
    out text := '';
    pieces text[];
    piece text;
    sub bytea;
    spos integer;
BEGIN
    WHILE pos < n LOOP
        SELECT r.v, r.next INTO v, pos FROM durably_query.pb_varint(b, pos) AS r;
        wt := (v % 8)::integer;
        nums := nums || (trunc(v / 8))::integer;
        wts := wts || wt;
        IF wt = 0 THEN
            SELECT r.v, r.next INTO v, pos FROM durably_query.pb_varint(b, pos) AS r;
            ivals := ivals || v; bvals := bvals || NULL::bytea;
        ELSIF wt = 1 OR wt = 5 THEN
            len := CASE WHEN wt = 1 THEN 8 ELSE 4 END;
            v := 0; mul := 1;
            FOR k IN 0 .. len - 1 LOOP
                v := v + get_byte(b, pos + k) * mul; mul := mul * 256;
            END LOOP;
            pos := pos + len;
            ivals := ivals || v; bvals := bvals || NULL::bytea;
        ELSIF wt = 2 THEN
            SELECT r.v, r.next INTO v, pos FROM durably_query.pb_varint(b, pos) AS r;
            len := v::integer;
            IF pos + len > n THEN
                RAISE EXCEPTION 'truncated protobuf field';
            END IF;
            ivals := ivals || NULL::numeric; bvals := bvals || substr(b, pos + 1, len);
            pos := pos + len;
        ELSE
            RAISE EXCEPTION 'unsupported protobuf wire type %', wt;
        END IF;
    END LOOP;
    FOR f IN SELECT * FROM durably_query.pb_field WHERE message = msg ORDER BY number LOOP
        CONTINUE WHEN lite AND f.name IN ('value', 'parameter', 'headers', 'content', 'result',
                                          'failure', 'state_keys');
        pieces := '{}';
        FOR i IN 1 .. coalesce(array_length(nums, 1), 0) LOOP
            CONTINUE WHEN nums[i] <> f.number;
            IF wts[i] = 2 AND f.kind NOT IN ('string', 'bytes', 'message') THEN
                -- packed repeated scalars
                sub := bvals[i]; spos := 0;
                WHILE spos < length(sub) LOOP
                    v := 0; mul := 1;
                    IF f.kind IN ('fixed32', 'sfixed32', 'fixed64', 'sfixed64') THEN
                        len := CASE WHEN f.kind LIKE '%32' THEN 4 ELSE 8 END;
                        FOR k IN 0 .. len - 1 LOOP
                            v := v + get_byte(sub, spos + k) * mul; mul := mul * 256;
                        END LOOP;
                        spos := spos + len;
                    ELSE
                        SELECT r.v, r.next INTO v, spos
                            FROM durably_query.pb_varint(sub, spos) AS r;
                    END IF;
                    pieces := pieces || durably_query.pb_scalar(v, f.kind, f.enum_names);
                END LOOP;
                CONTINUE;
            END IF;
            IF f.kind = 'message' THEN
                piece := durably_query.pb_json(bvals[i], f.nested);
            ELSIF f.kind = 'string' THEN
                CONTINUE WHEN NOT f.presence AND NOT f.repeated AND length(bvals[i]) = 0;
                piece := to_json(convert_from(bvals[i], 'UTF8'))::text;
            ELSIF f.kind = 'bytes' THEN
                CONTINUE WHEN NOT f.presence AND NOT f.repeated AND length(bvals[i]) = 0;
                IF lite AND f.name = 'key' THEN
                    BEGIN
                        piece := to_json(convert_from(bvals[i], 'UTF8'))::text;
                    EXCEPTION WHEN others THEN
                        piece := to_json(translate(encode(bvals[i], 'base64'), E'\n', ''))::text;
                    END;
                ELSE
                    piece := to_json(translate(encode(bvals[i], 'base64'), E'\n', ''))::text;
                END IF;
            ELSE
                CONTINUE WHEN NOT f.presence AND NOT f.repeated AND ivals[i] = 0;
                piece := durably_query.pb_scalar(ivals[i], f.kind, f.enum_names);
            END IF;
            pieces := pieces || piece;
        END LOOP;
        CONTINUE WHEN coalesce(array_length(pieces, 1), 0) = 0;
        IF out <> '' THEN
            out := out || ',';
        END IF;
        out := out || to_json(f.name)::text || ':' || CASE WHEN f.repeated
            THEN '[' || array_to_string(pieces, ',') || ']'
            ELSE pieces[array_length(pieces, 1)] END;
    END LOOP;
    RETURN '{' || out || '}';
END
$$;

CREATE FUNCTION durably_query.pb_scalar(v numeric, kind text, enum_names jsonb)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT CASE
    WHEN kind = 'bool' THEN CASE WHEN v <> 0 THEN 'true' ELSE 'false' END
    WHEN kind = 'enum' THEN coalesce(to_json(enum_names ->> v::text)::text, v::text)
    WHEN kind IN ('int64', 'sfixed64') THEN
        '"' || CASE WHEN v >= 9223372036854775808 THEN v - 18446744073709551616 ELSE v END || '"'
    WHEN kind IN ('uint64', 'fixed64') THEN '"' || v || '"'
    WHEN kind = 'int32' THEN
        (CASE WHEN v >= 9223372036854775808 THEN v - 18446744073709551616 ELSE v END)::text
    WHEN kind = 'sfixed32' THEN (CASE WHEN v >= 2147483648 THEN v - 4294967296 ELSE v END)::text
    WHEN kind = 'sint32' THEN
        (CASE WHEN v % 2 = 0 THEN trunc(v / 2) ELSE -trunc((v + 1) / 2) END)::text
    WHEN kind = 'sint64' THEN
        '"' || CASE WHEN v % 2 = 0 THEN trunc(v / 2) ELSE -trunc((v + 1) / 2) END || '"'
    ELSE (v % 4294967296)::text
END
$$;
"""

# One journal entry's field, as storage.journal_view.entry_field answers it.
_JOURNAL = r"""
CREATE FUNCTION durably_query.durably_journal(t integer, b bytea, field text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    msg text;
    name text;
    kind text;
    short text;
    doc json;
    entry text;
BEGIN
    IF t IS NULL OR b IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT m.message, m.entry_type, m.kind, m.short INTO msg, name, kind, short
        FROM durably_query.pb_message_type m WHERE m.type_id = t;
    IF msg IS NULL THEN
        IF t BETWEEN 64512 AND 65535 THEN
            name := 'Custom';
        ELSE
            kind := CASE WHEN t BETWEEN 32768 AND 64511 THEN 'Notification' ELSE 'Command' END;
            short := 'Unknown(0x' || lpad(to_hex(t), 4, '0') || ')';
            name := kind || ': ' || short;
            IF kind = 'Notification' THEN
                -- a notification newer than this table: read through the shared template
                msg := 'dev.restate.service.protocol.NotificationTemplate';
            END IF;
        END IF;
    END IF;
    IF field = 'entry_type' THEN
        RETURN name;
    END IF;
    IF t BETWEEN 64512 AND 65535 THEN
        IF field IN ('entry_json', 'entry_lite_json') THEN
            RETURN '{"Custom":{"raw_length":' || length(b) || '}}';
        END IF;
        RETURN NULL;
    END IF;
    IF msg IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        entry := durably_query.pb_json(b, msg, field = 'entry_lite_json');
    EXCEPTION WHEN others THEN
        RETURN NULL;  -- not a message of its type: as on SQLite, only entry_type is shown
    END;
    IF field IN ('entry_json', 'entry_lite_json') THEN
        RETURN '{' || to_json(kind)::text || ':{' || to_json(short)::text || ':'
            || entry || '}}';
    END IF;
    doc := entry::json;
    IF kind = 'Command' THEN
        IF field = 'name' THEN
            RETURN coalesce(doc ->> 'name', '');
        ELSIF field = 'invoked_target' AND t IN (1037, 1038) THEN
            RETURN coalesce(doc ->> 'service_name', '') || '/'
                || CASE WHEN coalesce(doc ->> 'key', '') = '' THEN ''
                        ELSE (doc ->> 'key') || '/' END
                || coalesce(doc ->> 'handler_name', '');
        ELSIF field = 'invocation_id_idx' AND t IN (1037, 1038) THEN
            RETURN coalesce(doc ->> 'invocation_id_notification_idx', '0');
        ELSIF field = 'sleep_wakeup_at' AND t = 1036 THEN
            RETURN coalesce(doc ->> 'wake_up_time', '0');
        ELSIF field = 'promise_name' AND t IN (1033, 1034, 1035) THEN
            RETURN coalesce(doc ->> 'key', '');
        END IF;
        RETURN NULL;
    END IF;
    IF field IN ('completion_id', 'invocation_id') THEN
        RETURN doc ->> field;
    END IF;
    RETURN NULL;
END
$$;
"""

_HELPERS = r"""
CREATE FUNCTION durably_query.durably_ts(ms bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT to_char(timestamp '1970-01-01' + ms * interval '1 millisecond',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

CREATE FUNCTION durably_query.durably_duration(ms bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT 'PT' || (ms / 1000)::text
    || CASE WHEN ms % 1000 = 0 THEN '' ELSE '.' || lpad((ms % 1000)::text, 3, '0') END || 'S'
$$;

CREATE FUNCTION durably_query.durably_utf8(b bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF position('\x00'::bytea IN b) = 0 THEN
        BEGIN
            RETURN convert_from(b, 'UTF8');
        EXCEPTION WHEN others THEN
            NULL;
        END;
    END IF;
    -- not UTF-8 (or holding NUL, which PostgreSQL text cannot): ASCII kept, the rest U+FFFD
    RETURN coalesce((SELECT string_agg(CASE WHEN get_byte(b, i) BETWEEN 1 AND 127
                                            THEN chr(get_byte(b, i)) ELSE U&'\FFFD' END,
                                       '' ORDER BY i)
                     FROM generate_series(0, length(b) - 1) AS i), '');
END
$$;

CREATE FUNCTION durably_query.durably_result(r bytea, what text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    d json;
BEGIN
    IF substr(r, 1, 1) = '\x56'::bytea THEN
        RETURN CASE what WHEN 'kind' THEN 'success'
                         WHEN 'utf8' THEN durably_query.durably_utf8(substr(r, 2)) END;
    ELSIF what = 'kind' THEN
        RETURN 'failure';
    ELSIF what = 'failure' THEN
        d := convert_from(substr(r, 2), 'UTF8')::json;
        RETURN '[' || (d ->> 'code') || '] ' || (d ->> 'message');
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION durably_query.durably_result_value(r bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT CASE WHEN substr(r, 1, 1) = '\x56'::bytea THEN substr(r, 2) END
$$;

-- DataFusion's `==` (the official CLI writes `status == 'inboxed'`)
CREATE FUNCTION durably_query.durably_eq(anyelement, anyelement) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT $1 = $2 $$;
CREATE OPERATOR durably_query.== (
    LEFTARG = anyelement, RIGHTARG = anyelement, FUNCTION = durably_query.durably_eq
);

-- DataFusion's first_value/last_value are aggregates too (with ORDER BY inside the call);
-- found before pg_catalog's window functions of the same name on the query search_path.
-- Over a window they give what the window functions give; NULL values are skipped.
CREATE FUNCTION durably_query.durably_keep_first(anyelement, anyelement) RETURNS anyelement
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $1 $$;
CREATE FUNCTION durably_query.durably_keep_last(anyelement, anyelement) RETURNS anyelement
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $2 $$;
CREATE AGGREGATE durably_query.first_value(anyelement) (
    SFUNC = durably_query.durably_keep_first, STYPE = anyelement
);
CREATE AGGREGATE durably_query.last_value(anyelement) (
    SFUNC = durably_query.durably_keep_last, STYPE = anyelement
);
"""

# What user queries run inside: as the query role (its owner, once ROLE_SETUP ran), under a
# search_path of the views only, at most `max_rows` rows (one NULL more when there were
# more) and `max_bytes` of JSON text. The query is `(...)`-wrapped with one alias per column
# (`ncols`, from its description) so that each row comes back as one JSON document.
_RUN = r"""
CREATE FUNCTION durably_query.run(q text, ncols integer, max_rows integer, max_bytes bigint)
RETURNS SETOF text LANGUAGE plpgsql SECURITY DEFINER
SET search_path = durably_query, pg_catalog AS $$
DECLARE
    r record;
    n integer := 0;
    total bigint := 0;
BEGIN
    IF has_schema_privilege('durably', 'USAGE')
       OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'the query role % can read durably''s own tables', current_user
            USING ERRCODE = 'DQ001';
    END IF;
    FOR r IN EXECUTE format('SELECT pg_catalog.row_to_json(q)::text AS t FROM (%s
) AS q(%s)', q, (SELECT string_agg('c' || i, ', ') FROM generate_series(1, ncols) AS i)) LOOP
        n := n + 1;
        IF n > max_rows THEN
            RETURN NEXT NULL;
            RETURN;
        END IF;
        total := total + octet_length(r.t);
        IF total > max_bytes THEN
            RAISE EXCEPTION 'answer too large' USING ERRCODE = 'DQ002';
        END IF;
        RETURN NEXT r.t;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION durably_query.run(text, integer, integer, bigint) FROM PUBLIC;
"""

# Creates (or completes) the query role of this database: NOLOGIN, USAGE on the views'
# schema, SELECT on the views (and the descriptor tables their functions read), owner of
# `run`, member-of granted to the server's role so that it may SET ROLE to it. Run by the
# migration, and again by the query runner while it finds the role missing (an operator may
# create it by hand when the server's role may not: docs/postgresql.md). Without CREATEROLE
# it raises nothing: the runner reports what is missing.
_ROLE_SETUP = r"""
DO $setup$
DECLARE
    role_name text := left('durably_query_' || current_database(), 63);
    obj text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', role_name);
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'durably: cannot create the query role % (%)', role_name, SQLERRM;
                RETURN;
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's server made it at the same moment
        END;
    END IF;
    BEGIN
        IF NOT pg_has_role(current_user, role_name, 'MEMBER') THEN
            EXECUTE format('GRANT %I TO %I', role_name, current_user);
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA durably_query TO %I', role_name);
        FOREACH obj IN ARRAY ARRAY[{objects}] LOOP
            EXECUTE format('GRANT SELECT ON durably_query.%I TO %I', obj, role_name);
        END LOOP;
        -- the owner of a function needs CREATE on its schema when it is given the function
        EXECUTE format('GRANT CREATE ON SCHEMA durably_query TO %I', role_name);
        EXECUTE format('ALTER FUNCTION durably_query.run(text, integer, integer, bigint) '
                       'OWNER TO %I', role_name);
        EXECUTE format('REVOKE CREATE ON SCHEMA durably_query FROM %I', role_name);
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'durably: cannot set up the query role % (%)', role_name, SQLERRM;
    END;
END
$setup$;
"""

ROLE_SETUP = _ROLE_SETUP.replace(
    "{objects}",
    ", ".join(_q(g) for g in [*TABLES, "information_schema_columns",
                              "information_schema_tables", "pb_field", "pb_message_type"]),
)

# the name the runner checks for (the same expression as in ROLE_SETUP)
ROLE_NAME_SQL = "left('durably_query_' || current_database(), 63)"


def _information_schema() -> str:
    """Restate's information_schema.columns and .tables (queries name them
    `information_schema.columns`; the runner points that name here)."""
    cols = ", ".join(
        f"({_q(t)}, {_q(c)}, {i}, {_q(ty)}, {_q('NO' if (t, c) == ('sys_invocation', 'status') else 'YES')})"
        for t, columns in COLUMNS.items()
        for i, (c, ty) in enumerate(columns)
    )
    tables = ", ".join(f"({_q(t)})" for t in TABLES)
    return (
        "CREATE VIEW durably_query.information_schema_columns AS SELECT "
        "'restate'::text AS table_catalog, 'public'::text AS table_schema, "
        "v.table_name, v.column_name, v.ordinal_position, v.data_type, v.is_nullable "
        f"FROM (VALUES {cols}) AS v(table_name, column_name, ordinal_position, data_type, "
        "is_nullable);\n"
        "CREATE VIEW durably_query.information_schema_tables AS SELECT "
        "'restate'::text AS table_catalog, 'public'::text AS table_schema, v.table_name, "
        f"'VIEW'::text AS table_type FROM (VALUES {tables}) AS v(table_name);\n"
    )


def _views() -> str:
    out = []
    for name, exprs, source in view_definitions(POSTGRESQL):
        select = view_select(name, exprs, source)
        select = (
            select.replace("main.", "durably.")
            .replace("temp._durably_service", "durably_query.registry_service")
            .replace("temp._durably_deployment", "durably_query.registry_deployment")
        )
        out.append(f"CREATE VIEW durably_query.{name} AS {select};")
    return "\n".join(out) + "\n"


# Indexes for the web UI's list (newest first, by status, with an exact count) and its
# filters, on the very expressions the views compute (PostgreSQL matches an index on an
# expression only when the query's is the same).
def _indexes() -> str:
    status = (
        "(CASE status "
        + " ".join(f"WHEN '{ours}' THEN '{theirs}'" for ours, theirs in RESTATE_STATUS.items())
        + " ELSE status END)"
    )
    created = "durably_query.durably_ts(created_at)"
    return (
        f"CREATE INDEX invocation_created_view ON durably.invocation ({created}, id);\n"
        # INCLUDE (status): counts by status are then index-only scans (PostgreSQL answers
        # from an index on an expression only when the columns it reads are in the index)
        f"CREATE INDEX invocation_status_view ON durably.invocation ({status}, {created}, id) "
        "INCLUDE (status);\n"
        f"CREATE INDEX invocation_service_view ON durably.invocation (service, {created}, id);\n"
    )


def migration_sql() -> str:
    """The migration that creates the schema (see postgres_schema.MIGRATIONS)."""
    types, fields = _descriptor_rows()
    return (
        "CREATE SCHEMA durably_query;\n"
        # the views and functions below name each other unqualified
        "SET LOCAL search_path = durably_query, pg_catalog;\n"
        "CREATE TABLE durably_query.pb_message_type (type_id integer PRIMARY KEY, "
        "message text NOT NULL, entry_type text NOT NULL, kind text NOT NULL, "
        "short text NOT NULL);\n"
        f"INSERT INTO durably_query.pb_message_type VALUES {', '.join(types)};\n"
        "CREATE TABLE durably_query.pb_field (message text NOT NULL, number integer NOT NULL, "
        "name text NOT NULL, kind text NOT NULL, nested text, repeated boolean NOT NULL, "
        "presence boolean NOT NULL, enum_names jsonb, PRIMARY KEY (message, number));\n"
        f"INSERT INTO durably_query.pb_field VALUES {', '.join(fields)};\n"
        # sys_service and sys_deployment: rows of the stored registry document, rebuilt by
        # the query runner when the document's digest changes
        "CREATE TABLE durably_query.registry_service (name text, revision bigint, "
        "public boolean, ty text, deployment_id text);\n"
        "CREATE TABLE durably_query.registry_deployment (id text, ty text, endpoint text, "
        "created_at text, min_service_protocol_version integer, "
        "max_service_protocol_version integer, services text);\n"
        "CREATE TABLE durably_query.registry_source (digest text);\n"
        "INSERT INTO durably_query.registry_source VALUES (NULL);\n"
        + _HELPERS + _PB_JSON + _JOURNAL + _views() + _information_schema() + _indexes()
        + _RUN
        + ROLE_SETUP
        + "SET LOCAL search_path TO DEFAULT;\n"
    )

"""A minimal Arrow IPC stream writer: query results without depending on pyarrow.

Restate's `POST /query` answers with an Arrow IPC stream unless JSON is asked for, and the
official `restate` CLI decodes it for its counts. The results we produce only need a few
column types (Int64, Float64, Utf8, Binary, Boolean), one schema message and one record
batch, so this writes them directly: flatbuffer metadata laid out front to back (every
offset points forward, as flatbuffers require), 8-byte aligned bodies.

Format: https://arrow.apache.org/docs/format/Columnar.html#serialization-and-interprocess-communication-ipc
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from durably.storage.introspection import QueryResult, render_value

__all__ = ["arrow_stream"]

_CONTINUATION = b"\xff\xff\xff\xff"
_METADATA_V5 = 4
# Message header union
_SCHEMA = 1
_RECORD_BATCH = 3
# Type union
_INT = 2
_FLOAT = 3
_BINARY = 4
_UTF8 = 5
_BOOL = 6
_UINT = 102  # our marker: Int type, unsigned (u64 partition keys)

# -- a front-to-back flatbuffer writer --------------------------------------------------

_SCALAR = {"u8": ("<B", 1), "bool": ("<?", 1), "i16": ("<h", 2), "i32": ("<i", 4), "i64": ("<q", 8)}


@dataclass
class Table:
    """fields: list indexed by field id of (kind, value) or None. kind is a scalar kind
    or "off" (value: Table, Vec, Str or StructVec)."""

    fields: list[tuple[str, Any] | None]


@dataclass
class Str:
    value: str


@dataclass
class Vec:
    """A vector of tables."""

    items: list[Table] = field(default_factory=list)


@dataclass
class StructVec:
    """A vector of structs made of i64 fields (FieldNode, Buffer)."""

    items: list[tuple[int, ...]] = field(default_factory=list)


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def align(self, n: int, extra: int = 0) -> None:
        """Pad so that (len + extra) is a multiple of n."""
        while (len(self.buf) + extra) % n:
            self.buf.append(0)

    def patch_offset(self, at: int, target: int) -> None:
        struct.pack_into("<I", self.buf, at, target - at)

    def write(self, node: Any) -> int:
        if isinstance(node, Table):
            return self._table(node)
        if isinstance(node, Str):
            data = node.value.encode()
            self.align(4)
            pos = len(self.buf)
            self.buf += struct.pack("<I", len(data)) + data + b"\0"
            return pos
        if isinstance(node, StructVec):
            self.align(8, 4)
            pos = len(self.buf)
            self.buf += struct.pack("<I", len(node.items))
            for item in node.items:
                self.buf += struct.pack(f"<{len(item)}q", *item)
            return pos
        if isinstance(node, Vec):
            self.align(4)
            pos = len(self.buf)
            self.buf += struct.pack("<I", len(node.items))
            slots = []
            for _ in node.items:
                slots.append(len(self.buf))
                self.buf += b"\0\0\0\0"
            for slot, item in zip(slots, node.items, strict=True):
                self.patch_offset(slot, self.write(item))
            return pos
        raise TypeError(node)

    def _table(self, t: Table) -> int:
        # lay out the inline part: soffset, then fields largest first (keeps them aligned)
        present = [(i, f) for i, f in enumerate(t.fields) if f is not None]
        sized = [(i, k, v, 4 if k == "off" else _SCALAR[k][1]) for i, (k, v) in present]
        sized.sort(key=lambda x: -x[3])
        layout: list[tuple[int, str, Any, int]] = []
        off = 4
        for i, k, v, size in sized:
            while off % size:
                off += 1
            layout.append((i, k, v, off))
            off += size
        table_size = off
        # vtable just before the table
        vt = [0] * len(t.fields)
        for i, _k, _v, o in layout:
            vt[i] = o
        vtable = struct.pack(f"<HH{len(vt)}H", 4 + 2 * len(vt), table_size, *vt)
        self.align(8, len(vtable))
        vt_pos = len(self.buf)
        self.buf += vtable
        table_pos = len(self.buf)
        body = bytearray(table_size)
        struct.pack_into("<i", body, 0, table_pos - vt_pos)
        for _i, k, v, o in layout:
            if k != "off":
                struct.pack_into(_SCALAR[k][0], body, o, v)
        self.buf += body
        for _i, k, v, o in layout:
            if k == "off":
                self.patch_offset(table_pos + o, self.write(v))
        return table_pos


def _flatbuffer(root: Table) -> bytes:
    w = _Writer()
    w.buf += b"\0\0\0\0"
    w.patch_offset(0, w.write(root))
    w.align(8)
    return bytes(w.buf)


# -- Arrow messages ---------------------------------------------------------------------


def _message(header_type: int, header: Table, body_length: int) -> Table:
    return Table(
        [("i16", _METADATA_V5), ("u8", header_type), ("off", header), ("i64", body_length)]
    )


def _frame(metadata: bytes, body: bytes = b"") -> bytes:
    return _CONTINUATION + struct.pack("<i", len(metadata)) + metadata + body


def _type_table(kind: int) -> Table:
    if kind == _INT:
        return Table([("i32", 64), ("bool", True)])
    if kind == _UINT:
        return Table([("i32", 64), ("bool", False)])
    if kind == _FLOAT:
        return Table([("i16", 2)])  # DOUBLE
    return Table([])


def _column_kind(name: str, values: list[Any]) -> int:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return _BOOL
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        if all(-(1 << 63) <= v < (1 << 63) for v in present):
            return _INT
        if all(0 <= v < (1 << 64) for v in present):
            return _UINT
        return _UTF8
    if present and all(isinstance(v, int | float) for v in present):
        return _FLOAT
    if present and all(isinstance(v, bytes) for v in present):
        return _BINARY
    return _UTF8


def _bitmap(bits: list[bool]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def _pad8(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 8)


def arrow_stream(result: QueryResult) -> bytes:
    """The result as an Arrow IPC stream: schema, one record batch, end-of-stream."""
    names = result.columns
    columns: list[list[Any]] = [[] for _ in names]
    for row in result.rows:
        for i, (name, value) in enumerate(zip(names, row, strict=True)):
            # SQLite's raw values, with Restate's booleans/u64 partition keys; binary stays bytes
            columns[i].append(value if isinstance(value, bytes) else render_value(name, value))
    kinds = [_column_kind(n, c) for n, c in zip(names, columns, strict=True)]

    fields = [
        Table(
            [("off", Str(n)), ("bool", True), ("u8", _INT if k == _UINT else k),
             ("off", _type_table(k))]
        )
        for n, k in zip(names, kinds, strict=True)
    ]
    schema = Table([("i16", 0), ("off", Vec(fields))])
    out = [_frame(_flatbuffer(_message(_SCHEMA, schema, 0)))]

    n = len(result.rows)
    nodes: list[tuple[int, ...]] = []
    buffers: list[tuple[int, ...]] = []
    body = bytearray()

    def add_buffer(data: bytes) -> None:
        buffers.append((len(body), len(data)))
        body.extend(_pad8(data))

    for values, kind in zip(columns, kinds, strict=True):
        valid = [v is not None for v in values]
        nodes.append((n, valid.count(False)))
        add_buffer(_bitmap(valid))
        if kind == _INT:
            add_buffer(struct.pack(f"<{n}q", *(v or 0 for v in values)))
        elif kind == _UINT:
            add_buffer(struct.pack(f"<{n}Q", *(v or 0 for v in values)))
        elif kind == _FLOAT:
            add_buffer(struct.pack(f"<{n}d", *(float(v or 0) for v in values)))
        elif kind == _BOOL:
            add_buffer(_bitmap([bool(v) for v in values]))
        else:
            offsets = [0]
            data = bytearray()
            for v in values:
                if v is not None:
                    if isinstance(v, bytes):
                        data += v
                    elif isinstance(v, str):
                        data += v.encode()
                    else:
                        data += str(v).encode()
                offsets.append(len(data))
            add_buffer(struct.pack(f"<{n + 1}i", *offsets))
            add_buffer(bytes(data))
    batch = Table([("i64", n), ("off", StructVec(nodes)), ("off", StructVec(buffers))])
    out.append(_frame(_flatbuffer(_message(_RECORD_BATCH, batch, len(body))), bytes(body)))
    out.append(_CONTINUATION + b"\0\0\0\0")
    return b"".join(out)

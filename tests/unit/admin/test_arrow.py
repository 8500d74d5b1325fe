"""admin.arrow: the Arrow IPC stream `/query` answers by default (what the restate CLI reads)."""

from __future__ import annotations

import struct

import pytest

from durably.admin.arrow import arrow_stream
from durably.storage.introspection import QueryResult

RESULT = QueryResult(
    ["COUNT(1)", "id", "completed", "raw", "f", "partition_key"],
    [(3, "inv_a", 1, b"\x01\x02", 1.5, -5), (None, None, 0, None, None, 7)],
)


def test_framing() -> None:
    data = arrow_stream(RESULT)
    assert data.endswith(b"\xff\xff\xff\xff\x00\x00\x00\x00")
    # schema message: continuation, metadata length (8-aligned after the prefix)
    assert data[:4] == b"\xff\xff\xff\xff"
    (length,) = struct.unpack_from("<i", data, 4)
    assert length % 8 == 0
    assert data[8 + length: 12 + length] == b"\xff\xff\xff\xff"


def test_pyarrow_reads_it() -> None:
    ipc = pytest.importorskip("pyarrow.ipc")
    table = ipc.open_stream(arrow_stream(RESULT)).read_all()
    assert [str(t) for t in table.schema.types] == [
        "int64", "string", "bool", "binary", "double", "uint64"]
    assert table.to_pylist()[0] == {
        "COUNT(1)": 3, "id": "inv_a", "completed": True, "raw": b"\x01\x02", "f": 1.5,
        "partition_key": (1 << 64) - 5,
    }
    assert table.to_pylist()[1]["COUNT(1)"] is None

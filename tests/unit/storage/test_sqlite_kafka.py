"""The store's Kafka tables: offsets taken per (subscription, group, topic, partition), that
never move back, and parked records; and the migration of a version-1 file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from durably.storage.base import ParkedRecordRow
from durably.storage.sqlite import SqliteStore


def test_offsets_are_per_group_and_never_move_back(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)
    assert s.put_kafka_offset("sub_a", "g1", "t", 0, 5)
    assert s.put_kafka_offset("sub_a", "g1", "t", 1, 2)
    assert s.put_kafka_offset("sub_a", "g2", "t", 0, 9)
    s.commit()
    assert not s.put_kafka_offset("sub_a", "g1", "t", 0, 3)  # an older record: a repeat
    assert not s.put_kafka_offset("sub_a", "g1", "t", 0, 5)  # the same one
    assert s.put_kafka_offset("sub_a", "g1", "t", 0, 6)
    s.commit()
    assert not s.put_kafka_offset("sub_a", "g1", "t", 0, 6)  # seen within the same batch too
    s.rollback()
    assert s.kafka_offsets("sub_a", "g1") == {("t", 0): 6, ("t", 1): 2}
    assert s.kafka_offsets("sub_a", "g2") == {("t", 0): 9}
    s.put_kafka_offset("sub_a", "g1", "t", 0, 7)
    s.rollback()  # not committed: not taken
    assert s.kafka_offsets("sub_a", "g1")[("t", 0)] == 6
    s.delete_kafka_offsets("sub_a")
    s.commit()
    assert s.kafka_offsets("sub_a", "g1") == {}
    s.close()


def test_parked_records(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)
    row = ParkedRecordRow(0, "sub_a", "t", 0, 4, b"\xff", b"v", 123, "bad key", 456)
    first = s.park_kafka_record(row)
    second = s.park_kafka_record(ParkedRecordRow(0, "sub_b", "t", 1, 1, None, None, 0, "x", 1))
    s.commit()
    assert [r.id for r in s.kafka_parked()] == [first, second]
    (only,) = s.kafka_parked("sub_a")
    assert only == ParkedRecordRow(first, "sub_a", "t", 0, 4, b"\xff", b"v", 123, "bad key", 456)
    s.delete_parked_record(first)
    s.commit()
    assert [r.subscription_id for r in s.kafka_parked()] == ["sub_b"]
    s.close()


def test_a_version_1_file_is_migrated_on_open(tmp_path: Path) -> None:
    SqliteStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "durably.sqlite3")
    db.execute("DROP TABLE kafka_offset")
    db.execute("DROP TABLE kafka_parked")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (b"1",))
    db.commit()
    db.close()
    s = SqliteStore(tmp_path)
    assert s.load_meta("schema_version") == b"3"
    s.put_kafka_offset("sub_a", "g", "t", 0, 1)
    s.commit()
    assert s.kafka_offsets("sub_a", "g") == {("t", 0): 1}
    s.close()

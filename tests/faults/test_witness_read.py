"""The witness itself: Kafka's own Java console consumer reads a topic back exactly, byte for
byte (null keys and values, the word "null", newlines, tabs, binary), from the beginning to
the end and no further, without creating a consumer group; and it fails loudly, with the
tool's stderr, when it cannot read as many records as the end offsets promise.

Every fault scenario's verdict rests on this reader, so it is tested on the real cluster.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from support.kafka_tools import witness_offsets
from support.produce import produce_raw
from support.records import TopicContent, TopicIndex
from support.witness import PartitionReader, merged, witness_read

pytestmark = [pytest.mark.faults, pytest.mark.cluster]

# (partition, key, value, headers); partition 2 stays empty.
RECORDS = [
    (0, None, b'{"message_id":"null-key","content":"x"}', []),
    (0, b"null", b"null", []),  # the tool's default null literal, here as real bytes
    (0, b"tab\tkey\nnewline", b"line 1\nline 2\r\n\tOffset:7\t\n", []),  # its default separators
    (0, b"\xff\xfe\x00binary", bytes(range(256)), [b"x-trace=\xff\xfe", b"no-value"]),
    (0, b"empty-value", b"", []),
    (0, b"tombstone", None, []),
    (1, b"", b"x" * 300_000, []),  # an empty key, and a value spread over several pipe reads
    (1, "cl\u00e9".encode(), "h\u00e9llo \U0001f389".encode(), []),
]


def expected() -> list[tuple[int, int, bytes | None, bytes | None]]:
    offsets = {0: 0, 1: 0, 2: 0}
    records = []
    for partition, key, value, _ in RECORDS:
        records.append((partition, offsets[partition], key, value))
        offsets[partition] += 1
    return records


def groups(kafka_cluster) -> set[str]:
    listed = kafka_cluster.admin.list_consumer_groups(request_timeout=15).result(timeout=20)
    return {g.group_id for g in listed.valid}


@pytest.mark.timeout(180)
def test_reads_back_exactly_what_was_written(kafka_cluster, fresh_topic: str, tmp_path: Path):
    bootstrap, topic = kafka_cluster.bootstrap, fresh_topic
    produce_raw(bootstrap, topic, RECORDS)
    groups_before = groups(kafka_cluster)

    assert witness_offsets(bootstrap, topic) == {0: (0, 6), 1: (0, 2), 2: (0, 0)}
    read = list(witness_read(bootstrap, topic))
    assert sorted(read, key=lambda r: r[:2]) == expected()
    for partition in (0, 1):  # each partition in offset order (partitions may interleave)
        offsets = [o for p, o, _, _ in read if p == partition]
        assert offsets == sorted(offsets)

    keys_only = sorted(witness_read(bootstrap, topic, values=False), key=lambda r: r[:2])
    assert keys_only == [(p, o, k, None) for p, o, k, _ in expected()]

    content = TopicContent.read(bootstrap, topic)
    assert content.keys[(0, 0)] is None and content.keys[(1, 0)] == ""  # null, empty
    assert content.keys[(0, 3)] == b"\xff\xfe\x00binary".decode("utf-8", "surrogateescape")
    assert content.keys[(1, 1)] == "cl\u00e9"
    assert len(content) == len(RECORDS)

    index = TopicIndex(bootstrap, topic)
    assert (len(index), index.gaps, index.duplicates()) == (len(RECORDS), 0, 0)
    acked = tmp_path / "acked"
    acked.write_bytes(b"0 1 null\n0 4 empty-value\n1 -1 cl\xc3\xa9\n0 2 elsewhere\n")
    assert index.check([acked]) == (4, ["0 2 elsewhere"])
    assert index.offset_unknown == 1

    # Assigned partitions, no subscription: the reads left no consumer group behind.
    assert groups(kafka_cluster) == groups_before


@pytest.mark.timeout(120)
def test_a_read_short_of_the_expected_count_fails(kafka_cluster, fresh_topic: str):
    """The control: one record more than partition 0 holds. ConsoleConsumer gives up after
    its idle time and exits with 0; the count is what fails the read."""
    bootstrap, topic = kafka_cluster.bootstrap, fresh_topic
    produce_raw(bootstrap, topic, RECORDS)
    reader = PartitionReader(bootstrap, topic, 0, 0, 7, idle_timeout=8)
    started = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        list(merged([reader], timeout=90))
    message = str(failure.value)
    assert message.startswith(
        f"Kafka's ConsoleConsumer read 6 of the 7 records of {topic} [0] from offset 0:"
        " it ended early (it gives up after 8 s without a record)"
    ), message
    assert "--- its stderr ends with:" in message
    assert time.monotonic() - started < 60


@pytest.mark.timeout(120)
def test_a_read_past_its_time_limit_is_killed_and_fails(kafka_cluster, fresh_topic: str):
    bootstrap, topic = kafka_cluster.bootstrap, fresh_topic
    produce_raw(bootstrap, topic, RECORDS)
    reader = PartitionReader(bootstrap, topic, 1, 0, 3, idle_timeout=600)
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"read 2 of the 3 records .* killed at the read's"):
        list(merged([reader], timeout=20))
    assert time.monotonic() - started < 60
    assert reader.process.poll() is not None, "the tool was left running"


@pytest.mark.timeout(60)
def test_an_unknown_topic_fails(kafka_cluster):
    with pytest.raises(AssertionError, match="Could not match any topic-partitions"):
        list(witness_read(kafka_cluster.bootstrap, "no-such-topic-e7c1"))

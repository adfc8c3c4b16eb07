"""Offsets as the consumers commit and log them: per partition, the next offset to read."""

from collections.abc import Iterable, Mapping

from confluent_kafka import Message, TopicPartition

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read


def next_offsets(messages: Iterable[Message]) -> Offsets:
    """What to commit after processing ``messages``: per partition, the last offset + 1."""
    return {(msg.topic(), msg.partition()): msg.offset() + 1 for msg in messages}


def format_offsets(offsets: Mapping[tuple[str, int], int | None]) -> str:
    """``final-1-topic [0]@123, [2]@88``, sorted, each topic named once; no ``@`` for None."""
    parts, last_topic = [], None
    for (topic, partition), offset in sorted(offsets.items()):
        at = "" if offset is None else f"@{offset}"
        parts.append(f"{topic + ' ' if topic != last_topic else ''}[{partition}]{at}")
        last_topic = topic
    return ", ".join(parts) or "none"


def format_partitions(partitions: list[TopicPartition]) -> str:
    """``final-1-topic [0], [2]`` for rebalance logs."""
    return format_offsets(dict.fromkeys((tp.topic, tp.partition) for tp in partitions))

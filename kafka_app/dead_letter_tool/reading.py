"""Reading a topic from its first offsets up to the end offsets it has when the read starts,
outside any group: what ``python dead_letters.py`` lists and redrives."""

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from kafka_app import topic_check
from kafka_app.lifecycle import EXIT_FAILED, EXIT_USAGE
from kafka_app.offsets import format_offsets
from kafka_app.polling import POLL_TIMEOUT, log_consumer_error

# A topic's metadata and end offsets take milliseconds from a running cluster; without them
# there is nothing to read up to, so past this the command gives up.
METADATA_TIMEOUT_SECONDS = 10.0
# Reading stops with an error when nothing (no record, no end of a partition) has come for this
# long: no broker, or another member of the redrive's group holds the partitions left.
READ_TIMEOUT_SECONDS = 60.0


class Stopped(Exception):
    """Reading ended before the end offsets: a shutdown request, or the client broke."""


def partitions_of(client: Any, topic: str) -> list[int] | None:
    """The topic's partitions; None if it does not exist. Raises KafkaException."""
    unknown_for = topic_check.UNKNOWN_FOR_SECONDS  # a new topic reaches brokers one by one
    return topic_check.partitions_of(client, topic, unknown_for, METADATA_TIMEOUT_SECONDS)


def end_offsets(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    """Each partition's end offset (high watermark) now: where a read that started now stops."""
    ends = {}
    for partition in partitions:
        tp = TopicPartition(topic, partition)
        _, ends[partition] = consumer.get_watermark_offsets(tp, METADATA_TIMEOUT_SECONDS)
    return ends


class UpTo:
    """Which records of a read are due: those before the end offsets the partitions had when
    the read started (a later record is the next read's). Records that poll() returns go
    through due(), which also marks a partition done at its last record or at its end."""

    def __init__(
        self, topic: str, ends: Mapping[int, int], who: str | None = None, group: str = ""
    ) -> None:
        self.topic, self.who, self.group = topic, who, group  # who reads, in which group
        self.left = {p: end for p, end in ends.items() if end > 0}  # not read to the end yet
        self.last_read = time.monotonic()

    def due(self, msg: Message | None) -> bool:
        """Whether to handle ``msg``; raises TimeoutError, with an error line, once nothing has
        come for READ_TIMEOUT_SECONDS."""
        now = time.monotonic()
        if msg is None:
            if now - self.last_read >= READ_TIMEOUT_SECONDS:
                where = format_offsets({(self.topic, p): end for p, end in self.left.items()})
                logging.error(
                    f"Nothing read from {self.topic} for {READ_TIMEOUT_SECONDS:g} s, with"
                    f" partitions to read up to {where}: no broker, or another member of the"
                    " group holds them"
                )
                raise TimeoutError
            return False
        self.last_read, partition, end = now, msg.partition(), self.left.get(msg.partition())
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:  # there before the last offset
                self.left.pop(partition, None)  # the group's offset, or a compacted end
            log_consumer_error(msg, self.who, self.group)
            return False
        if end is None or msg.offset() >= end:
            return False
        if msg.offset() + 1 >= end:
            del self.left[partition]
        return True


def read_to_end(
    consumer: Consumer, topic: str, partitions: list[int], stop: threading.Event, health: Any
) -> Iterator[Message]:
    """Every record of ``topic`` from the first offset to the end offsets of now, by partition
    assignment: no group is joined, no offset committed. Raises Stopped, TimeoutError."""
    up_to = UpTo(topic, end_offsets(consumer, topic, partitions), health.principal)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in up_to.left])
    try:
        while up_to.left:
            if stop.is_set() or health.broken:
                raise Stopped
            if up_to.due(msg := consumer.poll(POLL_TIMEOUT)):
                yield msg
    finally:
        consumer.unassign()


def require_dlq_topic(client: Any, topic: str) -> list[int]:
    """The dead-letter topic's partitions; exit 2, or 1 without a broker, with one line."""
    try:
        partitions = partitions_of(client, topic)
    except KafkaException as exc:
        logging.error("Cannot read the metadata of %s: %s", topic, exc.args[0].str())
        raise SystemExit(EXIT_FAILED) from None
    if partitions is None:
        logging.error(
            f"Topic {topic} does not exist: name the dead-letter topic with --dlq-topic or"
            " KAFKA_DLQ_TOPIC (default: <--topic>.dlq)"
        )
        raise SystemExit(EXIT_USAGE)
    return partitions

"""The start-up check that the topic exists: automatic topic creation is off, and without the
check a wrong --topic would show only as a producer's delivery timeout, minutes later, or as a
consumer that waits for ever."""

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from kafka_app.lifecycle import EXIT_USAGE

# Metadata takes milliseconds from a running cluster. Past this, the check is skipped rather
# than delay the script: with no broker up, the client health warning says so already.
METADATA_TIMEOUT_SECONDS = 2.0
# A topic created a moment ago reaches the brokers' metadata one by one: "unknown" is believed
# only once it has lasted this long.
UNKNOWN_FOR_SECONDS = 3.0


def partitions_of(
    client: Any, topic: str, unknown_for: float, timeout: float = METADATA_TIMEOUT_SECONDS
) -> list[int] | None:
    """The topic's partitions; None if it does not exist (believed after ``unknown_for`` s).
    Raises KafkaException if no broker answers, or for another error (say, not authorized)."""
    give_up_at = time.monotonic() + unknown_for
    while True:
        metadata = client.list_topics(topic, timeout=timeout).topics[topic]
        if metadata.error is None:
            return sorted(metadata.partitions)
        if metadata.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise KafkaException(metadata.error)
        if time.monotonic() >= give_up_at:
            return None
        time.sleep(0.5)


def require_topic(client: Any, topic: str, needed_now: bool = True) -> None:
    """Return once a broker lists ``topic``, or if it cannot be checked (the client keeps
    trying to connect). If the topic does not exist: exit 2 with one line, or, if it is not
    ``needed_now`` (the dead-letter topic), warn in one line at once and return."""
    try:
        if partitions_of(client, topic, UNKNOWN_FOR_SECONDS if needed_now else 0) is not None:
            return
    except KafkaException as exc:  # no broker in time, or say not authorized: tell which
        logging.warning("Topic %s not checked: %s", topic, exc.args[0].str())
        return
    if not needed_now:
        logging.warning(
            f"Dead-letter topic {topic} does not exist: a record that cannot be processed"
            " will wait, not committed, until it does (topic.txt shows how to create it)"
        )
        return
    logging.error(
        f"Topic {topic} does not exist, and automatic topic creation is off: create it"
        " (topic.txt shows how), or name another with --topic or KAFKA_TOPIC"
    )
    raise SystemExit(EXIT_USAGE)

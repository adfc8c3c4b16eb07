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


def require_topic(client: Any, topic: str, needed_now: bool = True) -> None:
    """Return once a broker lists ``topic``, or if no broker answers in time (the client keeps
    trying to connect). If the topic does not exist: exit 2 with one line, or, if it is not
    ``needed_now`` (the dead-letter topic), warn in one line at once and return."""
    give_up_at = time.monotonic() + (UNKNOWN_FOR_SECONDS if needed_now else 0)
    while True:
        try:
            error = client.list_topics(topic, timeout=METADATA_TIMEOUT_SECONDS).topics[topic].error
        except KafkaException as exc:
            logging.info("Topic %s not checked: %s", topic, exc.args[0].str())
            return
        if error is None:
            return
        if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
            logging.warning("Topic %s: %s", topic, error.str())  # e.g. not authorized: say so
            return
        if time.monotonic() >= give_up_at and not needed_now:
            logging.warning(
                f"Dead-letter topic {topic} does not exist: a record that cannot be processed"
                " will wait, not committed, until it does (topic.txt shows how to create it)"
            )
            return
        if time.monotonic() >= give_up_at:
            logging.error(
                f"Topic {topic} does not exist, and automatic topic creation is off: create it"
                " (topic.txt shows how), or name another with --topic or KAFKA_TOPIC"
            )
            raise SystemExit(EXIT_USAGE)
        time.sleep(0.5)

"""Dead letters: a record that cannot be processed is written, byte for byte, to the dead-letter
topic with headers that say why, and only once that write is acknowledged may the consumer
commit past it. README.md, "Dead letters", lists the headers; `python dead_letters.py` reads
and redrives them.

The header names are Spring Kafka's (``kafka_dlt-*``), the ones most Kafka users have met, plus
three of ours for the retries. Values are UTF-8 text, numbers in decimal, so that console
tools print them as they are (Spring writes its numbers as big-endian binary).
"""

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from kafka_app import settings
from kafka_app.attempts import Failure, retry_pause
from kafka_app.lifecycle import counted
from message_model import MessageDecodeError

EXCEPTION_CLASS = "kafka_dlt-exception-fqcn"
EXCEPTION_MESSAGE = "kafka_dlt-exception-message"
ORIGINAL_TOPIC = "kafka_dlt-original-topic"
ORIGINAL_PARTITION = "kafka_dlt-original-partition"
ORIGINAL_OFFSET = "kafka_dlt-original-offset"
ORIGINAL_TIMESTAMP = "kafka_dlt-original-timestamp"  # milliseconds since the epoch
ORIGINAL_GROUP = "kafka_dlt-original-consumer-group"
ATTEMPTS = "kafka_dlt-attempts"  # processing attempts made; 1 for a poison record
FIRST_FAILURE = "kafka_dlt-first-failure-timestamp"  # milliseconds since the epoch
LAST_FAILURE = "kafka_dlt-last-failure-timestamp"
# Set by a redrive on the record it republishes: the dead letter it came from, as
# <topic>/<partition>/<offset>; the same value twice in the main topic is a republished twice.
REDRIVEN_FROM = "kafka_dlt-redriven-from"

# How long a dead letter may take to be acknowledged before the consumer gives up on it for
# now (it rewinds and tries again later: nothing is committed past an unacknowledged one).
ACK_TIMEOUT_SECONDS = 30.0


def headers(msg: Message, failure: Failure, group: str) -> list[tuple[str, bytes]]:
    """The dead letter's headers: the record's own first, then ours (replacing any ``kafka_dlt-``
    header a redriven record still carried)."""
    error = failure.error
    ours = {
        EXCEPTION_CLASS: f"{type(error).__module__}.{type(error).__qualname__}",
        EXCEPTION_MESSAGE: str(error),
        ORIGINAL_TOPIC: msg.topic(),
        ORIGINAL_PARTITION: str(msg.partition()),
        ORIGINAL_OFFSET: str(msg.offset()),
        ORIGINAL_TIMESTAMP: str(msg.timestamp()[1]),
        ORIGINAL_GROUP: group,
        ATTEMPTS: str(failure.attempts),
        FIRST_FAILURE: str(round(failure.first_at * 1000)),
        LAST_FAILURE: str(round(failure.last_at * 1000)),
    }
    kept = [(k, v) for k, v in msg.headers() or [] if k not in ours and k != REDRIVEN_FROM]
    return kept + [(k, v.encode()) for k, v in ours.items()]


def read(msg: Message) -> dict[str, str]:
    """A dead letter's ``kafka_dlt-`` headers as text (the last of each name)."""
    return {
        k: (v or b"").decode(errors="replace")
        for k, v in msg.headers() or []
        if k.startswith("kafka_dlt-")
    }


class DeadLetters:
    """Writes dead letters with an idempotent producer (acks=all) and waits for each ack."""

    def __init__(self, topic: str, group: str, producer_config: Mapping[str, Any]) -> None:
        self.topic, self.group = topic, group
        self._producer = Producer(dict(producer_config))
        self.written = self.poison = 0  # acknowledged dead letters; those of poison records
        self.refused = 0  # writes refused in a row
        self._acknowledged: set[tuple[str, int, int]] = set()  # the records' keys

    def send_all(self, dead: list[tuple[Message, Failure]]) -> bool:
        """Write each dead letter, and True once all are acknowledged. A refused one stops it:
        the batch comes again, and those acknowledged before it are not written again."""
        keys = [(msg.topic(), msg.partition(), msg.offset()) for msg, _ in dead]
        for key, (msg, failure) in zip(keys, dead, strict=True):
            if key not in self._acknowledged and not self.send(msg, failure):
                self.refused += 1
                return False
            self._acknowledged.add(key)
        self._acknowledged.difference_update(keys)
        self.refused = 0
        return True

    def retry_pause(self) -> float:
        """How long to wait before the batch of a refused dead letter comes again."""
        return retry_pause(self.refused)

    def send(self, msg: Message, failure: Failure) -> bool:
        """Write ``msg`` as a dead letter; True once acknowledged. False, with one ERROR line
        naming the topic and the error, if it was refused or not acknowledged in time."""
        where = f"{msg.topic()} [{msg.partition()}] @ {msg.offset()}"
        reason, _ = write(self._producer, self.topic, msg, headers(msg, failure, self.group))
        if reason is None:
            self.written += 1
            self.poison += isinstance(failure.error, MessageDecodeError)
            error, tries = failure.error, counted(failure.attempts, "attempt")
            why = f"{type(error).__name__}: {error}"
            logging.warning(f"Dead-lettered {where} to {self.topic} after {tries}: {why}")
            return True
        what = f"the dead letter of {where} to {self.topic}"
        logging.error(f"Cannot write {what}: {reason}. Not committed past it; will retry")
        return False

    def close(self) -> None:
        self._producer.flush(ACK_TIMEOUT_SECONDS)


def write(
    producer: Producer,
    topic: str,
    record: Message,
    headers: list[tuple[str, bytes | None]],
    partition: int = -1,  # -1: the partitioner picks one
    timeout: float = ACK_TIMEOUT_SECONDS,
) -> tuple[str | None, Message | None]:
    """Write ``record``'s key and value to ``topic`` and wait for the acknowledgement: (None,
    the copy written) once acknowledged, else (why not, None)."""
    reports: list[tuple[KafkaError | None, Message]] = []
    try:
        producer.produce(
            topic, record.value(), record.key(), partition, headers=headers,
            on_delivery=lambda err, copy: reports.append((err, copy)),
        )  # fmt: skip
        producer.flush(timeout)
    except (BufferError, KafkaException) as exc:  # not queued: a full queue, or refused
        return str(exc), None
    if not reports:
        return f"no acknowledgement in {timeout:g} s", None
    error, copy = reports[0]
    return (None, copy) if error is None else (error.str(), None)


def dead_letter_producer_config(
    bootstrap: str, properties: Mapping[str, str] | None, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The dead-letter writer's config: idempotent (acks=all), and quick to say that the topic
    does not exist (librdkafka's default waits 30 s for a new topic to show up)."""
    tunables = {"topic.metadata.propagation.max.ms": 5000, "linger.ms": 0, **extra}
    guarantees = {"enable.idempotence": True}
    return settings.client_config(bootstrap, properties, tunables, guarantees)


def redriven_from(dead_letter: Message) -> str:
    """The REDRIVEN_FROM value for a dead letter: ``<topic>/<partition>/<offset>``."""
    return f"{dead_letter.topic()}/{dead_letter.partition()}/{dead_letter.offset()}"


def redrive_headers(dead_letter: Message) -> list[tuple[str, bytes | None]]:
    """The headers a redrive republishes a dead letter with: the record's own, in order (the
    dead letter's minus every ``kafka_dlt-`` one), then REDRIVEN_FROM."""
    kept = [(k, v) for k, v in dead_letter.headers() or [] if not k.startswith("kafka_dlt-")]
    return [*kept, (REDRIVEN_FROM, redriven_from(dead_letter).encode())]

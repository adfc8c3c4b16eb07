"""What a redrive (``python dead_letters.py redrive``) takes, and how it writes a dead letter
back to the topic it came from."""

import dataclasses
import logging
from collections.abc import Mapping

from confluent_kafka import Message, Producer

from kafka_app import dead_letters
from kafka_app.dead_letters import EXCEPTION_CLASS, ORIGINAL_PARTITION, ORIGINAL_TOPIC

# The copy's delivery timeout: within it librdkafka retries; the flush waits a little longer,
# so that it ends with the delivery report, not before it.
ACK_TIMEOUT_SECONDS = dead_letters.ACK_TIMEOUT_SECONDS
FLUSH_TIMEOUT_SECONDS = ACK_TIMEOUT_SECONDS + 5


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which dead letters a redrive republishes; the others it passes over."""

    partition: int | None = None
    error_class: str | None = None

    def group(self, dlq_topic: str) -> str:
        """The default group: one per selection, as each commits past what it passes over."""
        name = f"{dlq_topic}.redrive"
        if self.partition is not None:
            name += f".partition-{self.partition}"
        if self.error_class is not None:
            name += f".error-class-{self.error_class}"
        return name

    def selects(self, why: Mapping[str, str]) -> bool:
        """``why``: the dead letter's headers, kafka_app.dead_letters.read()."""
        if self.partition is not None and why.get(ORIGINAL_PARTITION) != str(self.partition):
            return False
        if self.error_class is not None:
            fqcn = why.get(EXCEPTION_CLASS, "")
            return self.error_class in (fqcn, fqcn.rsplit(".", 1)[-1])
        return True

    def __str__(self) -> str:
        parts = [f"original partition {self.partition}"] if self.partition is not None else []
        parts += [f"error class {self.error_class}"] if self.error_class is not None else []
        return ", ".join(parts) or "all"


def republish(producer: Producer, dead_letter: Message, why: Mapping[str, str]) -> bool:
    """Write the dead letter's record to its original topic and partition and wait for the
    acknowledgement; True once acknowledged, else False after one ERROR line."""
    where = f"{dead_letter.topic()} [{dead_letter.partition()}] @ {dead_letter.offset()}"
    topic, partition = why[ORIGINAL_TOPIC], why.get(ORIGINAL_PARTITION, "")
    # The same partition keeps its order relative to the key's other records whatever
    # partitioner wrote it first; unknown, the partitioner picks one.
    same = int(partition) if partition.isdigit() else -1
    marked = dead_letters.redrive_headers(dead_letter)
    reason, copy = dead_letters.write(
        producer, topic, dead_letter, marked, same, FLUSH_TIMEOUT_SECONDS
    )
    if copy is not None:
        logging.info(
            f"Republished {where} to {copy.topic()} [{copy.partition()}] @ {copy.offset()}"
            f" ({why.get(EXCEPTION_CLASS, '?')})"
        )
        return True
    logging.error(f"Cannot republish {where} to {topic}: {reason}. Not committed past it")
    return False

"""What every consumer loop does around poll() and consume(): how long one call may block, the
errors they return instead of records, and the line an assignment logs."""

import logging

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from kafka_app.offsets import format_partitions
from kafka_app.refusals import refusal

POLL_TIMEOUT = 0.5  # the longest blocking call, so that a shutdown request is noticed quickly


def log_consumer_error(msg: Message, who: str | None = None, group: str = "") -> None:
    """Log an error poll() or consume() returned instead of a record; raise a fatal one, or a
    refusal (not allowed to read the topic or in the group: librdkafka would only wait)."""
    error = msg.error()
    if error.code() == KafkaError._PARTITION_EOF:
        return
    where = {
        "operation": "Read",
        "topic": msg.topic() or "?",
        **({"group": group} if group else {}),
    }
    if refused := refusal(error, who, **where):
        logging.error(refused)
        raise KafkaException(error)
    if error.fatal():  # only with static membership
        raise KafkaException(error)
    logging.warning("Consumer error on %s [%s]: %s", msg.topic(), msg.partition(), error.str())


def log_assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    """on_assign: nothing to do but say so (cooperative rebalances may assign none)."""
    level = logging.INFO if partitions else logging.DEBUG
    logging.log(level, "Partitions assigned: %s", format_partitions(partitions))

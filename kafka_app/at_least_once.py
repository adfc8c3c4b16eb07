"""The steps of the consumers' at-least-once loops (which are in the two consumer scripts),
named in Kafka's terms: open, decode, rewind and back off, when to stop, close."""

import argparse
import dataclasses
import functools
import logging
import random
import threading
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from kafka_app import lifecycle, metrics, probes, settings
from kafka_app.client_health import ClientHealth
from kafka_app.commits import Commits, format_offsets, format_partitions
from kafka_app.dead_letters import DeadLetters, dead_letter_producer_config
from kafka_app.lifecycle import EXIT_CLIENT_STUCK, EXIT_FAILED, RecordLog, counted
from kafka_app.probes import Heartbeat
from kafka_app.settings import create_consumer
from kafka_app.topic_check import require_topic
from message_model import MessageDecodeError, MessageModel

POLL_TIMEOUT = 0.5  # the longest blocking call, so that a shutdown request is noticed quickly


@dataclasses.dataclass
class StopWhen:
    """When a loop ends: a signal, a broken client (kafka_app/client_health.py),
    ``--max-messages`` records processed and committed, or ``--idle-exit`` seconds idle."""

    requested: threading.Event
    health: ClientHealth
    max_messages: int | None = None
    idle_exit: float | None = None
    processed: int = 0  # records processed and committed, poison records included
    last_record_at: float = dataclasses.field(default_factory=time.monotonic)
    heartbeat: Heartbeat = dataclasses.field(default_factory=Heartbeat)  # for /healthz

    def due(self) -> bool:
        """True, with a line saying why (a broken client has said so already), when to stop."""
        self.heartbeat.beat()
        if self.requested.is_set():
            logging.info("Shutdown requested (a second Ctrl-C or SIGTERM aborts at once)")
            return True
        if self.health.broken:
            return True
        if self.max_messages is not None and self.processed >= self.max_messages:
            done = counted(self.processed, "message")
            logging.info(f"Processed {done} (--max-messages): exiting")
            return True
        if self.idle():
            logging.info(f"Nothing new for {self.idle_exit:g} s (--idle-exit): exiting")
            return True
        return False

    def interrupted(self) -> bool:
        """Whether to stop collecting a batch; the loop's next due() says why."""
        self.heartbeat.beat()
        return self.requested.is_set() or self.health.broken or self.idle()

    def idle(self) -> bool:
        since = time.monotonic() - self.last_record_at
        return self.idle_exit is not None and since >= self.idle_exit

    def saw_record(self) -> None:
        self.last_record_at = time.monotonic()


def open_consumer(args: argparse.Namespace, how: str) -> tuple[Consumer, StopWhen, DeadLetters]:
    """Logging, signals, the consumer the flags describe, when it should stop, and where its
    dead letters go."""
    lifecycle.setup_logging(args.log_level, args.log_format)
    health = ClientHealth()
    stop = lifecycle.stop_on_signals(lambda: "What was not committed will be delivered again.")
    stop_when = StopWhen(stop, health, args.max_messages, args.idle_exit)
    consumer, bootstrap = create_consumer(args, health.callbacks())
    dlq_topic = args.dlq_topic or f"{args.topic}.dlq"
    with settings.exit_on_config_error():
        _, properties = settings.connection(args.bootstrap_servers, args.client_properties)
        quiet = health.callbacks(statistics=False)  # polled only when it writes one
        extra = {**quiet, "client.id": f"{args.client_id}-dead-letters"}
        config = dead_letter_producer_config(bootstrap, properties, extra)
        dead_letters = DeadLetters(dlq_topic, args.group_id, config)
    measure = functools.partial(metrics.consumer_metrics, stop_when, dead_letters, health)
    probes.start(args, health, stop_when.heartbeat, "consumer", measure)
    logging.info(
        f"Consuming {args.topic} at {bootstrap} as group {args.group_id}{how}; dead letters"
        f" after {counted(args.max_attempts, 'attempt')} go to {dlq_topic}"
    )
    require_topic(consumer, args.topic)
    require_topic(consumer, dlq_topic, needed_now=False)
    return consumer, stop_when, dead_letters


def log_assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    """on_assign: nothing to do but say so (cooperative rebalances may assign none)."""
    level = logging.INFO if partitions else logging.DEBUG
    logging.log(level, "Partitions assigned: %s", format_partitions(partitions))


def decode(msg: Message) -> MessageModel | MessageDecodeError:
    """The record's MessageModel, or for a poison record (a tombstone, or bytes that are not a
    MessageModel) the error: it will never become valid, so it goes to the dead letters."""
    try:
        if (value := msg.value()) is None:
            raise MessageDecodeError("tombstone (value is null)")
        return MessageModel.deserialize(value)
    except MessageDecodeError as exc:
        return exc


def log_consumer_error(msg: Message) -> None:
    """Log an error poll() or consume() returned instead of a record; raise a fatal one."""
    error = msg.error()
    if error.code() == KafkaError._PARTITION_EOF:
        return
    if error.fatal():  # only with static membership
        raise KafkaException(error)
    logging.warning("Consumer error on %s [%s]: %s", msg.topic(), msg.partition(), error.str())


def rewind(consumer: Consumer, messages: Iterable[Message]) -> None:
    """Seek each partition back to its first message here, so that exactly these come again:
    not committing alone would not, as the position has moved on already."""
    first: dict[tuple[str, int], int] = {}
    for msg in messages:
        first.setdefault((msg.topic(), msg.partition()), msg.offset())
    for (topic, partition), offset in first.items():
        try:
            consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:  # say, the partition is no longer ours
            logging.warning("Could not rewind %s [%d] to %d: %s", topic, partition, offset, exc)


def retry_pause(failures: int, first: float = 0.5, most: float = 30.0) -> float:
    """The pause after the n-th failure in a row: doubling from ``first`` up to ``most``, each
    drawn between half and all of that (jitter), so that replicas that failed together do not
    all try again at the same moment."""
    return min(most, first * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)


class Backoff:
    """The pauses between tries of something that keeps failing, such as a dead letter's
    write: the retry_pause of the failures in a row."""

    def __init__(self) -> None:
        self.failures = 0

    def pause(self) -> float:
        self.failures += 1
        return retry_pause(self.failures)

    def reset(self) -> None:
        self.failures = 0


def retry_later(consumer: Consumer, messages: list[Message], pause: float, stop_when: StopWhen):
    """Rewind to ``messages`` and wait ``pause`` seconds (a shutdown request ends the wait)."""
    rewind(consumer, messages)
    stop_when.requested.wait(pause)


def close(
    consumer: Consumer, commits: Commits, stop_when: StopWhen, status: int, log: RecordLog
) -> int:
    """Leave the group; return the exit status, 0 only if all processed is committed.
    close() revokes every partition, so on_revoke makes a last try for a failed commit."""
    commits.not_committed.clear()  # earlier revocations': their new owners re-read them
    if stop_when.health.stranded:  # no broker to commit to
        status = EXIT_CLIENT_STUCK
        commits.abandon()
    elif stop_when.health.fatal_error is not None:
        status = EXIT_FAILED
    logging.info("Closing the consumer (commits, leaves the group; ~1 min if no broker is up)")
    consumer.close()
    log.close()
    if left := commits.not_committed:
        logging.error(f"Processed offsets not committed, to be redelivered: {format_offsets(left)}")
        status = status or EXIT_FAILED
    logging.info(f"Stopped after processing {counted(stop_when.processed, 'message')}")
    return status

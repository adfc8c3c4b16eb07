"""Dead letters: list them, or redrive them to the topic they came from.

``list`` reads the dead-letter topic from its first offsets to the end offsets it has when the
command starts, outside any group (it commits nothing), and prints a line per dead letter:
where it is, the record it copies (topic, partition, offset), the error, the attempts, the
first and last failure (UTC), the group that gave up on it, and how many times a redrive has
republished it (the kafka_dlt-redriven-from headers in its original topic). Then a total.

``redrive`` republishes dead letters to their original topic and partition: the key, the value
and the record's own headers byte for byte, plus kafka_dlt-redriven-from = <dead-letter
topic>/<partition>/<offset>. It reads the dead-letter topic as a consumer group and commits
each dead letter, synchronously, only once its copy is acknowledged (idempotent, acks=all):
at least once. A run stopped between an acknowledgement and its commit republishes that dead
letter again on the next run: two records with the same kafka_dlt-redriven-from.

Which dead letters: all, or --partition P (those from partition P of the original topic),
--error-class NAME (kafka_dlt-exception-fqcn is NAME or ends with .NAME), and --max N (stop
after N republished). The dead letters a selection passes over are committed past as well,
so each selection has its own group, <dead-letter topic>.redrive, then .partition-P and
.error-class-NAME (--group names another): a redrive of one selection never uses up another's.
--max selects nothing out, it only stops early: a later run in the same group goes on.

Both stop by themselves at the end offsets of when they started; SIGTERM or Ctrl-C stops
them after the current dead letter (acknowledged and committed), with exit status 0.

Examples: ``python dead_letters.py list``, ``python dead_letters.py redrive --partition 1``.
"""

import argparse
import collections
import contextlib
import dataclasses
import datetime
import logging
import sys
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
    Producer,
    TopicPartition,
)

from kafka_app import dead_letters, lifecycle, settings
from kafka_app.at_least_once import POLL_TIMEOUT, log_assigned, log_consumer_error
from kafka_app.client_health import ClientHealth
from kafka_app.commits import Commits, format_offsets, next_offsets
from kafka_app.dead_letters import (
    ATTEMPTS,
    EXCEPTION_CLASS,
    EXCEPTION_MESSAGE,
    FIRST_FAILURE,
    LAST_FAILURE,
    ORIGINAL_GROUP,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    REDRIVEN_FROM,
)
from kafka_app.lifecycle import EXIT_CLIENT_STUCK, EXIT_FAILED, EXIT_OK, EXIT_USAGE, counted
from kafka_app.settings import env_option, non_empty, positive_int
from kafka_app.topic_check import UNKNOWN_FOR_SECONDS

DLQ_SUFFIX = ".dlq"
# A topic's metadata and end offsets take milliseconds from a running cluster; without them
# there is nothing to read up to, so past this the command gives up.
METADATA_TIMEOUT_SECONDS = 10.0
# Reading stops with an error when nothing (no record, no end of a partition) has come for this
# long: no broker, or another member of the redrive's group holds the partitions left.
READ_TIMEOUT_SECONDS = 60.0
# The copy's delivery timeout: within it librdkafka retries; the flush waits a little longer,
# so that it ends with the delivery report, not before it.
ACK_TIMEOUT_SECONDS = dead_letters.ACK_TIMEOUT_SECONDS
# A run killed in the group stays a member until its session expires, and the next run's join
# waits for that: 10 s rather than the default 45 (the broker's floor is 6). Heartbeats come
# from librdkafka's own thread, so a long wait for an acknowledgement does not end a session.
SESSION_TIMEOUT_MS = 10_000
FLUSH_TIMEOUT_SECONDS = ACK_TIMEOUT_SECONDS + 5


class Stopped(Exception):
    """Reading ended before the end offsets: a shutdown request, or the client broke."""


def partition_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a partition number: {text!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be a partition number >= 0, got {text!r}")
    return number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = settings.common_parser(__doc__, "dead-letters")
    default = f"<--topic>{DLQ_SUFFIX}, final-1-topic{DLQ_SUFFIX} unless --topic is set"
    text = f"the dead-letter topic (default: {default})"
    env_option(parser, "--dlq-topic", "KAFKA_DLQ_TOPIC", None, non_empty, text)
    add = parser.add_argument
    add("command", choices=("list", "redrive"), help="list the dead letters, or redrive them")
    add("--max", type=positive_int, metavar="N", help="list N at most; redrive N at most")
    only = "redrive only dead letters from partition P of their original topic"
    add("--partition", type=partition_number, metavar="P", help=only)
    only = "redrive only those whose exception class is NAME (full, or its last dotted part)"
    add("--error-class", type=non_empty, metavar="NAME", help=only)
    group = "the redrive's group (default: <dlq topic>.redrive[.partition-P][.error-class-NAME])"
    add("--group", type=non_empty, metavar="G", help=group)
    args = parser.parse_args(argv)
    if args.command == "list" and (args.partition, args.error_class, args.group) != (None,) * 3:
        parser.error("--partition, --error-class and --group are options of redrive, not list")
    args.dlq_topic = args.dlq_topic or f"{args.topic}{DLQ_SUFFIX}"
    return args


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


# --------------------------------------------------------------------------------------------
# Reading a topic up to its end offsets
# --------------------------------------------------------------------------------------------


def partitions_of(client: Any, topic: str) -> list[int] | None:
    """The topic's partitions; None if it does not exist (after UNKNOWN_FOR_SECONDS: a topic
    created a moment ago reaches the brokers one by one). Raises KafkaException if no broker
    answers."""
    give_up_at = time.monotonic() + UNKNOWN_FOR_SECONDS
    while True:
        metadata = client.list_topics(topic, timeout=METADATA_TIMEOUT_SECONDS).topics[topic]
        if metadata.error is None:
            return sorted(metadata.partitions)
        if metadata.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise KafkaException(metadata.error)
        if time.monotonic() >= give_up_at:
            return None
        time.sleep(0.5)


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

    def __init__(self, topic: str, ends: Mapping[int, int]) -> None:
        self.topic = topic
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
            log_consumer_error(msg)
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
    up_to = UpTo(topic, end_offsets(consumer, topic, partitions))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in up_to.left])
    try:
        while up_to.left:
            if stop.is_set() or health.broken:
                raise Stopped
            if up_to.due(msg := consumer.poll(POLL_TIMEOUT)):
                yield msg
    finally:
        consumer.unassign()


# --------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------


def utc(milliseconds: str | None) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(int(milliseconds or "") / 1000, datetime.UTC)
    except (ValueError, OverflowError, OSError):
        return "?"
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def describe(dead_letter: Message, redrives: int | None) -> str:
    """A dead letter in one line."""
    why = dead_letters.read(dead_letter)
    error = " ".join(why.get(EXCEPTION_MESSAGE, "?").split())  # one line, whatever it holds
    origin = (why.get(ORIGINAL_TOPIC, "?"), why.get(ORIGINAL_PARTITION, "?"))
    when = f"{utc(why.get(FIRST_FAILURE))} to {utc(why.get(LAST_FAILURE))}"
    redriven = "redriven ?" if redrives is None else f"redriven {counted(redrives, 'time')}"
    return (
        f"{dead_letter.topic()} [{dead_letter.partition()}] @ {dead_letter.offset()}:"
        f" from {origin[0]} [{origin[1]}] @ {why.get(ORIGINAL_OFFSET, '?')};"
        f" {why.get(EXCEPTION_CLASS, '?')}: {error}; {why.get(ATTEMPTS, '?')} attempt(s),"
        f" failed {when}; group {why.get(ORIGINAL_GROUP, '?')}; {redriven}"
    )


def redrives_in(
    consumer: Consumer, topics: set[str], stop: threading.Event, health: ClientHealth
) -> dict[str, collections.Counter]:
    """Per original topic, how many records carry each kafka_dlt-redriven-from value (missing:
    the topic does not exist)."""
    found = {}
    for topic in sorted(topics):
        if (partitions := partitions_of(consumer, topic)) is None:
            logging.warning("Original topic %s does not exist: its redrives are unknown", topic)
            continue
        logging.info("Reading %s for records redriven before", topic)
        found[topic] = count = collections.Counter()
        for msg in read_to_end(consumer, topic, partitions, stop, health):
            for name, value in msg.headers() or []:
                if name == REDRIVEN_FROM:
                    count[(value or b"").decode(errors="replace")] += 1
    return found


def list_dead_letters(
    consumer: Consumer, topic: str, most: int | None, stop: threading.Event, health: ClientHealth
) -> int:
    partitions = require_dlq_topic(consumer, topic)
    found: list[Message] = []
    try:
        with contextlib.closing(read_to_end(consumer, topic, partitions, stop, health)) as read:
            for msg in read:
                found.append(msg)
                if most is not None and len(found) >= most:
                    break
        origins = {why.get(ORIGINAL_TOPIC) for why in map(dead_letters.read, found)} - {None}
        redrives = redrives_in(consumer, origins, stop, health)
    except Stopped:
        if health.broken:  # it has said why
            return EXIT_CLIENT_STUCK if health.stranded else EXIT_FAILED
        logging.info("Shutdown requested: the list is incomplete")
        redrives = {}
    except (KafkaException, TimeoutError) as exc:
        if isinstance(exc, KafkaException):
            logging.error("Cannot read %s: %s", topic, exc.args[0].str())
        return EXIT_CLIENT_STUCK if health.stranded else EXIT_FAILED
    finally:
        consumer.close()  # commits nothing: auto-commit is off
    for msg in found:
        origin = dead_letters.read(msg).get(ORIGINAL_TOPIC, "")
        count = redrives[origin][dead_letters.redriven_from(msg)] if origin in redrives else None
        print(describe(msg, count))
    if found:
        limit = f" (the first {most}: --max)" if len(found) == most else ""
        print(f"{counted(len(found), 'dead letter')} in {topic}{limit}")
    else:
        print(f"No dead letters in {topic}")
    return EXIT_OK


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


# --------------------------------------------------------------------------------------------
# redrive
# --------------------------------------------------------------------------------------------


def delivery_report(reports: list) -> Any:
    """The producer's on_delivery for one copy: keeps its error (None: acknowledged) and
    where it was written."""

    def report(err: KafkaError | None, msg: Message) -> None:
        reports.append((err, msg))

    return report


def republish(producer: Producer, dead_letter: Message, why: Mapping[str, str]) -> bool:
    """Write the dead letter's record to its original topic and partition and wait for the
    acknowledgement; True once acknowledged, else False after one ERROR line."""
    where = f"{dead_letter.topic()} [{dead_letter.partition()}] @ {dead_letter.offset()}"
    topic, partition = why[ORIGINAL_TOPIC], why.get(ORIGINAL_PARTITION, "")
    reports: list[tuple[KafkaError | None, Message]] = []
    try:
        producer.produce(
            topic,
            value=dead_letter.value(),
            key=dead_letter.key(),
            # The same partition keeps its order relative to the key's other records whatever
            # partitioner wrote it first; unknown, the partitioner picks one.
            partition=int(partition) if partition.isdigit() else -1,
            headers=dead_letters.redrive_headers(dead_letter),
            on_delivery=delivery_report(reports),
        )
        producer.flush(FLUSH_TIMEOUT_SECONDS)
    except (BufferError, KafkaException) as exc:  # not queued: refused at once
        reports.append((KafkaError(KafkaError._FAIL, str(exc)), dead_letter))
    if reports and reports[0][0] is None:
        copy = reports[0][1]
        logging.info(
            f"Republished {where} to {copy.topic()} [{copy.partition()}] @ {copy.offset()}"
            f" ({why.get(EXCEPTION_CLASS, '?')})"
        )
        return True
    reason = reports[0][0].str() if reports else f"no acknowledgement in {FLUSH_TIMEOUT_SECONDS} s"
    logging.error(f"Cannot republish {where} to {topic}: {reason}. Not committed past it")
    return False


class Redrive:
    """One run of ``redrive``: poll, republish or pass over, commit, until the end offsets of
    when it started, --max, or a stop."""

    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        selection: Selection,
        stop: threading.Event,
        health: ClientHealth,
    ) -> None:
        self.consumer, self.producer, self.selection = consumer, producer, selection
        self.stop, self.health = stop, health
        self.commits = Commits(consumer)  # a failed commit is kept, retried, merged into the next
        self.republished = self.passed_over = 0
        self.status, self.why_stopped = EXIT_OK, "reached the end"

    def run(self, topic: str, group: str, most: int | None) -> int:
        partitions = require_dlq_topic(self.consumer, topic)
        try:
            up_to = UpTo(topic, end_offsets(self.consumer, topic, partitions))
            ends = format_offsets({(topic, p): end for p, end in up_to.left.items()})
            at_most = f", at most {most}" if most else ""
            logging.info(
                f"Redriving the dead letters of {topic} ({self.selection}) as group {group},"
                f" up to {ends}{at_most}"
            )
            self.consumer.subscribe(
                [topic], on_assign=log_assigned, on_revoke=self.on_revoke, on_lost=self.on_lost
            )
            self.loop(up_to, most)
        except TimeoutError:
            self.status, self.why_stopped = EXIT_FAILED, "nothing more came"
        except KafkaException as exc:
            logging.error("Stopping after a Kafka error: %s", exc.args[0].str())
            self.status, self.why_stopped = EXIT_FAILED, "a Kafka error"
        return self.close(group)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.commits.partitions_revoked(partitions)  # inside poll(): a failed commit's last try

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.commits.partitions_lost(partitions)  # someone else's: nothing can be committed

    def loop(self, up_to: UpTo, most: int | None) -> None:
        while up_to.left:
            if self.stop.is_set():
                self.why_stopped = "shutdown requested"
                return
            if self.health.broken:
                self.status, self.why_stopped = EXIT_FAILED, "the Kafka client broke"
                return
            if most is not None and self.republished >= most:
                self.why_stopped = f"--max {most}"
                return
            msg = self.consumer.poll(POLL_TIMEOUT)
            if msg is None:
                self.commits.retry_if_due()
            if not up_to.due(msg):
                continue
            if not self.handle(msg):
                self.status, self.why_stopped = EXIT_FAILED, "a copy not acknowledged"
                return
            self.commits.commit(next_offsets([msg]))

    def handle(self, msg: Message) -> bool:
        """Republish the dead letter if selected, else pass over it; False if not acknowledged."""
        why = dead_letters.read(msg)
        if not self.selection.selects(why):
            self.passed_over += 1
        elif ORIGINAL_TOPIC not in why:
            where = f"{msg.topic()} [{msg.partition()}] @ {msg.offset()}"
            logging.warning(f"Passing over {where}: no {ORIGINAL_TOPIC} header to redrive it to")
            self.passed_over += 1
        elif republish(self.producer, msg, why):
            self.republished += 1
        else:
            return False
        return True

    def close(self, group: str) -> int:
        """Leave the group (on_revoke retries a failed commit); the exit status."""
        if self.health.stranded:  # no broker to commit to
            self.status = EXIT_CLIENT_STUCK
            self.commits.abandon()
        logging.info("Closing the consumer (commits, leaves the group)")
        self.consumer.close()
        if left := self.commits.not_committed:
            logging.error(
                f"Republished, not committed (so again next time): {format_offsets(left)}"
            )
            self.status = self.status or EXIT_FAILED
        logging.info(
            f"Stopped ({self.why_stopped}): republished {counted(self.republished, 'dead letter')},"
            f" passed over {self.passed_over} (not selected, or not a dead letter); group {group}"
        )
        return self.status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lifecycle.setup_logging(args.log_level)
    health = ClientHealth()
    selection = Selection(args.partition, args.error_class)
    group = args.group or selection.group(args.dlq_topic)
    if args.command == "list":
        group = f"{args.dlq_topic}.list"  # the client needs one; list never joins nor commits
    stop = lifecycle.stop_on_signals(
        lambda: "A dead letter republished but not committed is republished again next time."
    )
    extra = {**health.callbacks(), "client.id": args.client_id, "enable.partition.eof": True}
    extra["session.timeout.ms"] = SESSION_TIMEOUT_MS
    acks = {**health.callbacks(), "client.id": args.client_id}
    acks["message.timeout.ms"] = int(ACK_TIMEOUT_SECONDS * 1000)
    with settings.exit_on_config_error():
        bootstrap, properties = settings.connection(args.bootstrap_servers, args.client_properties)
        consumer = Consumer(settings.consumer_config(bootstrap, group, properties, extra))
        if args.command == "redrive":
            config = dead_letters.dead_letter_producer_config(bootstrap, properties, acks)
            producer = Producer(config)
    if args.command == "list":
        return list_dead_letters(consumer, args.dlq_topic, args.max, stop, health)
    return Redrive(consumer, producer, selection, stop, health).run(args.dlq_topic, group, args.max)


if __name__ == "__main__":
    sys.exit(main())

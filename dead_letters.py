"""Dead letters: list them, or redrive them to the topic they came from.

``list`` reads the dead-letter topic up to its end offsets of when it starts, outside any group
(it commits nothing), and prints a line per dead letter: where it is, the record it copies, the
error, the attempts, the first and last failure (UTC), the group that gave up on it, and how
many times a redrive has republished it (the kafka_dlt-redriven-from headers). Then a total.

``redrive`` republishes dead letters to their original topic and partition, byte for byte, plus
kafka_dlt-redriven-from = <dead-letter topic>/<partition>/<offset>. It reads as a consumer group
and commits each dead letter only once its copy is acknowledged: at least once (a run stopped
in between republishes it again next time). It takes all, or --partition P (from partition P
of the original topic), --error-class NAME (kafka_dlt-exception-fqcn is NAME or ends with .NAME);
--max N stops after N republished. Those passed over are committed past too, so each selection
has its own group, <dead-letter topic>.redrive[.partition-P][.error-class-NAME] (or --group).

Both stop at the end offsets of when they started; SIGTERM or Ctrl-C stops them after the
current dead letter (acknowledged and committed), with exit status 0.

Examples: ``python dead_letters.py list``, ``python dead_letters.py redrive --partition 1``.
"""

import argparse
import logging
import sys
import threading

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from kafka_app import dead_letters, flags, lifecycle, settings
from kafka_app.client_health import ClientHealth
from kafka_app.commits import Commits
from kafka_app.dead_letter_tool.listing import list_dead_letters
from kafka_app.dead_letter_tool.reading import UpTo, end_offsets, require_dlq_topic
from kafka_app.dead_letter_tool.redrive import ACK_TIMEOUT_SECONDS, Selection, republish
from kafka_app.dead_letters import ORIGINAL_TOPIC
from kafka_app.flags import env_option, non_empty, positive_int
from kafka_app.lifecycle import EXIT_CLIENT_STUCK, EXIT_FAILED, EXIT_OK, counted
from kafka_app.offsets import format_offsets, next_offsets
from kafka_app.polling import POLL_TIMEOUT, log_assigned

DLQ_SUFFIX = ".dlq"
# A run killed in the group stays a member until its session expires, and the next run's join
# waits for that: 10 s rather than the default 45 (the broker's floor is 6). Heartbeats come
# from librdkafka's own thread, so a long wait for an acknowledgement does not end a session.
SESSION_TIMEOUT_MS = 10_000


def partition_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a partition number: {text!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be a partition number >= 0, got {text!r}")
    return number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = flags.common_parser(__doc__, "dead-letters")
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
            ends = end_offsets(self.consumer, topic, partitions)
            up_to = UpTo(topic, ends, self.health.principal, group)
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
            logging.error(f"Republished, not committed (again next time): {format_offsets(left)}")
            self.status = self.status or EXIT_FAILED
        logging.info(
            f"Stopped ({self.why_stopped}): republished {counted(self.republished, 'dead letter')},"
            f" passed over {self.passed_over} (not selected, or not a dead letter); group {group}"
        )
        return self.status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lifecycle.setup_logging(args.log_level, args.log_format)
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
        health.principal = properties.get("sasl.username")  # for a refusal's line
        consumer = Consumer(settings.consumer_config(bootstrap, group, properties, extra))
        if args.command == "redrive":
            config = dead_letters.dead_letter_producer_config(bootstrap, properties, acks)
            producer = Producer(config)
    if args.command == "list":
        return list_dead_letters(consumer, args.dlq_topic, args.max, stop, health)
    return Redrive(consumer, producer, selection, stop, health).run(args.dlq_topic, group, args.max)


if __name__ == "__main__":
    sys.exit(main())

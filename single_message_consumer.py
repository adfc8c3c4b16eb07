"""At-least-once consumer, one message at a time: poll, process, commit.

The loop, consume_messages() below, for each message:

1. ``poll()`` returns it (auto-commit and the automatic offset store are off);
2. it is processed (``SingleConsumer received: <content>``);
3. its offset + 1 is committed synchronously: "everything before this is done".

If processing fails, nothing is committed and the partition is rewound with ``seek()`` to that
message, which comes again after a growing pause, up to --max-attempts times; then it is
written to the dead-letter topic, as poison records (not a MessageModel, or a tombstone) are
at once, and committed past only once that write is acknowledged. A crash between steps 2 and
3 means the message is processed twice, never that it is skipped.

A commit per message costs a round trip to the group coordinator, which bounds throughput to
a few hundred messages per second: batch_message_consumer.py commits once per batch instead.

Example: ``python single_message_consumer.py --idle-exit 10`` exits once the topic is drained.
"""

import argparse
import functools
import logging
import sys
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from kafka_app import at_least_once, flags, lifecycle, settings
from kafka_app.at_least_once import StopWhen, log_assigned
from kafka_app.commits import Commits, next_offsets
from kafka_app.dead_letters import DeadLetters, Failures, poison
from message_model import MessageDecodeError, MessageModel


def process_message(message: MessageModel, delay: float = 0.0) -> None:
    """The business logic: here it logs the message (``delay`` simulates work).
    Raise an exception to have the message delivered again."""
    logging.info("SingleConsumer received: %s", message.content)
    if delay:  # time.sleep(0) would cost 76 µs, a tenth of a commit cycle
        time.sleep(delay)


def consume_messages(
    consumer: Consumer,
    topic: str,
    process: Callable[[MessageModel], None],
    stop_when: StopWhen,
    dead_letters: DeadLetters,
    max_attempts: int = settings.DEFAULT_MAX_ATTEMPTS,
    processed_log: lifecycle.RecordLog | None = None,
) -> int:
    """Poll, decode, process or dead-letter, commit, until ``stop_when``; return the exit
    status."""
    processed_log = processed_log or lifecycle.RecordLog(None)
    commits = Commits(consumer)  # a failed commit is kept, retried and merged into the next
    backoff = at_least_once.Backoff()  # between tries to write a dead letter
    failures = Failures(max_attempts)  # failed attempts per record

    def on_revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        commits.partitions_revoked(partitions)  # inside poll(): a failed commit's last try

    def on_lost(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        commits.partitions_lost(partitions)  # someone else's: nothing can be committed

    consumer.subscribe([topic], on_assign=log_assigned, on_revoke=on_revoke, on_lost=on_lost)
    status = lifecycle.EXIT_OK
    try:
        while not stop_when.due():
            msg = consumer.poll(at_least_once.POLL_TIMEOUT)
            if msg is None or stop_when.health.broken:  # a broken client could not commit it
                commits.retry_if_due()
                continue
            if msg.error():
                at_least_once.log_consumer_error(msg)
                continue
            stop_when.saw_record()
            record = at_least_once.decode(msg)
            failure = poison(record) if isinstance(record, MessageDecodeError) else None
            if failure is None:
                try:
                    process(record)
                except Exception as exc:
                    failure = failures.add(msg, exc)
                    where = f"{msg.topic()} [{msg.partition()}] @ {msg.offset()}"
                    logging.exception(
                        f"Processing {where} failed (attempt {failure.attempts} of {max_attempts})"
                    )
                    if not failures.exhausted(failure):
                        pause = at_least_once.retry_pause(failure.attempts)
                        at_least_once.retry_later(consumer, [msg], pause, stop_when)
                        continue
            if failure is not None and not dead_letters.send(msg, failure):
                at_least_once.retry_later(consumer, [msg], backoff.pause(), stop_when)
                continue
            backoff.reset()
            failures.forget([msg])
            message_id = None if failure else record.message_id  # None: a dead letter
            processed_log.write(msg.partition(), msg.offset(), message_id)
            if commits.commit(next_offsets([msg])):
                logging.debug(
                    "Committed %s [%d] up to %d", msg.topic(), msg.partition(), msg.offset()
                )
            stop_when.processed += 1
    except KafkaException as exc:
        logging.error("Stopping after a fatal Kafka error: %s", exc)
        status = lifecycle.EXIT_FAILED
    return at_least_once.close(consumer, commits, stop_when, status, processed_log)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    group = settings.DEFAULT_SINGLE_GROUP_ID
    parser = flags.consumer_parser(__doc__, "single-consumer", "SINGLE_GROUP_ID", group)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    consumer, stop_when, dead_letters = at_least_once.open_consumer(args, ", one at a time")
    process = functools.partial(process_message, delay=args.process_delay)
    log = lifecycle.RecordLog(args.processed_log)
    attempts = args.max_attempts
    return consume_messages(consumer, args.topic, process, stop_when, dead_letters, attempts, log)


if __name__ == "__main__":
    sys.exit(main())

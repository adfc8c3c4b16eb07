"""At-least-once consumer, one message at a time: poll, process, commit.

The loop, consume_messages() below, with auto-commit off: ``poll()`` returns a message (1),
it is processed (2: ``SingleConsumer received: <content>``), and its offset + 1 is committed
synchronously (3): "everything before this is done".

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

from confluent_kafka import KafkaException

from kafka_app import consumer_start, flags, settings
from kafka_app.attempts import Failures, attempt
from kafka_app.dead_letters import DeadLetters
from kafka_app.group_member import GroupMember
from kafka_app.lifecycle import EXIT_FAILED, EXIT_OK
from message_model import MessageModel


def process_message(message: MessageModel, delay: float = 0.0) -> None:
    """The business logic: here it logs the message (``delay`` simulates work).
    Raise an exception to have the message delivered again."""
    logging.info("SingleConsumer received: %s", message.content)
    if delay:  # time.sleep(0) would cost 76 µs, a tenth of a commit cycle
        time.sleep(delay)


def consume_messages(
    member: GroupMember,
    topic: str,
    process: Callable[[MessageModel], None],
    dead_letters: DeadLetters,
    failures: Failures,
) -> int:
    """Poll a record, attempt it, then rewind or commit, until told to stop; return the exit
    status. kafka_app/group_member.py makes the Kafka calls, kafka_app/attempts.py decides."""
    member.subscribe(topic)
    status = EXIT_OK
    try:
        while not member.should_stop():
            if (msg := member.poll()) is None:
                member.retry_failed_commit()  # if one failed: it is retried every 2 s
                continue
            outcome = attempt([msg], lambda records: process(records[0]), failures)
            if outcome.retry:  # not committed: seek back to it, so that it comes again
                member.seek_back([msg], outcome.pause)
            elif dead_letters.send_all(outcome.dead):  # a poison or exhausted one: written
                failures.forget([msg])
                member.commit(outcome.done)  # "everything before this is done"
            else:  # its dead letter was refused: never commit past a lost record
                member.seek_back([msg], dead_letters.retry_pause())
    except KafkaException as exc:
        logging.error("Stopping after a fatal Kafka error: %s", exc)
        status = EXIT_FAILED
    return member.close(status)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    group = settings.DEFAULT_SINGLE_GROUP_ID
    parser = flags.consumer_parser(__doc__, "single-consumer", "SINGLE_GROUP_ID", group)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    member, dead_letters = consumer_start.start(args, ", one at a time")
    process = functools.partial(process_message, delay=args.process_delay)
    failures = Failures(args.max_attempts)  # failed attempts per record
    return consume_messages(member, args.topic, process, dead_letters, failures)


if __name__ == "__main__":
    sys.exit(main())

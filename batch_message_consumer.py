"""At-least-once batch consumer: process up to BATCH_SIZE messages, then commit once.

A batch is full at BATCH_SIZE messages, or when its window (BATCH_WINDOW_SECONDS, from its
first message) closes. The loop, consume_batches() below, with auto-commit off:

1. The whole batch is processed (``BatchConsumer received: <content>`` per message).
2. Only then ONE synchronous commit of "last processed offset + 1" per partition.
3. If processing fails, nothing is committed AND each partition is rewound with ``seek()`` to
   the batch's first offset in it (the position has moved on: not committing alone would not
   redeliver it). Its records then come one at a time, to find the failing one: it is tried
   up to --max-attempts times, with growing pauses, then written to the dead-letter topic, as
   poison records (not a MessageModel, or a tombstone) are at once. A record is committed
   past only once its dead letter is acknowledged.

A crash between steps 1 and 2 means the batch is processed twice, never that it is skipped.

Example: ``python batch_message_consumer.py --idle-exit 10`` exits once the topic is drained.
"""

import argparse
import functools
import logging
import sys
import time
from collections.abc import Callable

from confluent_kafka import KafkaException, Message

from kafka_app import consumer_start, flags, settings
from kafka_app.attempts import Failures, attempt
from kafka_app.dead_letters import DeadLetters
from kafka_app.flags import env_option, positive_float, positive_int
from kafka_app.group_member import GroupMember
from kafka_app.lifecycle import EXIT_FAILED, EXIT_OK, counted
from kafka_app.offsets import Offsets, format_offsets
from message_model import MessageModel


def process_batch(messages: list[MessageModel], delay: float = 0.0) -> None:
    """The business logic: here it logs each message (``delay`` simulates work per message).
    Raise an exception to have the whole batch redelivered."""
    for message in messages:
        logging.info("BatchConsumer received: %s", message.content)
        if delay:
            time.sleep(delay)


def consume_batches(
    member: GroupMember,
    topic: str,
    process: Callable[[list[MessageModel]], None],
    dead_letters: DeadLetters,
    failures: Failures,
    batch_size: int = settings.DEFAULT_BATCH_SIZE,
    batch_window: float = settings.DEFAULT_BATCH_WINDOW_SECONDS,
) -> int:
    """Collect a batch (up to ``batch_size`` records within ``batch_window`` seconds), attempt
    it, then rewind or commit, until told to stop; return the exit status. The Kafka calls are
    in kafka_app/group_member.py, the decision in kafka_app/attempts.py."""
    member.subscribe(topic)
    status = EXIT_OK
    try:
        while not member.should_stop():
            batch = member.collect(batch_size, batch_window)
            if not batch:
                member.retry_failed_commit()  # if one failed: it is retried every 2 s
                continue
            outcome = attempt(batch, process, failures)
            if outcome.retry:  # nothing committed: seek back, so that the batch comes again
                member.seek_back(batch, outcome.pause, one_at_a_time=outcome.split)
            elif not dead_letters.send_all(outcome.dead):  # never commit past a lost record
                member.seek_back(batch, dead_letters.retry_pause())
            else:  # the whole batch is processed or dead-lettered: one commit past it all
                failures.forget(batch)
                log_commit(batch, member.commit(outcome.done))
    except KafkaException as exc:
        logging.error("Stopping after a fatal Kafka error: %s", exc)
        status = EXIT_FAILED
    return member.close(status)


def log_commit(batch: list[Message], committed: Offsets) -> None:
    """``Committed batch of 10 messages: final-1-topic [1]@15, [2]@18``; a failed commit has
    said why, and is retried."""
    if committed:
        size = counted(len(batch), "message")
        logging.info(f"Committed batch of {size}: {format_offsets(committed)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    group = settings.DEFAULT_BATCH_GROUP_ID
    parser = flags.consumer_parser(__doc__, "batch-consumer", "BATCH_GROUP_ID", group)
    size, window = settings.DEFAULT_BATCH_SIZE, settings.DEFAULT_BATCH_WINDOW_SECONDS
    env_option(parser, "--batch-size", "BATCH_SIZE", size, positive_int, "most messages per batch")
    fill = "seconds to fill a batch, counted from its first message"
    env_option(parser, "--batch-window", "BATCH_WINDOW_SECONDS", window, positive_float, fill)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    how = f": batches of up to {args.batch_size} messages within {args.batch_window:g} s"
    member, dead_letters = consumer_start.start(args, how)
    process = functools.partial(process_batch, delay=args.process_delay)
    failures = Failures(args.max_attempts)  # failed attempts per record
    size, window = args.batch_size, args.batch_window
    return consume_batches(member, args.topic, process, dead_letters, failures, size, window)


if __name__ == "__main__":
    sys.exit(main())

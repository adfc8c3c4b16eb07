"""At-least-once batch consumer: process up to BATCH_SIZE messages, then commit once.

A batch is full at BATCH_SIZE messages, or when its window (BATCH_WINDOW_SECONDS, from its
first message) closes. The loop, consume_batches() below, step by step:

1. Auto-commit and the automatic offset store are off (kafka_app/settings.py).
2. The whole batch is processed (``BatchConsumer received: <content>`` per message).
3. Only then ONE synchronous commit of "last processed offset + 1" per partition.
4. If processing fails, nothing of the batch is committed AND each partition is rewound with
   ``seek()`` to the batch's first offset in it, so exactly that batch comes again (not
   committing alone would not redeliver it: the position has moved on already).

A crash between steps 2 and 3 means the batch is processed twice, never that it is skipped.
Poison records (not a MessageModel, or a tombstone) are logged, skipped and committed past.

Example: ``python batch_message_consumer.py --idle-exit 10`` exits once the topic is drained.
"""

import argparse
import functools
import logging
import math
import sys
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from kafka_app import at_least_once, lifecycle, settings
from kafka_app.at_least_once import StopWhen, log_assigned
from kafka_app.commits import Commits, format_offsets, next_offsets
from kafka_app.settings import env_option, positive_float, positive_int
from message_model import MessageModel


def process_batch(messages: list[MessageModel], delay: float = 0.0) -> None:
    """The business logic: here it logs each message (``delay`` simulates work per message).
    Raise an exception to have the whole batch redelivered."""
    for message in messages:
        logging.info("BatchConsumer received: %s", message.content)
        if delay:
            time.sleep(delay)


def consume_batches(
    consumer: Consumer,
    topic: str,
    process: Callable[[list[MessageModel]], None],
    stop_when: StopWhen,
    batch_size: int = settings.DEFAULT_BATCH_SIZE,
    batch_window: float = settings.DEFAULT_BATCH_WINDOW_SECONDS,
    processed_log: lifecycle.RecordLog | None = None,
) -> int:
    """Collect, decode or skip, process, commit, until ``stop_when``; return the exit status."""
    processed_log = processed_log or lifecycle.RecordLog(None)
    commits = Commits(consumer)  # a failed commit is kept, retried and merged into the next
    backoff = at_least_once.Backoff()
    collecting: list[Message] = []  # the batch being collected: a revocation drops records

    def on_revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Inside consume(): records collected from these partitions are not committed, so
        # their next owner reads them; what a failed commit left gets a last try.
        commits.partitions_revoked(partitions, dropped=keep_others(collecting, partitions))

    def on_lost(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else's already: nothing of them can be committed any more.
        commits.partitions_lost(partitions, dropped=keep_others(collecting, partitions))

    consumer.subscribe([topic], on_assign=log_assigned, on_revoke=on_revoke, on_lost=on_lost)
    status = lifecycle.EXIT_OK
    try:
        while not stop_when.due():
            batch = collect(consumer, collecting, batch_size, batch_window, stop_when)
            if not batch or stop_when.health.broken:  # a broken client could not commit it
                commits.retry_if_due()
                continue
            records = [at_least_once.decode_or_skip(msg) for msg in batch]  # None: poison
            try:
                if good := [record for record in records if record is not None]:
                    process(good)
            except Exception:
                failed = "Processing a batch of %s failed; not committed, delivered again in %.1f s"
                size = lifecycle.counted(len(batch), "message")
                logging.exception(failed, size, backoff.seconds)
                at_least_once.rewind(consumer, batch)
                backoff.wait(stop_when.requested)
                continue
            backoff.reset()
            for msg, record in zip(batch, records, strict=True):
                processed_log.write(msg.partition(), msg.offset(), record and record.message_id)
            if committed := commits.commit(next_offsets(batch)):  # poison records included
                size = lifecycle.counted(len(batch), "message")
                logging.info(f"Committed batch of {size}: {format_offsets(committed)}")
            stop_when.processed += len(batch)
    except KafkaException as exc:
        logging.error("Stopping after a fatal Kafka error: %s", exc)
        status = lifecycle.EXIT_FAILED
    return at_least_once.close(consumer, commits, stop_when, status, processed_log)


def collect(
    consumer: Consumer, batch: list[Message], limit: int, window: float, stop_when: StopWhen
) -> list[Message]:
    """Consume into ``batch`` until it holds ``limit`` records (fewer if --max-messages is
    nearer), the window opened by its first record closes, or the loop must stop; return the
    records, and empty ``batch``. Rebalance callbacks inside consume() may empty it too.
    consume() returns ~200 ms after its first record: at the demo's pace, one record a call."""
    if stop_when.max_messages is not None:
        limit = min(limit, stop_when.max_messages - stop_when.processed)
    deadline = math.inf  # until the batch's first record opens its window
    while len(batch) < limit and not stop_when.interrupted():
        if not batch:
            deadline = math.inf  # a revocation emptied it
        timeout = min(deadline - time.monotonic(), at_least_once.POLL_TIMEOUT)
        if timeout <= 0:
            break
        for msg in consumer.consume(num_messages=limit - len(batch), timeout=timeout):
            if msg.error():
                at_least_once.log_consumer_error(msg)
                continue
            batch.append(msg)
            stop_when.saw_record()
            deadline = min(deadline, stop_when.last_record_at + window)
    collected = batch[:]
    batch.clear()
    return collected


def keep_others(batch: list[Message], partitions: list[TopicPartition]) -> int:
    """Drop the batch's records of ``partitions``, in place; return how many."""
    gone = {(tp.topic, tp.partition) for tp in partitions}
    before = len(batch)
    batch[:] = [msg for msg in batch if (msg.topic(), msg.partition()) not in gone]
    return before - len(batch)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    group = settings.DEFAULT_BATCH_GROUP_ID
    parser = settings.consumer_parser(__doc__, "batch-consumer", "BATCH_GROUP_ID", group)
    size, window = settings.DEFAULT_BATCH_SIZE, settings.DEFAULT_BATCH_WINDOW_SECONDS
    env_option(parser, "--batch-size", "BATCH_SIZE", size, positive_int, "most messages per batch")
    fill = "seconds to fill a batch, counted from its first message"
    env_option(parser, "--batch-window", "BATCH_WINDOW_SECONDS", window, positive_float, fill)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    how = f": batches of up to {args.batch_size} messages within {args.batch_window:g} s"
    consumer, stop_when = at_least_once.open_consumer(args, how)
    process = functools.partial(process_batch, delay=args.process_delay)
    log = lifecycle.RecordLog(args.processed_log)
    return consume_batches(
        consumer, args.topic, process, stop_when, args.batch_size, args.batch_window, log
    )


if __name__ == "__main__":
    sys.exit(main())

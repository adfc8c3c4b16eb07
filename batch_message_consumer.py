"""At-least-once batch consumer: process up to BATCH_SIZE messages, then commit once.

A batch is full at BATCH_SIZE messages, or when its window (BATCH_WINDOW_SECONDS, from its
first message) closes. The loop, consume_batches() below, step by step:

1. Auto-commit and the automatic offset store are off (kafka_app/settings.py).
2. The whole batch is processed (``BatchConsumer received: <content>`` per message).
3. Only then ONE synchronous commit of "last processed offset + 1" per partition.
4. If processing fails, nothing of the batch is committed AND each partition is rewound with
   ``seek()`` to the batch's first offset in it (not committing alone would not redeliver it:
   the position has moved on already). Its records then come again one at a time, so that
   the one that fails is found: it is tried up to --max-attempts times, with growing pauses,
   then written to the dead-letter topic; poison records (not a MessageModel, or a tombstone)
   go there at once. A record is committed past only once its dead letter is acknowledged.

A crash between steps 2 and 3 means the batch is processed twice, never that it is skipped.

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

from kafka_app import at_least_once, flags, lifecycle, settings
from kafka_app.at_least_once import StopWhen, log_assigned
from kafka_app.commits import Commits, Offsets, format_offsets, next_offsets
from kafka_app.dead_letters import DeadLetters, Failure, Failures, poison
from kafka_app.flags import env_option, positive_float, positive_int
from message_model import MessageDecodeError, MessageModel


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
    dead_letters: DeadLetters,
    batch_size: int = settings.DEFAULT_BATCH_SIZE,
    batch_window: float = settings.DEFAULT_BATCH_WINDOW_SECONDS,
    max_attempts: int = settings.DEFAULT_MAX_ATTEMPTS,
    processed_log: lifecycle.RecordLog | None = None,
) -> int:
    """Collect, decode, process or dead-letter, commit, until ``stop_when``; return the exit
    status."""
    processed_log = processed_log or lifecycle.RecordLog(None)
    commits = Commits(consumer)  # a failed commit is kept, retried and merged into the next
    backoff = at_least_once.Backoff()  # between tries to write a dead letter
    failures = Failures(max_attempts)  # failed attempts per record
    collecting: list[Message] = []  # the batch being collected: a revocation drops records
    one_by_one: Offsets = {}  # after a batch failed: a record at a time, up to these offsets

    def on_revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Inside consume(): records collected from these partitions are not committed, so
        # their next owner reads them; what a failed commit left gets a last try.
        forget(one_by_one, partitions)
        commits.partitions_revoked(partitions, dropped=keep_others(collecting, partitions))

    def on_lost(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else's already: nothing of them can be committed any more.
        forget(one_by_one, partitions)
        commits.partitions_lost(partitions, dropped=keep_others(collecting, partitions))

    consumer.subscribe([topic], on_assign=log_assigned, on_revoke=on_revoke, on_lost=on_lost)
    status = lifecycle.EXIT_OK
    try:
        while not stop_when.due():
            limit = 1 if one_by_one else batch_size
            batch = collect(consumer, collecting, limit, batch_window, stop_when)
            if not batch or stop_when.health.broken:  # a broken client could not commit it
                commits.retry_if_due()
                continue
            records = [at_least_once.decode(msg) for msg in batch]
            good = [record for record in records if not isinstance(record, MessageDecodeError)]
            dead = [] if len(good) == len(batch) else poisoned(batch, records)
            try:
                if good:
                    process(good)
            except Exception as exc:
                if len(good) > 1:  # which record fails? Each of this batch again, alone
                    size = lifecycle.counted(len(good), "message")
                    logging.exception(f"Processing a batch of {size} failed; trying each alone")
                    merge(one_by_one, next_offsets(batch))
                    at_least_once.retry_later(consumer, batch, 0, stop_when)
                    continue
                msg = next(m for m, r in zip(batch, records, strict=True) if r is good[0])
                failure = failures.add(msg, exc)
                where = f"{msg.topic()} [{msg.partition()}] @ {msg.offset()}"
                logging.exception(
                    f"Processing {where} failed (attempt {failure.attempts} of {max_attempts})"
                )
                if not failures.exhausted(failure):
                    pause = at_least_once.retry_pause(failure.attempts)
                    at_least_once.retry_later(consumer, batch, pause, stop_when)
                    continue
                dead.append((msg, failure))
            if not all(dead_letters.send(msg, failure) for msg, failure in dead):
                at_least_once.retry_later(consumer, batch, backoff.pause(), stop_when)
                continue
            backoff.reset()
            failures.forget(batch)
            if processed_log.enabled:
                sent = {id(msg) for msg, _ in dead}  # written as "-": not processed
                for msg, record in zip(batch, records, strict=True):
                    message_id = None if id(msg) in sent else record.message_id
                    processed_log.write(msg.partition(), msg.offset(), message_id)
            if committed := commits.commit(next_offsets(batch)):  # dead letters included
                size = lifecycle.counted(len(batch), "message")
                logging.info(f"Committed batch of {size}: {format_offsets(committed)}")
                forget_done(one_by_one, committed)
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


def poisoned(batch: list[Message], records: list) -> list[tuple[Message, Failure]]:
    """The batch's poison records: dead letters at once, as they can never be processed."""
    pairs = zip(batch, records, strict=True)
    return [(msg, poison(record)) for msg, record in pairs if isinstance(record, Exception)]


def merge(one_by_one: Offsets, offsets: Offsets) -> None:
    for key, offset in offsets.items():
        one_by_one[key] = max(offset, one_by_one.get(key, -1))


def forget(one_by_one: Offsets, partitions: list[TopicPartition]) -> None:
    for tp in partitions:
        one_by_one.pop((tp.topic, tp.partition), None)


def forget_done(one_by_one: Offsets, committed: Offsets) -> None:
    """Back to whole batches in a partition once a record at a time has got past the batch
    that failed."""
    for key, offset in committed.items():
        if offset >= one_by_one.get(key, offset + 1):
            del one_by_one[key]


def keep_others(batch: list[Message], partitions: list[TopicPartition]) -> int:
    """Drop the batch's records of ``partitions``, in place; return how many."""
    gone = {(tp.topic, tp.partition) for tp in partitions}
    before = len(batch)
    batch[:] = [msg for msg in batch if (msg.topic(), msg.partition()) not in gone]
    return before - len(batch)


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
    consumer, stop_when, dead_letters = at_least_once.open_consumer(args, how)
    process = functools.partial(process_batch, delay=args.process_delay)
    log = lifecycle.RecordLog(args.processed_log)
    size, window, attempts = args.batch_size, args.batch_window, args.max_attempts
    return consume_batches(
        consumer, args.topic, process, stop_when, dead_letters, size, window, attempts, log
    )


if __name__ == "__main__":
    sys.exit(main())

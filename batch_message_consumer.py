"""At-least-once batch consumer: process up to BATCH_SIZE messages, then commit once.

How a batch is made: ``consume(num_messages=...)`` returns about 200 ms after the first message,
so at demo traffic a single call returns 1 message. The consumer keeps calling it until the
batch is full, the batch window (started by the batch's first message) closes, or a shutdown is
requested. (``max.poll.records`` is a Java setting; librdkafka's classic consumer ignores it.)

At-least-once, step by step:

1. Auto-commit and the automatic offset store are off: nothing is committed behind our back.
2. The whole batch is processed (``BatchConsumer received: <content>`` per message).
3. Only then ONE synchronous commit of "last processed offset + 1" per partition.
4. If processing fails, nothing of the batch is committed AND each partition is rewound with
   ``seek()`` to the batch's first offset in it, so exactly that batch is delivered again.
   (Not committing alone does not redeliver: the consumer's position has already moved on,
   and the next successful commit would silently cover the failed messages.)

A crash between steps 2 and 3 means the batch is processed twice, never that it is skipped.
Poison records (not a MessageModel, or a tombstone) are logged, skipped and committed past.

Examples::

    python batch_message_consumer.py                      # the demo, group batch-group
    python batch_message_consumer.py --idle-exit 10       # exit when the topic is drained
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

import app_config
from committing_consumer import (
    MIN_BACKOFF,
    POLL_TIMEOUT,
    CommittingConsumer,
    create_consumer,
    options_from,
)
from message_model import MessageModel


def process_batch(messages: list[MessageModel], delay: float = 0.0) -> None:
    """The business logic: here it logs each message (``delay`` simulates work per message).

    Raise an exception to have the whole batch redelivered.
    """
    for message in messages:
        logging.info("BatchConsumer received: %s", message.content)
        if delay:
            time.sleep(delay)


class BatchConsumer(CommittingConsumer):
    """The collect -> process -> commit loop (the life cycle around it: committing_consumer.py)."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        handle_batch: Callable[[list[MessageModel]], None] = process_batch,
        *,
        batch_size: int = app_config.DEFAULT_BATCH_SIZE,
        batch_window: float = app_config.DEFAULT_BATCH_WINDOW_SECONDS,
        **options: Any,
    ) -> None:
        super().__init__(consumer, topic, **options)
        self.handle_batch = handle_batch
        self.batch_size = batch_size
        self.batch_window = batch_window
        self.batch: list[Message] = []  # collected, not yet processed

    def step(self) -> None:
        batch = self.collect_batch()
        # A broken client could not commit the batch: leave it unprocessed, to be redelivered.
        if batch and not self.errors.broken:
            self.process_and_commit(batch)

    # -- 1. collect --------------------------------------------------------------------------

    def collect_batch(self) -> list[Message]:
        """Consume until the batch is full, its window closes, or we must stop.

        Rebalance callbacks run inside consume() and may remove messages from self.batch.
        """
        limit = self.batch_size
        if self.max_messages is not None:
            limit = min(limit, self.max_messages - self.processed)
        self.batch = []
        deadline = None
        while len(self.batch) < limit:
            if self.stop.is_set() or self.errors.broken or self.idle():
                break
            if not self.batch:
                deadline = None  # (a revocation may have emptied the batch)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            timeout = POLL_TIMEOUT if deadline is None else min(POLL_TIMEOUT, deadline - now)
            for msg in self.consumer.consume(num_messages=limit - len(self.batch), timeout=timeout):
                if msg.error():
                    app_config.log_consumer_error(msg)
                    continue
                self.batch.append(msg)
                self.last_record_at = time.monotonic()
                if deadline is None:
                    deadline = self.last_record_at + self.batch_window
        batch, self.batch = self.batch, []
        return batch

    # -- 2. process, 3. commit ---------------------------------------------------------------

    def process_and_commit(self, batch: list[Message]) -> None:
        decoded = [(msg, app_config.decode_record(msg)) for msg in batch]  # None: poison
        records = [record for _, record in decoded if record is not None]
        try:
            if records:
                self.handle_batch(records)
        except Exception:
            logging.exception(
                "Processing a batch of %d messages failed; nothing of it is committed and it"
                " will be delivered again in %.1f s",
                len(batch),
                self.backoff,
            )
            self.redeliver(batch)
            return
        self.backoff = MIN_BACKOFF

        offsets: app_config.Offsets = {}
        for msg, record in decoded:
            self.processed_log.write(msg.partition(), msg.offset(), record and record.message_id)
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1  # in order per partition
        committed = self.commit(offsets)
        if committed:
            logging.info(
                "Committed batch of %d messages: %s",
                len(batch),
                app_config.format_offsets(committed),
            )
        self.processed += len(batch)

    def forget(self, partitions: list[TopicPartition]) -> int:
        """Rebalance callbacks run inside consume(): drop collected messages of partitions
        that are no longer ours (not committed, so their next owner reads them)."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        kept = [m for m in self.batch if (m.topic(), m.partition()) not in gone]
        dropped = len(self.batch) - len(kept)
        self.batch = kept
        return dropped


def parse_args(argv: list[str] | None = None) -> Any:
    parser = app_config.ArgumentParser(description=__doc__)
    app_config.add_common_arguments(parser)
    app_config.add_consumer_arguments(parser, "BATCH_GROUP_ID", app_config.DEFAULT_BATCH_GROUP_ID)
    parser.add_env_argument(
        "--batch-size",
        env="BATCH_SIZE",
        default=app_config.DEFAULT_BATCH_SIZE,
        type=app_config.positive_int,
        help="most messages per batch",
    )
    parser.add_env_argument(
        "--batch-window",
        env="BATCH_WINDOW_SECONDS",
        default=app_config.DEFAULT_BATCH_WINDOW_SECONDS,
        type=app_config.positive_float,
        help="seconds to fill a batch, counted from its first message",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app_config.setup_logging(args.log_level)
    stop = app_config.install_shutdown_handlers()
    errors = app_config.ErrorReporter()
    consumer = create_consumer(args, errors)
    logging.info(
        "Consuming %s at %s as group %s: batches of up to %d messages within %g s",
        args.topic,
        args.bootstrap_servers,
        args.group_id,
        args.batch_size,
        args.batch_window,
    )
    return BatchConsumer(
        consumer,
        args.topic,
        functools.partial(process_batch, delay=args.process_delay),
        batch_size=args.batch_size,
        batch_window=args.batch_window,
        **options_from(args, stop, errors),
    ).run()


if __name__ == "__main__":
    sys.exit(main())

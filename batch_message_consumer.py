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
from threading import Event
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

import app_config
from message_model import MessageModel

POLL_TIMEOUT = 0.5  # longest blocking call, so a shutdown request is noticed quickly
MIN_BACKOFF = 0.5  # after a failed batch; doubles on each failure in a row
MAX_BACKOFF = 30.0


def process_batch(messages: list[MessageModel], delay: float = 0.0) -> None:
    """The business logic: here it logs each message (``delay`` simulates work per message).

    Raise an exception to have the whole batch redelivered.
    """
    for message in messages:
        logging.info("BatchConsumer received: %s", message.content)
        if delay:
            time.sleep(delay)


class BatchConsumer:
    """Runs the collect -> process -> commit loop on a Consumer it owns (and closes)."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        handle_batch: Callable[[list[MessageModel]], None] = process_batch,
        *,
        batch_size: int = app_config.DEFAULT_BATCH_SIZE,
        batch_window: float = app_config.DEFAULT_BATCH_WINDOW_SECONDS,
        stop: Event | None = None,
        max_messages: int | None = None,
        idle_exit: float | None = None,
        processed_log: app_config.RecordLog | None = None,
        errors: app_config.ErrorReporter | None = None,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.handle_batch = handle_batch
        self.batch_size = batch_size
        self.batch_window = batch_window
        self.stop = stop or Event()
        self.max_messages = max_messages
        self.idle_exit = idle_exit
        self.processed_log = processed_log or app_config.RecordLog(None)
        self.errors = errors or app_config.ErrorReporter()
        self.batch: list[Message] = []  # collected, not yet processed
        self.uncommitted: app_config.Offsets = {}  # processed, commit failed: retried
        self.processed = 0  # records processed and committed (poison records included)
        self.backoff = MIN_BACKOFF
        self.last_record_at = time.monotonic()

    # -- the main loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stopped; return the exit status (0 = clean stop)."""
        self.consumer.subscribe(
            [self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost
        )
        status = 0
        try:
            while not self.should_stop():
                batch = self.collect_batch()
                if batch:
                    self.process_and_commit(batch)
        except KafkaException as exc:
            logging.error("Stopping after a fatal Kafka error: %s", exc)
            status = 1
        finally:
            if self.errors.fatal_error is not None:
                status = 1
            elif self.uncommitted and app_config.commit_offsets(self.consumer, self.uncommitted):
                logging.error(
                    "Some processed offsets could not be committed; they will be"
                    " delivered again to the next owner of their partitions"
                )
                status = 1
            logging.info(
                "Closing the consumer (leaves the group; up to ~1 min if no broker is reachable)"
            )
            self.consumer.close()
            self.processed_log.close()
        logging.info("Stopped after processing %d messages", self.processed)
        return status

    def should_stop(self) -> bool:
        if self.stop.is_set():
            logging.info("Shutdown requested")
            return True
        if self.errors.fatal_error is not None:
            return True
        if self.max_messages is not None and self.processed >= self.max_messages:
            logging.info("Processed %d messages (--max-messages): exiting", self.processed)
            return True
        if self.idle():
            logging.info("Nothing new for %g s (--idle-exit): exiting", self.idle_exit)
            return True
        return False

    def idle(self) -> bool:
        return (
            self.idle_exit is not None and time.monotonic() - self.last_record_at >= self.idle_exit
        )

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
            if self.stop.is_set() or self.errors.fatal_error is not None or self.idle():
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
            self.rewind(batch)
            self.stop.wait(self.backoff)
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)
            return
        self.backoff = MIN_BACKOFF

        offsets: app_config.Offsets = {}
        for msg, record in decoded:
            self.processed_log.write(msg.partition(), msg.offset(), record and record.message_id)
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1  # in order per partition
        app_config.merge_offsets(self.uncommitted, offsets)
        to_commit = self.uncommitted
        self.uncommitted = app_config.commit_offsets(self.consumer, to_commit)
        committed = {tp: o for tp, o in to_commit.items() if tp not in self.uncommitted}
        if committed:
            logging.info(
                "Committed batch of %d messages: %s",
                len(batch),
                app_config.format_offsets(committed),
            )
        self.processed += len(batch)

    def rewind(self, batch: list[Message]) -> None:
        """Seek each partition back to the batch's first offset in it: the batch comes again."""
        first: dict[tuple[str, int], int] = {}
        for msg in batch:
            first.setdefault((msg.topic(), msg.partition()), msg.offset())
        for (topic, partition), offset in first.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # e.g. the partition is no longer ours
                logging.warning("Could not rewind %s [%d] to %d: %s", topic, partition, offset, exc)

    # -- rebalances (called inside consume()) ------------------------------------------------

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        level = logging.INFO if partitions else logging.DEBUG  # cooperative: may be empty
        logging.log(level, "Partitions assigned: %s", app_config.format_partitions(partitions))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Give partitions back: everything processed is committed by now (or just now)."""
        dropped = self.forget(partitions)
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        pending = {tp: o for tp, o in self.uncommitted.items() if tp in revoked}
        if pending:  # an earlier commit failed: last chance while they are still ours
            app_config.commit_offsets(consumer, pending)
            for tp in pending:
                self.uncommitted.pop(tp)
        logging.info(
            "Partitions revoked: %s (%d collected, unprocessed messages dropped: the next"
            " owner reads them, as they are not committed)",
            app_config.format_partitions(partitions),
            dropped,
        )

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions already belong to someone else: committing is no longer possible."""
        dropped = self.forget(partitions)
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        for tp in revoked:
            self.uncommitted.pop(tp, None)
        logging.warning(
            "Partitions lost: %s (%d unprocessed messages dropped; they will be redelivered)",
            app_config.format_partitions(partitions),
            dropped,
        )

    def forget(self, partitions: list[TopicPartition]) -> int:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        kept = [m for m in self.batch if (m.topic(), m.partition()) not in gone]
        dropped = len(self.batch) - len(kept)
        self.batch = kept
        return dropped


def parse_args(argv: list[str] | None = None) -> Any:
    parser = app_config.ArgumentParser(description=__doc__)
    app_config.add_common_arguments(parser)
    parser.add_env_argument(
        "--group-id",
        env="BATCH_GROUP_ID",
        default=app_config.DEFAULT_BATCH_GROUP_ID,
        type=app_config.non_empty,
        help="consumer group",
    )
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
    app_config.add_consumer_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app_config.setup_logging(args.log_level)
    stop = app_config.install_shutdown_handlers()
    errors = app_config.ErrorReporter()
    with app_config.exit_on_config_error():
        consumer = Consumer(
            app_config.consumer_config(
                args.bootstrap_servers, args.group_id, args.client_properties, errors
            )
        )
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
        stop=stop,
        max_messages=args.max_messages,
        idle_exit=args.idle_exit,
        processed_log=app_config.RecordLog(args.processed_log),
        errors=errors,
    ).run()


if __name__ == "__main__":
    sys.exit(main())

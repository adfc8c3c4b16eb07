"""At-least-once consumer, one message at a time: poll, process, commit.

For each message:

1. ``poll()`` returns it (auto-commit and the automatic offset store are off);
2. it is processed (``SingleConsumer received: <content>``);
3. its offset + 1 is committed synchronously: "everything before this is done".

If processing fails, nothing is committed and the partition is rewound with ``seek()`` to that
message, which comes again after a short backoff. (Not committing alone does not redeliver:
the consumer's position has already moved on.) A crash between steps 2 and 3 means the
message is processed twice, never that it is skipped. Poison records (not a MessageModel, or
a tombstone) are logged, skipped and committed past.

One synchronous commit per message costs a round trip to the group coordinator each time,
which bounds throughput to a few hundred messages per second: batch_message_consumer.py
commits once per batch instead.

Examples::

    python single_message_consumer.py                     # the demo, group single-group
    python single_message_consumer.py --idle-exit 10      # exit when the topic is drained
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
MIN_BACKOFF = 0.5  # after a failed message; doubles on each failure in a row
MAX_BACKOFF = 30.0


def process_message(message: MessageModel, delay: float = 0.0) -> None:
    """The business logic: here it logs the message (``delay`` simulates work).

    Raise an exception to have the message delivered again.
    """
    logging.info("SingleConsumer received: %s", message.content)
    if delay:
        time.sleep(delay)


class SingleConsumer:
    """Runs the poll -> process -> commit loop on a Consumer it owns (and closes)."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        handle: Callable[[MessageModel], None] = process_message,
        *,
        stop: Event | None = None,
        max_messages: int | None = None,
        idle_exit: float | None = None,
        processed_log: app_config.RecordLog | None = None,
        errors: app_config.ErrorReporter | None = None,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.handle = handle
        self.stop = stop or Event()
        self.max_messages = max_messages
        self.idle_exit = idle_exit
        self.processed_log = processed_log or app_config.RecordLog(None)
        self.errors = errors or app_config.ErrorReporter()
        self.uncommitted: app_config.Offsets = {}  # processed, commit failed: retried
        self.processed = 0  # records processed and committed (poison records included)
        self.backoff = MIN_BACKOFF
        self.last_record_at = time.monotonic()

    def run(self) -> int:
        """Consume until stopped; return the exit status (0 = clean stop)."""
        self.consumer.subscribe(
            [self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost
        )
        status = 0
        try:
            while not self.should_stop():
                msg = self.consumer.poll(POLL_TIMEOUT)
                if msg is None:
                    continue
                if msg.error():
                    app_config.log_consumer_error(msg)
                    continue
                self.last_record_at = time.monotonic()
                self.process_and_commit(msg)
        except KafkaException as exc:
            logging.error("Stopping after a fatal Kafka error: %s", exc)
            status = 1
        finally:
            if self.errors.fatal_error is not None:
                status = 1
            elif self.uncommitted and app_config.commit_offsets(self.consumer, self.uncommitted):
                logging.error(
                    "Some processed offsets could not be committed; they will be delivered"
                    " again to the next owner of their partitions"
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
        if self.idle_exit is not None and time.monotonic() - self.last_record_at >= self.idle_exit:
            logging.info("Nothing new for %g s (--idle-exit): exiting", self.idle_exit)
            return True
        return False

    def process_and_commit(self, msg: Message) -> None:
        record = app_config.decode_record(msg)  # None: poison record, skipped
        if record is not None:
            try:
                self.handle(record)
            except Exception:
                logging.exception(
                    "Processing %s [%d] @ %d failed; not committed, retrying in %.1f s",
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    self.backoff,
                )
                self.rewind(msg)
                self.stop.wait(self.backoff)
                self.backoff = min(self.backoff * 2, MAX_BACKOFF)
                return
            self.backoff = MIN_BACKOFF

        self.processed_log.write(msg.partition(), msg.offset(), record and record.message_id)
        app_config.merge_offsets(
            self.uncommitted, {(msg.topic(), msg.partition()): msg.offset() + 1}
        )
        self.uncommitted = app_config.commit_offsets(self.consumer, self.uncommitted)
        if not self.uncommitted:
            logging.debug("Committed %s [%d]@%d", msg.topic(), msg.partition(), msg.offset() + 1)
        self.processed += 1

    def rewind(self, msg: Message) -> None:
        """Seek the partition back to this message, so that poll() returns it again."""
        try:
            self.consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
        except KafkaException as exc:  # e.g. the partition is no longer ours
            logging.warning(
                "Could not rewind %s [%d] to %d: %s",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc,
            )

    # -- rebalances (called inside poll()) ---------------------------------------------------

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        level = logging.INFO if partitions else logging.DEBUG  # cooperative: may be empty
        logging.log(level, "Partitions assigned: %s", app_config.format_partitions(partitions))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Every processed message is committed right away, except after a failed commit:
        retry those while the partitions are still ours."""
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        pending = {tp: o for tp, o in self.uncommitted.items() if tp in revoked}
        if pending:
            app_config.commit_offsets(consumer, pending)
            for tp in pending:
                self.uncommitted.pop(tp)
        logging.info("Partitions revoked: %s", app_config.format_partitions(partitions))

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions already belong to someone else: committing is no longer possible."""
        for tp in partitions:
            self.uncommitted.pop((tp.topic, tp.partition), None)
        logging.warning(
            "Partitions lost: %s (uncommitted messages will be redelivered)",
            app_config.format_partitions(partitions),
        )


def parse_args(argv: list[str] | None = None) -> Any:
    parser = app_config.ArgumentParser(description=__doc__)
    app_config.add_common_arguments(parser)
    parser.add_env_argument(
        "--group-id",
        env="SINGLE_GROUP_ID",
        default=app_config.DEFAULT_SINGLE_GROUP_ID,
        type=app_config.non_empty,
        help="consumer group",
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
        "Consuming %s at %s as group %s, one message at a time",
        args.topic,
        args.bootstrap_servers,
        args.group_id,
    )
    return SingleConsumer(
        consumer,
        args.topic,
        functools.partial(process_message, delay=args.process_delay),
        stop=stop,
        max_messages=args.max_messages,
        idle_exit=args.idle_exit,
        processed_log=app_config.RecordLog(args.processed_log),
        errors=errors,
    ).run()


if __name__ == "__main__":
    sys.exit(main())

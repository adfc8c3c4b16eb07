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
from typing import Any

from confluent_kafka import Consumer, Message

import app_config
from committing_consumer import (
    MIN_BACKOFF,
    POLL_TIMEOUT,
    CommittingConsumer,
    create_consumer,
    options_from,
)
from message_model import MessageModel


def process_message(message: MessageModel, delay: float = 0.0) -> None:
    """The business logic: here it logs the message (``delay`` simulates work).

    Raise an exception to have the message delivered again.
    """
    logging.info("SingleConsumer received: %s", message.content)
    if delay:
        time.sleep(delay)


class SingleConsumer(CommittingConsumer):
    """The poll -> process -> commit loop (the life cycle around it: committing_consumer.py)."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        handle: Callable[[MessageModel], None] = process_message,
        **options: Any,
    ) -> None:
        super().__init__(consumer, topic, **options)
        self.handle = handle

    def step(self) -> None:
        msg = self.consumer.poll(POLL_TIMEOUT)
        # A broken client could not commit it: leave it unprocessed, to be redelivered.
        if msg is None or self.errors.broken:
            return
        if msg.error():
            app_config.log_consumer_error(msg)
            return
        self.last_record_at = time.monotonic()
        self.process_and_commit(msg)

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
                self.redeliver([msg])
                return
            self.backoff = MIN_BACKOFF

        self.processed_log.write(msg.partition(), msg.offset(), record and record.message_id)
        if self.commit({(msg.topic(), msg.partition()): msg.offset() + 1}):
            logging.debug("Committed %s [%d]@%d", msg.topic(), msg.partition(), msg.offset() + 1)
        self.processed += 1


def parse_args(argv: list[str] | None = None) -> Any:
    parser = app_config.ArgumentParser(description=__doc__)
    app_config.add_common_arguments(parser)
    app_config.add_consumer_arguments(parser, "SINGLE_GROUP_ID", app_config.DEFAULT_SINGLE_GROUP_ID)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app_config.setup_logging(args.log_level)
    stop = app_config.install_shutdown_handlers()
    errors = app_config.ErrorReporter()
    consumer = create_consumer(args, errors)
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
        **options_from(args, stop, errors),
    ).run()


if __name__ == "__main__":
    sys.exit(main())

"""Idempotent Kafka producer: sends a MessageModel every PRODUCER_INTERVAL_SECONDS.

Each message is ``MessageModel(<uuid4>, "Test message <n>")``, keyed by its id, so the
partitioner spreads messages over the partitions. Every send ends in a delivery report:
``Message delivered to final-1-topic [2] @ 17`` or an ERROR with the reason.

Guarantees:

- no duplicates and no reordering from retries (``enable.idempotence``, which implies acks=all;
  a whole-cluster outage can still leave an unacknowledged message twice, see README.md);
- a message refused by a full local queue (BufferError) is retried, never dropped;
- SIGTERM/SIGINT stop sending, then wait up to --flush-timeout seconds for outstanding
  messages; the exit status is 0 only if every message sent was acknowledged;
- a client left with no broker to talk to after a whole-cluster outage (a librdkafka bug,
  see app_config.ErrorReporter) stops the producer with exit status 3, for a restart.

Examples::

    python producer.py                          # the demo: one message every 1.5 s
    python producer.py --interval 0 --quiet     # as fast as possible, progress every 5 s
    python producer.py --count 100              # stop after 100 acknowledged messages
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

import app_config
from message_model import MessageModel, new_message_id

# A message not acknowledged within this time fails with an ERROR delivery report. With
# idempotence librdkafka retries without limit until then, so this is the total time a message
# may spend waiting for a leader: a broker restart or a leader election takes seconds, a full
# cluster restart a minute or two, and 5 minutes covers both. Longer would only hide a dead
# cluster (and grow the queue); 0 ("forever") would never report the loss at all.
MESSAGE_TIMEOUT_MS = 300_000
LINGER_MS = 5


def parse_args(argv: list[str] | None = None) -> Any:
    parser = app_config.ArgumentParser(description=__doc__)
    app_config.add_common_arguments(parser)
    parser.add_env_argument(
        "--interval",
        env="PRODUCER_INTERVAL_SECONDS",
        default=app_config.DEFAULT_PRODUCER_INTERVAL_SECONDS,
        type=app_config.non_negative_float,
        help="seconds between two messages, 0 = as fast as possible",
    )
    parser.add_argument(
        "--count",
        type=app_config.positive_int,
        help="stop after this many acknowledged messages (default: run until SIGTERM/Ctrl-C)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no line per delivered message; a progress line every --progress-interval s",
    )
    parser.add_argument(
        "--progress-interval",
        type=app_config.positive_float,
        default=5.0,
        help="seconds between progress lines with --quiet (default: 5)",
    )
    parser.add_argument(
        "--flush-timeout",
        type=app_config.non_negative_float,
        default=30.0,
        help="on shutdown, seconds to wait for outstanding deliveries (default: 30)",
    )
    parser.add_argument(
        "--delivered-log",
        metavar="PATH",
        help="append '<partition> <offset> <message_id>' per acknowledged message (for audits)",
    )
    return parser.parse_args(argv)


class DeliveryTracker:
    """The delivery-report callback, plus the counters the exit status is based on.

    librdkafka calls it once per message, from inside poll() or flush(), on this thread.
    """

    def __init__(self, quiet: bool, delivered_log: app_config.RecordLog) -> None:
        self.quiet = quiet
        self.delivered_log = delivered_log
        self.sent = 0  # queued by produce(); each one gets exactly one report
        self.delivered = 0
        self.failed = 0

    @property
    def outstanding(self) -> int:
        """Sent messages whose report has not come yet: queued, in flight, or not served.

        Counted here rather than with len(producer): that also counts pending callbacks and
        events (a report waiting to be served, an error_cb), so it can exceed the messages.
        """
        return self.sent - self.delivered - self.failed

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1
            logging.error(
                "Message delivery failed (key %s) to %s [%s]: %s",
                msg.key().decode(),
                msg.topic(),
                msg.partition(),
                err.str(),
            )
            return
        self.delivered += 1
        if self.quiet and not self.delivered_log.enabled:
            return  # full speed: nothing to log, so read nothing from the message
        # None when the broker answered a retry with DUPLICATE_SEQUENCE_NUMBER: it had written
        # the message already (its first answer was lost, e.g. in a broker restart), and
        # librdkafka reports success without the offset. The message is in the partition once.
        offset = msg.offset()
        self.delivered_log.write(
            msg.partition(), -1 if offset is None else offset, msg.key().decode()
        )
        if not self.quiet:
            logging.info(
                "Message delivered to %s [%d] @ %s",
                msg.topic(),
                msg.partition(),
                "? (offset not reported: a retry of a message already written)"
                if offset is None
                else offset,
            )


def producer_config(args: Any, tracker: DeliveryTracker, errors: app_config.ErrorReporter) -> dict:
    return app_config.client_config(
        args.bootstrap_servers,
        args.client_properties,
        tunables={
            # At full speed, wait up to 5 ms to put more messages into one request (librdkafka's
            # default). With a pause between messages there is nothing to batch, and lingering
            # would only add 5 ms to every message's latency: send each one at once.
            "linger.ms": LINGER_MS if args.interval * 1000 < LINGER_MS else 0,
            # LZ4 is the cheapest codec; it shrinks the repeated JSON field names of a batch.
            # Brokers store the batch as is and consumers decompress transparently.
            "compression.type": "lz4",
            "message.timeout.ms": MESSAGE_TIMEOUT_MS,
            **errors.callbacks(),
            "on_delivery": tracker,
        },
        # Idempotence implies acks=all, max.in.flight <= 5 and unlimited retries (within
        # message.timeout.ms). Setting a conflicting value fails when the Producer is created.
        guarantees={"enable.idempotence": True},
    )


def produce(
    producer: Producer, topic: str, n: int, give_up: Callable[[], bool] = lambda: False
) -> bool:
    """Queue message n; on a full local queue, serve delivery reports and try again.

    Returns False, with the message not queued, if `give_up()` becomes true meanwhile (say,
    SIGTERM): with the brokers down the queue stays full until messages time out (minutes),
    and a shutdown must not wait for that.
    """
    message = MessageModel(message_id=new_message_id(), content=f"Test message {n}")
    payload = message.serialize()
    key = message.message_id.encode()
    while True:
        try:
            producer.produce(topic, payload, key)  # value, key: positional is cheaper
            return True
        except BufferError:
            if give_up():
                return False
            # Not queued: the local queue is full (brokers slow or down). Let librdkafka
            # deliver some messages, then retry the same one.
            producer.poll(0.1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app_config.setup_logging(args.log_level)
    stop = app_config.install_shutdown_handlers()
    errors = app_config.ErrorReporter()
    delivered_log = app_config.RecordLog(args.delivered_log)
    tracker = DeliveryTracker(args.quiet, delivered_log)
    with app_config.exit_on_config_error():
        producer = Producer(producer_config(args, tracker, errors))

    logging.info(
        "Producing to %s at %s (idempotent, acks=all), %s%s",
        args.topic,
        args.bootstrap_servers,
        f"one message every {args.interval:g} s" if args.interval else "as fast as possible",
        f", until {args.count} are acknowledged" if args.count else "",
    )

    def give_up() -> bool:
        return stop.is_set() or errors.broken

    kafka_error = None  # a KafkaException that stopped us (fatal or e.g. unknown topic)
    started = time.monotonic()
    next_progress = started + args.progress_interval
    try:
        while not give_up():
            if args.count is not None:
                if tracker.delivered >= args.count:
                    break
                if tracker.sent - tracker.failed >= args.count:
                    producer.poll(0.1)  # enough in flight: wait for their reports
                    continue
            if not produce(producer, args.topic, tracker.sent + 1, give_up):
                break  # told to stop while the queue was full: that one was not sent
            tracker.sent += 1
            if args.interval > 0:
                wait_serving_reports(producer, args.interval, stop)
            else:
                producer.poll(0)  # serve delivery reports without waiting
            if args.quiet and time.monotonic() >= next_progress:
                log_progress(tracker, started)
                next_progress += args.progress_interval
    except KafkaException as exc:
        kafka_error = exc.args[0]
        logging.error("Stopped sending because of a Kafka error: %s", exc)

    fatal = errors.fatal_error or (kafka_error if kafka_error and kafka_error.fatal() else None)
    if fatal is None and not errors.stranded:  # else the producer can deliver nothing more
        logging.info(
            "Stopping (%s): waiting up to %.0f s for %d outstanding message(s)",
            "shutdown requested" if stop.is_set() else "done" if not kafka_error else "error",
            args.flush_timeout,
            tracker.outstanding,
        )
        try:
            producer.flush(args.flush_timeout)
        except KafkaException as exc:
            fatal = kafka_error = exc.args[0]
            logging.error("Flush stopped by a Kafka error: %s", exc)
    undelivered = tracker.outstanding  # still queued or in flight: not acknowledged
    delivered_log.close()
    if args.quiet:
        log_progress(tracker, started)
    lost = undelivered + tracker.failed
    logging.log(
        logging.ERROR if lost else logging.INFO,
        "Sent %d, delivered %d, failed %d, not delivered (still queued) %d",
        tracker.sent,
        tracker.delivered,
        tracker.failed,
        undelivered,
    )
    if fatal is not None:
        logging.error("Exiting after a fatal Kafka error: %s", fatal)
    if errors.stranded:
        return app_config.EXIT_CLIENT_STUCK  # a restart reconnects (restart: unless-stopped)
    return 1 if lost or kafka_error or fatal else 0


def wait_serving_reports(producer: Producer, seconds: float, stop: Any) -> None:
    """Sleep for `seconds`, serving delivery reports, and wake up early on shutdown."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        producer.poll(min(remaining, 0.5))  # returns early when a report was served


def log_progress(tracker: DeliveryTracker, started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    logging.info(
        "Progress: %d delivered (%.0f msg/s), %d failed, %d in flight",
        tracker.delivered,
        tracker.delivered / elapsed,
        tracker.failed,
        tracker.outstanding,
    )


if __name__ == "__main__":
    sys.exit(main())

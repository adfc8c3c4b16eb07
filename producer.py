"""Idempotent Kafka producer: sends a MessageModel every PRODUCER_INTERVAL_SECONDS.

Each message is ``MessageModel(<uuid4>, "Test message <n> from <client id>")``, keyed by its
id, so the partitioner spreads messages over the partitions. Every send ends in a delivery report:
``Message delivered to final-1-topic [2] @ 17`` or an ERROR with the reason.

- No duplicates and no reordering from retries (``enable.idempotence``, so acks=all; a
  whole-cluster outage can still leave an unacknowledged message twice, see README.md).
- A message refused by a full local queue (BufferError) is retried, never dropped.
- SIGTERM/SIGINT stop sending, then wait up to --flush-timeout seconds for outstanding
  messages; a second signal aborts at once. Exit status 0 only if every message was
  acknowledged; 3 if the client was left with no broker (kafka_app/client_health.py).

Examples: ``--interval 0 --quiet`` sends as fast as possible, a progress line every 5 s;
``--count 100`` stops after 100 acknowledged messages.
"""

import argparse
import functools
import logging
import sys
import time
from collections.abc import Callable, Mapping

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from kafka_app import flags, lifecycle, metrics, probes, settings
from kafka_app.client_health import ClientHealth
from kafka_app.flags import env_option, non_negative_float, positive_float, positive_int
from kafka_app.latency import LatencyHistogram
from kafka_app.lifecycle import counted
from kafka_app.topic_check import require_topic
from message_model import MessageModel, new_message_id

# With idempotence librdkafka retries a message without limit until this timeout, so it is
# the longest a message may wait for a leader: seconds for a broker restart or an election, a
# minute or two for a full cluster restart. Longer would only hide a dead cluster.
MESSAGE_TIMEOUT_MS = 300_000
LINGER_MS = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = flags.common_parser(__doc__, "producer")
    flags.probe_options(parser)
    every = settings.DEFAULT_PRODUCER_INTERVAL_SECONDS
    pace = "seconds between two messages, 0 = as fast as possible"
    env_option(parser, "--interval", "PRODUCER_INTERVAL_SECONDS", every, non_negative_float, pace)
    add = parser.add_argument
    add("--count", type=positive_int, help="stop after COUNT acknowledged messages")
    add("--quiet", action="store_true", help="a progress line every --progress-interval s instead")
    add("--progress-interval", type=positive_float, default=5.0, help="(default: 5)")
    drain = "on shutdown, seconds to wait for outstanding deliveries (default: 30)"
    add("--flush-timeout", type=non_negative_float, default=30.0, help=drain)
    add("--delivered-log", metavar="PATH", help="append '<partition> <offset> <id>' per ack")
    return parser.parse_args(argv)


class DeliveryTracker:
    """The delivery-report callback, called once per message inside poll() or flush(), and the
    counts the exit status is based on."""

    def __init__(self, quiet: bool, delivered_log: lifecycle.RecordLog, timed: bool = False):
        self.quiet, self.delivered_log = quiet, delivered_log
        self.sent = self.delivered = self.failed = 0  # each message sent gets one report
        self.latency = LatencyHistogram() if timed else None  # only with metrics: it costs

    @property
    def outstanding(self) -> int:
        """Sent, and no report yet: queued, in flight, or its report not served yet."""
        return self.sent - self.delivered - self.failed

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1
            key, where = msg.key().decode(), f"{msg.topic()} [{msg.partition()}]"
            logging.error("Message delivery failed (key %s) to %s: %s", key, where, err.str())
            return
        self.delivered += 1
        if self.latency is not None:
            self.latency.observe(msg.latency())  # seconds from produce() to the ack
        if self.quiet and not self.delivered_log.enabled:
            return  # full speed: nothing to log, so read nothing from the message
        # None when a retry was answered DUPLICATE_SEQUENCE_NUMBER: the broker had written the
        # message already (its first answer was lost), and it is in the partition once.
        offset = msg.offset()
        self.delivered_log.write(msg.partition(), offset, msg.key().decode())
        if not self.quiet:
            at = "? (a retry of a message already written)" if offset is None else offset
            logging.info("Message delivered to %s [%d] @ %s", msg.topic(), msg.partition(), at)


def producer_config(
    bootstrap_servers: str,
    properties: Mapping[str, str] | None,
    interval: float,
    tracker: DeliveryTracker,
    health: ClientHealth,
    client_id: str = "producer",
) -> dict:
    tunables = {
        "client.id": client_id,
        # At full speed, wait up to 5 ms to fill a request with more messages. With a pause
        # between messages there is nothing to batch: lingering would only add latency.
        "linger.ms": LINGER_MS if interval * 1000 < LINGER_MS else 0,
        # The cheapest codec; it shrinks the JSON field names repeated in a batch.
        "compression.type": "lz4",
        "message.timeout.ms": MESSAGE_TIMEOUT_MS,
        **health.callbacks(),
        "on_delivery": tracker,
    }
    # Idempotence implies acks=all, max.in.flight <= 5 and retries until message.timeout.ms;
    # a properties file that sets a conflicting value fails when the Producer is created.
    guarantees = {"enable.idempotence": True}
    return settings.client_config(bootstrap_servers, properties, tunables, guarantees)


def produce(producer: Producer, topic: str, content: str, give_up: Callable[[], bool]) -> bool:
    """Queue a message; while the local queue is full, serve delivery reports and try again.
    Returns False, not queued, once ``give_up()``: a shutdown must not wait for a full queue."""
    message = MessageModel(message_id=new_message_id(), content=content)
    payload = message.serialize()
    key = message.message_id.encode()
    while True:
        try:
            producer.produce(topic, payload, key)  # value, key: positional is cheaper
            return True
        except BufferError:  # not queued: brokers slow or down
            if give_up():
                return False
            producer.poll(0.1)  # let librdkafka deliver some, then retry the same message


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lifecycle.setup_logging(args.log_level, args.log_format)
    health = ClientHealth()
    delivered_log = lifecycle.RecordLog(args.delivered_log)
    tracker = DeliveryTracker(args.quiet, delivered_log, timed=args.metrics_port is not None)
    heartbeat = probes.Heartbeat()  # liveness: the loop below turns

    def unacknowledged() -> str:  # said if a second signal ends the process
        return f"{counted(tracker.outstanding, 'message')} not acknowledged."

    stop = lifecycle.stop_on_signals(unacknowledged)
    measure = functools.partial(metrics.producer_metrics, tracker)
    probes.start(args, health, heartbeat, "producer", measure)
    with settings.exit_on_config_error():
        bootstrap, properties = settings.connection(args.bootstrap_servers, args.client_properties)
        config = producer_config(
            bootstrap, properties, args.interval, tracker, health, args.client_id
        )
        producer = Producer(config)
    pace = f"one message every {args.interval:g} s" if args.interval else "as fast as possible"
    until = f", stopping after {counted(args.count, 'acknowledged message')}" if args.count else ""
    logging.info(
        f"Producing to {args.topic} at {bootstrap} as {args.client_id} (idempotent, acks=all),"
        f" {pace}{until}"
    )
    require_topic(producer, args.topic)

    def give_up() -> bool:
        heartbeat.beat()
        return stop.is_set() or health.broken

    kafka_error = None  # a KafkaException that stopped us (fatal, or say an unknown topic)
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
            text = f"Test message {tracker.sent + 1} from {args.client_id}"
            if not produce(producer, args.topic, text, give_up):
                break  # told to stop while the queue was full: that one was not sent
            tracker.sent += 1
            if args.interval > 0:
                wait_serving_reports(producer, args.interval, give_up)
            else:
                producer.poll(0)  # serve delivery reports without waiting
            if args.quiet and time.monotonic() >= next_progress:
                log_progress(tracker, started)
                next_progress += args.progress_interval
    except KafkaException as exc:
        kafka_error = exc.args[0]
        logging.error("Stopped sending because of a Kafka error: %s", exc)

    fatal = health.fatal_error or (kafka_error if kafka_error and kafka_error.fatal() else None)
    if fatal is None and not health.stranded:  # else the producer can deliver nothing more
        why = "shutdown requested" if stop.is_set() else "error" if kafka_error else "done"
        left = counted(tracker.outstanding, "outstanding message")
        logging.info(
            f"Stopping ({why}): waiting up to {args.flush_timeout:.0f} s for {left};"
            " a second Ctrl-C aborts at once"
        )
        try:
            producer.flush(args.flush_timeout)
        except KafkaException as exc:
            fatal = kafka_error = exc.args[0]
            logging.error("Flush stopped by a Kafka error: %s", exc)
    delivered_log.close()
    if args.quiet:
        log_progress(tracker, started)
    lost = tracker.outstanding + tracker.failed  # outstanding now: never acknowledged
    logging.log(
        logging.ERROR if lost else logging.INFO,
        f"Sent {tracker.sent}, delivered {tracker.delivered}, failed {tracker.failed},"
        f" not delivered (still queued) {tracker.outstanding}",
    )
    if fatal is not None:
        logging.error("Exiting after a fatal Kafka error: %s", fatal)
    if health.stranded:
        return lifecycle.EXIT_CLIENT_STUCK  # a restart reconnects (restart: unless-stopped)
    return lifecycle.EXIT_FAILED if lost or kafka_error or fatal else lifecycle.EXIT_OK


def wait_serving_reports(producer: Producer, seconds: float, give_up: Callable[[], bool]) -> None:
    """Sleep for ``seconds``, serving delivery reports; wake up early on shutdown."""
    deadline = time.monotonic() + seconds
    while not give_up() and (remaining := deadline - time.monotonic()) > 0:
        producer.poll(min(remaining, 0.5))  # returns early when a report was served


def log_progress(tracker: DeliveryTracker, started: float) -> None:
    rate = tracker.delivered / max(time.monotonic() - started, 1e-9)
    logging.info(
        f"Progress: {tracker.delivered} delivered ({rate:.0f} msg/s), {tracker.failed} failed,"
        f" {tracker.outstanding} in flight"
    )


if __name__ == "__main__":
    sys.exit(main())

"""Idempotent Kafka producer: sends a MessageModel every PRODUCER_INTERVAL_SECONDS.

Each message is ``MessageModel(<uuid4>, "Test message <n> from <client id>")``, keyed by its
id, so the partitioner spreads messages over the partitions. Every send ends in a delivery report:
``Message delivered to final-1-topic [2] @ 17`` or an ERROR with the reason.

- No duplicates and no reordering from retries (``enable.idempotence``, so acks=all; a
  whole-cluster outage can still leave an unacknowledged message twice, see README.md).
- A message refused by a full local queue (BufferError) is retried, never dropped.
- SIGTERM/SIGINT stop sending, then wait up to --flush-timeout seconds for outstanding
  messages; a second signal aborts at once. Exit status 0 only if every message was
  acknowledged; 2 if a secured cluster refused it; 3 if it was left with no broker.

Examples: ``--interval 0 --quiet`` sends as fast as possible, a progress line every 5 s;
``--count 100`` stops after 100 acknowledged messages.
"""

import argparse
import functools
import logging
import sys
import time

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from kafka_app import flags, lifecycle, metrics, probes, settings
from kafka_app.client_health import ClientHealth
from kafka_app.flags import env_option, non_negative_float, positive_float, positive_int
from kafka_app.latency import LatencyHistogram
from kafka_app.lifecycle import counted
from kafka_app.refusals import refusal
from kafka_app.topic_check import require_topic
from message_model import MessageModel, new_message_id


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
    """The delivery report (once per message, inside poll() or flush()), and its counts."""

    def __init__(self, quiet: bool, delivered_log: lifecycle.RecordLog, timed: bool = False):
        self.quiet, self.delivered_log = quiet, delivered_log
        self.sent = self.delivered = self.failed = 0  # each message sent gets one report
        self.latency = LatencyHistogram() if timed else None  # only with metrics: it costs
        self.started = time.monotonic()  # the progress lines' rate counts from here

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


class Sending:
    """The producer's run: its client, the delivery counts, and whether to go on."""

    def __init__(self, producer: Producer, tracker: DeliveryTracker, health, stop, heartbeat):
        self.producer, self.tracker, self.health = producer, tracker, health
        self.stop, self.heartbeat = stop, heartbeat  # heartbeat: liveness, the loop turns

    def stopping(self) -> bool:
        return self.stop.is_set() or self.health.broken

    def produce(self, topic: str, content: str) -> bool:
        """Queue a message, serving delivery reports while the local queue is full; False, not
        queued, once stopping: a shutdown must not wait for a full queue."""
        message = MessageModel(message_id=new_message_id(), content=content)
        payload, key = message.serialize(), message.message_id.encode()
        while True:
            try:
                self.producer.produce(topic, payload, key)  # value, key: positional is cheaper
                return True
            except BufferError:  # not queued: brokers slow or down
                if self.stopping():
                    return False
                self.heartbeat.beat()
                self.producer.poll(0.1)  # let librdkafka deliver some, then retry the same

    def enough(self, count: int | None) -> bool:
        """True once --count messages are acknowledged; waits while enough are in flight."""
        tracker = self.tracker
        while count is not None and tracker.sent - tracker.failed >= count:
            if tracker.delivered >= count or self.stopping():
                return tracker.delivered >= count
            self.heartbeat.beat()
            self.producer.poll(0.1)
        return False

    def wait(self, seconds: float) -> None:
        """Serve delivery reports for ``seconds``; wake up early on shutdown."""
        deadline = time.monotonic() + seconds
        while not self.stopping() and (remaining := deadline - time.monotonic()) > 0:
            self.heartbeat.beat()
            self.producer.poll(min(remaining, 0.5))  # returns early when a report was served


def open_producer(args: argparse.Namespace) -> Sending:
    """Signals, the probes, and the producer the flags describe; a bad setting exits 2."""
    health = ClientHealth()
    log = lifecycle.RecordLog(args.delivered_log)
    tracker = DeliveryTracker(args.quiet, log, timed=args.metrics_port is not None)
    heartbeat = lifecycle.Heartbeat()
    stop = lifecycle.stop_on_signals(
        lambda: f"{counted(tracker.outstanding, 'message')} not acknowledged."
    )
    measure = functools.partial(metrics.producer_metrics, tracker)
    probes.start(args, health, heartbeat, "producer", metrics.collectors(health, measure))
    with settings.exit_on_config_error():
        bootstrap, properties = settings.connection(args.bootstrap_servers, args.client_properties)
        health.principal = properties.get("sasl.username")
        extra = {"client.id": args.client_id, **health.callbacks(), "on_delivery": tracker}
        producer = Producer(settings.producer_config(bootstrap, properties, args.interval, extra))
    pace = f"one message every {args.interval:g} s" if args.interval else "as fast as possible"
    until = f", stopping after {counted(args.count, 'acknowledged message')}" if args.count else ""
    who = f"{args.client_id} (idempotent, acks=all)"
    logging.info(f"Producing to {args.topic} at {bootstrap} as {who}, {pace}{until}")
    require_topic(producer, args.topic)
    return Sending(producer, tracker, health, stop, heartbeat)


def send_until_stopped(sending: Sending, args: argparse.Namespace) -> KafkaError | None:
    """Send a message every --interval until a stop, --count, or a Kafka error (returned)."""
    tracker, producer = sending.tracker, sending.producer
    tracker.started = time.monotonic()
    next_progress = tracker.started + args.progress_interval
    try:
        while not sending.stopping() and not sending.enough(args.count):
            sending.heartbeat.beat()
            text = f"Test message {tracker.sent + 1} from {args.client_id}"
            if not sending.produce(args.topic, text):
                break  # told to stop while the queue was full: that one was not sent
            tracker.sent += 1
            if args.interval > 0:
                sending.wait(args.interval)
            else:
                producer.poll(0)  # serve delivery reports without waiting
            if args.quiet and time.monotonic() >= next_progress:
                log_progress(tracker)
                next_progress += args.progress_interval
    except KafkaException as exc:  # say, not allowed to write: said in words
        refused = refusal(exc.args[0], sending.health.principal, topic=args.topic)
        logging.error(refused or f"Stopped sending because of a Kafka error: {exc}")
        return exc.args[0]
    return None


def finish(sending: Sending, args: argparse.Namespace, error: KafkaError | None):
    """Flush, unless the client can deliver nothing more; the Kafka error that stopped it."""
    health = sending.health
    fatal = health.fatal_error or (error if error is not None and error.fatal() else None)
    if fatal is None and not health.stranded and health.refused is None:
        fatal = flush(sending, args.flush_timeout, error)
    sending.tracker.delivered_log.close()
    log_counts(sending.tracker, args.quiet)
    if fatal is not None:  # say, not allowed to start an idempotent producer: in words
        refused = refusal(fatal, health.principal, topic=args.topic)
        logging.error(refused or f"Exiting after a fatal Kafka error: {fatal}")
    return error or fatal


def flush(sending: Sending, timeout: float, error: KafkaError | None) -> KafkaError | None:
    """Wait up to ``timeout`` seconds for what is outstanding; the error that stopped it."""
    why = "shutdown requested" if sending.stop.is_set() else "error" if error else "done"
    left = counted(sending.tracker.outstanding, "outstanding message")
    wait = f"waiting up to {timeout:.0f} s for {left}; a second Ctrl-C aborts at once"
    logging.info(f"Stopping ({why}): {wait}")
    try:
        sending.producer.flush(timeout)
    except KafkaException as exc:
        logging.error("Flush stopped by a Kafka error: %s", exc)
        return exc.args[0]
    return None


def exit_status(
    not_acknowledged: int, stranded: bool, error: KafkaError | None, refused: bool = False
) -> int:
    """0 only if every message sent was acknowledged and no Kafka error stopped the producer;
    3 if the client was left with no broker (restart: unless-stopped reconnects it); 2 if a
    secured cluster refused its login or certificate (kafka_app/refusals); else 1."""
    if stranded:
        return lifecycle.EXIT_CLIENT_STUCK
    if refused:
        return lifecycle.EXIT_USAGE
    return lifecycle.EXIT_FAILED if not_acknowledged or error is not None else lifecycle.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lifecycle.setup_logging(args.log_level, args.log_format)
    sending = open_producer(args)
    error = finish(sending, args, send_until_stopped(sending, args))
    tracker, health = sending.tracker, sending.health
    unacknowledged = tracker.outstanding + tracker.failed  # outstanding now: never acknowledged
    return exit_status(unacknowledged, health.stranded, error, health.refused is not None)


def log_progress(tracker: DeliveryTracker) -> None:
    rate = tracker.delivered / max(time.monotonic() - tracker.started, 1e-9)
    logging.info(
        f"Progress: {tracker.delivered} delivered ({rate:.0f} msg/s), {tracker.failed} failed,"
        f" {tracker.outstanding} in flight"
    )


def log_counts(tracker: DeliveryTracker, quiet: bool) -> None:
    if quiet:
        log_progress(tracker)
    lost = tracker.outstanding + tracker.failed
    logging.log(
        logging.ERROR if lost else logging.INFO,
        f"Sent {tracker.sent}, delivered {tracker.delivered}, failed {tracker.failed},"
        f" not delivered (still queued) {tracker.outstanding}",
    )


if __name__ == "__main__":
    sys.exit(main())

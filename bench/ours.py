"""Bench worker for OUR code paths: the real app code, driven as the scripts drive it.

``python -m bench.ours CASE --bootstrap B --topic T --messages N [--group G]``

- producer: ``producer.main()`` itself with ``--interval 0 --quiet --count N`` (fast mode): the
  real loop of MessageModel encode, produce() with its BufferError retry, poll(0) and the
  delivery-report callback, then the final flush. Timed from the first ``produce()`` call (as
  the peers and ProducerPerformance start their clocks at the first send) to main's return.
- batch / single: ``batch_message_consumer.main()`` / ``single_message_consumer.main()``
  themselves, ``--max-messages N --log-level WARNING`` (batches of 10, one synchronous commit
  per batch / per message). The only change: kafka_app.settings' ``Consumer`` is a subclass that
  notes the time of the first partition assignment and of ``close()``; the hot methods
  (consume, poll, commit) are untouched. Timed from assignment to close (the last commit is
  done by then), like VerifiableConsumer's events from partitions_assigned to the last commit.
- plain: the app's consumer config and record decoding (``attempts.decode``) in a
  ``consume(num_messages=500)`` loop without commits, the ceiling of the consumers above.
- latency: N ping-pong probes. Each is made and sent by producer.py's ``produce()`` with the
  demo's producer config (interval 1.5 s) and received by a running ``consume_messages`` loop
  (the single consumer's real poll -> process -> commit loop, in a thread); latency is from
  just before ``produce()`` to the call of the processing function. The next probe leaves once
  the previous one is delivered, processed and committed, as at the demo's pace.

With ``--metrics PORT_FILE`` (producer, batch, single), main() also gets ``--metrics-port 0
--metrics-address 127.0.0.1``, exactly as a user turns metrics on: the producer then times each
delivery, and the endpoint serves from its thread. Only kafka_app.probes.serve is wrapped, to
write the port it bound into PORT_FILE, where bench.run's scraper finds it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import (
    PLAIN_POLL,
    Stopwatch,
    emit,
    latency_summary,
    profiled,
    rate,
    timed_rate,
    worker_parser,
)

ASSIGN_TIMEOUT = 60.0
PROBE_TIMEOUT = 30.0


def timed_consumer_class(watch: Stopwatch) -> type[Consumer]:
    """A Consumer that marks the first assignment and close(); nothing else is overridden."""

    class TimedConsumer(Consumer):
        def subscribe(self, topics, on_assign=None, **callbacks):  # type: ignore[override]
            def assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
                watch.mark_start()
                if on_assign is not None:
                    on_assign(consumer, partitions)

            return super().subscribe(topics, on_assign=assigned, **callbacks)

        def close(self, *args, **kwargs):  # type: ignore[override]
            watch.mark_end()
            return super().close(*args, **kwargs)

    return TimedConsumer


def metrics_flags(port_file: str | None) -> list[str]:
    """The flags that turn the endpoint on (none without ``port_file``); once main() has bound
    it, its port is written to ``port_file`` (whole, by a rename: the scraper polls for it)."""
    if port_file is None:
        return []
    from kafka_app import probes

    real_serve = probes.serve

    def serve(*args, **kwargs) -> int:  # probes.start calls it once, before the client exists
        port = real_serve(*args, **kwargs)
        partial = Path(f"{port_file}.partial")
        partial.write_text(f"{port}\n")
        os.replace(partial, port_file)
        return port

    probes.serve = serve
    return ["--metrics-port", "0", "--metrics-address", "127.0.0.1"]


def run_producer(args) -> dict:
    import producer

    argv = [
        "--bootstrap-servers", args.bootstrap, "--topic", args.topic,
        "--interval", "0", "--quiet", "--count", str(args.messages),
        "--progress-interval", "86400", "--client-id", "bench",
        *metrics_flags(args.metrics),
    ]  # fmt: skip
    watch = Stopwatch()
    real_produce = producer.Sending.produce

    def first_produce(*args_, **kwargs):  # marks the start, then steps out of the way
        watch.mark_start()
        producer.Sending.produce = real_produce
        return real_produce(*args_, **kwargs)

    producer.Sending.produce = first_produce
    with profiled(args.profile):
        status = producer.main(argv)
        watch.mark_end()
    if status != 0:
        raise SystemExit(f"producer.main() exited with {status}")
    return timed_rate(args.messages, watch)


def run_consumer_script(module_name: str, args, *extra: str) -> dict:
    from kafka_app import consumer_start

    module = __import__(module_name)
    watch = Stopwatch()
    consumer_start.Consumer = timed_consumer_class(watch)  # the class start() builds
    argv = [
        "--bootstrap-servers", args.bootstrap, "--topic", args.topic,
        "--group-id", args.group, "--max-messages", str(args.messages),
        "--log-level", "WARNING", *extra, *metrics_flags(args.metrics),
    ]  # fmt: skip
    with profiled(args.profile):
        status = module.main(argv)
    if status != 0:
        raise SystemExit(f"{module_name}.main() exited with {status}")
    return timed_rate(args.messages, watch)


def run_plain(args) -> dict:
    from kafka_app.attempts import decode
    from kafka_app.client_health import ClientHealth
    from kafka_app.polling import log_consumer_error
    from kafka_app.settings import consumer_config

    watch = Stopwatch()
    health = ClientHealth()
    consumer = timed_consumer_class(watch)(
        consumer_config(args.bootstrap, args.group, None, health.callbacks())
    )
    consumer.subscribe([args.topic])
    count = 0
    with profiled(args.profile):
        while count < args.messages:
            for msg in consumer.consume(num_messages=PLAIN_POLL, timeout=0.5):
                if msg.error():
                    log_consumer_error(msg)
                    continue
                decode(msg)
                count += 1
        consumer.close()
    return rate(count, watch.seconds)


def run_latency(args) -> dict:
    import producer
    import single_message_consumer
    from kafka_app.attempts import Failures
    from kafka_app.client_health import ClientHealth
    from kafka_app.dead_letters import DeadLetters, dead_letter_producer_config
    from kafka_app.group_member import GroupMember
    from kafka_app.lifecycle import Heartbeat, RecordLog
    from kafka_app.settings import (
        DEFAULT_PRODUCER_INTERVAL_SECONDS,
        consumer_config,
        producer_config,
    )

    health = ClientHealth()
    # The demo's producer config: producer.py as `docker compose up` runs it.
    tracker = producer.DeliveryTracker(True, RecordLog(None))
    kafka_producer = producer.Producer(
        producer_config(
            args.bootstrap,
            None,
            DEFAULT_PRODUCER_INTERVAL_SECONDS,
            {"client.id": "producer", **health.callbacks(), "on_delivery": tracker},
        )
    )

    sending = producer.Sending(kafka_producer, tracker, health, threading.Event(), Heartbeat())
    received: dict[int, float] = {}

    def handle(message) -> None:  # the processing function the loop calls
        received[int(message.content.split()[2])] = time.perf_counter()

    assigned = threading.Event()

    class AssignWatch(Consumer):
        def subscribe(self, topics, on_assign=None, **callbacks):  # type: ignore[override]
            def on_assigned(consumer, partitions):
                if on_assign is not None:
                    on_assign(consumer, partitions)
                assigned.set()

            return super().subscribe(topics, on_assign=on_assigned, **callbacks)

    consumer = AssignWatch(consumer_config(args.bootstrap, args.group, None, health.callbacks()))
    stop = threading.Event()
    loop = GroupMember(consumer, stop, health)  # loop.processed: processed and committed
    dead_letters = DeadLetters(
        f"{args.topic}.dlq", args.group, dead_letter_producer_config(args.bootstrap, None, {})
    )
    thread = threading.Thread(
        target=single_message_consumer.consume_messages,
        args=(loop, args.topic, handle, dead_letters, Failures(5)),
        name="single-consumer",
        daemon=True,
    )
    thread.start()
    try:
        if not assigned.wait(ASSIGN_TIMEOUT):
            raise SystemExit("the consumer got no partitions")
        warm_up_consumer(args.bootstrap, args.topic, received)
        deadline = time.monotonic() + ASSIGN_TIMEOUT
        while loop.processed < 1:  # ... and committed
            if time.monotonic() > deadline:
                raise SystemExit("the warm-up message was never committed")
            time.sleep(0.001)
        warmed = loop.processed
        latencies = []
        with profiled(args.profile):
            for n in range(1, args.messages + 1):
                sent_at = time.perf_counter()
                sending.produce(args.topic, f"Test message {n} from bench")
                deadline = sent_at + PROBE_TIMEOUT
                # Serve delivery reports while waiting, as producer.py does between messages.
                while n not in received or tracker.delivered < n or loop.processed < warmed + n:
                    if time.perf_counter() > deadline:
                        raise SystemExit(f"probe {n} not delivered/processed in {PROBE_TIMEOUT}s")
                    kafka_producer.poll(0.0005 if n in received else 0.001)
                latencies.append(received[n] - sent_at)
    finally:
        stop.set()
        thread.join(30)
        kafka_producer.flush(10)
    if tracker.failed or health.fatal_error:
        raise SystemExit("a probe failed")
    return latency_summary(latencies)


def warm_up_consumer(bootstrap: str, topic: str, received: dict[int, float]) -> None:
    """Have the consumer fetch once (as EndToEndLatency positions its consumer before the first
    probe), with a throwaway producer: the measured producer starts cold, like the Java one."""
    from message_model import MessageModel

    warm = Producer({"bootstrap.servers": bootstrap})
    warm.produce(topic, MessageModel("warm-up", "Test message 0").serialize())
    warm.flush(30)
    deadline = time.monotonic() + ASSIGN_TIMEOUT
    while 0 not in received:
        if time.monotonic() > deadline:
            raise SystemExit("the warm-up message never arrived")
        time.sleep(0.005)


def main() -> int:
    parser = worker_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    if args.metrics and args.case not in ("producer", "batch", "single"):
        parser.error("--metrics: only producer, batch and single run a script's main()")
    if args.case in ("plain", "latency"):  # the scripts' main() set up logging themselves
        logging.basicConfig(level=logging.WARNING)
    if args.case == "producer":
        result = run_producer(args)
    elif args.case == "batch":
        result = run_consumer_script("batch_message_consumer", args, "--batch-size", "10")
    elif args.case == "single":
        result = run_consumer_script("single_message_consumer", args)
    elif args.case == "plain":
        result = run_plain(args)
    else:
        result = run_latency(args)
    emit(**result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

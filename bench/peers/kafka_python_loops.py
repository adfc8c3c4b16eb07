"""Bench worker: the app's loops written with kafka-python (pure Python client).

``python -m bench.peers.kafka_python_loops CASE --bootstrap B --topic T --messages N``
"""

from __future__ import annotations

import logging
import sys
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from bench.common import (
    BATCH_SIZE,
    LINGER_MS,
    PLAIN_POLL,
    Stopwatch,
    emit,
    profiled,
    rate,
    worker_parser,
)
from bench.peers import first_assignment_listener, make_message
from message_model import MessageModel


def run_producer(args) -> dict:
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap.split(","),
        acks="all",
        enable_idempotence=True,
        linger_ms=LINGER_MS,
        compression_type="lz4",
    )
    counts = {"delivered": 0, "failed": 0}

    def delivered(_metadata) -> None:
        counts["delivered"] += 1

    def failed(_exc) -> None:
        counts["failed"] += 1

    with profiled(args.profile):
        started = time.perf_counter()
        for n in range(1, args.messages + 1):
            key, value = make_message(n)
            future = producer.send(args.topic, value=value, key=key)
            future.add_callback(delivered).add_errback(failed)
        producer.flush()
        seconds = time.perf_counter() - started
    producer.close()
    if counts["delivered"] != args.messages:
        raise SystemExit(f"kafka-python delivered {counts}")
    return rate(args.messages, seconds)


def run_consumer(args, max_records: int, commit: bool) -> dict:
    """poll(max_records) -> decode each record -> one synchronous commit per poll (if commit)."""
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap.split(","),
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
    )
    watch = Stopwatch()
    consumer.subscribe(
        [args.topic], listener=first_assignment_listener(ConsumerRebalanceListener, watch)
    )
    count = 0
    with profiled(args.profile):
        while count < args.messages:
            records = consumer.poll(timeout_ms=500, max_records=max_records)
            if not records:
                continue
            offsets = {}
            for tp, batch in records.items():
                for record in batch:
                    MessageModel.deserialize(record.value)
                count += len(batch)
                offsets[tp] = OffsetAndMetadata(batch[-1].offset + 1, "", -1)
            if commit:
                consumer.commit(offsets)
        watch.mark_end()
    consumer.close()
    return rate(count, watch.seconds)


def main() -> int:
    args = worker_parser(__doc__.splitlines()[0]).parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.case == "producer":
        result = run_producer(args)
    elif args.case == "batch":
        result = run_consumer(args, BATCH_SIZE, commit=True)
    elif args.case == "single":
        result = run_consumer(args, 1, commit=True)
    elif args.case == "plain":
        result = run_consumer(args, PLAIN_POLL, commit=False)
    else:
        raise SystemExit("no latency loop for kafka-python")
    emit(**result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

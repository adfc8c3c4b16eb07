"""A deliberately wrong consumer, for the checker's control: it commits each record BEFORE it
processes it (what auto-commit amounts to). Killed between the two, it never processes that
record, and nothing will redeliver it. Arguments: bootstrap, topic, group, processed-log path.
It logs as --processed-log does: ``<partition> <offset> <message id>``."""

import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, group, log = sys.argv[1:5]
consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,  # a killed one's partitions move on in 6 s, not 45
    }
)
consumer.subscribe([topic])
with open(log, "a", encoding="utf-8") as processed:
    while True:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        consumer.commit(message=msg, asynchronous=False)  # the mistake: before processing
        time.sleep(0.05)  # the processing
        processed.write(f"{msg.partition()} {msg.offset()} {msg.key().decode()}\n")
        processed.flush()

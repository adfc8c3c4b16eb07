"""The workload every Jepsen-class scenario runs under its fault: producers that log each
acknowledgement, consumer groups that log each record they process, then the checker over
those ledgers and an independent read of the topic (support.checker)."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from support.checker import Anomalies, check
from support.figures import Figures, longest_gap
from support.processes import App, Apps
from support.records import TopicContent, read_records
from support.tail import Tail, partition_of
from support.waits import wait_until

PACE = 0.01  # seconds between a producer's messages: ~100 msg/s each, thousands a scenario
KINDS = {"batch": "batch_message_consumer.py", "single": "single_message_consumer.py"}
# What makes a consumer go back in a partition, legitimately: a rebalance or a retry.
GOING_BACK = re.compile(r"Partitions (revoked|lost)|Processing .* failed")


@dataclass
class Workload:
    apps: Apps
    topic: str
    tmp: Path
    tail: Tail
    producers: int = 1
    groups: dict[str, int] = field(default_factory=lambda: {"batch": 1, "single": 1})
    consumer_args: tuple = ()
    producer_args: tuple = ()
    producer_uid: int | None = None
    consumer_uid: int | None = None
    started: list[App] = field(default_factory=list)
    group_ids: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.senders: list[App] = []
        self.consumers: dict[str, list[App]] = {}
        self.begun = time.monotonic()

    def start(self, acks_first: int = 150) -> None:
        """Consumers first, then producers; returns once ``acks_first`` are acknowledged."""
        for kind, replicas in self.groups.items():
            self.group_ids[kind] = f"{kind}-{uuid.uuid4().hex[:8]}"
            self.consumers[kind] = [
                self.apps.consumer(
                    KINDS[kind],
                    f"{kind}-{n}",
                    self.topic,
                    self.group_ids[kind],
                    *(("--batch-window", 1) if kind == "batch" else ()),
                    *self.consumer_args,
                    uid=self.consumer_uid,
                )
                for n in range(1, replicas + 1)
            ]
            for consumer in self.consumers[kind]:  # when the group processed each partition
                processed = self.tmp / f"{consumer.name}.processed"
                self.tail.follow(processed, lambda line, kind=kind: f"{kind} {partition_of(line)}")
        for n in range(1, self.producers + 1):
            name = f"producer-{n}"
            acked = self.tmp / f"{name}.acked"
            self.tail.follow(acked, partition_of)
            self.senders.append(
                self.apps.start(
                    "producer.py", name, self.topic, "--interval", PACE, "--quiet",
                    "--delivered-log", acked, *self.producer_args, uid=self.producer_uid,
                )
            )  # fmt: skip
        self.begun = time.monotonic()
        wait_until(lambda: self.acked_count() >= acks_first, 60, "first acks", self.senders)

    def acked_count(self) -> int:
        return sum(len(read_records(self.tmp / f"{p.name}.acked")) for p in self.senders)

    def acked(self) -> list:
        return [r for p in self.senders for r in read_records(self.tmp / f"{p.name}.acked")]

    def processed(self, kind: str) -> dict[str, list]:
        return {
            c.name: read_records(self.tmp / f"{c.name}.processed") for c in self.consumers[kind]
        }

    def finish(
        self, scenario: str, drain_timeout: float = 120, expect_loss: bool = False, **extra
    ) -> tuple[Figures, dict]:
        """Stop the producers, read the topic, let every group process what is in it, stop the
        consumers, check. Returns the figures and each group's anomalies. ``expect_loss``: a
        control whose records may never all be processed; the wait then just ends."""
        stopped = time.monotonic()
        codes = {p.name: p.stop(120) for p in self.senders}
        acked = self.acked()
        # The topic no longer changes: what is in it is what each group must process. (An
        # acknowledged record that is not in it, lost, can never be: the checker names it.)
        topic = TopicContent.read(self.apps.bootstrap, self.topic)
        ids = {key for key in topic.keys.values() if key is not None}
        alive = [c for group in self.consumers.values() for c in group]

        def drained() -> bool:
            return all(
                ids <= {r[2] for records in self.processed(kind).values() for r in records}
                for kind in self.consumers
            )

        what = "every record in the topic processed"
        wait_until(drained, drain_timeout, what, alive, required=not expect_loss)
        for consumer in alive:
            consumer.stop(90)
        found: dict[str, Anomalies] = {}
        for kind in self.consumers:
            going_back = {c.name for c in self.consumers[kind] if GOING_BACK.search(c.log())}
            found[kind] = check(acked, self.processed(kind), topic, going_back)

        def gap(key: str) -> float:
            times = [t for f in self.tail.files for t in f.times(key)]
            return round(longest_gap(times, self.begun, stopped)[0], 1)

        partitions = {r[0] for r in acked}
        stall = max(gap(str(p)) for p in partitions)  # a partition without acknowledgements
        figures = Figures(
            scenario,
            acked=len(acked),
            in_topic=len(topic),
            processed=sum(len(r) for k in found for r in self.processed(k).values()),
            lost=len({line for a in found.values() for line in a.lost}),  # each group checks all
            duplicates=len({line for a in found.values() for line in a.duplicate}),
            longest_stall_s=stall,
            extra={
                **{
                    f"{k}_processing_stall_s": max(gap(f"{k} {p}") for p in partitions)
                    for k in found
                },
                **{f"{k}_redelivered": a.redelivered_total for k, a in found.items()},
                **{f"{k}_poll_skips": len(a.poll_skip) for k, a in found.items()},
                **{f"{k}_nonmonotonic": len(a.nonmonotonic) for k, a in found.items()},
                "producer_exits": "/".join(str(c) for c in codes.values()),
                **extra,
            },
        )
        return figures, found

"""The checker of the fault tests: Jepsen's anomalies, by name, over the ledgers a run keeps.

The ledgers: what the producers say was acknowledged (their --delivered-log), what each
consumer says it processed, in order (its --processed-log), and what an independent reader
found in the topic (:class:`support.records.TopicContent`, Kafka's own console consumer).

The anomalies, as Jepsen's Kafka and Redpanda analyses name them:

- lost: acknowledged, and not at its partition and offset in the topic, or never processed;
- duplicate: a message id in the topic more than once (idempotence should prevent it);
- unseen: in the topic, never acknowledged (its producer stopped before the ack came) and
  never processed: allowed, and counted;
- redelivered: processed more than once, by the same consumer (a rewind, or the same
  partition again after a restart or rebalance) or by another one (the partition moved);
- poll skip: a consumer's next offset in a partition jumped over records that no consumer
  of the group processed;
- nonmonotonic poll: a consumer went back in a partition although nothing explains it (no
  rebalance, restart or retry in its run).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .records import Record, TopicContent

EXAMPLES = 3


@dataclass
class Anomalies:
    lost: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)
    redelivered: dict[str, list[str]] = field(default_factory=dict)  # cause -> examples
    poll_skip: list[str] = field(default_factory=list)
    nonmonotonic: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = {
            name: len(getattr(self, name))
            for name in ("lost", "duplicate", "unseen", "poll_skip", "nonmonotonic")
        }
        for cause, found in sorted(self.redelivered.items()):
            counts[f"redelivered ({cause})"] = len(found)
        return counts

    @property
    def redelivered_total(self) -> int:
        return sum(len(found) for found in self.redelivered.values())

    def errors(self) -> dict[str, list[str]]:
        """The anomalies at-least-once forbids, with a few examples each: lost records, poll
        skips and unexplained nonmonotonic polls (duplicates in the topic are a producer's)."""
        forbidden = {
            "lost": self.lost,
            "duplicate": self.duplicate,
            "poll skip": self.poll_skip,
            "nonmonotonic poll": self.nonmonotonic,
        }
        return {name: found[:EXAMPLES] for name, found in forbidden.items() if found}

    def line(self) -> str:
        return ", ".join(f"{name} {count}" for name, count in self.counts().items())


def check(
    acked: Iterable[Record],
    processed: Mapping[str, list[Record]],
    topic: TopicContent,
    explained: Iterable[str] = (),
) -> Anomalies:
    """The anomalies of one run. ``processed``: each consumer's records in the order it
    processed them (poison records, id "-", are left out of the id checks); ``explained``: the
    consumers whose run had a rebalance, a restart or a retry, which make going back normal."""
    found = Anomalies()
    acked = list(acked)
    by_id: Counter[str] = Counter()
    who: dict[str, set[str]] = defaultdict(set)
    seen_at: set[tuple[int, int]] = set()
    for name, records in processed.items():
        for partition, offset, message_id in records:
            seen_at.add((partition, offset))
            if message_id != "-":
                by_id[message_id] += 1
                who[message_id].add(name)

    not_written = {r[2] for r in topic.missing(acked)}
    for partition, offset, message_id in acked:
        where = f"{message_id} ([{partition}] @ {offset})"
        if message_id in not_written:
            found.lost.append(f"{where}: acknowledged, not in the topic")
        elif by_id[message_id] == 0:
            found.lost.append(f"{where}: acknowledged, never processed")

    positions: dict[str | None, list[tuple[int, int]]] = defaultdict(list)
    for position, key in topic.keys.items():
        positions[key].append(position)
    acked_ids = {r[2] for r in acked}
    for key, where in positions.items():
        if key is not None and len(where) > 1:
            found.duplicate.append(f"{key} at {sorted(where)}")
        if key not in acked_ids and key not in by_id and not seen_at.intersection(where):
            found.unseen.append(f"{key} at {sorted(where)}")

    for message_id, times in by_id.items():
        if times > 1:
            cause = "by another consumer" if len(who[message_id]) > 1 else "by the same consumer"
            found.redelivered.setdefault(cause, []).append(f"{message_id} x{times}")

    explained = set(explained)
    for name, records in processed.items():
        last: dict[int, int] = {}
        for partition, offset, _ in records:
            before = last.get(partition)
            last[partition] = offset
            if before is None:
                continue
            if offset > before + 1:
                skipped = [
                    o
                    for o in range(before + 1, offset)
                    if (partition, o) in topic.keys and (partition, o) not in seen_at
                ]
                if skipped:
                    found.poll_skip.append(
                        f"{name}: [{partition}] {before} -> {offset}, skipping {skipped[:5]}"
                    )
            elif offset <= before and name not in explained:
                found.nonmonotonic.append(f"{name}: [{partition}] {before} -> {offset}")
    return found

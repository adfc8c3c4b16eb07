"""What librdkafka's statistics (a JSON document every statistics.interval.ms) say about a
client: the brokers it is connected to, and for a consumer its group and lag. The field
names are librdkafka's STATISTICS.md."""

from collections.abc import Iterator
from typing import Any

Stats = dict[str, Any]


def brokers_up(stats: Stats) -> int:
    """Brokers the client has a working connection to ("logical" ones, such as the group
    coordinator's alias, are not brokers of their own)."""
    brokers = stats.get("brokers", {}).values()
    return sum(b.get("state") == "UP" and b.get("source") != "logical" for b in brokers)


def group(stats: Stats) -> Stats:
    """The consumer group part: state, join_state, rebalance_cnt, assignment_size."""
    return stats.get("cgrp") or {}


def partition_lags(stats: Stats) -> Iterator[tuple[str, int, int]]:
    """(topic, partition, lag) for each partition this consumer fetches and has a committed
    offset for: the high watermark minus the committed offset, what Kafka's own
    kafka-consumer-groups.sh shows as LAG. librdkafka says -1 while either is unknown;
    partition -1 is its placeholder for messages not yet partitioned."""
    for topic, about in stats.get("topics", {}).items():
        for partition, p in about.get("partitions", {}).items():
            active = p.get("fetch_state") not in (None, "none", "stopped")
            if partition != "-1" and active and p.get("consumer_lag", -1) >= 0:
                yield topic, int(partition), p["consumer_lag"]

"""Prometheus metrics, built at scrape time from what the scripts count anyway (so the hot
loops pay nothing for them) and from librdkafka's statistics (brokers, group, lag).
README.md, "Observe it", lists them; kafka_app/probes.py serves them."""

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from kafka_app import client_stats, commits
from kafka_app.client_health import ClientHealth
from kafka_app.latency import LatencyHistogram

Metric = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


class Metrics(Collector):
    """A collector that calls ``collect`` on every scrape."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        yield from self._collect()


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)  # exposed as <name>_total


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def histogram(name: str, documentation: str, latency: LatencyHistogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=latency.cumulative(), sum_value=latency.sum
    )


def client_metrics(health: ClientHealth) -> Iterator[Metric]:
    """Every script's: its clients' connections, and whether one can still work."""
    connected = "Brokers the client is connected to"
    up = GaugeMetricFamily("kafka_client_brokers_up", connected, labels=["client_id"])
    for _, stats in list(health.latest_stats.values()):
        up.add_metric([stats.get("client_id", "")], client_stats.brokers_up(stats))
    yield up
    stranded = "1 once the client knows no broker any more and cannot recover (exit 3 follows)"
    yield gauge("kafka_client_stranded", stranded, health.stranded)
    fatal = health.fatal_error is not None
    yield gauge("kafka_client_fatal_error", "1 after a fatal Kafka error", fatal)


def collectors(health: ClientHealth, measure: Callable[[], Iterable[Metric]]) -> list[Metrics]:
    """What /metrics serves: every client's metrics, and ``measure()``, the script's own."""
    return [Metrics(lambda: client_metrics(health)), Metrics(measure)]


def producer_metrics(tracker: Any) -> Iterator[Metric]:
    """producer.py's DeliveryTracker counts: sent, delivered, failed, and the latencies."""
    yield counter("kafka_producer_messages_sent", "Messages handed to produce()", tracker.sent)
    yield counter("kafka_producer_messages_delivered", "Messages acknowledged", tracker.delivered)
    yield counter("kafka_producer_messages_failed", "Messages that failed delivery", tracker.failed)
    in_flight = "Messages sent, without a delivery report yet"
    yield gauge("kafka_producer_messages_in_flight", in_flight, tracker.outstanding)
    latency = "Seconds from produce() to the acknowledgement"
    yield histogram("kafka_producer_delivery_latency_seconds", latency, tracker.latency)


def consumer_metrics(member: Any, dead_letters: Any, health: ClientHealth) -> Iterator[Metric]:
    """A consumer's: records processed and dead-lettered, commits, and from librdkafka's
    statistics its rebalances, partitions and lag (refreshed every statistics interval)."""
    done = "Records processed (or dead-lettered), their offsets committed or being committed"
    yield counter("kafka_consumer_records_processed", done, member.processed)
    poison = "Poison records (not a MessageModel, or a tombstone) written to the dead letters"
    yield counter("kafka_consumer_records_poison", poison, dead_letters.poison)
    dead = "Records written to the dead-letter topic, acknowledged"
    yield counter("kafka_consumer_records_dead_lettered", dead, dead_letters.written)
    by_result = "Synchronous commits, by result"
    results = CounterMetricFamily("kafka_consumer_commits", by_result, labels=["result"])
    results.add_metric(["ok"], commits.STATS.ok)
    results.add_metric(["failed"], commits.STATS.failed)
    yield results
    took = "Seconds a synchronous commit took"
    yield histogram("kafka_consumer_commit_latency_seconds", took, commits.STATS.latency)
    report = health.stats_of("consumer")
    stats = report[1] if report else {}
    joined = client_stats.group(stats)
    rebalances = "Rebalances (assignments or revocations) this consumer took part in"
    yield counter("kafka_consumer_rebalances", rebalances, joined.get("rebalance_cnt", 0))
    owned = "Partitions assigned to this consumer"
    yield gauge("kafka_consumer_assigned_partitions", owned, joined.get("assignment_size", 0))
    behind = "Messages behind: high watermark minus committed offset, per assigned partition"
    lag = GaugeMetricFamily("kafka_consumer_lag", behind, labels=["topic", "partition"])
    for topic, partition, behind in client_stats.partition_lags(stats):
        lag.add_metric([topic, str(partition)], behind)
    yield lag

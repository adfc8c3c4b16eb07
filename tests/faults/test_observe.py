"""What the metrics endpoint (--metrics-port) tells is true: its counters equal the run's own
delivered and processed logs, its lag equals Kafka's own ConsumerGroupCommand, /readyz follows
the brokers, and /healthz catches a stuck commit or a loop that stopped turning.

The apps serve on loopback, on a port of the kernel's choosing that they log
(support/scrape.py); the scrapes are parsed by prometheus-client's own parser.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from kafka_app import commits, lifecycle, probes
from kafka_app.client_health import STATS_INTERVAL_MS, ClientHealth
from kafka_app.lifecycle import EXIT_USAGE
from support.figures import Figures
from support.processes import App, Apps, app_env, run_script
from support.produce import produce_raw
from support.records import read_records
from support.scrape import (
    METRICS_FLAGS,
    gauge_lag,
    group_command_lag,
    metrics_port,
    probe,
    scrape,
    value,
)
from support.waits import wait_until

STATS_INTERVAL = STATS_INTERVAL_MS / 1000
POISON = 3


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_ready(app: App, port: int, timeout: float = 60) -> float:
    return wait_until(lambda: probe(port, "/readyz")[0] == 200, timeout, f"{app.name} ready", [app])


@pytest.mark.faults
def test_counters_equal_the_delivered_and_processed_logs(
    kafka_cluster, fresh_topic: str, apps: Apps, tmp_path: Path, figures
) -> None:
    """Scraped while the run is quiet, every counter equals what the run's logs show."""
    kafka_cluster.create_topic(f"{fresh_topic}.dlq")
    poison = [(p % 3, b"poison", b"not a MessageModel", ()) for p in range(POISON)]
    produce_raw(kafka_cluster.bootstrap, fresh_topic, poison)
    producer = apps.start(
        "producer.py", "producer", fresh_topic, "--interval", 0.2,
        "--delivered-log", tmp_path / "producer.acked", *METRICS_FLAGS,
    )  # fmt: skip
    batch = apps.batch_consumer("batch", fresh_topic, unique("batch"), *METRICS_FLAGS)
    single = apps.single_consumer("single", fresh_topic, unique("single"), *METRICS_FLAGS)
    ports = {app.name: metrics_port(app) for app in (producer, batch, single)}

    acked = tmp_path / "producer.acked"
    wait_until(lambda: len(read_records(acked)) >= 60, 60, "60 acknowledged", [producer])
    # The producer sends every 0.2 s and is acknowledged in milliseconds: between the two
    # reads of its log, a scrape almost always sees no message in flight.
    seen: dict[str, float] = {}

    def producer_quiet() -> bool:
        before = len(read_records(acked))
        samples = scrape(ports["producer"])
        after = len(read_records(acked))
        seen.update(
            logged=after,
            sent=value(samples, "kafka_producer_messages_sent_total"),
            delivered=value(samples, "kafka_producer_messages_delivered_total"),
            failed=value(samples, "kafka_producer_messages_failed_total"),
            in_flight=value(samples, "kafka_producer_messages_in_flight"),
            timed=value(samples, "kafka_producer_delivery_latency_seconds_count"),
            slow=value(samples, "kafka_producer_delivery_latency_seconds_bucket", le="+Inf"),
        )
        return before == after == seen["delivered"] == seen["sent"]

    quiet = wait_until(producer_quiet, 10, "", [producer], required=False)
    assert quiet is not None, f"no scrape equal to the delivered log: {seen}"
    assert seen["failed"] == seen["in_flight"] == 0
    assert seen["timed"] == seen["slow"] == seen["delivered"]  # each delivery timed once
    assert producer.stop() == 0

    delivered = len(read_records(acked))
    expected = delivered + POISON
    processed = {name: tmp_path / f"{name}.processed" for name in ("batch", "single")}
    result: dict[str, dict[str, float]] = {}

    def consumer_done(name: str) -> bool:
        records = read_records(processed[name])
        samples = scrape(ports[name])
        result[name] = {
            "logged": len(records),
            "dead_in_log": sum(1 for *_, message_id in records if message_id == "-"),
            "processed": value(samples, "kafka_consumer_records_processed_total"),
            "poison": value(samples, "kafka_consumer_records_poison_total"),
            "dead_lettered": value(samples, "kafka_consumer_records_dead_lettered_total"),
            "commits_ok": value(samples, "kafka_consumer_commits_total", result="ok"),
            "commits_failed": value(samples, "kafka_consumer_commits_total", result="failed"),
            "commit_timings": value(samples, "kafka_consumer_commit_latency_seconds_count"),
            "assigned": value(samples, "kafka_consumer_assigned_partitions"),
            "lag": sum(gauge_lag(samples, fresh_topic).values()),
        }
        return result[name]["logged"] == result[name]["processed"] == expected

    for app in (batch, single):
        done = wait_until(lambda a=app: consumer_done(a.name), 60, "", [app], required=False)
        assert done is not None, f"{app.name}: the scrape never matched the log: {result}"
    for name, r in result.items():
        assert r["poison"] == r["dead_lettered"] == r["dead_in_log"] == POISON, (name, r)
        assert r["commits_ok"] >= 1 and r["commits_failed"] == 0, (name, r)
        assert r["commit_timings"] == r["commits_ok"] + r["commits_failed"], (name, r)
        assert r["assigned"] == 3, (name, r)
    # A single consumer commits each record: as many commits as records, dead letters included.
    assert result["single"]["commits_ok"] == expected
    figures.record(
        Figures(
            "metrics counters vs logs",
            sent=int(seen["sent"]),
            acked=delivered,
            processed=expected,
            extra={
                "batch_commits": int(result["batch"]["commits_ok"]),
                "single_commits": int(result["single"]["commits_ok"]),
                "poison": POISON,
            },
        )
    )


def commit_start(bootstrap: str, group: str, topic: str) -> None:
    """Commit offset 0 of each partition for ``group``: its lag is known from the start."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in range(3)], asynchronous=False)
    finally:
        consumer.close()


@pytest.mark.faults
def test_lag_gauge_equals_consumer_group_command_after_a_pause(
    kafka_cluster, fresh_topic: str, apps: Apps, figures
) -> None:
    """Producers write while the consumer is stopped (SIGSTOP); after SIGCONT its lag gauge shows
    ConsumerGroupCommand's LAG, partition by partition, within one statistics interval; then
    the lag drains to 0 on both.

    A batch consumer with a long batch window holds the lag still after SIGCONT: it collects
    for 25 s before it commits, calling consume() all along, which serves the statistics."""
    bootstrap, group, messages = kafka_cluster.bootstrap, unique("lag"), 300
    commit_start(bootstrap, group, fresh_topic)
    window = ("--batch-size", 5000, "--batch-window", 25)
    consumer = apps.batch_consumer("consumer", fresh_topic, group, *window, *METRICS_FLAGS)
    port = metrics_port(consumer)
    wait_ready(consumer, port)

    consumer.signal(signal.SIGSTOP)
    try:
        producer = apps.producer("producer", fresh_topic, "--count", messages)
        assert producer.wait(60) == 0
        paused = group_command_lag(bootstrap, group, fresh_topic)
    finally:
        consumer.signal(signal.SIGCONT)
    resumed = time.monotonic()
    assert sum(paused.values()) == messages, f"ConsumerGroupCommand while paused: {paused}"

    gauge: dict[int, int] = {}

    def gauge_shows_it() -> bool:
        gauge.update(gauge_lag(scrape(port), fresh_topic))
        return gauge == paused

    took = wait_until(gauge_shows_it, 30, f"the gauge {gauge} to show {paused}", [consumer])
    after = group_command_lag(bootstrap, group, fresh_topic)  # the batch is still collecting
    assert after == paused == gauge_lag(scrape(port), fresh_topic)
    # One statistics interval, and the consumer's poll of at most 0.5 s that serves them.
    assert took <= STATS_INTERVAL + 1.0, f"the gauge showed the lag {took:.1f} s after SIGCONT"

    zero = dict.fromkeys(paused, 0)
    drained = wait_until(
        lambda: gauge_lag(scrape(port), fresh_topic) == zero, 60, "lag 0", [consumer]
    )
    assert group_command_lag(bootstrap, group, fresh_topic) == zero
    figures.record(
        Figures(
            "lag gauge vs ConsumerGroupCommand",
            acked=messages,
            extra={
                "lag_while_paused": "/".join(str(paused[p]) for p in sorted(paused)),
                "gauge_equal_after_resume_s": round(took, 1),
                "drained_to_0_after_resume_s": round(time.monotonic() - resumed, 1),
                "stats_interval_s": STATS_INTERVAL,
            },
        )
    )
    assert drained is not None


@pytest.mark.faults
def test_readiness_follows_the_brokers(kafka_cluster, fresh_topic: str, apps: Apps, figures):
    """All brokers down: /readyz answers 503 within a statistics interval, /healthz stays 200
    (a restart would not help); brokers back: 200 again."""
    producer = apps.start("producer.py", "producer", fresh_topic, "--interval", 0.2, *METRICS_FLAGS)
    consumer = apps.single_consumer("consumer", fresh_topic, unique("ready"), *METRICS_FLAGS)
    ports = {app.name: metrics_port(app) for app in (producer, consumer)}
    for app in (producer, consumer):
        wait_ready(app, ports[app.name])

    stopped = time.monotonic()
    for node in range(3):
        kafka_cluster.kill(node)
    not_ready = {}
    for app in (producer, consumer):
        port = ports[app.name]
        wait_until(lambda p=port: probe(p, "/readyz")[0] == 503, 30, "/readyz 503", [app])
        not_ready[app.name] = time.monotonic() - stopped
    alive = {app.name: probe(ports[app.name], "/healthz") for app in (producer, consumer)}
    reasons = {
        app.name: probe(ports[app.name], "/readyz")[1].strip() for app in (producer, consumer)
    }

    kafka_cluster.start_missing()
    back = time.monotonic()
    ready_again = {app.name: wait_ready(app, ports[app.name], 120) for app in (producer, consumer)}
    figures.record(
        Figures(
            "readiness follows the brokers",
            extra={
                **{f"{n}_503_after_s": round(s, 1) for n, s in not_ready.items()},
                **{f"{n}_200_after_restart_s": round(s, 1) for n, s in ready_again.items()},
                "restart_s": round(back - stopped, 1),
            },
        )
    )
    assert all(s <= STATS_INTERVAL + 1.0 for s in not_ready.values()), not_ready
    assert all(status == 200 for status, _ in alive.values()), alive
    assert reasons["producer"] == "no broker reachable", reasons
    # The consumer may have been inside a synchronous commit when the brokers went: it then
    # cannot see them go (its statistics stand still) and says what it does know.
    commit_waits = r"a commit has waited \d+ s for the group coordinator"
    waiting = re.fullmatch(commit_waits, reasons["consumer"])
    assert reasons["consumer"] == "no broker reachable" or waiting, reasons
    assert all(s <= 60 for s in ready_again.values()), ready_again


class StuckCommit:
    """A consumer whose commit() never returns (as in test_stuck_client.py) until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def commit(self, offsets: list, asynchronous: bool) -> list:
        self.release.wait(30)
        return offsets


def test_liveness_fails_while_a_commit_is_stuck_and_recovers_after() -> None:
    health, heartbeat, bound = ClientHealth(), lifecycle.Heartbeat(), 1.0
    live = probes.liveness(health, heartbeat, bound)
    port = probes.serve("127.0.0.1", 0, [], live, lambda: None)
    beating = threading.Event()

    def beat() -> None:  # the loop keeps turning: only the commit can fail the probe
        while not beating.wait(0.1):
            heartbeat.beat()

    threading.Thread(target=beat, daemon=True).start()
    stuck = StuckCommit()
    try:
        assert probe(port, "/healthz") == (200, "ok\n")
        committing = threading.Thread(
            target=commits.commit_offsets, args=(stuck, {("topic", 0): 42}), daemon=True
        )
        committing.start()
        time.sleep(bound / 2)
        assert probe(port, "/healthz")[0] == 200  # a commit may take a while
        wait_until(lambda: probe(port, "/healthz")[0] == 503, 5, "/healthz to fail")
        status, why = probe(port, "/healthz")
        assert status == 503 and why.startswith("a commit has been running for"), why
        stuck.release.set()
        committing.join(5)
        assert probe(port, "/healthz") == (200, "ok\n")
    finally:
        stuck.release.set()
        beating.set()


def test_liveness_fails_when_the_main_loop_stops_turning() -> None:
    heartbeat = lifecycle.Heartbeat()
    live = probes.liveness(ClientHealth(), heartbeat, bound=0.5)
    port = probes.serve("127.0.0.1", 0, [], live, lambda: None)
    assert probe(port, "/healthz")[0] == 200
    time.sleep(0.7)
    status, why = probe(port, "/healthz")
    assert status == 503 and why.startswith("the main loop has not turned for"), why
    heartbeat.beat()
    assert probe(port, "/healthz") == (200, "ok\n")
    assert probe(port, "/nothing")[0] == 404


def test_readiness_waits_for_statistics_then_needs_a_broker() -> None:
    """The readiness rules on statistics documents as librdkafka writes them."""
    clock = [0.0]
    health = ClientHealth(clock=lambda: clock[0])
    ready = probes.readiness(health, "consumer")
    assert ready() == "no statistics from the client yet (every 5 s)"
    up = {"b": {"state": "UP", "source": "learned"}, "c": {"state": "UP", "source": "logical"}}
    stats = {"name": "c#consumer-1", "type": "consumer", "brokers": up}
    health.on_stats(json.dumps({**stats, "cgrp": {"assignment_size": 0, "join_state": "init"}}))
    assert ready() == "no partitions assigned (group state init)"
    health.on_stats(json.dumps({**stats, "cgrp": {"assignment_size": 2}}))
    assert ready() is None
    down = {"b": {"state": "DOWN", "source": "learned"}, "c": up["c"]}  # logical: not a broker
    health.on_stats(json.dumps({**stats, "brokers": down, "cgrp": {"assignment_size": 2}}))
    assert ready() == "no broker reachable"


def test_readiness_fails_while_a_commit_waits_longer_than_a_statistics_interval() -> None:
    """Inside a synchronous commit the client serves no statistics, so what they last said
    (ready) would stand; the commit's own wait says otherwise."""
    health = ClientHealth()
    ready = probes.readiness(health, "consumer")
    up = {"b": {"state": "UP", "source": "learned"}}
    health.on_stats(json.dumps({"name": "c#consumer-1", "type": "consumer", "brokers": up,
                                "cgrp": {"assignment_size": 1}}))  # fmt: skip
    assert ready() is None
    interval = STATS_INTERVAL_MS / 1000
    try:
        commits.STATS.running_since = time.monotonic() - interval / 2  # a commit may take a while
        assert ready() is None
        commits.STATS.running_since = time.monotonic() - interval - 1
        assert ready() == f"a commit has waited {interval + 1:.0f} s for the group coordinator"
    finally:
        commits.STATS.running_since = None
    assert ready() is None


@pytest.mark.cluster
def test_a_metrics_port_in_use_exits_2_with_one_line(bootstrap_servers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = app_env(bootstrap_servers)
        run = run_script(
            "producer.py", "--metrics-port", port, "--metrics-address", "127.0.0.1", env=env
        )
    assert run.returncode == EXIT_USAGE, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    why = "Address already in use"
    assert errors == [
        f"ERROR:root:Cannot serve metrics on 127.0.0.1:{port} (--metrics-port): {why}"
    ]


@pytest.mark.cluster
def test_json_logs_carry_the_same_fields(bootstrap_servers: str, fresh_topic: str) -> None:
    env = app_env(bootstrap_servers, fresh_topic, LOG_FORMAT="json")
    run = run_script("producer.py", "--count", 2, "--interval", 0, env=env)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stderr.splitlines()]  # each line one object
    assert {tuple(line) for line in lines} == {("time", "level", "logger", "message")}
    delivered = [line for line in lines if line["message"].startswith("Message delivered to")]
    assert len(delivered) == 2 and {line["level"] for line in delivered} == {"INFO"}
    assert {line["logger"] for line in delivered} == {"root"}

"""Brokers crash or the whole cluster is away: nothing acknowledged is lost or duplicated.

Producers run as real processes at full speed and log every acknowledgement; Kafka's own Java
console consumer, a client independent of librdkafka, then reads the topic back and is the
judge of what is really there.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from kafka_app.commits import COMMIT_TIMEOUT_SECONDS
from kafka_app.lifecycle import EXIT_CLIENT_STUCK
from localcluster.admin import committed_offsets, end_offsets
from support.figures import Figures, longest_gap
from support.processes import App, Apps, Supervised
from support.records import TopicContent, TopicIndex, producer_summary, read_records
from support.tail import Followed, Tail, partition_of
from support.waits import wait_until

# KRaft's broker.session.timeout.ms (default 9 s): how long the controller waits before it
# fences a broker that stopped heartbeating and moves its partition leaderships elsewhere.
BROKER_SESSION_TIMEOUT_S = 9.0
# What a client adds on top: noticing the new leader (metadata refresh with backoff) and
# resending its queue: 1-4 s measured on a busy 2-core machine, plus margin for a slower CI.
CLIENT_REACTION_S = 8.0


@pytest.mark.faults
@pytest.mark.timeout(360)
def test_broker_hard_kill_loses_and_duplicates_nothing(
    kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, figures, tmp_path: Path
) -> None:
    """Two full-speed producers; the leader of a partition is SIGKILLed, brought back, then
    another broker is. Every acknowledged message is in the topic exactly once."""
    topic = fresh_topic
    replicas = {p.partition: set(p.replicas) for p in kafka_cluster.partitions(topic)}
    producers = [apps.producer(f"producer-{i}", topic) for i in (1, 2)]
    acks = [tail.follow(tmp_path / f"producer-{i}.acked", partition_of) for i in (1, 2)]
    wait_until(lambda: sum(a.count for a in acks) >= 5000, 60, "5,000 acks", producers)

    outages = []  # (broker, killed at, back in every ISR at, seconds to a new leader)
    try:
        for _ in range(2):
            victim = min(leaders(kafka_cluster, topic) - {None, *(o[0] for o in outages)})
            killed_at = time.monotonic()
            kafka_cluster.kill(victim)

            def moved(victim: int = victim) -> bool:
                try:
                    return not leaders(kafka_cluster, topic, timeout=3) & {None, victim}
                except KafkaException:  # a full run saw the request time out: ask again
                    return False

            try:
                failover = wait_until(moved, 30, f"new leaders for broker {victim}'s partitions")
            except AssertionError:
                failover = None  # no in-sync follower took over: the figures will show it
            time.sleep(2)  # produce a little longer while a broker is down
            kafka_cluster.start_missing()
            kafka_cluster.wait_full_isr(topic, timeout=90)
            outages.append((victim, killed_at, time.monotonic(), failover))
            before = sum(a.count for a in acks)
            wait_until(
                lambda before=before: sum(a.count for a in acks) >= before + 2000,
                60,
                "2,000 more acks after the broker came back",
                producers,
            )
    finally:
        kafka_cluster.start_missing()  # whatever happened, later tests get a whole cluster
    stopped_at = time.monotonic()
    codes = [p.stop(90) for p in producers]
    tail.stop()

    acked_logs = [tmp_path / f"producer-{i}.acked" for i in (1, 2)]
    summaries = [producer_summary(p.log()) for p in producers]
    index = TopicIndex(kafka_cluster.bootstrap, topic)
    acked, lost = index.check(acked_logs)
    duplicates = index.duplicates()
    started_at = min(t for a in acks for t in a.times()[:1])
    stalls = {
        p: longest_gap([t for a in acks for t in a.times(str(p))], started_at, stopped_at)
        for p in replicas
    }
    worst = max(stalls, key=lambda p: stalls[p][0])
    one_copy = sum(
        a.counted([str(p) for p, rs in replicas.items() if broker in rs], killed, back)
        for broker, killed, back, _ in outages
        for a in acks
    )
    figures.record(
        Figures(
            "broker-hard-kill",
            sent=sum(s["sent"] for s in summaries),
            acked=acked,
            in_topic=len(index),
            lost=len(lost),
            duplicates=duplicates,
            longest_stall_s=stalls[worst][0],
            extra={
                "killed": "+".join(str(o[0]) for o in outages),
                "failover_s": "/".join(f"{o[3]:.1f}" if o[3] else "none" for o in outages),
                "down_s": "/".join(f"{o[2] - o[1]:.1f}" for o in outages),
                "stalled_partition": worst,
                "acked_on_1_copy": one_copy,
                "acked_offset_unknown": index.offset_unknown,
                "witness_read_s": index.read_s,
                "exit_codes": "/".join(map(str, codes)),
            },
        )
    )

    for producer, code in zip(producers, codes, strict=True):
        assert code == 0, f"{producer.name} exited with {code}:\n{producer.tail()}"
    assert acked >= 20_000, f"only {acked} acknowledged messages: not a load test"
    assert not lost, f"{len(lost)} acknowledged messages not at their offset, e.g. {lost[:3]}"
    assert duplicates == 0, f"{duplicates} duplicates: idempotence did not prevent them"
    assert len(index) == acked, "the topic has records no producer acknowledged"
    assert all(o[3] is not None for o in outages), f"a partition had no new leader: {outages}"
    bound = BROKER_SESSION_TIMEOUT_S + CLIENT_REACTION_S
    assert stalls[worst][0] <= bound, (
        f"partition {worst} got no ack for {stalls[worst][0]:.1f} s (bound {bound:.0f} s)"
    )
    # Passed: free the disk (millions of records, kept only to debug a failure).
    kafka_cluster.admin.delete_topics([topic])[topic].result(timeout=30)
    for path in acked_logs:
        path.unlink()


@pytest.mark.faults
@pytest.mark.timeout(420)
def test_apps_started_before_the_cluster_and_full_restart(
    kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, figures, tmp_path: Path
) -> None:
    """Producer and both consumers start while every broker is down: they wait, saying so, and
    work once the cluster is up. Then all brokers stop and restart mid-run: nothing acked is
    lost, everything acked is processed by both groups, and both commit to the end. A message
    is processed twice only after a cause, and only if processed before it: its consumer lost
    its partitions (an outage longer than the session timeout) or was restarted."""
    topic = fresh_topic
    bootstrap = kafka_cluster.bootstrap
    groups = {"batch": f"batch-{uuid.uuid4().hex[:8]}", "single": f"single-{uuid.uuid4().hex[:8]}"}
    try:
        kafka_cluster.local.down()

        # Every app is restarted if it exits with EXIT_CLIENT_STUCK, as Docker would.
        def start_producer(run: int) -> App:
            return apps.start(
                "producer.py",
                "producer" if run == 0 else f"producer-restart-{run}",
                topic,
                "--interval",
                0.01,
                "--quiet",
                "--progress-interval",
                1,
                "--delivered-log",
                tmp_path / "producer.acked",
            )

        producer = Supervised(start_producer, EXIT_CLIENT_STUCK)
        # Full speed with no broker: its local queue (100,000 messages) fills at once.
        impatient = apps.producer("impatient", topic, "--flush-timeout", 2)
        starters = {"batch": apps.batch_consumer, "single": apps.single_consumer}

        losses: dict[str, list[Followed]] = {kind: [] for kind in starters}  # of every run

        def starter(kind: str):
            def start(run: int) -> App:
                name = kind if run == 0 else f"{kind}-restart-{run}"
                app = starters[kind](name, topic, groups[kind], record=kind)
                losses[kind].append(tail.follow(app.log_path, partitions_lost_line))
                return app

            return start

        consumers = {k: Supervised(starter(k), EXIT_CLIENT_STUCK) for k in starters}
        everyone = [producer, impatient, *consumers.values()]
        acks = tail.follow(tmp_path / "producer.acked")
        processed = {n: tail.follow(tmp_path / f"{n}.processed", keep=True) for n in consumers}

        waiting = re.compile(r"^WARNING:root:(No broker reachable|Kafka connection problem)", re.M)
        wait_until(
            lambda: all(waiting.search(app.log()) for app in everyone),
            30,
            "every app to log that it waits for the brokers",
            everyone,
        )
        time.sleep(2)
        for app in everyone:
            app.require_alive()
        assert acks.count == 0, "acknowledged while no broker was running?"
        # SIGTERM while nothing can be delivered: it must not wait for the brokers (or for
        # message.timeout.ms), but stop within --flush-timeout and say what it did not deliver.
        signalled = time.monotonic()
        impatient_code = impatient.stop(30)
        impatient_stop_s = time.monotonic() - signalled
        impatient_summary = producer_summary(impatient.log())
        everyone.remove(impatient)

        up_at = time.monotonic()
        kafka_cluster.start_missing()
        kafka_cluster.wait_full_isr(topic, timeout=60)
        wait_until(
            lambda: acks.count > 0 and all(p.count > 0 for p in processed.values()),
            90,
            "the first ack and the first processed message in both groups",
            everyone,
        )
        first_work = max(f.times()[0] for f in [acks, *processed.values()]) - up_at
        time.sleep(3)

        # All three brokers stop (SIGTERM) and come back while the apps run.
        down_at = time.monotonic()
        kafka_cluster.local.down()
        time.sleep(3)
        kafka_cluster.start_missing()
        kafka_cluster.wait_full_isr(topic, timeout=60)
        back_at = time.monotonic()
        before = acks.count
        wait_until(lambda: acks.count >= before + 100, 90, "100 acks after the restart", everyone)
        stop_at = time.monotonic()
        producer_code = producer.stop(90)
        acked = read_records(tmp_path / "producer.acked")
        acked_ids = {r[2] for r in acked}

        def done(name: str) -> bool:
            return acked_ids <= {line.split(" ")[2] for _, line in processed[name].lines}

        wait_until(
            lambda: all(done(n) for n in consumers),
            COMMIT_TIMEOUT_SECONDS + 120,
            "",
            consumers.values(),
            0.05,
            False,
        )
        consumer_codes = {n: c.stop(90) for n, c in consumers.items()}
    finally:
        kafka_cluster.start_missing()  # whatever happened, later tests get a whole cluster
    tail.stop()

    content = TopicContent.read(bootstrap, topic)
    lost = content.missing(acked)
    events = {n: [line.split(" ") for _, line in processed[n].lines] for n in consumers}
    not_processed = {n: len(acked_ids - {e[2] for e in events[n]}) for n in consumers}
    # Redelivered: the same record (partition, offset) processed again. Both copies of a
    # message the producer wrote twice (see written_twice below) are two records, each
    # processed once: the consumers cannot tell them from two messages, and need not.
    duplicates = {n: len(events[n]) - len({(e[0], e[1]) for e in events[n]}) for n in consumers}
    ack_stall = longest_gap(acks.times(), up_at, stop_at)
    processing_stall = {
        n: longest_gap(processed[n].times(), up_at + first_work, stop_at)[0] for n in consumers
    }
    committed = {
        n: committed_offsets(kafka_cluster.bootstrap, groups[n], topic, timeout=15)
        for n in consumers
    }
    ends = end_offsets(kafka_cluster.admin, topic, [0, 1, 2], timeout=15)
    # An empty partition has nothing to commit (committed_offsets omits it too).
    ends = {p: end for p, end in ends.items() if end > 0}
    restarts = {n: c.restarts for n, c in consumers.items()}
    partitions_lost = {n: sum(f.count for f in losses[n]) for n in consumers}
    producer_runs = [producer_summary(run.log()) for run in producer.runs]
    # Messages a stranded producer run never got acknowledged: they may be in the topic.
    stranded_undelivered = sum(run["undelivered"] for run in producer_runs[:-1])
    logs = [run.log() for app in (producer, *consumers.values()) for run in app.runs]
    figures.record(
        Figures(
            "cluster-down",
            sent=sum(run["sent"] for run in producer_runs),
            acked=len(acked),
            in_topic=len(content),
            processed=sum(len({e[2] for e in es} & acked_ids) for es in events.values()),
            lost=len(lost) + sum(not_processed.values()),
            duplicates=content.duplicates() + sum(duplicates.values()),
            longest_stall_s=ack_stall[0],
            extra={
                "first_work_after_up_s": first_work,
                "full_restart_s": back_at - down_at,
                "processing_stall_s": "/".join(f"{v:.1f}" for v in processing_stall.values()),
                "dup_processed": "/".join(str(v) for v in duplicates.values()),
                "impatient_stop_s": impatient_stop_s,
                "impatient_undelivered": impatient_summary["undelivered"],
                "impatient_exit": impatient_code,
                "stuck_restarts": "/".join(str(v) for v in [producer.restarts, *restarts.values()]),
                "stranded": sum(STRANDED in log for log in logs),
                "partitions_lost": "/".join(str(v) for v in partitions_lost.values()),
                "acked_offset_unknown": sum(r[1] < 0 for r in acked),
                "written_twice": content.duplicates(),
            },
        )
    )

    assert producer_code == 0, producer.app.tail()
    assert impatient_stop_s < 10, f"SIGTERM took {impatient_stop_s:.1f} s with no broker"
    assert impatient_code == 1, f"undelivered messages, yet exit status {impatient_code}"
    assert impatient_summary["delivered"] == 0
    assert impatient_summary["undelivered"] == impatient_summary["sent"] > 0, impatient_summary
    in_topic = set(content.keys.values())
    assert acked_ids <= in_topic, "the topic does not hold what was acked"
    assert len(in_topic - acked_ids) <= stranded_undelivered, "in the topic, never sent?"
    assert consumer_codes == {"batch": 0, "single": 0}, {
        n: c.app.tail() for n, c in consumers.items()
    }
    assert not lost, f"{len(lost)} acknowledged messages not in the topic"
    # A copy too many in the topic: librdkafka bumped the producer's epoch after losing its
    # in-flight requests and sent one again that had been written but not acknowledged (seen
    # once: epoch 0 sequence 641, then epoch 1 sequence 0, adjacent offsets). That, and only
    # that, is allowed: two copies at most, and never of a message acknowledged twice.
    acked_at = {(r[0], r[1]) for r in acked}
    for message_id, copies in written_twice(content).items():
        assert len(copies) == 2, f"{message_id} written {len(copies)} times at {copies}"
        assert len(acked_at & set(copies)) <= 1, f"{message_id} acknowledged twice: {copies}"
    assert not_processed == {"batch": 0, "single": 0}
    # Redelivery needs a cause, and only work processed before it comes again: a stuck client's
    # restart, or partitions lost because the outage outlasted session.timeout.ms (45 s; the
    # commits of what was processed meanwhile failed).
    for name, consumer in consumers.items():
        causes = partitions_lost[name] + restarts[name]
        assert causes or not duplicates[name], f"{name}: {duplicates[name]} redelivered, no cause"
        cause_times = [
            *(run.started_at for run in consumer.runs[1:]),
            *(t for f in losses[name] for t in f.times()),
        ]
        last_cause = max(cause_times, default=0.0)
        late = [t - last_cause for t in repeated_first_processed(processed[name].lines)]
        assert max(late, default=0) <= 0, f"{name}: first processed {max(late):.1f} s after it"
    for name, consumer in consumers.items():
        assert "Traceback" not in consumer.log(), f"{name}: a traceback in the log"
    for name in consumers:
        assert committed[name] == ends, f"{name}: committed {committed[name]}, ends {ends}"
    # The longest ack gap is the full restart (SIGTERM x3, start, ISR); bounded, not open-ended.
    assert ack_stall[0] <= (back_at - down_at) + 30, ack_stall


def written_twice(content: TopicContent) -> dict[str, list[tuple[int, int]]]:
    """The ids found more than once in the topic, with their (partition, offset)s."""
    where: dict[str, list[tuple[int, int]]] = {}
    for position, message_id in sorted(content.keys.items()):
        where.setdefault(message_id, []).append(position)
    return {m: places for m, places in where.items() if len(places) > 1}


# What kafka_app.client_health logs when a client is left with no broker (librdkafka#5301).
STRANDED = "The Kafka client has known no broker"


def partitions_lost_line(line: str) -> str | None:
    return "lost" if "Partitions lost" in line else None


def repeated_first_processed(lines: list[tuple[float, str]]) -> list[float]:
    """For each record (partition, offset) processed more than once: when it was processed
    the first time."""
    first: dict[tuple[str, str], float] = {}
    repeated = []
    for seen_at, line in lines:
        partition, offset, _ = line.split(" ")
        if (partition, offset) in first:
            repeated.append(first[partition, offset])
        else:
            first[partition, offset] = seen_at
    return repeated


def leaders(kafka_cluster, topic: str, timeout: float = 10) -> set[int | None]:
    """The brokers leading a partition of the topic (None: a partition without a leader).

    Asked with a Metadata request, which any broker answers: the admin client's
    describe_topics() waits for "the controller", which may be the broker just killed.
    """
    metadata = kafka_cluster.admin.list_topics(topic, timeout=timeout).topics[topic]
    return {p.leader if p.leader >= 0 else None for p in metadata.partitions.values()}

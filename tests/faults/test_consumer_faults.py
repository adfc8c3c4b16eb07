"""Consumers crash, stop or rebalance: every acknowledged message is processed, and the
duplicates are exactly those the at-least-once design allows (and none on a graceful path).

"Processed" is what the business logic did: the ``BatchConsumer received: <content>`` and
``SingleConsumer received: <content>`` lines, one per call, so a message handled twice shows
up twice. The messages come from one producer run, so their contents are unique.
"""

from __future__ import annotations

import re
import signal
import time
import uuid
from pathlib import Path

import pytest

from localcluster.admin import committed_offsets, end_offsets
from support.figures import Figures, longest_gap
from support.processes import App, Apps
from support.protocols import LONG_FAULT_PROTOCOLS, PROTOCOLS
from support.records import TopicContent, producer_summary, read_records
from support.tail import Tail
from support.waits import wait_until
from support.witness import witness_read

KINDS = ("batch", "single")
BATCH_SIZE = 10  # the default, spelled out
DELAY = 0.1  # seconds of simulated work per message: a batch takes 1 s
MESSAGES = 150
# librdkafka's session.timeout.ms default: how long the group waits for a member that stopped
# heartbeating (a crashed one) before its partitions are given to someone else.
SESSION_TIMEOUT_S = 45.0
RECEIVED = re.compile(r"^INFO:root:(?:Batch|Single)Consumer received: (.*)$", re.M)
COMMITTED = "INFO:root:Committed batch of "


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def produce(apps: Apps, topic: str, count: int, tmp_path: Path) -> dict[str, str]:
    """`count` messages from one producer run; returns content -> message id as the witness
    (Kafka's own Java console consumer) sees it."""
    producer = apps.producer("producer", topic, "--count", count)
    assert producer.wait(60) == 0, producer.tail()
    acked = {r[2] for r in read_records(tmp_path / "producer.acked")}
    assert len(acked) == count
    contents = {}
    for _, _, key, value in witness_read(apps.bootstrap, topic):
        contents[re.search(r'"content":"([^"]*)"', value.decode())[1]] = key.decode()
    assert set(contents.values()) == acked, "the witness does not see what the producer acked"
    return contents


def start(apps: Apps, kind: str, name: str, topic: str, group: str, *args: object) -> App:
    starter = apps.batch_consumer if kind == "batch" else apps.single_consumer
    return starter(name, topic, group, "--process-delay", DELAY, *args)


def received(log: str) -> list[str]:
    return RECEIVED.findall(log)


def uncommitted_batch(log: str) -> int:
    """Messages the batch consumer processed after its last commit."""
    tail = log.rsplit(COMMITTED, 1)[-1] if COMMITTED in log else log
    return len(received(tail))


def committed_to_end(kafka_cluster, group: str, topic: str) -> tuple[dict, dict]:
    committed = committed_offsets(kafka_cluster.bootstrap, group, topic, timeout=15)
    ends = end_offsets(kafka_cluster.admin, topic, [0, 1, 2], timeout=15)
    # An empty partition has nothing to commit (committed_offsets omits it too).
    return committed, {p: end for p, end in ends.items() if end > 0}


def interrupt_and_restart(
    kafka_cluster,
    apps: Apps,
    tail: Tail,
    topic: str,
    sig: signal.Signals,
    tmp_path: Path,
    figures,
    scenario: str,
    protocol: str = "classic",
) -> dict[str, dict]:
    """Both consumers (own groups) get `sig` in the middle of their work, then restart.

    The batch consumer is interrupted with 3 to 7 messages of a batch processed, after at
    least 2 committed batches; the single consumer right after a message was logged, i.e.
    during its processing. Records the scenario's figures and returns, per kind, what
    happened.
    """
    contents = produce(apps, topic, MESSAGES, tmp_path)
    groups = {kind: unique(kind) for kind in KINDS}
    protocol_flag = ("--group-protocol", protocol)
    first = {k: start(apps, k, f"{k}-1", topic, groups[k], *protocol_flag) for k in KINDS}
    stamps = {kind: tail.follow(first[kind].log_path, received_line) for kind in KINDS}

    def ready(kind: str, log: str, seen: int) -> bool:
        if kind == "batch":
            return log.count(COMMITTED) >= 2 and 3 <= uncommitted_batch(log) <= 7
        return len(received(log)) >= 20 and len(received(log)) > seen  # a new one: just logged

    seen = dict.fromkeys(KINDS, 0)
    interrupted: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while len(interrupted) < len(KINDS):
        for kind in KINDS:
            if kind in interrupted:
                continue
            first[kind].require_alive()
            log = first[kind].log()
            if ready(kind, log, seen[kind]):
                first[kind].signal(sig)
                interrupted[kind] = len(received(log))
            seen[kind] = len(received(log))
        assert time.monotonic() < deadline, f"never in the middle of a batch: {interrupted}"
        time.sleep(0.005)
    first_codes = {kind: first[kind].wait(60) for kind in KINDS}
    first_logs = {kind: first[kind].log() for kind in KINDS}

    second = {k: start(apps, k, f"{k}-2", topic, groups[k], *protocol_flag) for k in KINDS}
    for kind in KINDS:
        stamps[kind] = (stamps[kind], tail.follow(second[kind].log_path, received_line))

    def done(kind: str) -> bool:
        return set(received(first_logs[kind] + second[kind].log())) >= contents.keys()

    wait_until(
        lambda: all(done(k) for k in KINDS), SESSION_TIMEOUT_S + 90, "", second.values(), 0.1, False
    )
    second_codes = {kind: second[kind].stop(60) for kind in KINDS}
    tail.stop()

    outcome = {}
    for kind in KINDS:
        events = received(first_logs[kind] + second[kind].log())
        if kind == "batch":
            uncommitted = uncommitted_batch(first_logs[kind])
        else:  # logged as received but not yet in the processed log (written before commit)
            logged = {r[2] for r in read_records(tmp_path / f"{kind}-1.processed")}
            uncommitted = sum(contents[c] not in logged for c in received(first_logs[kind]))
        times = [t for followed in stamps[kind] for t in followed.times()]
        committed, ends = committed_to_end(kafka_cluster, groups[kind], topic)
        outcome[kind] = {
            "events": len(events),
            "processed": len(set(events) & contents.keys()),
            "missing": len(contents.keys() - set(events)),
            "duplicates": len(events) - len(set(events)),
            "uncommitted": uncommitted,
            "interrupted_after": interrupted[kind],
            "stall": longest_gap(times)[0],
            "codes": (first_codes[kind], second_codes[kind]),
            "committed": committed,
            "ends": ends,
            "logs": (first_logs[kind], second[kind].log()),
        }
    every = len(contents)  # produced, acknowledged and read back by the witness in produce()
    record(figures, scenario, outcome, sent=every, acked=every, in_topic=every)
    return outcome


def received_line(line: str) -> str | None:
    return "*" if " received: " in line else None


def record(
    figures, scenario: str, outcome: dict[str, dict], *, sent: int, acked: int, in_topic: int
) -> None:
    """One figures line for both consumer kinds, with each kind's own figures as extras."""
    b, s = outcome["batch"], outcome["single"]
    extra = {}
    for key, label in (
        ("duplicates", "dup_{}"),
        ("uncommitted", "uncommitted_{}"),
        ("stall", "stall_{}_s"),
    ):
        if key in b:
            extra[label.format("batch")] = b[key]
            extra[label.format("single")] = s[key]
    figures.record(
        Figures(
            scenario,
            sent=sent,
            acked=acked,
            in_topic=in_topic,
            processed=b["processed"] + s["processed"],
            lost=b["missing"] + s["missing"],
            duplicates=b["duplicates"] + s["duplicates"],
            longest_stall_s=max(b["stall"], s["stall"]),
            extra=extra,
        )
    )


def check_common(outcome: dict[str, dict]) -> None:
    for kind, o in outcome.items():
        assert o["missing"] == 0, f"{kind}: {o['missing']} acknowledged messages never processed"
        assert o["codes"][1] == 0, f"{kind} (restarted) exited with {o['codes'][1]}"
        assert o["committed"] == o["ends"], f"{kind}: committed {o['committed']}, ends {o['ends']}"
        assert "Traceback" not in "".join(o["logs"]), f"{kind}: a traceback in the log"


@pytest.mark.faults
@pytest.mark.timeout(300)
@pytest.mark.parametrize("protocol", LONG_FAULT_PROTOCOLS)
def test_consumer_crash_redelivers_only_the_uncommitted(
    protocol: str, kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, figures, tmp_path: Path
) -> None:
    """SIGKILL mid-batch / mid-message, restart: every message processed at least once; the
    duplicates are exactly the crashed, uncommitted batch (<= batch size), <= 1 for single.
    Under both group protocols: classic, and KIP-848's consumer protocol."""
    scenario = "consumer-crash" + ("" if protocol == "classic" else "-kip848")
    outcome = interrupt_and_restart(
        kafka_cluster,
        apps,
        tail,
        fresh_topic,
        signal.SIGKILL,
        tmp_path,
        figures,
        scenario,
        protocol,
    )

    check_common(outcome)
    batch, single = outcome["batch"], outcome["single"]
    assert batch["codes"][0] == -signal.SIGKILL and single["codes"][0] == -signal.SIGKILL
    assert 1 <= batch["uncommitted"] < BATCH_SIZE, "the crash did not hit the middle of a batch"
    assert batch["duplicates"] == batch["uncommitted"], (
        f"batch: {batch['duplicates']} duplicates, but {batch['uncommitted']} were uncommitted"
    )
    assert single["uncommitted"] <= single["duplicates"] <= 1, single["duplicates"]
    # A crashed member keeps its partitions until its session times out; then they move on.
    for kind, o in outcome.items():
        assert o["stall"] <= SESSION_TIMEOUT_S + 15, f"{kind} stalled {o['stall']:.1f} s"


@pytest.mark.faults
@pytest.mark.timeout(240)
def test_consumer_sigterm_finishes_and_commits_the_batch(
    kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, figures, tmp_path: Path
) -> None:
    """SIGTERM mid-batch / mid-message: the batch (message) is finished and committed, the
    consumer exits 0, and the restarted one processes nothing twice."""
    outcome = interrupt_and_restart(
        kafka_cluster,
        apps,
        tail,
        fresh_topic,
        signal.SIGTERM,
        tmp_path,
        figures,
        "consumer-sigterm",
    )

    check_common(outcome)
    for kind, o in outcome.items():
        assert o["codes"][0] == 0, f"{kind} exited with {o['codes'][0]} on SIGTERM"
        assert o["uncommitted"] == 0, f"{kind}: {o['uncommitted']} processed, not committed"
        assert o["duplicates"] == 0, f"{kind}: {o['duplicates']} messages processed twice"
    # The batch in progress was finished: more messages than when SIGTERM arrived.
    batch_first_run = received(outcome["batch"]["logs"][0])
    assert len(batch_first_run) > outcome["batch"]["interrupted_after"]
    assert len(batch_first_run) % BATCH_SIZE == 0, "the last batch was cut short"


@pytest.mark.faults
@pytest.mark.timeout(300)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rebalance_join_and_graceful_leave(
    protocol: str, kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, figures, tmp_path: Path
) -> None:
    """A second consumer joins each group mid-stream, then the first leaves with SIGTERM:
    nothing is lost, and neither the join nor the graceful leave causes a duplicate."""
    topic = fresh_topic
    producer = apps.start(
        "producer.py",
        "producer",
        topic,
        "--interval",
        0.01,
        "--quiet",
        "--delivered-log",
        tmp_path / "producer.acked",
    )
    groups = {kind: unique(f"{kind}-rebalance") for kind in KINDS}
    starter = {"batch": apps.batch_consumer, "single": apps.single_consumer}
    flag = ("--group-protocol", protocol)
    members = {kind: [starter[kind](f"{kind}-a", topic, groups[kind], *flag)] for kind in KINDS}
    processed = {kind: [tail.follow(tmp_path / f"{kind}-a.processed")] for kind in KINDS}
    running = [producer, *(m for ms in members.values() for m in ms)]

    def count(kind: str, member: int) -> int:
        return processed[kind][member].count

    wait_until(lambda: all(count(k, 0) >= 200 for k in KINDS), 60, "200 processed", running)
    for kind in KINDS:
        members[kind].append(starter[kind](f"{kind}-b", topic, groups[kind], *flag))
        processed[kind].append(tail.follow(tmp_path / f"{kind}-b.processed"))
    running += [members[k][1] for k in KINDS]
    joined_at = {kind: count(kind, 0) for kind in KINDS}
    wait_until(lambda: all(count(k, 1) >= 100 for k in KINDS), 60, "the joiner to work", running)
    still_working = {kind: count(kind, 0) > joined_at[kind] for kind in KINDS}

    leave_codes = {kind: members[kind][0].stop(60) for kind in KINDS}
    running = [producer, *(members[k][1] for k in KINDS)]
    left_at = {kind: count(kind, 1) for kind in KINDS}
    wait_until(lambda: all(count(k, 1) >= left_at[k] + 200 for k in KINDS), 60, "", running)
    stop_at = time.monotonic()
    producer_code = producer.stop(60)
    acked = {r[2] for r in read_records(tmp_path / "producer.acked")}

    def ids(kind: str) -> list[str]:
        return [r[2] for m in "ab" for r in read_records(tmp_path / f"{kind}-{m}.processed")]

    last_members = [members[k][1] for k in KINDS]
    wait_until(lambda: all(set(ids(k)) >= acked for k in KINDS), 60, "", last_members, 0.2, False)
    final_codes = {kind: members[kind][1].stop(60) for kind in KINDS}
    tail.stop()
    content = TopicContent.read(kafka_cluster.bootstrap, topic)

    outcome = {}
    for kind in KINDS:
        events = ids(kind)
        times = [t for f in processed[kind] for t in f.times()]
        committed, ends = committed_to_end(kafka_cluster, groups[kind], topic)
        outcome[kind] = {
            "processed": len(set(events) & acked),
            "missing": len(acked - set(events)),
            "duplicates": len(events) - len(set(events)),
            "stall": longest_gap(times, None, stop_at)[0],
            "committed": committed,
            "ends": ends,
        }
    record(
        figures,
        "rebalance" + ("" if protocol == "classic" else "-kip848"),
        outcome,
        sent=producer_summary(producer.log())["sent"],
        acked=len(acked),
        in_topic=len(content),
    )

    assert producer_code == 0, producer.tail()
    assert set(content.keys.values()) == acked, "the topic does not hold what was acknowledged"
    assert leave_codes == {"batch": 0, "single": 0}, leave_codes
    assert final_codes == {"batch": 0, "single": 0}, final_codes
    assert still_working == {"batch": True, "single": True}, "a join stopped the first member"
    for kind, o in outcome.items():
        assert o["missing"] == 0, f"{kind}: {o['missing']} acknowledged messages not processed"
        assert o["duplicates"] == 0, f"{kind}: {o['duplicates']} processed twice"
        assert o["committed"] == o["ends"], f"{kind}: committed {o['committed']}, ends {o['ends']}"
        # Cooperative rebalancing: the group never stops for long (no session timeout here).
        assert o["stall"] <= 10, f"{kind}: no message processed for {o['stall']:.1f} s"

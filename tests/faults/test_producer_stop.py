"""SIGTERM during full-speed production: nothing acknowledged is lost, and the exit status
tells the truth about what was left undelivered."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest

from support.figures import Figures
from support.processes import Apps
from support.records import TopicIndex, producer_summary
from support.waits import wait_until


@pytest.mark.faults
@pytest.mark.timeout(180)
def test_producer_sigterm_flushes_and_exit_status_tells_undelivered(
    kafka_cluster, fresh_topic: str, apps: Apps, figures, tmp_path: Path
) -> None:
    """Two producers at full speed get SIGTERM at the same moment:

    - "flushed" (default --flush-timeout 30): waits for every outstanding message, exits 0;
      every acknowledged message is in the topic, and nothing else is;
    - "cut" (--flush-timeout 0): gives up on its in-flight messages at once, and its exit
      status must say whether any was left (1) or not (0); what it acknowledged is all there.
    """
    topics = {
        "flushed": fresh_topic,
        "cut": kafka_cluster.create_topic(f"test-producer-cut-{uuid.uuid4().hex[:8]}"),
    }
    producers = {
        "flushed": apps.producer("flushed", topics["flushed"]),
        "cut": apps.producer("cut", topics["cut"], "--flush-timeout", 0),
    }
    acked_files = {name: tmp_path / f"{name}.acked" for name in producers}

    def lines(name: str) -> int:
        path = acked_files[name]
        return path.stat().st_size // 45 if path.exists() else 0  # "<p> <offset> <uuid>\n"

    # Not earlier: the first ~100,000 messages fill the local queue while the producer id is
    # fetched, and their reports then come all at once, so a SIGTERM during that burst finds
    # nothing still in flight. Past it, messages are sent and acknowledged steadily.
    wait_until(
        lambda: all(lines(n) >= 130_000 for n in producers),
        90,
        "130,000 acks each",
        producers.values(),
    )
    signalled = time.monotonic()
    for producer in producers.values():
        producer.signal(signal.SIGTERM)
    codes = {name: p.wait(60) for name, p in producers.items()}
    stop_s = time.monotonic() - signalled

    outcome = {}
    for name, producer in producers.items():
        index = TopicIndex(kafka_cluster.bootstrap, topics[name])
        acked, lost = index.check([acked_files[name]])
        outcome[name] = {
            "summary": producer_summary(producer.log()),
            "acked": acked,
            "in_topic": len(index),
            "lost": len(lost),
            "duplicates": index.duplicates(),
            "log": producer.log(),
        }
    flushed, cut = outcome["flushed"], outcome["cut"]
    figures.record(
        Figures(
            "producer-sigterm",
            sent=flushed["summary"]["sent"] + cut["summary"]["sent"],
            acked=flushed["acked"] + cut["acked"],
            in_topic=flushed["in_topic"] + cut["in_topic"],
            lost=flushed["lost"] + cut["lost"],
            duplicates=flushed["duplicates"] + cut["duplicates"],
            extra={
                "stop_s": stop_s,
                "exit_flushed": codes["flushed"],
                "exit_cut": codes["cut"],
                "cut_undelivered": cut["summary"]["undelivered"],
                "cut_unacked_but_in_topic": cut["in_topic"] - cut["acked"],
            },
        )
    )

    for name, o in outcome.items():
        s = o["summary"]
        assert o["lost"] == 0, f"{name}: {o['lost']} acknowledged messages not in the topic"
        assert o["duplicates"] == 0, f"{name}: duplicates in the topic"
        assert s["delivered"] == o["acked"], f"{name}: summary says {s}, log has {o['acked']}"
        assert "Traceback" not in o["log"]
    assert codes["flushed"] == 0, producers["flushed"].tail()
    assert flushed["summary"]["undelivered"] == 0 and flushed["summary"]["failed"] == 0
    assert flushed["in_topic"] == flushed["acked"], "records in the topic nobody acknowledged"
    # Whatever was in flight when the flush was cut short, the exit status says it: 1 if
    # anything was not acknowledged, 0 only if everything was. (It is usually 1 here; the
    # cluster-down test makes it certain, with 100,000 messages queued and no broker.)
    left = cut["summary"]["undelivered"] + cut["summary"]["failed"]
    assert codes["cut"] == (1 if left else 0), f"{left} not acknowledged, exit {codes['cut']}"
    # Unacknowledged is not "not written": some in-flight messages reached the topic.
    assert cut["acked"] <= cut["in_topic"] <= cut["acked"] + cut["summary"]["undelivered"]
    for name, topic in topics.items():  # passed: free the disk
        kafka_cluster.admin.delete_topics([topic])[topic].result(timeout=30)
        acked_files[name].unlink()

"""`make chaos`: the demo's workload (2 producers, 2 replicas of each consumer) while a seeded
random schedule of faults plays for a set time; then everything heals, drains, and the checker
runs. The same seed plays the same schedule. It prints a table and writes build/chaos.json.

CHAOS_DURATION (``180``, ``90s``, ``10m``; default 180 s, CI's short run) and CHAOS_SEED
(default 42) choose the run; `make chaos DURATION=10m SEED=7` sets them.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from support.nemesis import Nemesis, paused
from support.processes import Apps
from support.tail import Tail

from .workload import Workload

pytestmark = [pytest.mark.faults, pytest.mark.chaos, pytest.mark.timeout(3600)]
ROOT = Path(__file__).resolve().parents[3]
NODES = (0, 1, 2)
KINDS = ("isolate", "cut", "one-way", "lossy", "pause-broker", "pause-consumer", "kill-broker")


@dataclass
class Fault:
    at_s: float  # from the start of the schedule
    kind: str
    target: str  # which node(s) or consumer
    seconds: float


def duration() -> float:
    text = os.environ.get("CHAOS_DURATION", "180").strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([sm]?)", text)
    if not match:
        raise pytest.UsageError(f"CHAOS_DURATION: expected seconds, 90s or 10m, got {text!r}")
    return float(match.group(1)) * (60 if match.group(2) == "m" else 1)


def schedule(seed: int, seconds: float) -> list[Fault]:
    """The faults of a run, one after another with quiet gaps between: a function of the
    seed and the duration alone, so a seed replays its run."""
    rng, at, faults = random.Random(seed), 5.0, []
    while True:
        kind = rng.choice(KINDS)
        a, b = rng.sample(NODES, 2)
        target = {
            "isolate": f"{a}",
            "cut": f"{a}-{b}",
            "one-way": f"{a}->{b}",
            "lossy": "5%",
            "pause-broker": f"{a}",
            "pause-consumer": rng.choice(["batch-1", "batch-2", "single-1", "single-2"]),
            "kill-broker": f"{a}",
        }[kind]
        length = round(rng.uniform(3, 50 if kind == "pause-consumer" else 25), 1)
        if at + length > seconds:
            return faults
        faults.append(Fault(round(at, 1), kind, target, length))
        at += length + rng.uniform(3, 10)


def play(fault: Fault, chaos: Nemesis, kafka_cluster, work: Workload) -> None:
    """One fault for its time; healed at its end (or at once if anything fails)."""
    if fault.kind == "pause-consumer":
        kind, n = fault.target.split("-")
        with paused(work.consumers[kind][int(n) - 1].process.pid, fault.seconds):
            return
    if fault.kind == "pause-broker":
        with paused(kafka_cluster.local.node(int(fault.target)).pid(), fault.seconds):
            return
    if fault.kind == "kill-broker":
        kafka_cluster.kill(int(fault.target))
        time.sleep(fault.seconds)
        kafka_cluster.start_missing()
        return
    with chaos.window(fault.seconds):
        if fault.kind == "isolate":
            chaos.isolate(int(fault.target))
        elif fault.kind == "lossy":
            chaos.lossy(5)
        else:
            a, b = map(int, re.split(r"->|-", fault.target))
            chaos.cut(a, b, one_way=fault.kind == "one-way")


def test_chaos(
    kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, tmp_path, chaos: Nemesis, figures
) -> None:
    seed, seconds = int(os.environ.get("CHAOS_SEED", "42")), duration()
    faults = schedule(seed, seconds)
    work = Workload(
        apps, fresh_topic, tmp_path, tail, producers=2, groups={"batch": 2, "single": 2}
    )
    work.start()
    began = time.monotonic()
    played = []
    try:
        for fault in faults:
            time.sleep(max(0.0, began + fault.at_s - time.monotonic()))
            started = time.monotonic() - began
            play(fault, chaos, kafka_cluster, work)
            played.append({**asdict(fault), "started_s": round(started, 1)})
    finally:
        chaos.heal()
        kafka_cluster.start_missing()
    kafka_cluster.wait_full_isr(fresh_topic, timeout=180)
    result, found = work.finish(f"chaos-seed-{seed}-{seconds:.0f}s", drain_timeout=300)
    result.extra["faults"] = len(played)
    figures.record(result)

    table = Table(title=f"make chaos: seed {seed}, {seconds:.0f} s, {len(played)} faults")
    for column in (
        "group",
        "lost",
        "duplicate",
        "unseen",
        "redelivered",
        "poll skip",
        "nonmonotonic",
    ):
        table.add_column(column, justify="right")
    for kind, anomalies in found.items():
        counts = anomalies.counts()
        table.add_row(
            kind, *(str(counts[k]) for k in ("lost", "duplicate", "unseen")),
            str(anomalies.redelivered_total), str(counts["poll_skip"]), str(counts["nonmonotonic"]),
        )  # fmt: skip
    Console(highlight=False).print(table)
    report = {
        "seed": seed,
        "duration_s": seconds,
        "schedule": played,
        "figures": result.line(),
        "anomalies": {kind: asdict(a) for kind, a in found.items()},
    }
    out = ROOT / "build" / "chaos.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    assert {kind: a.errors() for kind, a in found.items() if a.errors()} == {}


def test_the_same_seed_plays_the_same_schedule() -> None:
    assert schedule(42, 600) == schedule(42, 600)
    assert schedule(42, 600) != schedule(43, 600)
    assert all(f.at_s + f.seconds <= 600 for f in schedule(7, 600))

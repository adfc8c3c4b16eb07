"""Benchmarks side by side with Apache Kafka's own tools: ``python -m bench.run`` (make bench).

Each comparison runs on FRESH topics shaped like final-1-topic (3 partitions, RF 2):

======================  =========================================  ===========================
our code path           reference (kafka-tools jar)                figure
======================  =========================================  ===========================
producer                ProducerPerformance (same messages, acks=  msg/s
                        all, idempotent, linger.ms=5, lz4)
batch consumer          VerifiableConsumer, max.poll.records=10,   msg/s
                        a synchronous commit per poll
single consumer         VerifiableConsumer, max.poll.records=1     msg/s
plain consumption       ConsumerPerformance (fetch.nMsg.sec)       msg/s
latency, demo pace      EndToEndLatency (ping-pong probes)         p50 / p99 ms
latency, under load     EndToEndLatency, same background load      p50 / p99 ms
======================  =========================================  ===========================

plus the same loops written with kafka-python and aiokafka (bench/peers/). Every contestant of
a comparison runs in the same round, one after the other (the order rotates from run to run),
and each ratio is taken within a round; the report gives medians over --runs rounds.

Then our producer, batch and single paths run again with the metrics endpoint off and on, in
--metrics-pairs alternating pairs, the endpoint scraped while on (bench/overhead.py): what
metrics cost. ``--metrics-overhead-only`` runs just that comparison.

Without --bootstrap (or KAFKA_BOOTSTRAP_SERVERS) the bench brings up its own 3-broker cluster
with localcluster, on its own ports (--port-offset) and data folder, and removes it afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from bench import overhead, report
from bench.common import ROOT, parse_result
from bench.java_tools import JavaTools, ToolError
from localcluster.admin import admin_client, end_offsets, topic_partitions

OURS, TOOL, KAFKA_PYTHON, AIOKAFKA = "ours", "tool", "kafka-python", "aiokafka"
PEER_MODULES = {
    KAFKA_PYTHON: ("bench.peers.kafka_python_loops", ("kafka", "lz4")),
    AIOKAFKA: ("bench.peers.aiokafka_loops", ("aiokafka", "cramjam")),
}
WORKER_TIMEOUT = 900.0
PER_MESSAGE_BOUND = "bounded by per-message work in Python (see the producer profile)"
COMMIT_BOUND = (
    "bounded by the synchronous commit's round trip, which every client pays alike"
    " (see What bounds each figure)"
)


@dataclasses.dataclass
class Settings:
    messages: int  # producer and plain consumption
    batch_messages: int  # batch consumer (a commit per 10)
    single_messages: int  # single consumer (a commit per message)
    probes: int  # latency probes
    load_rate: int  # background msg/s for "latency under load"
    runs: int
    quick: bool
    metrics_pairs: int = 0  # off/on pairs per row of bench/overhead.py
    scrape_interval: float = 1.0


@dataclasses.dataclass
class Comparison:
    key: str
    title: str
    unit: str  # "msg/s" or "ms"
    tool: str  # how the reference is run, for the report
    goals: list[report.Goal]
    peers: bool = True


def comparisons(settings: Settings) -> list[Comparison]:
    return [
        Comparison(
            "producer",
            "Producer: encode, produce, delivery callback",
            "msg/s",
            "ProducerPerformance",
            [
                report.Goal(TOOL, ">=", 0.8, PER_MESSAGE_BOUND),
                report.Goal(KAFKA_PYTHON, ">=", 5, PER_MESSAGE_BOUND),
            ],
        ),
        Comparison(
            "batch",
            "Batch consumer: batches of 10, sync commit per batch",
            "msg/s",
            "VerifiableConsumer, max.poll.records=10",
            [report.Goal(TOOL, ">=", 0.9), report.Goal(KAFKA_PYTHON, ">=", 5, COMMIT_BOUND)],
        ),
        Comparison(
            "single",
            "Single consumer: sync commit per message",
            "msg/s",
            "VerifiableConsumer, max.poll.records=1",
            [report.Goal(TOOL, ">=", 0.9), report.Goal(KAFKA_PYTHON, ">=", 5, COMMIT_BOUND)],
        ),
        Comparison(
            "plain",
            "Plain consumption: consume + decode, no commits",
            "msg/s",
            "ConsumerPerformance (fetch.nMsg.sec)",
            [],
        ),
        Comparison(
            "latency",
            "Produce-to-consume latency, demo pace",
            "ms",
            "EndToEndLatency",
            [report.Goal(TOOL, "<=", 1.5)],
            peers=False,
        ),
        Comparison(
            "latency-load",
            f"Produce-to-consume latency, under load ({settings.load_rate:,} msg/s)",
            "ms",
            "EndToEndLatency",
            [report.Goal(TOOL, "<=", 1.5)],
            peers=False,
        ),
    ]


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------


class Cluster:
    """Where the bench runs: a given bootstrap, or a cluster of its own, and the Java tools."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = admin_client(bootstrap)  # quiet: no log lines while brokers stop

    def create_topics(self, names: list[str], partitions: int = 3, rf: int = 2) -> None:
        """Create fresh topics shaped like final-1-topic; wait until every replica is in sync."""
        futures = self.admin.create_topics(
            [NewTopic(name, partitions, rf) for name in names], request_timeout=30
        )
        for future in futures.values():
            future.result(timeout=60)
        deadline = time.monotonic() + 60
        for name in names:
            while True:
                try:
                    parts = topic_partitions(self.admin, name)
                    if len(parts) == partitions and all(p.healthy for p in parts):
                        break
                except KafkaException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topic {name} not fully in sync after 60 s")
                time.sleep(0.2)

    def delete_topics(self, names: list[str]) -> None:
        if not names:
            return
        futures = self.admin.delete_topics(names, request_timeout=30)
        for future in futures.values():
            with contextlib.suppress(Exception):
                future.result(timeout=60)

    def seed_group(self, group: str, topic: str, partitions: int = 3) -> None:
        """Commit offset 0 for a new group, as if it had consumed before.

        Every consumer then starts from a committed offset instead of an offset reset, which
        librdkafka only starts after a 100 ms backoff ("no previously committed offset
        available"): a one-off start-up cost that would otherwise weigh on short runs.
        """
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        try:
            offsets = [TopicPartition(topic, p, 0) for p in range(partitions)]
            for tp in consumer.commit(offsets=offsets, asynchronous=False) or []:
                if tp.error is not None:
                    raise RuntimeError(f"could not seed group {group}: {tp.error}")
        finally:
            consumer.close()

    def end_offsets_total(self, topic: str) -> int:
        try:
            return sum(end_offsets(self.admin, topic, [0, 1, 2]).values())
        except KafkaException:
            return 0


@contextlib.contextmanager
def cluster_for(args: argparse.Namespace) -> Iterator[tuple[Cluster, Path]]:
    """Yield the cluster and the folder of Kafka's jars (same version as the brokers)."""
    bootstrap = args.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        from localcluster.cluster import LocalCluster

        yield Cluster(bootstrap), LocalCluster(say=_say).lib()
        return

    home = Path(tempfile.mkdtemp(prefix="kafka-bench-cluster-"))
    os.environ["LOCALCLUSTER_HOME"] = str(home)
    os.environ["LOCALCLUSTER_PORT_OFFSET"] = str(args.port_offset)
    from localcluster.cluster import LocalCluster

    local = LocalCluster(say=_say)
    _say(f"starting a cluster of its own in {home} (EXTERNAL ports +{args.port_offset})")
    try:
        local.up()
        yield Cluster(local.bootstrap), local.lib()
    finally:
        with contextlib.suppress(Exception):
            local.down(wipe=True)
        shutil.rmtree(home, ignore_errors=True)


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Contestants
# --------------------------------------------------------------------------------------------


def worker_env() -> dict[str, str]:
    """The app reads KAFKA_*, BATCH_* ... from the environment: give it none of ours (a
    METRICS_PORT of ours would turn metrics on in every run, and the metrics-off runs with it)."""
    prefixes = ("KAFKA_", "BATCH_", "PRODUCER_", "SINGLE_", "LOG_", "METRICS_", "LIVENESS_", "MAX_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    return env


def new_group(key: str, name: str) -> str:
    return f"bench-{key}-{name}-{uuid.uuid4().hex[:10]}"


def run_worker(
    module: str,
    case: str,
    bootstrap: str,
    topic: str,
    messages: int,
    group: str | None = None,
    profile: Path | None = None,
    cwd: Path = ROOT,
    metrics: Path | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Run one worker; ``env``: variables added to worker_env()'s (a secured cluster's login)."""
    command = [
        sys.executable, "-m", module, case, "--bootstrap", bootstrap, "--topic", topic,
        "--messages", str(messages), "--group", group or new_group(case, "worker"),
    ]  # fmt: skip
    if profile is not None:
        command += ["--profile", str(profile)]
    if metrics is not None:
        command += ["--metrics", str(metrics)]
    result = subprocess.run(
        command,
        cwd=cwd,  # python -m finds bench.ours, and the app code it drives, in this checkout
        env={**worker_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        check=False,
    )
    parsed = parse_result(result.stdout)
    if result.returncode != 0 or parsed is None:
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise ToolError(f"{module} {case} exited with {result.returncode}:\n{tail}")
    return parsed


class Bench:
    def __init__(self, cluster: Cluster, tools: JavaTools, settings: Settings, tmp: Path) -> None:
        self.cluster = cluster
        self.tools = tools
        self.settings = settings
        self.tmp = tmp
        self.peers = {
            name: module
            for name, (module, needs) in PEER_MODULES.items()
            if all(importlib.util.find_spec(package) for package in needs)
        }
        self.payload_file, self.record_size = write_payload_file(tmp / "payloads.txt")
        # results[comparison][contestant] = one dict per run (or {"error": ...})
        self.results: dict[str, dict[str, list[dict]]] = {}
        self.unit_costs: dict | None = None  # bench/overhead.py's, without Kafka

    def contestants(self, comparison: Comparison) -> list[str]:
        names = [OURS, TOOL]
        if comparison.peers:
            names += list(self.peers)
        return names

    def run_all(self) -> None:
        for run in range(self.settings.runs):
            for comparison in comparisons(self.settings):
                self.run_comparison(comparison, run)

    def run_comparison(self, comparison: Comparison, run: int) -> None:
        names = self.contestants(comparison)
        shift = run % len(names)
        order = names[shift:] + names[:shift]  # no contestant is always first or last
        slot = self.results.setdefault(comparison.key, {})
        _say(f"run {run + 1}/{self.settings.runs}: {comparison.title} ({', '.join(order)})")
        tag = f"bench-{comparison.key}-r{run + 1}-{uuid.uuid4().hex[:6]}"
        shared = f"{tag}-data"
        own = {name: f"{tag}-{name}" for name in order}
        loads = {name: f"{tag}-{name}-load" for name in order}
        topics = []
        if comparison.key in ("batch", "single", "plain"):
            topics.append(shared)
        else:
            topics += own.values()
        if comparison.key == "latency-load":
            topics += loads.values()
        try:
            self.cluster.create_topics(topics)
            if comparison.key in ("batch", "single", "plain"):
                self.preload(shared, self.count(comparison.key))
            for name in order:
                topic = shared if shared in topics else own[name]
                try:
                    figure = self.measure(comparison.key, name, topic, loads.get(name))
                except (ToolError, subprocess.TimeoutExpired, RuntimeError) as exc:
                    _say(f"  {name}: FAILED: {exc}")
                    figure = {"error": str(exc).splitlines()[0]}
                else:
                    _say(f"  {name}: {report.describe(figure)}")
                slot.setdefault(name, []).append(figure)
        finally:
            self.cluster.delete_topics(topics)

    def count(self, key: str) -> int:
        s = self.settings
        return {"batch": s.batch_messages, "single": s.single_messages}.get(key, s.messages)

    def preload(self, topic: str, count: int) -> None:
        """Fill the topic with `count` messages made by the app's own producer."""
        run_worker("bench.ours", "producer", self.cluster.bootstrap, topic, count)

    def measure(self, key: str, name: str, topic: str, load_topic: str | None) -> dict:
        bootstrap, n = self.cluster.bootstrap, self.count(key)
        if key == "latency-load":
            with self.background_load(load_topic):
                return self.measure("latency", name, topic, None)
        group = new_group(key, name)
        if key in ("batch", "single", "plain"):
            self.cluster.seed_group(group, topic)
        if name == TOOL:
            return self.measure_tool(key, topic, n, group)
        if key == "latency":
            return run_worker("bench.ours", key, bootstrap, topic, self.settings.probes, group)
        module = "bench.ours" if name == OURS else self.peers[name]
        return run_worker(module, key, bootstrap, topic, n, group)

    def measure_tool(self, key: str, topic: str, n: int, group: str) -> dict:
        bootstrap, tools = self.cluster.bootstrap, self.tools
        if key == "producer":
            return tools.producer_performance(bootstrap, topic, n, self.payload_file)
        if key == "batch":
            return tools.verifiable_consumer(bootstrap, topic, n, group, max_poll_records=10)
        if key == "single":
            return tools.verifiable_consumer(bootstrap, topic, n, group, max_poll_records=1)
        if key == "plain":
            return tools.consumer_performance(bootstrap, topic, n, group)
        return tools.end_to_end_latency(bootstrap, topic, self.settings.probes, self.record_size)

    @contextlib.contextmanager
    def background_load(self, topic: str | None) -> Iterator[None]:
        """ProducerPerformance at --load-rate msg/s into another topic, already flowing."""
        assert topic is not None
        process = self.tools.start_load(
            self.cluster.bootstrap, topic, self.settings.load_rate, self.payload_file
        )
        try:
            deadline = time.monotonic() + 60
            while self.cluster.end_offsets_total(topic) < self.settings.load_rate // 2:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise ToolError("the background load did not start")
                time.sleep(0.2)
            yield
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def run_metrics_overhead(self) -> dict[str, list[dict]]:
        """Our producer, batch and single paths with metrics off and on (bench/overhead.py):
        per pair, fresh topics as in run_comparison, off and on one after the other."""
        results: dict[str, list[dict]] = {}
        if self.settings.metrics_pairs:
            self.unit_costs = unit_costs()
        for pair in range(self.settings.metrics_pairs):
            order = ("off", "on") if pair % 2 == 0 else ("on", "off")
            for key in overhead.ROWS:
                of = f"{pair + 1}/{self.settings.metrics_pairs}"
                _say(f"metrics pair {of}: {key} ({', '.join(order)})")
                results.setdefault(key, []).append(self.metrics_pair(key, order, pair))
        return results

    def metrics_pair(self, key: str, order: tuple[str, str], pair: int) -> dict:
        tag = f"bench-metrics-{key}-p{pair + 1}-{uuid.uuid4().hex[:6]}"
        consumer = key in ("batch", "single")
        topics = {side: f"{tag}-data" if consumer else f"{tag}-{side}" for side in order}
        figures: dict = {"order": "-".join(order)}
        try:
            self.cluster.create_topics(sorted(set(topics.values())))
            if consumer:
                self.preload(topics["off"], self.count(key))
            for side in order:
                try:
                    figures[side] = self.measure_metrics(key, side, topics[side])
                except (ToolError, subprocess.TimeoutExpired, RuntimeError) as exc:
                    _say(f"  {side}: FAILED: {exc}")
                    figures[side] = {"error": str(exc).splitlines()[0]}
                else:
                    scraped = f", {figures[side]['scrapes']} scrapes" if side == "on" else ""
                    _say(f"  {side}: {report.describe(figures[side])}{scraped}")
        finally:
            self.cluster.delete_topics(sorted(set(topics.values())))
        return figures

    def measure_metrics(self, key: str, side: str, topic: str) -> dict:
        group = new_group(key, f"metrics-{side}")
        if key in ("batch", "single"):
            self.cluster.seed_group(group, topic)
        bootstrap, n = self.cluster.bootstrap, self.count(key)
        if side == "off":
            return run_worker("bench.ours", key, bootstrap, topic, n, group)
        port_file = self.tmp / f"metrics-port-{uuid.uuid4().hex[:8]}"
        with overhead.Scraper(key, port_file, self.settings.scrape_interval) as scraper:
            figure = run_worker("bench.ours", key, bootstrap, topic, n, group, metrics=port_file)
        figure["scrapes"] = scraper.scrapes
        if scraper.errors:
            figure["scrape_errors"] = scraper.errors
        return figure

    def profile_ours(self, folder: Path) -> dict[str, Path]:
        """One extra, unmeasured run of each of our code paths under pyinstrument."""
        folder.mkdir(parents=True, exist_ok=True)
        profiles = {}
        for key in ("producer", "batch", "single"):
            topic = f"bench-profile-{key}-{uuid.uuid4().hex[:6]}"
            path = folder / f"profile-{key}.txt"
            _say(f"profiling our {key} path into {path}")
            try:
                self.cluster.create_topics([topic])
                if key in ("batch", "single"):
                    self.preload(topic, self.count(key))
                n = self.count(key)
                group = new_group(key, "profile")
                if key in ("batch", "single"):
                    self.cluster.seed_group(group, topic)
                run_worker("bench.ours", key, self.cluster.bootstrap, topic, n, group, path)
                profiles[key] = path
            except (ToolError, subprocess.TimeoutExpired, RuntimeError) as exc:
                _say(f"  profile of {key} FAILED: {exc}")
            finally:
                self.cluster.delete_topics([topic])
        return profiles


def unit_costs() -> dict:
    """What metrics add per delivery report and per scrape, timed without Kafka (a worker)."""
    _say("timing a delivery report and a scrape without Kafka (bench.overhead)")
    command = [sys.executable, "-m", "bench.overhead"]
    result = subprocess.run(
        command, cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=120
    )
    parsed = parse_result(result.stdout)
    if result.returncode != 0 or parsed is None:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        _say(f"  FAILED: {tail}")
        return {"error": tail}
    return parsed


def write_payload_file(path: Path, count: int = 2000) -> tuple[Path, int]:
    """Real demo messages, one per line, for ProducerPerformance; returns (path, mean size)."""
    sys.path.insert(0, str(ROOT))
    from bench.peers import make_message

    values = [make_message(n)[1].decode() for n in range(1, count + 1)]
    path.write_text("\n".join(values) + "\n", encoding="utf-8")
    return path, round(sum(map(len, values)) / count)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.splitlines()[0],
        epilog="A full run takes 7 to 11 min on 2 cores, the metrics off/on pairs 1.5 min of"
        " it (--metrics-overhead-only: 2 min with the cluster's start); --quick 1 to 2 min.",
    )
    parser.add_argument(
        "--messages", type=int, help="messages for producer and plain consumption (300000)"
    )
    parser.add_argument("--batch-messages", type=int, help="batch consumer (default N/5)")
    parser.add_argument("--single-messages", type=int, help="single consumer (default N/50)")
    parser.add_argument("--probes", type=int, help="latency probes per contestant (1000)")
    parser.add_argument("--load-rate", type=int, help="background msg/s for latency under load")
    parser.add_argument("--runs", type=int, help="rounds; the report gives medians (3)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (1 round, < 2 min)")
    parser.add_argument(
        "--bootstrap",
        help="use this cluster (else KAFKA_BOOTSTRAP_SERVERS, else start one of its own)",
    )
    parser.add_argument(
        "--port-offset", type=int, default=500, help="EXTERNAL port shift of its own cluster"
    )
    parser.add_argument(
        "--metrics-pairs",
        type=int,
        help="off/on pairs per row in the metrics cost comparison (3; --quick: 1; 0: skip it)",
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=1.0,
        help="seconds between two scrapes of /metrics in the metrics-on runs (1)",
    )
    parser.add_argument(
        "--metrics-overhead-only",
        action="store_true",
        help="only the metrics off/on comparison: print its table, write --out only if given",
    )
    parser.add_argument(
        "--out", help="markdown report (BENCHMARKS.md; with --metrics-overhead-only: none)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile our code paths (pyinstrument) and put excerpts in the report",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    n = args.messages or (3_000 if quick else 300_000)
    args.settings = Settings(
        messages=n,
        batch_messages=args.batch_messages or max(n // 5, 100),
        single_messages=args.single_messages or max(n // 50, 50),
        probes=args.probes or (30 if quick else 1_000),
        load_rate=args.load_rate or (2_000 if quick else 10_000),
        runs=args.runs or (1 if quick else 3),
        quick=quick,
        metrics_pairs=(1 if quick else 3) if args.metrics_pairs is None else args.metrics_pairs,
        scrape_interval=args.scrape_interval,
    )
    for name in ("messages", "batch_messages", "single_messages", "probes", "load_rate", "runs"):
        if getattr(args.settings, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    if args.settings.metrics_pairs < 0 or args.scrape_interval <= 0:
        parser.error("--metrics-pairs must be >= 0 and --scrape-interval > 0")
    if args.metrics_overhead_only and args.settings.metrics_pairs == 0:
        parser.error("--metrics-overhead-only needs --metrics-pairs > 0")
    if args.out is None and not args.metrics_overhead_only:
        args.out = str(ROOT / "BENCHMARKS.md")  # a partial run must not overwrite the report
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    machine = report.machine_info()
    settings = args.settings
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as tmp, cluster_for(args) as where:
        cluster, lib = where
        tools = JavaTools(lib, Path(tmp))
        bench = Bench(cluster, tools, settings, Path(tmp))
        if not bench.peers and not args.metrics_overhead_only:
            _say("peers not installed (pip install -r requirements-bench.txt): skipping them")
        if not args.metrics_overhead_only:
            bench.run_all()
        overhead_started = time.monotonic()
        costs = bench.run_metrics_overhead()
        overhead_elapsed = time.monotonic() - overhead_started
        _say(f"metrics off/on comparison took {overhead_elapsed:.0f} s")
        section = (
            overhead.markdown(
                costs,
                settings.metrics_pairs,
                settings.scrape_interval,
                overhead_elapsed,
                bench.unit_costs,
            )
            if costs
            else ""
        )
        profiles = {}
        if args.profile and not args.metrics_overhead_only:
            profiles = bench.profile_ours(ROOT / "bench" / "results")
        machine["load_after"] = os.getloadavg()
        if args.metrics_overhead_only:
            text = report.overhead_only(section, machine=machine, quick=settings.quick)
        else:
            text = report.markdown(
                comparisons(settings),
                bench.results,
                settings=settings,
                machine=machine,
                versions=report.versions(lib, bench.peers),
                record_size=bench.record_size,
                profiles=profiles,
                elapsed=time.monotonic() - started,
                bootstrap=cluster.bootstrap,
                metrics_cost=section,
            )
    if not args.metrics_overhead_only:
        print(report.table(comparisons(settings), bench.results, settings))
    if costs:
        print(overhead.table(costs))
        print(overhead.unit_cost_text(costs, bench.unit_costs))
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        _say(f"report written to {args.out}")
    if args.json:
        summary = report.summary(comparisons(settings), bench.results)
        raw = {"settings": dataclasses.asdict(settings), "results": bench.results}
        costs_summary = overhead.summary(costs)
        extra = {
            "metrics_cost": costs,
            "metrics_cost_summary": costs_summary,
            "metrics_unit_costs": bench.unit_costs,
        }
        Path(args.json).write_text(json.dumps({**raw, "summary": summary, **extra}, indent=2))
    failed = [
        f"{key}/{name}"
        for key, by_name in bench.results.items()
        for name, runs in by_name.items()
        if any("error" in r for r in runs)
    ]
    failed += [
        f"metrics-{side}/{key}"
        for key, pairs in costs.items()
        for side in ("off", "on")
        if any("error" in p[side] or p[side].get("scrape_errors") for p in pairs)
    ]
    if failed:
        _say(f"some measurements failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

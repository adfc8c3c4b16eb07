"""What the bench workers share: their command line, how they report, latency percentiles.

Every measured client (our app code, the kafka-python and aiokafka peers) runs in a worker
process of its own: ``python -m bench.ours producer --bootstrap ... --topic ... --messages N``.
The worker times only the measured loop, from inside, so interpreter start-up, imports and the
JVM start of the Java tools never count; it prints one line ``BENCH-RESULT {json}`` on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from kafka_app import settings
from kafka_app.settings import DEFAULT_BATCH_SIZE

ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH-RESULT "

CASES = ("producer", "batch", "single", "plain", "latency")
BATCH_SIZE = DEFAULT_BATCH_SIZE  # also max.poll.records of VerifiableConsumer and the peers
PLAIN_POLL = 500  # messages per poll for plain consumption: Java's max.poll.records default
LINGER_MS = settings.LINGER_MS  # given to every producer in the comparison


def worker_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("case", choices=CASES)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--messages", type=int, required=True, help="messages (latency: probes)")
    parser.add_argument("--group", default=None, help="consumer group (a fresh one per run)")
    parser.add_argument("--profile", metavar="PATH", help="write a pyinstrument text profile")
    parser.add_argument(
        "--metrics",
        metavar="PORT_FILE",
        help="producer, batch, single: run main() with --metrics-port 0 on 127.0.0.1 and write"
        " the port it got into PORT_FILE, for a scraper",
    )
    return parser


def emit(**result: object) -> None:
    """Report the measurement to bench.run (one line on stdout; logs go to stderr)."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse_result(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return None


def rate(messages: int, seconds: float) -> dict[str, float]:
    return {"messages": messages, "seconds": seconds, "rate": messages / max(seconds, 1e-9)}


def timed_rate(messages: int, watch: Stopwatch) -> dict[str, float]:
    """rate(), plus the process's CPU microseconds per message."""
    cpu_us = watch.cpu_seconds * 1e6 / max(messages, 1)
    return {**rate(messages, watch.seconds), "cpu_us_per_msg": cpu_us}


def latency_summary(latencies_s: list[float]) -> dict[str, float]:
    """Percentiles exactly as EndToEndLatency computes them, so that ratios compare like to like.

    EndToEndLatency truncates each latency to whole milliseconds, sorts them and takes the
    element at ``int(n * 0.5)``, ``int(n * 0.99)`` and ``int(n * 0.999)``; its average is exact.
    """
    ms = sorted(int(s * 1000) for s in latencies_s)
    n = len(ms)
    return {
        "probes": n,
        "avg_ms": sum(latencies_s) * 1000 / n,
        "p50_ms": ms[int(n * 0.5)],
        "p99_ms": ms[int(n * 0.99)],
        "p999_ms": ms[int(n * 0.999)],
    }


@contextlib.contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """Profile the block with pyinstrument (wall clock, so time spent waiting in C shows too)."""
    if not path:
        yield
        return
    from pyinstrument import Profiler  # bench-only dependency

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        # Paths relative to the project, so a report does not show where it was run.
        Path(path).write_text(text.replace(f"{ROOT}/", ""))


class Stopwatch:
    """``first`` is set once by ``mark_start()`` and ``last`` by every ``mark_end()``; the
    process's CPU time (all its threads, librdkafka's included) is read at the same moments."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.cpu_first = self.cpu_last = 0.0

    def mark_start(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.cpu_first = time.process_time()

    def mark_end(self) -> None:
        self.last = time.perf_counter()
        self.cpu_last = time.process_time()

    @property
    def seconds(self) -> float:
        if self.first is None or self.last is None:
            raise RuntimeError("the measured loop never started or never finished")
        return self.last - self.first

    @property
    def cpu_seconds(self) -> float:
        """CPU time in the measured loop: unlike the wall clock, it barely moves when other
        processes take the cores, so small costs show through a busy machine's noise."""
        if self.first is None or self.last is None:
            raise RuntimeError("the measured loop never started or never finished")
        return self.cpu_last - self.cpu_first

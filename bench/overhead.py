"""What metrics cost: our producer, batch and single consumer with the endpoint off and on.

"On" is what ``--metrics-port`` gives a user: the script's main() with ``--metrics-port 0
--metrics-address 127.0.0.1`` (the producer then also times every delivery), and the endpoint
scraped while the worker runs, as Prometheus would: a GET of /metrics as soon as it is up, then
every --scrape-interval seconds (1 s; Prometheus's default is 15 s, so this is harsher). The
scraper is a thread of bench.run, outside the measured process, as Prometheus is.

Off and on run as pairs on the same cluster, each pair on fresh topics set up as the row's
comparison sets them up; the order alternates from pair to pair (off-on, on-off, ...), so
neither side always runs first while the machine warms up or gets busier. Each pair gives a
ratio on ÷ off; the report gives the median ratio and the range of ratios as the spread.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
import timeit
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import emit

ROWS = ("producer", "batch", "single")
TOLERANCE = 0.05  # on may be at most this much slower than off
# A metric each script exports itself, so a scrape that answers proves the script's collector.
EXPECTED = {
    "producer": b"kafka_producer_messages_delivered_total",
    "batch": b"kafka_consumer_records_processed_total",
    "single": b"kafka_consumer_records_processed_total",
}
TITLES = {
    "producer": "Producer (timed deliveries + endpoint)",
    "batch": "Batch consumer (endpoint)",
    "single": "Single consumer (endpoint)",
}


class Scraper:
    """GETs /metrics of the worker that writes its port into ``port_file``, at once and then
    every ``interval`` seconds, until the block ends; counts good answers and bad ones."""

    def __init__(self, key: str, port_file: Path, interval: float) -> None:
        self.expected, self.port_file, self.interval = EXPECTED[key], port_file, interval
        self.scrapes = 0  # 200 with the script's own metric in it
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        port = None
        while port is None:
            try:
                port = int(self.port_file.read_text())
            except (FileNotFoundError, ValueError):
                if self._stop.wait(0.01):  # the worker ended before serving
                    return
        url = f"http://127.0.0.1:{port}/metrics"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    body = answer.read()
                if self.expected in body:
                    self.scrapes += 1
                else:
                    self.errors.append(f"no {self.expected.decode()} in /metrics")
            except urllib.error.URLError as exc:
                # Refused or reset: the worker has just exited, between two scrapes.
                if not isinstance(exc.reason, ConnectionError):
                    self.errors.append(str(exc))
            except OSError as exc:
                if not isinstance(exc, ConnectionError):
                    self.errors.append(str(exc))
            if self._stop.wait(self.interval):
                return


# --------------------------------------------------------------------------------------------
# What "on" adds, without Kafka: ``python -m bench.overhead`` (a worker, as bench.ours is)
# --------------------------------------------------------------------------------------------


def unit_costs() -> dict[str, float]:
    """The work metrics add, timed in a quiet loop rather than through a cluster's noise: a
    timed delivery report's extra nanoseconds, and the CPU milliseconds of one scrape of a
    consumer's endpoint (the real probes.serve; this process is client and server both, so
    it is an upper bound)."""
    import argparse

    from confluent_kafka import Message

    import producer
    from kafka_app import metrics, probes
    from kafka_app.client_health import ClientHealth
    from kafka_app.lifecycle import Heartbeat, RecordLog

    message = Message(topic="t", partition=0, offset=0, key=b"k", value=b"v", latency=0.004)
    report_s = {}
    for timed in (False, True):
        tracker = producer.DeliveryTracker(True, RecordLog(None), timed=timed)
        times = timeit.repeat(lambda t=tracker: t(None, message), number=100_000, repeat=7)
        report_s[timed] = min(times) / 100_000

    health = ClientHealth()
    member = argparse.Namespace(processed=0)
    heartbeat = Heartbeat()
    dead_letters = argparse.Namespace(poison=0, written=0)
    port = probes.serve(
        "127.0.0.1",
        0,
        [
            metrics.Metrics(lambda: metrics.client_metrics(health)),
            metrics.Metrics(lambda: metrics.consumer_metrics(member, dead_letters, health)),
        ],
        probes.liveness(health, heartbeat, 60),
        probes.readiness(health, "consumer"),
    )
    url = f"http://127.0.0.1:{port}/metrics"
    urllib.request.urlopen(url, timeout=5).read()  # warm
    scrapes, started = 50, time.process_time()
    for _ in range(scrapes):
        urllib.request.urlopen(url, timeout=5).read()
    return {
        "report_ns": report_s[False] * 1e9,
        "timed_report_ns": report_s[True] * 1e9,
        "scrape_ms": (time.process_time() - started) * 1e3 / scrapes,
    }


def main() -> int:
    emit(**unit_costs())
    return 0


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def summary(results: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Per row: median off and on figures, per-pair ratios on ÷ off, their medians, verdicts.

    Throughput (msg/s) is what the goal is about, but on a shared 2-core machine it moves by
    tens of percent from run to run; the process's CPU time per message moves far less, so a
    cost of a few percent shows in it first."""
    out = {}
    for key in ROWS:
        runs = results.get(key, [])
        pairs = [p for p in runs if "error" not in p["off"] and "error" not in p["on"]]
        ratios = [p["on"]["rate"] / p["off"]["rate"] for p in pairs if p["off"]["rate"] > 0]
        cpu = [p for p in pairs if p["off"].get("cpu_us_per_msg") and "cpu_us_per_msg" in p["on"]]
        cpu_ratios = [p["on"]["cpu_us_per_msg"] / p["off"]["cpu_us_per_msg"] for p in cpu]
        ratio = statistics.median(ratios) if ratios else None
        cpu_ratio = statistics.median(cpu_ratios) if cpu_ratios else None
        out[key] = {
            "off": _median(p["off"].get("rate") for p in pairs),
            "on": _median(p["on"].get("rate") for p in pairs),
            "ratios": ratios,
            "ratio": ratio,
            "within": None if ratio is None else ratio >= 1 - TOLERANCE,
            "cpu_off": _median(p["off"]["cpu_us_per_msg"] for p in cpu),
            "cpu_on": _median(p["on"]["cpu_us_per_msg"] for p in cpu),
            "cpu_ratios": cpu_ratios,
            "cpu_ratio": cpu_ratio,
            "cpu_within": None if cpu_ratio is None else cpu_ratio <= 1 + TOLERANCE,
            "scrapes": [p["on"].get("scrapes", 0) for p in runs if "error" not in p["on"]],
            "scrape_errors": sum(len(p["on"].get("scrape_errors", [])) for p in runs),
            "failed": len(runs) - len(pairs),
        }
    return out


def _median(values) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def _number(value: float | None, form: str = "{:,.0f}") -> str:
    return "failed" if value is None else form.format(value)


def _span(values: list[float] | list[int], form: str) -> str:
    if not values:
        return "—"
    low, high = min(values), max(values)
    return form.format(low) if low == high else f"{form.format(low)} to {form.format(high)}"


def _ratio(ratio: float | None, ratios: list[float]) -> str:
    return "—" if ratio is None else f"{ratio:.3f} ({_span(ratios, '{:.2f}')})"


def _verdict(within: bool | None) -> str:
    return {True: "yes", False: "**NO**", None: "n/a"}[within]


def _noisy(ratios: list[float]) -> str:
    return " (noisy)" if ratios and max(ratios) - min(ratios) > 2 * TOLERANCE else ""


def table(results: dict[str, list[dict]]) -> str:
    rows = [
        "| Row | Off msg/s | On msg/s | On ÷ off (spread) | Within 5% | CPU µs/msg off → on"
        " | CPU on ÷ off (spread) | CPU within 5% | Scrapes per on run |",
        "|---|---:|---:|---:|---|---:|---:|---|---:|",
    ]
    for key, entry in summary(results).items():
        if key not in results:
            continue
        scraped = _span(entry["scrapes"], "{}")
        if entry["scrape_errors"]:
            scraped += f"; {entry['scrape_errors']} FAILED"
        within = _verdict(entry["within"]) + _noisy(entry["ratios"])
        if entry["failed"]:
            within += f"; {entry['failed']} pairs FAILED"
        cells = [
            TITLES[key],
            _number(entry["off"]),
            _number(entry["on"]),
            _ratio(entry["ratio"], entry["ratios"]),
            within,
            f"{_number(entry['cpu_off'], '{:.1f}')} → {_number(entry['cpu_on'], '{:.1f}')}",
            _ratio(entry["cpu_ratio"], entry["cpu_ratios"]),
            _verdict(entry["cpu_within"]) + _noisy(entry["cpu_ratios"]),
            scraped,
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _figure(figure: dict) -> str:
    if "error" in figure:
        return f"failed: {figure['error']}"
    cpu = figure.get("cpu_us_per_msg")
    return f"{figure['rate']:,.0f}" + ("" if cpu is None else f" ({cpu:.1f} µs)")


def per_pair_table(results: dict[str, list[dict]]) -> str:
    lines = [
        "| Row | Pair | Order | Off msg/s (CPU µs/msg) | On msg/s (CPU µs/msg) | On ÷ off"
        " | Scrapes |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for key in ROWS:
        for number, pair in enumerate(results.get(key, []), start=1):
            off, on = pair["off"], pair["on"]
            ok = "error" not in off and "error" not in on and off["rate"] > 0
            cells = [
                key,
                str(number),
                pair["order"],
                _figure(off),
                _figure(on),
                f"{on['rate'] / off['rate']:.3f}" if ok else "—",
                str(on.get("scrapes", "—")),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def unit_cost_text(results: dict[str, list[dict]], units: dict | None) -> str:
    if not units or "error" in units:
        return "Added work, timed without Kafka: failed" + (
            f" ({units['error']})." if units else "."
        )
    added = units["timed_report_ns"] - units["report_ns"]
    cpu_off = summary(results).get("producer", {}).get("cpu_off")
    share = f", {added / 10 / cpu_off:.1f}% of the producer's CPU µs/msg off" if cpu_off else ""
    scrape = units["scrape_ms"]
    return (
        "Added work, timed without Kafka (`python -m bench.overhead`): a delivery report takes"
        f" {units['report_ns']:.0f} ns, {units['timed_report_ns']:.0f} ns timed"
        f" (+{added:.0f} ns a message{share}); one scrape of a consumer's /metrics"
        f" {scrape:.2f} ms of CPU, client and server together: {scrape / 10:.2f}% of a core"
        f" at one scrape a second, {scrape / 150:.3f}% at one every 15 s."
    )


def markdown(
    results: dict[str, list[dict]],
    pairs: int,
    interval: float,
    elapsed: float,
    units: dict | None = None,
) -> str:
    plural = "s" if pairs != 1 else ""
    return "\n".join(
        [
            "## What metrics cost: off and on",
            "",
            f"Our hot paths with the metrics endpoint off and on: {pairs} pair{plural} of runs"
            f" per row, off and on in alternating order, on this run's cluster"
            f" ({elapsed / 60:.1f} min). On: the script's main() with `--metrics-port 0"
            " --metrics-address 127.0.0.1` (the producer then also times every delivery), its"
            f" /metrics scraped at once and every {interval:g} s from another process"
            " (Prometheus's default is every 15 s). Each ratio is taken within a pair; the"
            " median of the pairs is shown, the range of the pairs in brackets. The goal: on"
            f" within {TOLERANCE:.0%} of off. CPU µs/msg is the worker process's CPU time (all"
            " threads, librdkafka's too) over the same timed window, per message: it moves less"
            " than msg/s when other processes take the cores. A verdict marked noisy had"
            f" pairs further apart than twice the {TOLERANCE:.0%}: more pairs"
            " (--metrics-pairs) or a quieter machine would settle it.",
            "",
            table(results),
            "",
            unit_cost_text(results, units),
            "",
            per_pair_table(results),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())

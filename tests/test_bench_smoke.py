"""`python -m bench.run --quick` against the session cluster: every row gets a real figure.

A smoke test of the benchmark's plumbing (Java tools found and parsed, our workers and the
peers run, the metrics off/on pairs run with the endpoint scraped, the report is written), not
of performance: --quick figures mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import overhead

ROOT = Path(__file__).resolve().parent.parent
ROWS = {"producer", "batch", "single", "plain", "latency", "latency-load"}


@pytest.mark.cluster
@pytest.mark.timeout(400)  # the session cluster's start counts too: ~70 s on a busy 2-core box
def test_quick_bench_gives_a_positive_figure_for_every_row(kafka_cluster, tmp_path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    raw = tmp_path / "bench.json"
    started = time.monotonic()
    command = ["-m", "bench.run", "--quick", "--bootstrap", kafka_cluster.bootstrap]
    result = subprocess.run(
        [sys.executable, *command, "--out", str(report), "--json", str(raw)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # 160 s for the rows and 40-60 s for the metrics pairs on a busy machine
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"after {elapsed:.0f}s:\n{result.stderr[-4000:]}"

    results = json.loads(raw.read_text())["results"]
    assert set(results) == ROWS
    for row, by_contestant in results.items():
        assert {"ours", "tool"} <= set(by_contestant), row
        for contestant, runs in by_contestant.items():
            assert len(runs) == 1, (row, contestant)
            figure = runs[0]
            assert "error" not in figure, (row, contestant, figure)
            if row.startswith("latency"):
                assert figure["avg_ms"] > 0, (row, contestant, figure)
                assert figure["p99_ms"] >= figure["p50_ms"] >= 0, (row, contestant, figure)
            else:
                assert figure["rate"] > 0, (row, contestant, figure)

    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and " — vs " in line]
    assert len(rows) == len(ROWS), text
    assert "failed" not in "\n".join(rows)
    assert "CPU:" in text and "librdkafka" in text and "Apache Kafka" in text
    # The printed table is the report's table.
    assert result.stdout.strip().splitlines()[0] in text

    # Metrics off and on: one pair per hot path, "on" really served and scraped.
    costs = json.loads(raw.read_text())["metrics_cost"]
    assert set(costs) == set(overhead.ROWS)
    for row, pairs in costs.items():
        assert len(pairs) == 1, row
        for side in ("off", "on"):
            figure = pairs[0][side]
            assert "error" not in figure, (row, side, figure)
            assert figure["rate"] > 0 and figure["cpu_us_per_msg"] > 0, (row, side, figure)
        assert "scrapes" not in pairs[0]["off"], row
        assert not pairs[0]["on"].get("scrape_errors"), (row, pairs[0]["on"])
        if row != "producer":  # 3,000 messages may be sent before the first scrape lands
            assert pairs[0]["on"]["scrapes"] >= 1, (row, pairs[0]["on"])
    units = json.loads(raw.read_text())["metrics_unit_costs"]
    assert units["timed_report_ns"] > units["report_ns"] > 0 and units["scrape_ms"] > 0, units
    assert "## What metrics cost: off and on" in text and "Added work, timed without" in text
    for title in overhead.TITLES.values():
        assert f"| {title} | " in text and f"| {title} | " in result.stdout, title


def test_metrics_cost_verdicts_come_from_the_median_pair() -> None:
    """On ÷ off is taken within a pair, its median judged against the 5% bound: one noisy pair
    neither passes nor fails a row; CPU per message is judged the other way round."""

    def pair(off: float, on: float, cpu_off: float, cpu_on: float) -> dict:
        return {
            "order": "off-on",
            "off": {"rate": off, "cpu_us_per_msg": cpu_off},
            "on": {"rate": on, "cpu_us_per_msg": cpu_on, "scrapes": 3},
        }

    results = {
        "producer": [pair(100, 97, 10, 10.2), pair(100, 50, 10, 10.3), pair(100, 99, 10, 10.1)],
        "batch": [pair(100, 90, 10, 11), pair(100, 120, 10, 11), pair(100, 93, 10, 9)],
        "single": [pair(100, 96, 10, 10), {"order": "on-off", "off": {"error": "x"}, "on": {}}],
    }
    summary = overhead.summary(results)
    assert summary["producer"]["ratio"] == pytest.approx(0.97)
    assert summary["producer"]["within"] and summary["producer"]["cpu_within"]
    assert summary["batch"]["ratio"] == pytest.approx(0.93)
    assert summary["batch"]["within"] is False and summary["batch"]["cpu_within"] is False
    assert summary["single"]["failed"] == 1 and summary["single"]["within"]
    rows = overhead.table(results).splitlines()
    assert len(rows) == 2 + 3
    assert "0.970 (0.50 to 0.99)" in rows[2] and "| yes (noisy) |" in rows[2]  # one bad pair
    assert "**NO**" in rows[3] and "1 pairs FAILED" in rows[4]


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_ab_of_head_against_this_checkout_gives_every_case_a_figure(kafka_cluster) -> None:
    """`python -m bench.ab` plumbing: a worktree of the ref, both checkouts' workers, a table."""
    command = ["-m", "bench.ab", "HEAD", "--rounds", "1", "--scale", "0.02"]
    result = subprocess.run(
        [sys.executable, *command, "--bootstrap", kafka_cluster.bootstrap],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| ")]
    figures = {row[1].strip(): row[2:5] for row in rows[1:]}
    assert set(figures) == {"producer", "batch", "single", "plain"}, result.stdout
    for case, cells in figures.items():
        before, after = (float(cell.replace(",", "")) for cell in cells[:2])
        assert before > 0 and after > 0, (case, cells)
    worktrees = subprocess.run(
        ["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True
    )
    assert "kafka-ab-" not in worktrees.stdout, "the temporary worktree was left behind"

"""`python -m bench.run --quick` against the session cluster: every row gets a real figure.

A smoke test of the benchmark's plumbing (Java tools found and parsed, our workers and the
peers run, the report is written), not of performance: --quick figures mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROWS = {"producer", "batch", "single", "plain", "latency", "latency-load"}


@pytest.mark.cluster
@pytest.mark.timeout(240)
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
        timeout=200,
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

"""Fixtures of the fault scenarios, and the figures table printed at the end of the run.

Every scenario records one :class:`~support.figures.Figures` line. The lines are printed as
the test runs (visible with -s), listed again in the terminal summary, and written to
build/fault-figures.json (rewritten after each scenario, so a partial run keeps its figures).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.figures import Figures, save_figures
from support.processes import Apps
from support.tail import Tail

_figures: list[Figures] = []
_started = time.strftime("%Y-%m-%d %H:%M:%S %Z")


class FigureRecorder:
    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.recorded: list[Figures] = []

    def record(self, figures: Figures) -> Figures:
        """Record (and print) the figures; call it before asserting, so failures show them."""
        figures.test = self.request.node.nodeid
        self.recorded.append(figures)
        _figures.append(figures)
        print(figures.line())
        save_figures(_figures, _started)
        return figures


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[FigureRecorder]:
    recorder = FigureRecorder(request)
    yield recorder
    report = getattr(request.node, "rep_call", None)
    for f in recorder.recorded:
        f.passed = bool(report and report.passed)
    if recorder.recorded:
        save_figures(_figures, _started)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture(autouse=True)
def whole_cluster(request: pytest.FixtureRequest) -> None:
    """Each scenario that uses the cluster starts with all three brokers up, whatever the one
    before it left (one failure must not fail the scenarios after it)."""
    if "kafka_cluster" not in request.fixturenames:
        return
    cluster = request.getfixturevalue("kafka_cluster")
    if cluster.managed:
        cluster.start_missing()


@pytest.fixture
def apps(tmp_path: Path, bootstrap_servers: str) -> Iterator[Apps]:
    """Starts the scripts; every one still running when the test ends is killed."""
    with Apps(tmp_path, bootstrap_servers) as started:
        yield started


@pytest.fixture
def tail() -> Iterator[Tail]:
    """Follows log files from a thread and stamps each new line with the time it appeared."""
    follower = Tail()
    yield follower
    follower.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _figures:
        return
    terminalreporter.section("fault figures")
    for f in _figures:
        verdict = {True: "PASSED", False: "FAILED", None: "?"}[f.passed]
        terminalreporter.write_line(f"{f.line()}  [{verdict}] {f.test}")

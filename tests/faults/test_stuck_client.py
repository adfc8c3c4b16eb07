"""A wedged client: a commit that never returns must end the consumer, not freeze it.

librdkafka 2.16 was caught (by test_broker_faults.py's full cluster restart, about one run in
four) blocking for good in a synchronous commit: the consumer processed nothing more and
ignored SIGTERM. No broker can be made to do that on demand, so this test hands
app_config.commit_offsets a consumer whose commit() never returns.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

import app_config


class Exited(Exception):
    pass


class StuckConsumer:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def commit(self, offsets: list, asynchronous: bool) -> list:
        self.calls += 1
        self.release.wait(30)  # "forever", bounded so the thread ends after the test
        return offsets


@pytest.mark.faults
def test_stuck_commit_exits_with_client_stuck_status(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    exits: list[int] = []

    def fake_exit(status: int) -> None:
        exits.append(status)
        raise Exited

    monkeypatch.setattr(app_config.os, "_exit", fake_exit)
    monkeypatch.setattr(app_config, "COMMIT_TIMEOUT_SECONDS", 0.5)
    # A worker of its own: the one every other test shares must not stay blocked.
    monkeypatch.setattr(app_config, "_commit_worker", app_config._Worker("test-commit"))
    consumer = StuckConsumer()
    started = time.monotonic()
    try:
        with caplog.at_level(logging.CRITICAL), pytest.raises(Exited):
            app_config.commit_offsets(consumer, {("topic", 0): 42})
    finally:
        consumer.release.set()
    elapsed = time.monotonic() - started

    assert consumer.calls == 1
    assert exits == [app_config.EXIT_CLIENT_STUCK]
    assert 0.5 <= elapsed < 3, f"gave up after {elapsed:.1f} s"
    assert "did not complete in" in caplog.text and "topic [0]@42" in caplog.text


@pytest.mark.faults
def test_commit_worker_passes_results_and_errors_through() -> None:
    """The bounded path changes nothing for a commit that answers."""
    worker = app_config._Worker("test-commit")
    assert worker.call(lambda: 7, 1) == 7
    with pytest.raises(ZeroDivisionError):
        worker.call(lambda: 1 / 0, 1)
    assert worker.call(lambda: "again", 1) == "again"

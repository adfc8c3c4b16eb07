"""Signals: the first SIGINT/SIGTERM stops a script in order, a second one aborts it at once.

No cluster: a producer whose bootstrap servers answer nothing has messages outstanding, so its
orderly stop waits in flush() for --flush-timeout seconds, the wait a user interrupts.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLUSH_TIMEOUT = 60  # far longer than any wait below: only the second signal can end it sooner


def start_stranded_producer(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "producer.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    args = ["--bootstrap-servers", "localhost:1", "--interval", "0.1"]
    process = subprocess.Popen(
        [sys.executable, "producer.py", *args, "--flush-timeout", str(FLUSH_TIMEOUT)],
        cwd=ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    return process, log


def wait_for_line(log: Path, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{log.read_text()}"
        time.sleep(0.05)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_aborts_a_long_flush_at_once(tmp_path: Path, signum: int) -> None:
    process, log = start_stranded_producer(tmp_path)
    try:
        wait_for_line(log, "Producing to")
        time.sleep(1)  # a few messages queued, none deliverable
        process.send_signal(signum)
        wait_for_line(log, "Stopping (shutdown requested): waiting up to 60 s")
        # Control: the first signal alone does not end the flush.
        time.sleep(2)
        assert process.poll() is None, log.read_text()
        sent = time.monotonic()
        process.send_signal(signum)
        status = process.wait(10)
        took = time.monotonic() - sent
    finally:
        process.kill()
        process.wait()
    assert status == -signum, log.read_text()  # ended by the signal itself
    assert took < 2, f"the second signal took {took:.1f} s to end the process"
    assert "a second Ctrl-C aborts at once" in log.read_text()

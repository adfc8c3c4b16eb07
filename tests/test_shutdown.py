"""Signals: the first SIGINT/SIGTERM stops a script in order, a second one aborts it at once.

No cluster: a producer whose bootstrap servers answer nothing has messages outstanding, so its
orderly stop waits in flush() for --flush-timeout seconds, the wait a user interrupts.
"""

import signal
import time
from collections.abc import Callable

import pytest

from support.processes import App, app_env
from support.waits import wait_until

FLUSH_TIMEOUT = 60  # far longer than any wait below: only the second signal can end it sooner


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_aborts_a_long_flush_at_once(
    scripts: Callable[..., App], signum: signal.Signals
) -> None:
    producer = scripts(
        "producer.py",
        "producer",
        "--interval",
        0.1,
        "--flush-timeout",
        FLUSH_TIMEOUT,
        env=app_env("localhost:1"),
    )
    wait_until(lambda: "Producing to" in producer.log(), 20, "the producer to start", [producer])
    time.sleep(1)  # a few messages queued, none deliverable
    producer.signal(signum)
    flushing = f"Stopping (shutdown requested): waiting up to {FLUSH_TIMEOUT} s"
    wait_until(lambda: flushing in producer.log(), 20, "the orderly stop", [producer])
    # Control: the first signal alone does not end the flush.
    time.sleep(2)
    producer.require_alive()
    sent = time.monotonic()
    producer.signal(signum)
    status = producer.wait(10)
    took = time.monotonic() - sent
    assert status == -signum, producer.log()  # ended by the signal itself
    assert took < 2, f"the second signal took {took:.1f} s to end the process"
    assert "a second Ctrl-C aborts at once" in producer.log()

"""Signals: the first SIGINT/SIGTERM stops a script in order, a second one aborts it at once.

No cluster: a producer whose bootstrap servers answer nothing has messages outstanding, so its
orderly stop waits in flush() for --flush-timeout seconds, the wait a user interrupts.
"""

import re
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
    # With no broker, the start-up topic check gives up before the first message is queued.
    started = "Topic final-1-topic not checked"
    wait_until(lambda: started in producer.log(), 20, "the producer to start", [producer])
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
    assert status == 128 + signum, producer.log()  # as a shell reports a signal's end
    assert took < 2, f"the second signal took {took:.1f} s to end the process"
    log = producer.log()
    assert "a second Ctrl-C aborts at once" in log
    # It says what is left: the messages sent in that second, none acknowledged.
    last_words = rf"^WARNING:root:Second {signum.name}: exiting at once\. (\d+) messages? not"
    unacknowledged = re.search(rf"{last_words} acknowledged\.$", log, re.M)
    assert unacknowledged and int(unacknowledged[1]) > 0, log
